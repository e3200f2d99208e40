import { describe, expect, it } from "vitest";
import {
  compareTimestamps,
  parsePodLine,
  splitTimestamp,
} from "../../../src/pipeline/runner/progress-line.js";

describe("pod log lines", () => {
  it("reads a run event, a flat event and a pino line carrying an event as progress", () => {
    const event = {
      type: "progress",
      runId: "r1",
      agent: "a",
      progress: {
        stage: "train",
        message: "step 120/2000",
        step: 120,
        total: 2000,
        eta_s: 300,
        metrics: { loss: 1.9, token_acc: 0.5 },
        at: "x",
      },
    };
    expect(parsePodLine(JSON.stringify(event))).toEqual({
      kind: "progress",
      progress: {
        stage: "train",
        message: "step 120/2000",
        step: 120,
        total: 2000,
        eta_s: 300,
        metrics: { loss: 1.9, token_acc: 0.5 },
      },
    });
    expect(parsePodLine('{"event":"progress","step":3,"lr":0.001}')).toEqual({
      kind: "progress",
      progress: {
        stage: "train",
        message: "step 3",
        step: 3,
        total: null,
        eta_s: null,
        metrics: { lr: 0.001 },
      },
    });
    expect(
      parsePodLine('{"level":30,"time":1,"msg":"x","progress":{"step":7,"total_steps":9}}'),
    ).toMatchObject({
      kind: "progress",
      progress: { step: 7, total: 9, metrics: {} },
    });
  });

  it("leaves everything else as a log line", () => {
    for (const line of [
      "plain text",
      "{not json",
      '{"level":30,"msg":"step done"}',
      '{"type":"progress","step":-1}',
      '{"type":"progress","step":"ten"}',
      '{"type":"log","line":{"msg":"x"}}',
      "[1,2]",
    ]) {
      expect(parsePodLine(line), line).toEqual({ kind: "log" });
    }
  });

  it("splits the API's timestamps and orders them to the nanosecond", () => {
    expect(splitTimestamp("2030-01-01T00:00:01.25Z hello world")).toEqual({
      time: "2030-01-01T00:00:01.25Z",
      text: "hello world",
    });
    expect(splitTimestamp("no timestamp here")).toEqual({ time: null, text: "no timestamp here" });
    // Go trims trailing zeros: .1 is later than .09 and earlier than .12, whatever the string order says.
    expect(compareTimestamps("2030-01-01T00:00:05.1Z", "2030-01-01T00:00:05.09Z")).toBeGreaterThan(0);
    expect(compareTimestamps("2030-01-01T00:00:05.1Z", "2030-01-01T00:00:05.12Z")).toBeLessThan(0);
    expect(compareTimestamps("2030-01-01T00:00:05Z", "2030-01-01T00:00:05.000000000Z")).toBe(0);
    expect(compareTimestamps("2030-01-01T00:00:06Z", "2030-01-01T00:00:05.999999999Z")).toBeGreaterThan(0);
  });
});
