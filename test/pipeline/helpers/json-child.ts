// A child process driven over its stdio: it prints one JSON object a line (other lines are its log)
// and may read commands on stdin. The cross-process lease and gc tests drive their children so.
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { createInterface } from "node:readline";

export type Answer = Record<string, unknown>;

export interface JsonChild {
  proc: ChildProcessWithoutNullStreams;
  /** The next JSON line it prints; fails, with its stderr, if it exits first. */
  next(): Promise<Answer>;
  send(line: string): void;
  exited: Promise<number | null>;
  /** Closes its stdin and waits for its exit code. */
  end(): Promise<number | null>;
}

export function spawnJsonChild(script: string, env: NodeJS.ProcessEnv): JsonChild {
  const proc = spawn(process.execPath, [script], { env, stdio: ["pipe", "pipe", "pipe"] });
  let err = "";
  proc.stderr.on("data", (d) => {
    err += d;
  });
  const queue: Answer[] = [];
  const waiters: ((v: Answer) => void)[] = [];
  createInterface({ input: proc.stdout }).on("line", (line) => {
    let v: Answer;
    try {
      v = JSON.parse(line);
    } catch {
      return; // a log line
    }
    const w = waiters.shift();
    if (w) w(v);
    else queue.push(v);
  });
  const exited = new Promise<number | null>((res) => proc.on("exit", (code) => res(code)));
  return {
    proc,
    exited,
    send: (line) => proc.stdin.write(`${line}\n`),
    end: () => {
      proc.stdin.end();
      return exited;
    },
    next: () =>
      queue.length
        ? Promise.resolve(queue.shift() as Answer)
        : Promise.race([
            new Promise<Answer>((r) => waiters.push(r)),
            exited.then((code) => {
              throw new Error(`child exited (${code}) before answering: ${err}`);
            }),
          ]),
  };
}
