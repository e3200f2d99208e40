// metric_forecast: a series' identity and its last K points in, its next K points out, each
// point a bin of the series' robust scale (median and IQR of the history). The scale rides
// with the example, so a predicted bin decodes back to the metric's units.
//
// Layout: [identity text, PAD-filled][SEP][K history bins][SEP][K forecast slots].
import type { MetricSeriesRecord, SampleValue } from "../collect/records.js";
import { argmaxTokens, checkPredictions, ignoreLabels, putText, readAt, tokensToText } from "./common.js";
import { hash53, hashParts, hashText } from "./hash.js";
import {
  type Answer,
  type Baseline,
  type BuildContext,
  type DraftSink,
  type Example,
  PUZZLE_IDS,
  type Readout,
  type RecordConsumer,
  TaskInputError,
  type TaskModule,
} from "./types.js";
import { BIN_BASE, IGNORE, MASK, SEP, UNK, type Vocab } from "./vocab.js";

export interface MetricForecastQuery {
  /** The collector's query name (used when the labels have no __name__). */
  query: string;
  labels: Record<string, string>;
  /**
   * Points at the dataset's step, oldest first; null or NaN where missing. The last K are the
   * history; up to a week before them fill the rows of earlier days (historyPoints says how many).
   */
  points: (number | null)[];
}

export interface MetricForecastAnswer {
  /** The next K points, in the metric's units. */
  points: { value: number | null; bin: number | null; confidence: number }[];
  center: number;
  scale: number;
}

export interface MetricForecastSettings {
  points: number;
  stepMs: number;
  stride: number;
  zMax: number;
  maxMissing: number;
}

/** Labels that name one pod or container instance rather than the series' role. */
const NOISY_LABELS = new Set(["pod", "pod_template_hash", "uid", "id", "container_id", "image_id"]);

/**
 * aux layout: [center, scale, last, target x K, seasonal x K, history x K, days 2..7 x K]: the
 * targets, the same hours a day earlier, the raw history, and the same hours 2 to 7 days earlier
 * (the baselines' inputs; datasets built before the last two blocks hold only the first ones).
 */
export const AUX_CENTER = 0;
export const AUX_SCALE = 1;
export const AUX_LAST = 2;
const AUX_TARGET = 3;
/** Days back the seasonal average looks (aux holds the same hours on each). */
export const SEASON_DAYS = 7;

export function auxWidth(k: number): number {
  return 3 + (2 + SEASON_DAYS) * k;
}

export function identityText(query: string, labels: Record<string, string>): string {
  const name = labels.__name__ || query;
  const parts = Object.keys(labels)
    .filter((k) => k !== "__name__" && !NOISY_LABELS.has(k))
    .sort()
    .map((k) => `${k}=${labels[k]}`);
  return `${name}{${parts.join(",")}}`;
}

export function sampleValue(v: SampleValue): number {
  return typeof v === "number" && Number.isFinite(v) ? v : Number.NaN;
}

function quantile(sorted: Float64Array, q: number): number {
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

/** Robust centre and scale of the finite values: median and IQR, with floors for flat series. */
export function robustScale(values: ArrayLike<number>): { center: number; scale: number } | null {
  const finite: number[] = [];
  for (let i = 0; i < values.length; i++) if (Number.isFinite(values[i])) finite.push(values[i]);
  if (!finite.length) return null;
  const sorted = Float64Array.from(finite).sort();
  const center = quantile(sorted, 0.5);
  const iqr = quantile(sorted, 0.75) - quantile(sorted, 0.25);
  const range = sorted[sorted.length - 1] - sorted[0];
  const scale = iqr > 0 ? iqr : range > 0 ? range : Math.max(Math.abs(center) * 0.1, 1e-3);
  return { center, scale };
}

/** Bins are uniform in asinh(z), z = (x - center) / scale, over [-asinh(z_max), asinh(z_max)]. */
export function toBin(x: number, center: number, scale: number, numBins: number, zMax: number): number {
  const u = Math.asinh((x - center) / scale);
  const U = Math.asinh(zMax);
  const b = Math.floor(((Math.max(-U, Math.min(U, u)) + U) / (2 * U)) * numBins);
  return Math.max(0, Math.min(numBins - 1, b));
}

export function fromBin(bin: number, center: number, scale: number, numBins: number, zMax: number): number {
  const U = Math.asinh(zMax);
  const u = -U + ((bin + 0.5) * 2 * U) / numBins;
  return center + scale * Math.sinh(u);
}

interface Layout {
  identityLen: number;
  /** Where each earlier day's row starts, in the order of `lags`. */
  rows: number[];
  histFrom: number;
  predFrom: number;
}

/**
 * Earlier days whose values at the forecast's own hours ride along as rows, most useful first:
 * a week back (the same weekday: the homelab's weekends differ) and two days back (with the
 * history's yesterday, a three-day view of the hour). Measured on the simulator's held-out days,
 * the median of the three is within one bin of the truth more often than yesterday alone.
 */
export const LAG_DAYS = [7, 2] as const;
/** The series' name keeps at least this many bytes when rows are added. */
const MIN_IDENTITY = 40;

/** The rows that fit seq_len beside K history points, K slots and a name of MIN_IDENTITY bytes. */
export function lagsFor(seqLen: number, k: number): number[] {
  const lags: number[] = [...LAG_DAYS];
  while (lags.length && seqLen - 2 * k - 2 - lags.length * (k + 1) < MIN_IDENTITY) lags.pop();
  return lags;
}

/** How many points, oldest first, a query needs to fill every row of this encoding. */
export function historyPoints(spec: { points: number; step_ms: number; lag_days?: number[] }): number {
  const back = Math.max(0, ...(spec.lag_days ?? []));
  return Math.max(spec.points, back * Math.round(86_400_000 / spec.step_ms));
}

/** [identity][SEP] then per lag [K values][SEP], then [K history][SEP][K slots]: slots always end it. */
function layoutOf(seqLen: number, k: number, lags = 0): Layout {
  const identityLen = seqLen - 2 * k - 2 - lags * (k + 1);
  if (identityLen < 8)
    throw new TaskInputError(
      `metric_forecast: seq_len ${seqLen} leaves no room for ${k} + ${k} points and a name`,
    );
  const rows = Array.from({ length: lags }, (_, r) => identityLen + 1 + r * (k + 1));
  const histFrom = identityLen + 1 + lags * (k + 1);
  return { identityLen, rows, histFrom, predFrom: histFrom + k + 1 };
}

/**
 * Encodes a series at a forecast origin. `at(j)` is the value j steps from the origin (j < 0:
 * the past; NaN where unknown); the history is at(-K..-1), the row of lag d holds
 * at(i - d * perDay) for the K forecast hours. Returns the inputs, the scale and the last finite
 * value, or null when the history has no finite point.
 */
function encodeSeries(
  identity: string,
  at: (j: number) => number,
  k: number,
  spec: { seqLen: number; numBins: number; zMax: number; perDay: number; lags: readonly number[] },
) {
  const hist = Float64Array.from({ length: k }, (_, i) => at(i - k));
  const L = layoutOf(spec.seqLen, k, spec.lags.length);
  const sc = robustScale(hist);
  if (!sc) return null;
  const bin = (v: number) =>
    Number.isFinite(v) ? BIN_BASE + toBin(v, sc.center, sc.scale, spec.numBins, spec.zMax) : UNK;
  const inputs = new Int32Array(spec.seqLen);
  putText(inputs, 0, identity, L.identityLen);
  inputs[L.identityLen] = SEP;
  spec.lags.forEach((d, r) => {
    for (let i = 0; i < k; i++) inputs[L.rows[r] + i] = bin(at(i - d * spec.perDay));
    inputs[L.rows[r] + k] = SEP;
  });
  let last = Number.NaN;
  for (let i = 0; i < k; i++) {
    inputs[L.histFrom + i] = bin(hist[i]);
    if (Number.isFinite(hist[i])) last = hist[i];
  }
  inputs[L.histFrom + k] = SEP;
  // Each forecast slot starts from a seasonal guess, so the model learns a correction to it
  // rather than where to copy from: with rows, the median of the same hour 1, 2 and 7 days back
  // (what is known of them); without (an old vocabulary), the point K steps earlier. A slot
  // with nothing to start from stays masked.
  for (let i = 0; i < k; i++) {
    let prior: number;
    if (spec.lags.length) {
      const seen = [1, ...spec.lags].map((d) => at(i - d * spec.perDay)).filter(Number.isFinite);
      prior = median(seen);
    } else prior = hist[i];
    inputs[L.predFrom + i] = Number.isFinite(prior) ? bin(prior) : MASK;
  }
  return { inputs, layout: L, ...sc, last };
}

function median(xs: number[]): number {
  if (!xs.length) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function settingsOf(raw: Record<string, unknown>, stepMs?: number): MetricForecastSettings {
  return {
    points: (raw.points as number) ?? 24,
    stepMs: stepMs ?? (raw.stepMs as number) ?? 3_600_000,
    stride: (raw.stride as number) ?? 6,
    zMax: (raw.z_max as number) ?? 20,
    maxMissing: (raw.max_missing as number) ?? 0.25,
  };
}

interface Series {
  query: string;
  labels: Record<string, string>;
  values: Float64Array;
  times: Float64Array;
}

function builder(ctx: BuildContext, sink: DraftSink): RecordConsumer<MetricSeriesRecord> {
  const S = ctx.vocabSpec.seqLen;
  const nb = ctx.vocabSpec.numBins;
  const s = settingsOf(ctx.settings);
  const K = s.points;
  const perDay = Math.round(86_400_000 / s.stepMs);
  const encSpec = { seqLen: S, numBins: nb, zMax: s.zMax, perDay, lags: lagsFor(S, K) };
  layoutOf(S, K, encSpec.lags.length);
  const { start, end } = ctx.window;
  const n = Math.floor((end - start) / s.stepMs);
  const series = new Map<string, Series>();
  return {
    add(rec, ref) {
      if (!rec.points.length) return sink.invalid("series chunk has no points", ref);
      const key = `${rec.query}\u0000${JSON.stringify(Object.entries(rec.labels).sort(([a], [b]) => (a < b ? -1 : 1)))}`;
      let finite = 0;
      let outside = 0;
      let ser = series.get(key);
      for (const [t, raw] of rec.points) {
        const v = sampleValue(raw);
        if (!Number.isFinite(v)) continue;
        finite++;
        const ms = t * 1000;
        const i = Math.floor((ms - start) / s.stepMs);
        if (!(i >= 0 && i < n)) {
          outside++;
          continue;
        }
        if (!ser) {
          ser = {
            query: rec.query,
            labels: rec.labels,
            values: new Float64Array(n).fill(Number.NaN),
            times: new Float64Array(n).fill(Number.NEGATIVE_INFINITY),
          };
          series.set(key, ser);
        }
        // The newest sample in a step stands for the step, whatever order chunks come in.
        if (ms > ser.times[i] || (ms === ser.times[i] && v > ser.values[i])) {
          ser.times[i] = ms;
          ser.values[i] = v;
        }
      }
      if (!finite) return sink.invalid("series has no finite values (NaN or Inf only)", ref);
      if (outside === finite) sink.skipped("series chunk outside the window");
    },
    finish() {
      for (const key of [...series.keys()].sort()) {
        const ser = series.get(key)!;
        const identity = identityText(ser.query, ser.labels);
        const seriesHash = hashText(key);
        for (let o = K; o + K <= n; o += s.stride) {
          const hist = ser.values.subarray(o - K, o);
          let missing = 0;
          for (const v of hist) if (!Number.isFinite(v)) missing++;
          if (missing === K || missing > s.maxMissing * K) {
            sink.skipped("too many missing points in the history");
            continue;
          }
          let targets = 0;
          for (let i = o; i < o + K; i++) if (Number.isFinite(ser.values[i])) targets++;
          if (!targets) {
            sink.skipped("no point to forecast");
            continue;
          }
          const values = ser.values;
          const enc = encodeSeries(identity, (j) => (o + j >= 0 ? values[o + j] : Number.NaN), K, encSpec)!;
          const labels = ignoreLabels(S);
          const aux = new Float64Array(auxWidth(K));
          aux[AUX_CENTER] = enc.center;
          aux[AUX_SCALE] = enc.scale;
          aux[AUX_LAST] = enc.last;
          for (let i = 0; i < K; i++) {
            const v = ser.values[o + i];
            aux[AUX_TARGET + i] = v;
            aux[AUX_TARGET + 2 * K + i] = hist[i];
            for (let d = 1; d <= SEASON_DAYS; d++) {
              const prior = o + i - d * perDay;
              aux[seasonAt(K, d) + i] = prior >= 0 ? ser.values[prior] : Number.NaN;
            }
            if (Number.isFinite(v))
              labels[enc.layout.predFrom + i] = BIN_BASE + toBin(v, enc.center, enc.scale, nb, s.zMax);
          }
          sink.example({
            inputs: enc.inputs,
            labels,
            classes: [],
            time: start + o * s.stepMs,
            until: start + (o + K - 1) * s.stepMs,
            aux,
            key: hash53(enc.inputs, 0x3e7),
            uid: hashParts(seriesHash, o),
          });
        }
      }
      series.clear();
    },
  };
}

/** Where the same hours d days before the targets start in aux (d = 1 is the old seasonal block). */
function seasonAt(k: number, d: number): number {
  return d === 1 ? AUX_TARGET + k : AUX_TARGET + 3 * k + (d - 2) * k;
}

/** K of an example: its aux is either the old [3 + 2K] layout or the full one. */
function kOf(ex: Example): number {
  const full = (ex.aux.length - 3) / (2 + SEASON_DAYS);
  // The forecast slots end the sequence after a separator: tells the two layouts apart.
  return Number.isInteger(full) && ex.inputs[ex.inputs.length - full - 1] === SEP
    ? full
    : (ex.aux.length - 3) / 2;
}

/** The history's raw values, or null for a dataset built before aux held them. */
function auxHistory(ex: Example, k: number): Float64Array | null {
  return ex.aux.length >= auxWidth(k) ? ex.aux.subarray(AUX_TARGET + 2 * k, AUX_TARGET + 3 * k) : null;
}

/** Mean of the finite values at the same hour over the last SEASON_DAYS days (fewer in old datasets). */
export function seasonalAverage(ex: Example, k: number, i: number): number {
  const days = ex.aux.length >= auxWidth(k) ? SEASON_DAYS : 1;
  let sum = 0;
  let n = 0;
  for (let d = 1; d <= days; d++) {
    const v = ex.aux[seasonAt(k, d) + i];
    if (Number.isFinite(v)) {
      sum += v;
      n++;
    }
  }
  return n ? sum / n : Number.NaN;
}

/**
 * Damped-trend exponential smoothing (Holt with damping) of a history, h steps ahead, its
 * smoothing weights fitted on the history's own one-step errors over a small grid. Missing
 * points are skipped (the level carries over).
 */
export function dampedTrend(history: ArrayLike<number>, h: number): Float64Array {
  const xs: number[] = [];
  for (let i = 0; i < history.length; i++) if (Number.isFinite(history[i])) xs.push(history[i]);
  const out = new Float64Array(h).fill(xs.length ? xs[xs.length - 1] : Number.NaN);
  if (xs.length < 3) return out;
  let best = { sse: Number.POSITIVE_INFINITY, level: 0, trend: 0, phi: 1 };
  for (const alpha of [0.2, 0.4, 0.6, 0.8, 1])
    for (const beta of [0, 0.05, 0.1, 0.2, 0.4])
      for (const phi of [0.8, 0.9, 0.98]) {
        let level = xs[0];
        let trend = xs[1] - xs[0];
        let sse = 0;
        for (let t = 1; t < xs.length; t++) {
          const guess = level + phi * trend;
          sse += (xs[t] - guess) ** 2;
          const next = alpha * xs[t] + (1 - alpha) * guess;
          trend = beta * (next - level) + (1 - beta) * phi * trend;
          level = next;
        }
        if (sse < best.sse) best = { sse, level, trend, phi };
      }
  let damp = 0;
  let f = 1;
  for (let j = 0; j < h; j++) {
    f *= best.phi;
    damp += f;
    out[j] = best.level + damp * best.trend;
  }
  return out;
}

function predictFromValues(ex: Example, vocab: Vocab, value: (i: number) => number): Int32Array {
  const K = kOf(ex);
  const L = layoutOf(ex.inputs.length, K);
  const zMax = vocab.encoding.metric_forecast.z_max;
  const out = new Int32Array(ex.inputs.length);
  for (let i = 0; i < K; i++) {
    const v = value(i);
    out[L.predFrom + i] = Number.isFinite(v)
      ? BIN_BASE + toBin(v, ex.aux[AUX_CENTER], ex.aux[AUX_SCALE], vocab.numBins, zMax)
      : -1;
  }
  return out;
}

/** Probability of bin b and its two neighbours, out of all the bins' (row: where bin 0 is). */
function withinOneMass(probs: Float32Array, row: number, nb: number, b: number): number {
  const all = binMass(probs, row, nb);
  return all > 0 ? nearMass(probs, row, nb, b) / all : 0;
}

function binMass(probs: Float32Array, row: number, nb: number): number {
  let all = 0;
  for (let x = 0; x < nb; x++) all += probs[row + x];
  return all;
}

function nearMass(probs: Float32Array, row: number, nb: number, b: number): number {
  let near = probs[row + b];
  if (b > 0) near += probs[row + b - 1];
  if (b < nb - 1) near += probs[row + b + 1];
  return near;
}

/**
 * Each forecast slot answers the bin whose neighbourhood (itself and the bins either side)
 * holds the most probability: the answer most likely to be within one bin of the truth, which
 * the arg-max is not when the model spreads its belief over neighbouring bins.
 */
function chooseBins(inputs: Int32Array, probs: Float32Array, vocab: Vocab): Int32Array {
  const V = vocab.size;
  const nb = vocab.numBins;
  const out = argmaxTokens(probs, inputs.length, V);
  for (let pos = inputs.length - vocab.encoding.metric_forecast.points; pos < inputs.length; pos++) {
    const row = pos * V + BIN_BASE;
    let best = 0;
    let bestMass = -1;
    for (let b = 0; b < nb; b++) {
      const m = nearMass(probs, row, nb, b);
      if (m > bestMass) {
        bestMass = m;
        best = b;
      }
    }
    out[pos] = BIN_BASE + best;
  }
  return out;
}

export const metricForecast: TaskModule<MetricForecastQuery, MetricForecastAnswer> = {
  name: "metric_forecast",
  source: "prometheus",
  puzzleId: PUZZLE_IDS.metric_forecast,
  slots: [],
  metrics: { within1_accuracy: "higher", bin_accuracy: "higher", mae: "lower", scaled_mae: "lower" },
  primary: "within1_accuracy",
  builder: builder as TaskModule["builder"],
  encode(query, vocab) {
    const spec = vocab.encoding.metric_forecast;
    const K = spec.points;
    if (typeof query?.query !== "string" || typeof query.labels !== "object" || !Array.isArray(query.points))
      throw new TaskInputError("metric_forecast needs { query, labels, points: number[] }");
    // The last K points are the history; earlier ones (a week and a day of them at most) fill
    // the rows of earlier days.
    const pts = query.points.map((v) => (typeof v === "number" && Number.isFinite(v) ? v : Number.NaN));
    const enc = encodeSeries(
      identityText(query.query, query.labels),
      (j) => (pts.length + j >= 0 ? pts[pts.length + j] : Number.NaN),
      K,
      {
        seqLen: vocab.encoding.seq_len,
        numBins: vocab.numBins,
        zMax: spec.z_max,
        perDay: Math.round(86_400_000 / spec.step_ms),
        lags: spec.lag_days ?? [],
      },
    );
    if (!enc) throw new TaskInputError("metric_forecast: the history has no finite point");
    const aux = new Float64Array(auxWidth(K)).fill(Number.NaN);
    aux[AUX_CENTER] = enc.center;
    aux[AUX_SCALE] = enc.scale;
    aux[AUX_LAST] = enc.last;
    const readouts: Readout[] = [];
    for (let i = 0; i < K; i++)
      readouts.push({ position: enc.layout.predFrom + i, kind: "bin", name: `t+${i + 1}` });
    return {
      task: "metric_forecast",
      puzzleId: PUZZLE_IDS.metric_forecast,
      inputs: enc.inputs,
      readouts,
      aux,
    };
  },
  choose: chooseBins,
  decode(output, encoded, vocab): MetricForecastAnswer {
    const center = encoded.aux[AUX_CENTER];
    const scale = encoded.aux[AUX_SCALE];
    const zMax = vocab.encoding.metric_forecast.z_max;
    // With probabilities, a point's confidence is the chance that the truth is within one bin of it.
    const chosen = "probs" in output ? chooseBins(encoded.inputs, output.probs, vocab) : null;
    const points = encoded.readouts.map((r) => {
      if (chosen && "probs" in output) {
        const bin = chosen[r.position] - BIN_BASE;
        const mass = withinOneMass(output.probs, r.position * vocab.size + BIN_BASE, vocab.numBins, bin);
        return { value: fromBin(bin, center, scale, vocab.numBins, zMax), bin, confidence: mass };
      }
      const a: Answer<number> = readAt(output, r, vocab);
      if (a.value === null) return { value: null, bin: null, confidence: 0 };
      const bin = a.value - BIN_BASE;
      return { value: fromBin(bin, center, scale, vocab.numBins, zMax), bin, confidence: a.confidence };
    });
    return { points, center, scale };
  },
  baselines(train, vocab): Baseline[] {
    void train;
    // Each answers from the example alone (its history and the same hours of earlier days).
    const orLast = (ex: Example, v: number) => (Number.isFinite(v) ? v : ex.aux[AUX_LAST]);
    return [
      { name: "persistence", predict: (ex) => predictFromValues(ex, vocab, () => ex.aux[AUX_LAST]) },
      {
        name: "seasonal_naive",
        predict: (ex) => predictFromValues(ex, vocab, (i) => orLast(ex, ex.aux[seasonAt(kOf(ex), 1) + i])),
      },
      {
        name: "seasonal_average_7d",
        predict: (ex) => predictFromValues(ex, vocab, (i) => orLast(ex, seasonalAverage(ex, kOf(ex), i))),
      },
      {
        name: "damped_trend",
        predict: (ex) => {
          const K = kOf(ex);
          const hist = auxHistory(ex, K);
          const f = hist ? dampedTrend(hist, K) : null;
          return predictFromValues(ex, vocab, (i) => (f ? orLast(ex, f[i]) : ex.aux[AUX_LAST]));
        },
      },
    ];
  },
  score(examples, predictions, vocab) {
    checkPredictions(examples, predictions);
    const zMax = vocab.encoding.metric_forecast.z_max;
    let n = 0;
    let within = 0;
    let exact = 0;
    let absErr = 0;
    let scaledErr = 0;
    let nErr = 0;
    examples.forEach((ex, k) => {
      const K = kOf(ex);
      const L = layoutOf(ex.inputs.length, K);
      const center = ex.aux[AUX_CENTER];
      const scale = ex.aux[AUX_SCALE];
      for (let i = 0; i < K; i++) {
        const pos = L.predFrom + i;
        const label = ex.labels[pos];
        if (label === IGNORE) continue;
        n++;
        const p = predictions[k][pos];
        const isBin = vocab.isBin(p);
        if (isBin && Math.abs(p - label) <= 1) within++;
        if (p === label) exact++;
        const target = ex.aux[AUX_TARGET + i];
        if (Number.isFinite(target)) {
          // An answer that is not a bin counts as forecasting the history's median.
          const v = isBin ? fromBin(p - BIN_BASE, center, scale, vocab.numBins, zMax) : center;
          absErr += Math.abs(v - target);
          scaledErr += Math.abs(v - target) / scale;
          nErr++;
        }
      }
    });
    return {
      task: "metric_forecast",
      examples: examples.length,
      primary: "within1_accuracy",
      metrics: {
        within1_accuracy: n ? within / n : 0,
        bin_accuracy: n ? exact / n : 0,
        mae: nErr ? absErr / nErr : 0,
        scaled_mae: nErr ? scaledErr / nErr : 0,
      },
    };
  },
  describe(ex, vocab) {
    const K = kOf(ex);
    const L = layoutOf(ex.inputs.length, K, vocab.encoding.metric_forecast.lag_days?.length ?? 0);
    const center = ex.aux[AUX_CENTER];
    const scale = ex.aux[AUX_SCALE];
    const zMax = vocab.encoding.metric_forecast.z_max;
    const hist = Array.from(ex.inputs.subarray(L.histFrom, L.histFrom + K), (t) =>
      vocab.isBin(t) ? fmt(fromBin(t - BIN_BASE, center, scale, vocab.numBins, zMax)) : "?",
    );
    const next = Array.from({ length: K }, (_, i) => fmt(ex.aux[AUX_TARGET + i]));
    return {
      input: `${tokensToText(ex.inputs, vocab, 0, L.identityLen)} last ${K}: ${hist.join(" ")}`,
      labels: { next: next.join(" "), scale: `median ${fmt(center)}, iqr ${fmt(scale)}` },
    };
  },
};

function fmt(v: number): string {
  if (!Number.isFinite(v)) return "?";
  return Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-2 && v !== 0)
    ? v.toExponential(2)
    : v.toFixed(2).replace(/\.?0+$/, "");
}
