// The stronger baselines on hand-made data whose right answer is known: the byte 6-gram and the
// frequent-identifier copy (code_infill), the 7-day seasonal average and the damped trend
// (metric_forecast), the per-path majority (trace_outcome).
import { describe, expect, it } from "vitest";
import type { MetricSeriesRecord, SpanRecord, TraceRecord } from "../../../src/pipeline/collect/records.js";
import { frequentIdentifier, ngramBaseline } from "../../../src/pipeline/tasks/code-infill.js";
import {
  BIN_BASE,
  BYTE_BASE,
  buildExamples,
  type Example,
  IGNORE,
  MASK,
  metricForecast,
  scoreBaselines,
  scoreTask,
  toBin,
  traceOutcome,
  Vocab,
} from "../../../src/pipeline/tasks/index.js";
import { dampedTrend, seasonalAverage } from "../../../src/pipeline/tasks/metric-forecast.js";
import { traceBaselines } from "../../../src/pipeline/tasks/trace-outcome.js";

const enc = new TextEncoder();
const S = 48;

/** A code_infill example: text, with the byte ranges [from, to) masked. */
function code(text: string, masks: [number, number][] = []): Example {
  const inputs = new Int32Array(S);
  const labels = new Int32Array(S).fill(IGNORE);
  enc.encode(text).forEach((b, i) => {
    inputs[i] = BYTE_BASE + b;
  });
  for (const [a, b] of masks)
    for (let i = a; i < b; i++) {
      labels[i] = inputs[i];
      inputs[i] = MASK;
    }
  return { task: "code_infill", inputs, labels, time: 0, aux: new Float64Array(0) };
}

const filled = (pred: Int32Array, a: number, b: number) =>
  String.fromCharCode(...Array.from(pred.subarray(a, b), (t) => t - BYTE_BASE));

describe("code_infill: byte 6-gram with backoff", () => {
  it("fills a span left to right from the longest context seen in train", () => {
    // "count" follows "let " and "total" follows "set "; the single bytes after a space
    // alone would say otherwise ("c" or "t" by frequency).
    const train = [code("let count = 1;\nset total = 2;\nlet count = 3;"), code("set total = 4;")];
    const b = ngramBaseline(train);
    expect(b.name).toBe("byte_6gram");
    const val = code("set total = 5; let count = 6;", [
      [4, 9],
      [19, 24],
    ]);
    const pred = b.predict(val);
    expect(filled(pred, 4, 9)).toBe("total");
    expect(filled(pred, 19, 24)).toBe("count");
    // Unmasked positions are left as they are.
    expect(Array.from(pred.subarray(0, 4))).toEqual(Array.from(val.inputs.subarray(0, 4)));
    expect(
      scoreTask("code_infill", [val], [pred], Vocab.create(vocabOpts)).metrics.masked_token_accuracy,
    ).toBe(1);
  });

  it("backs off to shorter contexts for an unseen one, down to the most frequent byte", () => {
    const train = [code("abcabcabx")];
    const b = ngramBaseline(train);
    // "zzzab" was never seen: backs off to "ab" -> "c" (2) over "x" (1); at the start of a
    // window with no context at all, the most frequent byte ("a" and "b": 3 each, the smaller).
    const pred = b.predict(code("zzzab_", [[5, 6]]));
    expect(filled(pred, 5, 6)).toBe("c");
    expect(filled(b.predict(code("q", [[0, 1]])), 0, 1)).toBe("a");
  });
});

describe("code_infill: the most frequent identifier of the span's length", () => {
  it("copies it from the window's visible text, ignoring identifiers a mask cuts", () => {
    // Five-byte identifiers in view: "total" x3, "price" x1; "countx" touches the mask (hidden).
    const text = "total = price + total; total += countx + _____;";
    const at = text.indexOf("_____");
    const cut = text.indexOf("x +");
    const val = code(text, [
      [at, at + 5],
      [cut, cut + 1],
    ]);
    const pred = frequentIdentifier.predict(val);
    expect(filled(pred, at, at + 5)).toBe("total");
    expect(frequentIdentifier.name).toBe("frequent_identifier");
  });

  it("takes the start of a longer one when none has the span's length, else leaves it unanswered", () => {
    const val = code("request request handler ___", [[24, 27]]);
    expect(filled(frequentIdentifier.predict(val), 24, 27)).toBe("req");
    const none = code("a b ____ c", [[4, 8]]);
    expect(Array.from(frequentIdentifier.predict(none).subarray(4, 8))).toEqual([MASK, MASK, MASK, MASK]);
  });
});

describe("code_infill: the evaluation's baselines", () => {
  const vocab = () => Vocab.create(vocabOpts);
  /** A window that uses `name` three times and hides its fourth use. */
  const uses = (name: string) => {
    const text = `${name} = ${name} + ${name}; f(${name});`;
    const at = text.lastIndexOf(name);
    return code(text, [[at, at + name.length]]);
  };

  it("scores the bigram, the 6-gram and the frequent identifier, and the best one is the one to beat", () => {
    // Train holds other names: only copying from the window's own text gets the hidden one.
    const train = [code("alpha = beta + gamma; f(delta);"), code("omega = sigma + omega;")];
    const val = [uses("rate"), uses("hits"), uses("total"), uses("queue")];
    const b = scoreBaselines("code_infill", train, val, vocab());
    expect(Object.keys(b.scores)).toEqual(["byte_bigram", "byte_6gram", "frequent_identifier"]);
    expect(b.best).toBe("frequent_identifier");
    expect(b.scores.frequent_identifier.metrics.masked_token_accuracy).toBe(1);
    expect(b.scores.byte_bigram.metrics.masked_token_accuracy).toBeLessThan(0.5);
    expect(b.scores.byte_6gram.metrics.masked_token_accuracy).toBeLessThan(0.5);
  });

  it("makes the 6-gram the one to beat where train's text predicts the span and the window does not", () => {
    const train = Array.from({ length: 3 }, () => code("import { readFile } from fs;"));
    const val = [code("import { readFile } from fs;", [[9, 17]])];
    const b = scoreBaselines("code_infill", train, val, vocab());
    expect(b.best).toBe("byte_6gram");
    expect(b.scores.byte_6gram.metrics.masked_token_accuracy).toBe(1);
    expect(b.scores.frequent_identifier.metrics.masked_token_accuracy).toBeLessThan(1);
  });
});

const vocabOpts = {
  numBins: 64,
  encoding: { seq_len: S, metric_forecast: { points: 4, step_ms: 3_600_000, z_max: 20 } },
};

describe("metric_forecast: seasonal average over 7 days and damped trend", () => {
  const H = 3_600_000;
  const T0 = Date.parse("2026-01-01T00:00:00Z");
  const DAYS = 9;
  // Each day's level is its day number (1..9) plus the hour: the same hour over the 7 days
  // before day 9 averages to (2 + ... + 8) / 7 = 5, plus the hour.
  const values = Array.from({ length: DAYS * 24 }, (_, t) => Math.floor(t / 24) + 1 + (t % 24));
  const rec: MetricSeriesRecord = {
    kind: "metric_series",
    query: "rps",
    promql: "rate(x[1h])",
    labels: { service: "api" },
    step_s: 3600,
    start: T0 / 1000,
    end: (T0 + (values.length - 1) * H) / 1000,
    points: values.map((v, i) => [(T0 + i * H) / 1000, v]),
  };
  const built = buildExamples(metricForecast, [rec], {
    window: { start: T0, end: T0 + DAYS * 24 * H },
    seqLen: 64,
    numBins: 64,
    settings: { points: 4, stride: 4, z_max: 20, max_missing: 0.25, stepMs: H },
  });
  const origin = 8 * 24 + 8; // day 9, 08:00
  const ex = built.examples.find((e) => e.time === T0 + origin * H)!;

  it("keeps the history and the same hours of the 7 days before in aux, and averages them", () => {
    expect(ex).toBeDefined();
    for (let i = 0; i < 4; i++) expect(seasonalAverage(ex, 4, i)).toBeCloseTo(5 + 8 + i, 12);
    const [avg] = metricForecast.baselines([], built.vocab).filter((b) => b.name === "seasonal_average_7d");
    const pred = avg.predict(ex);
    const center = ex.aux[0];
    const scale = ex.aux[1];
    const slots = Array.from({ length: 4 }, (_, i) => 64 - 4 + i);
    expect(slots.map((p) => pred[p])).toEqual(
      [13, 14, 15, 16].map((v) => BIN_BASE + toBin(v, center, scale, 64, 20)),
    );
    // Early in the window fewer days exist: the mean of those there are.
    const day3 = built.examples.find((e) => e.time === T0 + (2 * 24 + 8) * H)!;
    expect(seasonalAverage(day3, 4, 0)).toBeCloseTo((1 + 2) / 2 + 8, 12);
  });

  it("extends a trend, damped, and stays flat on a flat history", () => {
    const line = Array.from({ length: 24 }, (_, t) => 5 + 2 * t); // ... 49, 51
    const f = dampedTrend(line, 6);
    // One step ahead is close to the line's next value (53); each later step adds less.
    expect(f[0]).toBeGreaterThan(52);
    expect(f[0]).toBeLessThanOrEqual(53 + 1e-9);
    const steps = Array.from(f, (v, j) => v - (j ? f[j - 1] : 51));
    for (let j = 1; j < 6; j++) {
      expect(steps[j]).toBeGreaterThan(0);
      expect(steps[j]).toBeLessThan(steps[j - 1]);
    }
    expect(f[5]).toBeLessThan(5 + 2 * 29); // the undamped line's value
    expect(Array.from(dampedTrend([7, 7, Number.NaN, 7, 7], 3))).toEqual([7, 7, 7]);
    expect(Array.from(dampedTrend([3], 2))).toEqual([3, 3]);
    const [damped] = metricForecast.baselines([], built.vocab).filter((b) => b.name === "damped_trend");
    expect(damped).toBeDefined();
    expect(damped.predict(ex).length).toBe(64);
  });
});

describe("trace_outcome: majority per path signature", () => {
  const T0 = Date.parse("2026-01-10T00:00:00Z");
  let seq = 0;
  const span = (
    id: string,
    parent: string | null,
    service: string,
    name: string,
    status: SpanRecord["status"] = "ok",
  ): SpanRecord => ({
    trace_id: "a".repeat(32),
    span_id: id.padStart(16, "0"),
    parent_span_id: parent === null ? null : parent.padStart(16, "0"),
    service,
    name,
    kind: "server",
    start_ns: String(BigInt(T0 + 3_600_000) * 1_000_000n + BigInt(Number(id) * 1_000_000)),
    duration_ns: 5_000_000,
    status,
    attributes: {},
  });
  /** api:get calling db:query, cache:get or mq:publish. */
  const trace = (via: "db" | "cache" | "mq", status: SpanRecord["status"]): TraceRecord => {
    seq++;
    const op = { db: "query", cache: "get", mq: "publish" }[via];
    const spans = [span("1", null, "api", "get"), span("2", "1", via, op, status)];
    return {
      kind: "trace",
      query: "q",
      trace_id: seq.toString(16).padStart(32, "0"),
      root_service: "api",
      root_name: "get",
      start_ns: `${T0 + seq * 60_000}000000`,
      duration_ms: 10,
      spans,
    };
  };

  it("tells paths with the same root apart, and backs off to the root for an unseen path", () => {
    const all = buildExamples(
      traceOutcome,
      [
        // train: through db it fails (4 of 5), through cache it never does (2 of 2)
        trace("db", "error"),
        trace("db", "error"),
        trace("db", "error"),
        trace("db", "error"),
        trace("db", "ok"),
        trace("cache", "ok"),
        trace("cache", "ok"),
        // validation
        trace("db", "error"),
        trace("cache", "ok"),
        trace("mq", "ok"), // a path never seen in train
      ],
      { window: { start: T0, end: T0 + 86_400_000 }, seqLen: 48 },
    );
    const v = all.vocab;
    const train = all.examples.slice(0, 7);
    const val = all.examples.slice(7);
    const [root, path] = traceBaselines(train);
    expect(path.name).toBe("majority_per_path");
    const status = (b: typeof root) => val.map((ex) => v.className(b.predict(ex)[0]));
    // The root alone (api:get) says error for all (4 of 7); the path gets the seen paths right
    // and answers the unseen one like its root.
    expect(status(root)).toEqual(["status:error", "status:error", "status:error"]);
    expect(status(path)).toEqual(["status:error", "status:ok", "status:error"]);
    const score = (b: typeof root) =>
      scoreTask(
        "trace_outcome",
        val,
        val.map((ex) => b.predict(ex)),
        v,
      ).metrics.status_accuracy;
    expect(score(root)).toBeCloseTo(1 / 3, 12);
    expect(score(path)).toBeCloseTo(2 / 3, 12);
    // The task's own baselines (what every evaluation scores) include it, and it is the one to beat.
    const b = scoreBaselines("trace_outcome", train, val, v);
    expect(Object.keys(b.scores)).toEqual(["majority_per_root_operation", "majority_per_path"]);
    expect(b.best).toBe("majority_per_path");
    expect(b.scores.majority_per_path.metrics.status_accuracy).toBeCloseTo(2 / 3, 12);
  });
});
