import { describe, expect, it } from "vitest";
import type { MetricSeriesRecord } from "../../../src/pipeline/collect/records.js";
import {
  answerTokens,
  BIN_BASE,
  buildExamples,
  fromBin,
  IGNORE,
  LAG_DAYS,
  lagsFor,
  MASK,
  metricForecast,
  robustScale,
  SEP,
  scoreBaselines,
  scoreTask,
  TaskInputError,
  toBin,
  UNK,
} from "../../../src/pipeline/tasks/index.js";

const H = 3_600_000;
const T0 = Date.parse("2026-01-10T00:00:00Z");
const window = { start: T0, end: T0 + 48 * H };
const settings = { points: 4, stride: 4, z_max: 20, max_missing: 0.25, stepMs: H };
const opts = { window, seqLen: 32, numBins: 64, settings };

function chunk(
  labels: Record<string, string>,
  fromHour: number,
  values: (number | "NaN" | "+Inf")[],
): MetricSeriesRecord {
  return {
    kind: "metric_series",
    query: "rps",
    promql: "rate(x[1h])",
    labels,
    step_s: 3600,
    start: (T0 + fromHour * H) / 1000,
    end: (T0 + (fromHour + values.length - 1) * H) / 1000,
    points: values.map((v, i) => [(T0 + (fromHour + i) * H) / 1000, v]),
  };
}

const hours = (from: number, n: number, f: (h: number) => number) =>
  Array.from({ length: n }, (_, i) => f(from + i));

describe("metric scaling", () => {
  it("uses median and IQR, with floors for flat series", () => {
    expect(robustScale([1, 2, 3, 4, 100])).toEqual({ center: 3, scale: 2 });
    expect(robustScale([5, 5, 5, Number.NaN])).toEqual({ center: 5, scale: 0.5 });
    expect(robustScale([0, 0])).toEqual({ center: 0, scale: 1e-3 });
    expect(robustScale([Number.NaN])).toBeNull();
  });

  it("bins are monotone and decode to within their own bin", () => {
    let prev = -1;
    for (let x = -50; x <= 50; x += 0.5) {
      const b = toBin(x, 0, 1, 64, 20);
      expect(b).toBeGreaterThanOrEqual(prev);
      prev = b;
      expect(toBin(fromBin(b, 0, 1, 64, 20), 0, 1, 64, 20)).toBe(b);
    }
    expect(toBin(1e9, 0, 1, 64, 20)).toBe(63);
    expect(toBin(-1e9, 0, 1, 64, 20)).toBe(0);
  });
});

describe("metric_forecast", () => {
  // value = 10 + hour of day, over two days, written as two chunks
  const series = { service: "api", pod: "api-7c9d8f6b5-x2k4q" };
  const records = [
    chunk(
      series,
      0,
      hours(0, 24, (h) => 10 + (h % 24)),
    ),
    chunk(
      series,
      24,
      hours(24, 24, (h) => 10 + (h % 24)),
    ),
  ];

  it("assembles chunks into windows with the scale and targets beside the bins", () => {
    const built = buildExamples(metricForecast, records, opts);
    // Origins every 4 hours from hour 4 to hour 44.
    expect(built.examples.map((e) => (e.time - T0) / H)).toEqual([4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44]);
    const ex = built.examples[5]; // origin hour 24: history hours 20..23, targets hours 24..27
    // [center, scale, last, targets x4, the same hours a day earlier x4, the history x4, the same
    // hours 2..7 days earlier x4 each (before the window: missing)]
    expect(Array.from(ex.aux)).toEqual([
      31.5,
      1.5,
      33,
      10,
      11,
      12,
      13,
      10,
      11,
      12,
      13,
      30,
      31,
      32,
      33,
      ...new Array(24).fill(Number.NaN),
    ]);
    // Layout for seq 32, K 4: 22 bytes of identity, SEP, 4 history bins, SEP, 4 forecast slots.
    const identity = "rps{service=api}"; // the pod name is left out
    expect(metricForecast.describe(ex, built.vocab).input.startsWith(identity)).toBe(true);
    expect(ex.inputs[22]).toBe(SEP);
    expect(Array.from(ex.inputs.slice(23, 27))).toEqual(
      [30, 31, 32, 33].map((v) => BIN_BASE + toBin(v, 31.5, 1.5, 64, 20)),
    );
    expect(ex.inputs[27]).toBe(SEP);
    // Each forecast slot starts from the point K steps earlier.
    expect(Array.from(ex.inputs.slice(28, 32))).toEqual(Array.from(ex.inputs.slice(23, 27)));
    expect(Array.from(ex.labels.slice(28))).toEqual(
      [10, 11, 12, 13].map((v) => BIN_BASE + toBin(v, 31.5, 1.5, 64, 20)),
    );
    expect(Array.from(ex.labels.slice(0, 28)).every((l) => l === IGNORE)).toBe(true);
    // The first day has no day before it.
    expect(Number.isNaN(built.examples[0].aux[7])).toBe(true);
  });

  it("marks missing points, skips gappy windows and refuses NaN-only series", () => {
    const gappy = chunk({ service: "db" }, 0, [1, 2, "NaN", 4, 5, 6, 7, 8, "NaN", "NaN", 11, 12, 13]);
    const built = buildExamples(
      metricForecast,
      [gappy, chunk({ service: "x" }, 0, ["NaN", "NaN", "+Inf"])],
      opts,
    );
    expect(built.invalid.map((i) => i.reason)).toEqual(["series has no finite values (NaN or Inf only)"]);
    // Origin 4: history 1,2,NaN,4 (one gap, allowed); origin 8: history 5..8; origin 12:
    // history 8,NaN,NaN,11 (two gaps, too many).
    expect(built.examples.map((e) => (e.time - T0) / H)).toEqual([4, 8]);
    expect(built.examples[0].inputs[25]).toBe(UNK);
    // ...and its forecast slot starts masked, with no earlier point to start from.
    expect(built.examples[0].inputs[30]).toBe(MASK);
    // Targets that are missing are not supervised.
    const second = built.examples[1];
    expect(Array.from(second.labels.slice(28)).map((l) => l === IGNORE)).toEqual([true, true, false, false]);
    expect(built.skipped["too many missing points in the history"]).toBeGreaterThan(0);
  });

  it("encodes a live query like the build and decodes bins back to units", () => {
    const built = buildExamples(metricForecast, records, opts);
    const v = built.vocab;
    const ex = built.examples[5];
    const enc = metricForecast.encode({ query: "rps", labels: series, points: [30, 31, 32, 33] }, v);
    expect(Array.from(enc.inputs)).toEqual(Array.from(ex.inputs));
    const a = metricForecast.decode({ tokens: ex.labels }, enc, v);
    expect(a.center).toBe(31.5);
    expect(a.scale).toBe(1.5);
    a.points.forEach((p, i) => {
      expect(p.bin).toBe(ex.labels[28 + i] - BIN_BASE);
      // A bin decodes to a value in the same bin as the target.
      expect(toBin(p.value!, 31.5, 1.5, 64, 20)).toBe(toBin(10 + i, 31.5, 1.5, 64, 20));
    });
    // Fewer points than K: the oldest are missing.
    const short = metricForecast.encode({ query: "rps", labels: series, points: [32, 33] }, v);
    expect(short.inputs[23]).toBe(UNK);
    expect(() =>
      metricForecast.encode({ query: "rps", labels: series, points: [null, Number.NaN] }, v),
    ).toThrow(TaskInputError);
  });

  it("has persistence and seasonal-naive baselines, scored in bins and in units", () => {
    const built = buildExamples(metricForecast, records, opts);
    const v = built.vocab;
    const ex = built.examples[5];
    const [persistence, seasonal] = metricForecast.baselines([], v);
    expect(persistence.name).toBe("persistence");
    expect(Array.from(persistence.predict(ex).slice(28))).toEqual(
      Array(4).fill(BIN_BASE + toBin(33, 31.5, 1.5, 64, 20)),
    );
    expect(Array.from(seasonal.predict(ex).slice(28))).toEqual(Array.from(ex.labels.slice(28)));
    const p = scoreTask("metric_forecast", [ex], [persistence.predict(ex)], v);
    const s = scoreTask("metric_forecast", [ex], [seasonal.predict(ex)], v);
    expect(s.metrics.within1_accuracy).toBe(1);
    expect(s.metrics.bin_accuracy).toBe(1);
    expect(p.metrics.within1_accuracy).toBe(0);
    // MAE in units: the decoded bin centre against the true value.
    const centre = fromBin(toBin(33, 31.5, 1.5, 64, 20), 31.5, 1.5, 64, 20);
    expect(p.metrics.mae).toBeCloseTo([10, 11, 12, 13].reduce((a, t) => a + Math.abs(centre - t), 0) / 4, 9);
    expect(p.metrics.scaled_mae).toBeCloseTo(p.metrics.mae / 1.5, 9);
    expect(s.metrics.mae).toBeLessThan(p.metrics.mae);
    // An answer that is not a bin is wrong, and counts as the median in units.
    const junk = new Int32Array(32).fill(v.byte(65));
    const j = scoreTask("metric_forecast", [ex], [junk], v);
    expect(j.metrics.within1_accuracy).toBe(0);
    expect(j.metrics.mae).toBeCloseTo((21.5 + 20.5 + 19.5 + 18.5) / 4, 9);
    // The better baseline is the one to beat.
    const day2 = built.examples.filter((e) => e.time >= T0 + 24 * H);
    expect(scoreBaselines("metric_forecast", [], day2, v).best).toBe("seasonal_naive");
  });

  it("with room in seq_len, gives the same hours a week and two days back, and starts from their median", () => {
    expect(lagsFor(32, 4)).toEqual([]);
    expect(lagsFor(128, 4)).toEqual([...LAG_DAYS]);
    // 192 tokens and 24 hourly points (the demo): both rows fit beside a 67-byte name.
    expect(lagsFor(192, 24)).toEqual([7, 2]);
    expect(lagsFor(139, 24)).toEqual([7]);
    // value = the hour's index, over 10 days: every row is tellable from the others.
    const long = [
      chunk(
        { service: "api" },
        0,
        hours(0, 240, (h) => h),
      ),
    ];
    const big = { ...opts, window: { start: T0, end: T0 + 240 * H }, seqLen: 128 };
    const built = buildExamples(metricForecast, long, big);
    const ex = built.examples.find((e) => e.time === T0 + 200 * H)!;
    const bin = (x: number) => BIN_BASE + toBin(x, 197.5, 1.5, 64, 20);
    // [108 bytes of name][SEP][hours 32..35: a week back][SEP][hours 152..155: two days back][SEP]
    // [history 196..199][SEP][slots]
    expect(ex.inputs[108]).toBe(SEP);
    expect(Array.from(ex.inputs.slice(109, 113))).toEqual([32, 33, 34, 35].map(bin));
    expect(ex.inputs[113]).toBe(SEP);
    expect(Array.from(ex.inputs.slice(114, 118))).toEqual([152, 153, 154, 155].map(bin));
    expect(ex.inputs[118]).toBe(SEP);
    expect(Array.from(ex.inputs.slice(119, 123))).toEqual([196, 197, 198, 199].map(bin));
    expect(ex.inputs[123]).toBe(SEP);
    // Each slot starts from the median of the same hour 1, 2 and 7 days back: 2 days back here.
    expect(Array.from(ex.inputs.slice(124))).toEqual([152, 153, 154, 155].map(bin));
    expect(Array.from(ex.labels.slice(124))).toEqual([200, 201, 202, 203].map(bin));
    expect(metricForecast.describe(ex, built.vocab).input.startsWith("rps{service=api} last 4: ")).toBe(true);
    // The week-back row of an origin in the first week is unknown; the slots use what is known.
    const early = built.examples.find((e) => e.time === T0 + 52 * H)!;
    expect(Array.from(early.inputs.slice(109, 113))).toEqual(Array(4).fill(UNK));
    // median(28, 4) = 16 for the first slot: the same hour 1 and 2 days back.
    expect(early.inputs[124]).toBe(BIN_BASE + toBin(16, 49.5, 1.5, 64, 20));

    // A live query with 8 days of points encodes exactly as the build; with K points, the rows
    // and the slots' starting points are unknown.
    const v = built.vocab;
    expect(v.encoding.metric_forecast.lag_days).toEqual([7, 2]);
    const points = hours(0, 200, (h) => h);
    const enc = metricForecast.encode({ query: "rps", labels: { service: "api" }, points }, v);
    expect(Array.from(enc.inputs)).toEqual(Array.from(ex.inputs));
    const few = metricForecast.encode(
      { query: "rps", labels: { service: "api" }, points: points.slice(-4) },
      v,
    );
    expect(Array.from(few.inputs.slice(109, 113))).toEqual(Array(4).fill(UNK));
    expect(Array.from(few.inputs.slice(124))).toEqual(Array(4).fill(MASK));
    expect(Array.from(few.inputs.slice(119, 123))).toEqual(Array.from(ex.inputs.slice(119, 123)));
  });
});

describe("metric_forecast's answer from probabilities", () => {
  const series = { service: "api" };
  const built = buildExamples(
    metricForecast,
    [
      chunk(
        series,
        0,
        Array.from({ length: 48 }, (_, i) => 10 + (i % 5)),
      ),
    ],
    opts,
  );
  const v = built.vocab;
  const V = v.size;
  const enc = metricForecast.encode({ query: "rps", labels: series, points: [30, 31, 32, 33] }, v);
  const slots = enc.readouts.map((r) => r.position);
  /** Every slot: 0.3 on bin 5, 0.25 on bins 20 and 21 (the rest nearly nothing). */
  const probs = new Float32Array(32 * V).fill(1e-6);
  for (const p of slots) {
    probs[p * V + BIN_BASE + 5] = 0.3;
    probs[p * V + BIN_BASE + 20] = 0.25;
    probs[p * V + BIN_BASE + 21] = 0.25;
  }

  it("answers the bin most likely to be within one bin of the truth, not the arg-max", () => {
    const chosen = metricForecast.choose!(enc.inputs, probs, v);
    for (const p of slots) expect([BIN_BASE + 20, BIN_BASE + 21]).toContain(chosen[p]);
  });

  it("is how evaluation and training validation answer too (answerTokens), from the logits", () => {
    const cfg = { seq_len: 32, vocab_size: V, loss_type: "softmax" as const };
    const out = { predictions: new Int32Array(32).fill(7), logits: Float32Array.from(probs, Math.log) };
    const tokens = answerTokens("metric_forecast", cfg, enc.inputs, out, 0, v);
    for (const p of slots) expect([BIN_BASE + 20, BIN_BASE + 21]).toContain(tokens[p]);
    // A task without its own decision answers the arg-max it was given.
    expect(Array.from(answerTokens("log_triage", cfg, enc.inputs, out, 0, v))).toEqual(Array(32).fill(7));
  });

  it("serves that bin, its confidence the probability of being within one bin", () => {
    const a = metricForecast.decode({ probs }, enc, v);
    expect(a.points).toHaveLength(slots.length);
    for (const p of a.points) {
      expect([20, 21]).toContain(p.bin);
      expect(p.confidence).toBeCloseTo(0.5 / (0.8 + 61e-6), 4);
    }
  });
});
