// The real server process the soak runs: `trm-forge serve --http --unsafe-test-clock`, started
// with the soak's simulated time and advanced over its IPC channel (src/server/test-clock.ts).
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import type { AdvanceReply } from "../server/test-clock.js";
import { TEST_CLOCK_ENV, testClockEnv } from "../util/clock.js";
import { builtEntry } from "../util/entry.js";

export interface ServerLogLine {
  msg?: string;
  level?: number;
  [k: string]: unknown;
}

export class SoakServer {
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (at: number) => void; reject: (e: Error) => void }>();
  private tail: string[] = [];
  readonly exited: Promise<number | null>;
  url = "";

  private constructor(
    readonly child: ChildProcess,
    onLog: (line: ServerLogLine) => void,
  ) {
    let partial = "";
    child.stderr!.setEncoding("utf8");
    child.stderr!.on("data", (d: string) => {
      const lines = (partial + d).split("\n");
      partial = lines.pop() ?? "";
      for (const l of lines) {
        this.tail.push(l);
        if (this.tail.length > 60) this.tail.shift();
        const m = /MCP over Streamable HTTP at (\S+)/.exec(l);
        if (m) this.url = m[1];
        if (l.startsWith("{"))
          try {
            onLog(JSON.parse(l) as ServerLogLine);
          } catch {
            // not a log line
          }
      }
    });
    child.on("message", (msg: AdvanceReply) => {
      const w = this.waiting.get(msg.id);
      if (!w) return;
      this.waiting.delete(msg.id);
      if (msg.type === "trm-forge:advanced") w.resolve(msg.now);
      else w.reject(new Error(`the server could not advance its clock: ${msg.error}`));
    });
    this.exited = new Promise((resolve) =>
      child.on("exit", (code, signal) => {
        for (const w of this.waiting.values())
          w.reject(new Error(`the server exited (${signal ?? code}):\n${this.stderrTail()}`));
        this.waiting.clear();
        resolve(code);
      }),
    );
  }

  /** Starts the server on `configPath` with its clock at `at` and resolves once it listens. */
  static async start(configPath: string, at: number, onLog: (l: ServerLogLine) => void): Promise<SoakServer> {
    const cli = builtEntry(import.meta.url, "../cli.js");
    const child = spawn(
      process.execPath,
      [cli, "-c", configPath, "serve", "--http", "--port", "0", "--unsafe-test-clock"],
      {
        stdio: ["ignore", "ignore", "pipe", "ipc"],
        env: { ...process.env, [TEST_CLOCK_ENV]: testClockEnv(at) },
      },
    );
    const s = new SoakServer(child, onLog);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`the server did not start:\n${s.stderrTail()}`)),
        120_000,
      );
      const look = () => {
        if (!s.url) return;
        clearTimeout(timer);
        child.stderr!.off("data", look);
        resolve();
      };
      child.stderr!.on("data", look);
      void s.exited.then(() => {
        clearTimeout(timer);
        reject(new Error(`the server exited at start:\n${s.stderrTail()}`));
      });
    });
    return s;
  }

  /** Moves the server's clock to `to`, running every job due meanwhile; resolves with its time once idle. */
  advance(to: number): Promise<number> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.child.send({ type: "trm-forge:advance", id, to });
    });
  }

  /** Makes every n-th store write of the server fail, transiently, until `until` (simulated ms). */
  async storeFaults(every: number, until: number): Promise<void> {
    await new Promise<void>((resolve) =>
      this.child.send({ type: "trm-forge:store-faults", every, until }, () => resolve()),
    );
  }

  /** Resident memory of the server process, bytes (Linux /proc; 0 elsewhere). */
  rss(): number {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${this.child.pid}/status`, "utf8"));
      return m ? Number(m[1]) * 1024 : 0;
    } catch {
      return 0;
    }
  }

  async kill(signal: NodeJS.Signals): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    await this.exited;
  }

  exitedAlready(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }

  stderrTail(): string {
    return this.tail.slice(-30).join("\n");
  }
}
