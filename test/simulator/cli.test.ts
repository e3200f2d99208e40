// `trm-forge simulate`: validates its options (exit 2), serves until stopped, writes the ground
// truth it prints, and closes the server when stopped.
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { runSimulate } from "../../src/cli/simulate.js";
import { buildProgram } from "../../src/cli.js";
import { exitCodeOf } from "../../src/errors.js";
import { END } from "./helpers.js";

afterEach(() => {
  vi.restoreAllMocks();
  process.exitCode = undefined;
});

function captureStdout(): string[] {
  const out: string[] = [];
  vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
    out.push(String(chunk));
    return true;
  });
  return out;
}

describe("trm-forge simulate", () => {
  it("serves until stopped, and writes the ground truth it prints", async () => {
    const file = join(mkdtempSync(join(tmpdir(), "trm-sim-")), "truth.json");
    const out = captureStdout();
    const stop = new AbortController();
    const running = runSimulate(
      { seed: 4, days: "2", port: 0, host: "127.0.0.1", end: END, groundTruth: file, json: true },
      stop.signal,
    );
    await vi.waitFor(() => expect(out.join("")).toContain('"url"'), { timeout: 20_000 });
    const printed = JSON.parse(out.join(""));
    expect(JSON.parse(readFileSync(file, "utf8"))).toEqual(printed.ground_truth);
    expect(printed.ground_truth.seed).toBe(4);
    expect(printed.ground_truth.end).toBe("2026-11-30T00:00:00.000Z");
    const ready = await fetch(`${printed.url}/api/v1/status/buildinfo`);
    expect(ready.status).toBe(200);
    stop.abort();
    await running;
    await expect(fetch(`${printed.url}/-/ready`)).rejects.toThrow();
  });

  it("prints how to point the collectors at it", async () => {
    const out = captureStdout();
    const stop = new AbortController();
    stop.abort();
    await runSimulate({ seed: 1, days: "1", port: 0, host: "127.0.0.1", end: END }, stop.signal);
    const text = out.join("");
    expect(text).toMatch(/listening on http:\/\/127\.0\.0\.1:\d+/);
    expect(text).toContain("agent-sre:");
    expect(text).toContain("logql: '{namespace=~\"ai-agents|knative-lambda|notifi|data\"}'");
    expect(text).toContain("lookback: 1d");
  });

  it("refuses bad options with a usage error (exit 2)", async () => {
    const stop = new AbortController();
    for (const bad of [{ days: "0" }, { days: "x" }, { port: 70000 }, { end: "yesterday" }, { seed: -1 }]) {
      const opts = { seed: 1, days: "1", port: 0, host: "127.0.0.1", ...bad };
      const err = await runSimulate(opts, stop.signal).catch((e) => e);
      expect(err, JSON.stringify(bad)).toBeInstanceOf(Error);
      expect(exitCodeOf(err)).toBe(2);
    }
    vi.spyOn(process.stderr, "write").mockImplementation(() => true);
    await buildProgram().parseAsync(["node", "trm-forge", "simulate", "--days", "0"]);
    expect(process.exitCode).toBe(2);
  });
});
