// The S3 endpoint in a child process (s3-endpoint-main.mjs), for tests whose client blocks its
// event loop for long stretches: the endpoint keeps answering on its own loop.
import { spawn } from "node:child_process";
import { resolve } from "node:path";
import { createInterface } from "node:readline";
import type { S3Call } from "./s3-endpoint.js";

export interface S3ProcessObject {
  bucket: string;
  key: string;
  size: number;
  parts: number;
  etag: string;
}

export interface S3Process {
  port: number;
  /** What the endpoint holds now. */
  inspect(): Promise<{ objects: S3ProcessObject[]; uploads: number; calls: S3Call[] }>;
  close(): Promise<void>;
}

export async function startS3Process(): Promise<S3Process> {
  const proc = spawn(process.execPath, [resolve("test/store/s3-endpoint-main.mjs")], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  const exited = new Promise<number | null>((r) => proc.once("exit", (code) => r(code)));
  const waiters: ((line: string) => void)[] = [];
  createInterface({ input: proc.stdout }).on("line", (line) => waiters.shift()?.(line));
  const next = () =>
    Promise.race([
      new Promise<string>((r) => waiters.push(r)),
      exited.then((code) => {
        throw new Error(`the S3 endpoint process exited (${code})`);
      }),
    ]);
  const { port } = JSON.parse(await next()) as { port: number };
  return {
    port,
    inspect: async () => {
      const answer = next();
      proc.stdin.write("inspect\n");
      return JSON.parse(await answer);
    },
    close: async () => {
      proc.stdin.end();
      const t = setTimeout(() => proc.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}
