// The clock trm-forge reads. In production it is the system clock and nothing here runs.
//
// The soak (src/bench/soak.ts) lives through a simulated year in minutes: it starts the real
// server (`trm-forge serve --unsafe-test-clock`) and moves this process's time forward. Every
// reader of the time (records, leases, collection windows, gc ages, croner, pino) must agree, and
// threading a clock through each of them would touch every module, so the test clock replaces the
// global Date: its time is the system time plus an offset the soak sets. Time keeps flowing
// between jumps, so durations, timeouts and lease renewals behave as they do in production.
//
// It cannot switch on by accident. The offset comes in TEST_CLOCK_ENV as "<offset ms>@<pid>",
// and is honoured only when <pid> is this process's parent (the soak that started it, or the
// server that forked a stage child), and, for the server, only with the --unsafe-test-clock flag.
import { UsageError } from "../errors.js";

export const TEST_CLOCK_ENV = "TRM_FORGE_UNSAFE_TEST_CLOCK";

const SystemDate = Date;
let offsetMs: number | null = null;

/** True when this process runs on the soak's simulated clock. */
export function simulatedClock(): boolean {
  return offsetMs !== null;
}

/** The value of TEST_CLOCK_ENV that hands `at` (the simulated now) to a child of this process. */
export function testClockEnv(at: number): string {
  return `${at - SystemDate.now()}@${process.pid}`;
}

function parseEnv(value: string | undefined): number | null {
  const m = /^(-?\d+)@(\d+)$/.exec(value ?? "");
  if (!m || Number(m[2]) !== process.ppid) return null;
  return Number(m[1]);
}

/**
 * The server's side: with --unsafe-test-clock, the offset must come from the parent; without it,
 * a stray TEST_CLOCK_ENV is dropped so no child of a production server honours it.
 */
export function installServerTestClock(flag: boolean): void {
  const offset = parseEnv(process.env[TEST_CLOCK_ENV]);
  if (!flag) {
    delete process.env[TEST_CLOCK_ENV];
    return;
  }
  if (offset === null || !process.send)
    throw new UsageError(
      `--unsafe-test-clock is for the soak only: it needs ${TEST_CLOCK_ENV} from the parent process and an IPC channel to it`,
    );
  install(offset);
}

/** A stage child: follows its server's simulated clock, if the server runs on one. */
export function installInheritedTestClock(): void {
  const offset = parseEnv(process.env[TEST_CLOCK_ENV]);
  if (offset !== null && process.send) install(offset);
}

/** Moves the simulated clock to `at` (ms); children forked from now on follow it. */
export function setTestClock(at: number): void {
  if (offsetMs === null) throw new Error("the test clock is not installed");
  offsetMs = at - SystemDate.now();
  process.env[TEST_CLOCK_ENV] = testClockEnv(at);
}

function install(offset: number): void {
  offsetMs = offset;
  process.env[TEST_CLOCK_ENV] = `${offset}@${process.pid}`;
  const now = () => SystemDate.now() + (offsetMs ?? 0);
  // Only "now" moves: a Date made from a value, and parsing, stay the system's.
  class SimulatedDate extends SystemDate {
    constructor(...args: unknown[]) {
      if (args.length === 0) super(now());
      else super(...(args as [string | number]));
    }
    static override now(): number {
      return now();
    }
    // Dates Node made with the original constructor (fs stats) are still Dates.
    static override [Symbol.hasInstance](x: unknown): boolean {
      return x instanceof SystemDate;
    }
  }
  globalThis.Date = SimulatedDate as DateConstructor;
}
