// Paired bootstrap intervals for the difference between two predictors on the same examples.
// Each task's primary metric is a ratio of sums over examples (right/total positions, exact/
// examples, ...), so every example is kept as (value, weight): the task's own score of that
// example alone and its number of labelled positions. A resample draws example indices with
// replacement and applies the SAME indices to both predictors (paired), so the interval is of
// the difference, not of two independent scores. O(resamples x n).
import { Rng } from "../../model/rng.js";
import { type Example, getTask, IGNORE, type TaskName, type Vocab } from "../tasks/index.js";

/** Per-example scores of one predictor on a task's primary metric. */
export interface ExampleScores {
  value: Float64Array;
  weight: Float64Array;
}

export interface PairedInterval {
  /** The predictor compared with (a baseline's name or the champion's version). */
  against: string;
  /** Point difference, oriented so that positive means the candidate is better. */
  diff: number;
  low: number;
  high: number;
  level: number;
  resamples: number;
}

export const BOOTSTRAP_RESAMPLES = 1000;
export const BOOTSTRAP_LEVEL = 0.95;

/**
 * Each example scored alone by the task's own scoring code, weighted by its labelled positions.
 * sum(value * weight) / sum(weight) is the task's primary metric over all the examples (checked).
 */
export function exampleScores(
  task: TaskName,
  examples: readonly Example[],
  predictions: readonly Int32Array[],
  vocab: Vocab,
): ExampleScores {
  const t = getTask(task);
  const n = examples.length;
  const value = new Float64Array(n);
  const weight = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let w = 0;
    for (const l of examples[i].labels) if (l !== IGNORE) w++;
    weight[i] = w;
    if (w) value[i] = t.score([examples[i]], [predictions[i]], vocab).metrics[t.primary];
  }
  return { value, weight };
}

/** The weighted mean the per-example scores stand for. */
export function meanOf(s: ExampleScores): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < s.value.length; i++) {
    num += s.value[i] * s.weight[i];
    den += s.weight[i];
  }
  return den ? num / den : 0;
}

/**
 * The paired percentile bootstrap interval of metric(a) - metric(b) (b - a when lower is
 * better), seeded, so the same inputs always give the same interval.
 */
export function pairedInterval(
  a: ExampleScores,
  b: ExampleScores,
  opts: {
    against: string;
    direction?: "higher" | "lower";
    resamples?: number;
    level?: number;
    seed?: number;
  },
): PairedInterval {
  const n = a.value.length;
  if (b.value.length !== n) throw new Error(`paired scores of ${n} and ${b.value.length} examples`);
  const R = opts.resamples ?? BOOTSTRAP_RESAMPLES;
  const level = opts.level ?? BOOTSTRAP_LEVEL;
  const sign = opts.direction === "lower" ? -1 : 1;
  // Weights are the same for both sides (the labels), so the difference of the two ratios is
  // sum(w * (va - vb)) / sum(w) over the drawn examples.
  const d = new Float64Array(n);
  const w = a.weight;
  for (let i = 0; i < n; i++) d[i] = sign * (a.value[i] - b.value[i]);
  const diff = sign * (meanOf(a) - meanOf(b));
  if (n === 0) return { against: opts.against, diff: 0, low: 0, high: 0, level, resamples: 0 };
  const rng = new Rng(opts.seed ?? 0x5eed);
  const stats = new Float64Array(R);
  for (let r = 0; r < R; r++) {
    let num = 0;
    let den = 0;
    for (let k = 0; k < n; k++) {
      const i = rng.int(0, n);
      num += w[i] * d[i];
      den += w[i];
    }
    stats[r] = den ? num / den : 0;
  }
  stats.sort();
  const q = (p: number) => {
    const pos = (R - 1) * p;
    const lo = Math.floor(pos);
    const hi = Math.ceil(pos);
    return stats[lo] + (stats[hi] - stats[lo]) * (pos - lo);
  };
  const tail = (1 - level) / 2;
  return { against: opts.against, diff, low: q(tail), high: q(1 - tail), level, resamples: R };
}

/** "+0.024 [+0.003, +0.046]": the difference and its interval, for reports and tool text. */
export function formatInterval(iv: Pick<PairedInterval, "diff" | "low" | "high">, digits = 3): string {
  const s = (v: number) => `${v >= 0 ? "+" : ""}${v.toFixed(digits)}`;
  return `${s(iv.diff)} [${s(iv.low)}, ${s(iv.high)}]`;
}
