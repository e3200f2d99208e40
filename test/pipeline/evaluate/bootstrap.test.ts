// Paired bootstrap intervals: per-example scores that add up to each task's own metric, intervals
// that shrink with pairing and widen with noise, and the gate's interval mode.
import { describe, expect, it } from "vitest";
import { parseConfig } from "../../../src/config/index.js";
import {
  type ExampleScores,
  exampleScores,
  formatInterval,
  meanOf,
  pairedInterval,
} from "../../../src/pipeline/evaluate/bootstrap.js";
import { runGate, type TaskEvaluation } from "../../../src/pipeline/evaluate/gate.js";
import {
  BYTE_BASE,
  type Example,
  IGNORE,
  MASK,
  scoreTask,
  type TaskName,
  Vocab,
} from "../../../src/pipeline/tasks/index.js";

const vocab = Vocab.create({
  numBins: 64,
  encoding: { seq_len: 16, metric_forecast: { points: 4, step_ms: 3_600_000, z_max: 20 } },
});

function scores(values: number[], weight = 1): ExampleScores {
  return { value: Float64Array.from(values), weight: new Float64Array(values.length).fill(weight) };
}

/** A code_infill example of 16 positions whose masked span is [from, from + len). */
function infill(from: number, len: number): Example {
  const inputs = new Int32Array(16).fill(BYTE_BASE + 0x61);
  const labels = new Int32Array(16).fill(IGNORE);
  for (let i = from; i < from + len; i++) {
    labels[i] = BYTE_BASE + 0x62;
    inputs[i] = MASK;
  }
  return { task: "code_infill", inputs, labels, time: 0, aux: new Float64Array(0) };
}

describe("per-example scores", () => {
  it("weight each example by its labelled positions, so their mean is the task's own metric", () => {
    // Spans of 1, 5 and 2 bytes; the prediction gets 1, 2 and 0 of them right.
    const examples = [infill(0, 1), infill(3, 5), infill(10, 2)];
    const right = (ex: Example, n: number) => {
      const p = Int32Array.from(ex.inputs);
      let k = 0;
      for (let i = 0; i < 16; i++) if (ex.labels[i] !== IGNORE && k++ < n) p[i] = ex.labels[i];
      return p;
    };
    const preds = [right(examples[0], 1), right(examples[1], 2), right(examples[2], 0)];
    const s = exampleScores("code_infill" as TaskName, examples, preds, vocab);
    expect(Array.from(s.weight)).toEqual([1, 5, 2]);
    expect(Array.from(s.value)).toEqual([1, 0.4, 0]);
    const whole = scoreTask("code_infill", examples, preds, vocab);
    expect(meanOf(s)).toBeCloseTo(whole.metrics.masked_token_accuracy, 12);
    expect(meanOf(s)).toBeCloseTo(3 / 8, 12);
  });
});

describe("paired bootstrap interval", () => {
  it("is exactly zero for identical answers and the constant for a constant difference", () => {
    const a = scores([1, 0, 1, 1, 0, 1]);
    const same = pairedInterval(a, a, { against: "self" });
    expect([same.diff, same.low, same.high]).toEqual([0, 0, 0]);
    const b = scores([0.5, -0.5, 0.5, 0.5, -0.5, 0.5]);
    const c = pairedInterval(a, b, { against: "b" });
    expect(c.diff).toBeCloseTo(0.5, 12);
    expect(c.low).toBeCloseTo(0.5, 12);
    expect(c.high).toBeCloseTo(0.5, 12);
  });

  it("has the width the difference's spread implies, is seeded, and is oriented by the metric's direction", () => {
    // 400 examples, the candidate right on 40 more than the other: diff 0.1, sd 0.3, se 0.015.
    const n = 400;
    const a = scores(Array.from({ length: n }, (_, i) => (i % 10 === 0 ? 1 : 0)));
    const b = scores(new Array(n).fill(0));
    const iv = pairedInterval(a, b, { against: "b", seed: 7 });
    expect(iv.diff).toBeCloseTo(0.1, 12);
    expect(iv.low).toBeLessThan(0.1);
    expect(iv.high).toBeGreaterThan(0.1);
    const half = (iv.high - iv.low) / 2;
    expect(half).toBeGreaterThan(1.96 * 0.015 * 0.8);
    expect(half).toBeLessThan(1.96 * 0.015 * 1.2);
    expect(pairedInterval(a, b, { against: "b", seed: 7 })).toEqual(iv);
    expect(iv.resamples).toBe(1000);
    expect(iv.level).toBe(0.95);
    const lower = pairedInterval(a, b, { against: "b", seed: 7, direction: "lower" });
    expect(lower.diff).toBeCloseTo(-0.1, 12);
    expect(lower.high).toBeCloseTo(-iv.low, 12);
    expect(formatInterval({ diff: 0.0244, low: -0.0031, high: 0.046 })).toBe("+0.024 [-0.003, +0.046]");
  });

  it("pairs the examples: shared difficulty cancels, so the interval is narrower than unpaired", () => {
    // Both fail the same hard half; the candidate also gets 10 more of the easy half right.
    const n = 200;
    const base = Array.from({ length: n }, (_, i) => (i < 100 ? 0 : i < 190 ? 1 : 0));
    const cand = base.map((v, i) => (i >= 190 ? 1 : v));
    const paired = pairedInterval(scores(cand), scores(base), { against: "b" });
    expect(paired.low).toBeGreaterThan(0);
    // The same scores with the pairs broken (the other side's examples reversed) give a far
    // wider interval: the spread of each score alone is about 0.035, the difference's 0.015.
    const shuffled = scores([...base].reverse());
    const unpaired = pairedInterval(scores(cand), shuffled, { against: "b" });
    expect(unpaired.high - unpaired.low).toBeGreaterThan(2 * (paired.high - paired.low));
  });
});

describe("the gate on intervals", () => {
  const gate = (extra: Record<string, unknown> = {}) => parseConfig({ gate: extra }).gate;
  const iv = (diff: number, low: number, high: number, against = "majority") => ({
    against,
    diff,
    low,
    high,
    level: 0.95,
    resamples: 1000,
  });
  function task(
    c: number,
    b: number,
    champ: number | null,
    intervals: TaskEvaluation["intervals"],
  ): TaskEvaluation {
    return {
      task: "a",
      enabled: true,
      examples: 600,
      primary: "acc",
      direction: "higher",
      candidate: { metrics: { acc: c }, score: c },
      champion: champ === null ? null : { metrics: { acc: champ }, score: champ },
      baselines: { majority: { metrics: { acc: b }, score: b } },
      best_baseline: "majority",
      judged: true,
      floor: null,
      intervals,
    };
  }

  it("defaults to interval mode: a point win whose interval reaches 0 is not a win", () => {
    expect(gate().compare).toBe("interval");
    const noisy = task(0.858, 0.834, null, { baseline: iv(0.024, -0.003, 0.046), champion: null });
    const v = runGate([noisy], gate());
    expect(v.passed).toBe(false);
    expect(v.reasons).toEqual([
      "a: acc 0.858 does not beat the best baseline (majority, 0.834) with confidence: the difference is +0.024 [-0.003, +0.046] (95% paired bootstrap interval; its lower bound is not above 0.000)",
    ]);
    // The same numbers in point mode pass.
    expect(runGate([noisy], gate({ compare: "point" })).passed).toBe(true);
    const sure = task(0.858, 0.834, null, { baseline: iv(0.024, 0.01, 0.038), champion: null });
    expect(runGate([sure], gate()).reasons).toEqual([
      "a: acc 0.858 beats the best baseline (majority, 0.834) by +0.024 [+0.010, +0.038] (95% paired bootstrap interval; its lower bound is above 0.000)",
    ]);
    expect(runGate([sure], gate({ baseline_margin: 0.02 })).passed).toBe(false);
  });

  it("asks the champion comparison for non-inferiority: the lower bound within -max_regression", () => {
    const base = iv(0.3, 0.25, 0.35);
    const within = task(0.9, 0.6, 0.9, { baseline: base, champion: iv(0, -0.015, 0.015, "v1") });
    expect(runGate([within], gate()).passed).toBe(true);
    // A point difference inside the tolerance whose interval reaches past it fails.
    const unsure = task(0.89, 0.6, 0.9, { baseline: base, champion: iv(-0.01, -0.04, 0.02, "v1") });
    const v = runGate([unsure], gate());
    expect(v.passed).toBe(false);
    expect(v.reasons).toEqual([
      "a: may regress against the champion: 0.890 vs 0.900, -0.010 [-0.040, +0.020] (95% paired bootstrap interval; its lower bound is below -0.020)",
    ]);
    expect(runGate([unsure], gate({ compare: "point" })).passed).toBe(true);
    expect(runGate([unsure], gate({ max_regression: 0.05 })).passed).toBe(true);
  });

  it("falls back to the point difference for an evaluation without intervals", () => {
    const old = task(0.9, 0.6, null, undefined);
    expect(runGate([old], gate()).reasons).toEqual([
      "a: acc 0.900 beats the best baseline (majority, 0.600) by 0.300",
    ]);
  });
});
