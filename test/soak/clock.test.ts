// The soak's clock cannot switch on by accident: a process follows it only when the value names
// its parent and it has an IPC channel to that parent; the server also needs its flag.
import { spawn } from "node:child_process";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";
import { TEST_CLOCK_ENV, testClockEnv } from "../../src/util/clock.js";

const YEAR_AGO = Date.now() - 365 * 86_400_000;

/** What a child that installs the inherited clock sees: its now, and whether Dates stay Dates. */
function childClock(env: string | undefined, ipc: boolean): Promise<{ now: number; dates: boolean }> {
  const clock = pathToFileURL(resolve("dist/util/clock.js")).href;
  const script = `import { installInheritedTestClock } from ${JSON.stringify(clock)};
installInheritedTestClock();
const out = { now: new Date().getTime(), dates: new Date(0) instanceof Date && Date.now() - new Date().getTime() < 1000 };
if (process.send) { process.send(out); process.disconnect(); } else process.stdout.write(JSON.stringify(out));`;
  const child = spawn(process.execPath, ["--input-type=module", "-e", script], {
    stdio: ["ignore", "pipe", "inherit", ...(ipc ? (["ipc"] as const) : [])],
    env: { ...process.env, [TEST_CLOCK_ENV]: env },
  });
  return new Promise((res, rej) => {
    let out = "";
    child.stdout!.on("data", (d) => {
      out += d;
    });
    child.on("message", (m) => res(m as { now: number; dates: boolean }));
    child.on("exit", () => (out ? res(JSON.parse(out)) : undefined));
    child.on("error", rej);
  });
}

describe("the soak's test clock", () => {
  it("is followed by a child of the process that set it, over IPC", async () => {
    const r = await childClock(testClockEnv(YEAR_AGO), true);
    expect(Math.abs(r.now - YEAR_AGO)).toBeLessThan(60_000);
    expect(r.dates).toBe(true);
  });

  it("is ignored when it names another parent, or without an IPC channel", async () => {
    const other = testClockEnv(YEAR_AGO).replace(/@\d+$/, "@1");
    for (const r of [await childClock(other, true), await childClock(testClockEnv(YEAR_AGO), false)])
      expect(Math.abs(r.now - Date.now())).toBeLessThan(60_000);
  });

  it("needs the soak to start the server: --unsafe-test-clock alone is refused", async () => {
    const child = spawn(
      process.execPath,
      [resolve("dist/cli.js"), "serve", "--http", "--unsafe-test-clock"],
      {
        stdio: ["ignore", "ignore", "pipe"],
        env: { ...process.env, [TEST_CLOCK_ENV]: testClockEnv(YEAR_AGO) },
      },
    );
    let err = "";
    child.stderr!.on("data", (d) => {
      err += d;
    });
    const code = await new Promise((r) => child.on("exit", r));
    expect(code).toBe(2);
    expect(err).toContain("--unsafe-test-clock is for the soak only");
  });
});
