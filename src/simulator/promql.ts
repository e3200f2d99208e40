// The slice of PromQL the simulator answers: selectors with matchers, rate/irate/increase over a
// range, sum/avg/min/max/count by|without, histogram_quantile, and number literals. This is enough
// for the demo config's queries in any grouping; it is not a PromQL engine, and anything outside it
// is refused with a bad_data error that says so.
import type { Family, HomelabMetrics, Labels, SeriesDef } from "./metrics.js";
import { type Matcher, type Node, PromQLError, type RangeFn } from "./promql-parse.js";
import { SCRAPE_MS } from "./timeline.js";

export { PromQLError, parsePromDuration, parsePromQL } from "./promql-parse.js";

// --- evaluation -----------------------------------------------------------------------------

export interface EvalSeries {
  labels: Labels;
  values: Float64Array;
  present: Uint8Array;
}

export type EvalResult = { kind: "vector"; series: EvalSeries[] } | { kind: "scalar"; values: Float64Array };

function matches(labels: Labels, ms: Matcher[]): boolean {
  for (const m of ms) {
    const v = labels[m.name] ?? "";
    switch (m.op) {
      case "=":
        if (v !== m.value) return false;
        break;
      case "!=":
        if (v === m.value) return false;
        break;
      case "=~":
        if (!m.re!.test(v)) return false;
        break;
      case "!~":
        if (m.re!.test(v)) return false;
        break;
    }
  }
  return true;
}

export function labelsKey(l: Labels): string {
  return Object.keys(l)
    .sort()
    .map((k) => `${k}\u0000${l[k]}`)
    .join("\u0001");
}

/** Prometheus's label-set order: pairwise by sorted name, then value; a prefix sorts first. */
export function compareLabels(a: Labels, b: Labels): number {
  const ak = Object.keys(a).sort();
  const bk = Object.keys(b).sort();
  for (let i = 0; i < Math.min(ak.length, bk.length); i++) {
    if (ak[i] !== bk[i]) return ak[i] < bk[i] ? -1 : 1;
    const av = a[ak[i]];
    const bv = b[bk[i]];
    if (av !== bv) return av < bv ? -1 : 1;
  }
  return ak.length - bk.length;
}

function dropName(l: Labels): Labels {
  const { __name__: _, ...rest } = l;
  return rest;
}

/** A rate averages at most this many scrapes of its window: enough for smooth values, cheap for long windows. */
const MAX_RATE_SAMPLES = 6;

export class Evaluator {
  private readonly seriesCache = new Map<string, SeriesDef[]>();

  constructor(
    private readonly metrics: HomelabMetrics,
    /** No sample exists after this time (the simulated "now"). */
    private readonly horizon: () => number,
  ) {}

  private seriesOf(f: Family): SeriesDef[] {
    let s = this.seriesCache.get(f.name);
    if (!s) {
      s = f.series();
      this.seriesCache.set(f.name, s);
    }
    return s;
  }

  /** The metric families the simulator serves. */
  familyNames(): string[] {
    return this.metrics.families.map((f) => f.name);
  }

  eval(node: Node, times: number[]): EvalResult {
    switch (node.type) {
      case "number":
        return { kind: "scalar", values: Float64Array.from(times, () => node.value) };
      case "time":
        return { kind: "scalar", values: Float64Array.from(times, (t) => t / 1000) };
      case "vector":
        return {
          kind: "vector",
          series: [
            {
              labels: {},
              values: Float64Array.from(times, () => node.value),
              present: new Uint8Array(times.length).fill(1),
            },
          ],
        };
      case "selector":
        if (node.rangeMs !== undefined)
          throw new PromQLError(
            'invalid expression type "range vector" for range query, must be Scalar or instant Vector',
          );
        return { kind: "vector", series: this.instant(node, times) };
      case "call":
        return { kind: "vector", series: this.rate(node.fn, node.arg, times) };
      case "agg":
        return { kind: "vector", series: this.aggregate(node, times) };
      case "quantile":
        return { kind: "vector", series: this.quantile(node.q, node.arg, times) };
    }
  }

  private family(sel: Extract<Node, { type: "selector" }>): Family {
    const f = this.metrics.family(sel.name!);
    if (!f) {
      throw new PromQLError(
        `the simulator has no metric "${sel.name}"; it serves ${this.familyNames().join(", ")}`,
      );
    }
    return f;
  }

  private pick(sel: Extract<Node, { type: "selector" }>, times: number[]): SeriesDef[] {
    const f = this.family(sel);
    const lo = times[0] - (sel.rangeMs ?? 0);
    const hi = times[times.length - 1];
    const ms = sel.matchers.filter((m) => !(m.name === "__name__" && m.op === "="));
    return this.seriesOf(f).filter((s) => s.from <= hi && s.to > lo && matches(s.labels, ms));
  }

  private instant(sel: Extract<Node, { type: "selector" }>, times: number[]): EvalSeries[] {
    const f = this.family(sel);
    const horizon = this.horizon();
    const out: EvalSeries[] = [];
    for (const s of this.pick(sel, times)) {
      if (f.type === "counter" && !s.total) {
        throw new PromQLError(
          `the simulator serves the counter "${sel.name}" only through rate(), irate() or increase()`,
        );
      }
      const values = new Float64Array(times.length);
      const present = new Uint8Array(times.length);
      for (let i = 0; i < times.length; i++) {
        const at = Math.floor(times[i] / SCRAPE_MS) * SCRAPE_MS;
        if (at < s.from || at >= s.to || at > horizon) continue;
        values[i] = s.total ? s.total(at) : s.at(at);
        present[i] = 1;
      }
      out.push({ labels: s.labels, values, present });
    }
    return out;
  }

  private rate(fn: RangeFn, sel: Extract<Node, { type: "selector" }>, times: number[]): EvalSeries[] {
    const f = this.family(sel);
    const counterFn = fn === "rate" || fn === "irate" || fn === "increase";
    if (counterFn && f.type !== "counter") {
      // Prometheus would compute it anyway; the simulator keeps to what makes sense.
      throw new PromQLError(`the simulator applies ${fn}() to counters only; "${sel.name}" is a gauge`);
    }
    if (
      !counterFn &&
      fn !== "count_over_time" &&
      fn !== "present_over_time" &&
      f.type === "counter" &&
      !this.seriesOf(f).every((s) => s.total)
    ) {
      throw new PromQLError(
        `the simulator serves the counter "${sel.name}" only through rate(), irate(), increase() and count_over_time()`,
      );
    }
    const range = sel.rangeMs!;
    const horizon = this.horizon();
    const out: EvalSeries[] = [];
    for (const s of this.pick(sel, times)) {
      const values = new Float64Array(times.length);
      const present = new Uint8Array(times.length);
      for (let i = 0; i < times.length; i++) {
        const t = times[i];
        const last = Math.min(
          Math.floor(t / SCRAPE_MS) * SCRAPE_MS,
          Math.floor(Math.min(s.to - 1, horizon) / SCRAPE_MS) * SCRAPE_MS,
        );
        const first = Math.max(
          Math.floor((t - range) / SCRAPE_MS + 1) * SCRAPE_MS,
          Math.ceil(s.from / SCRAPE_MS) * SCRAPE_MS,
        );
        if (last < first || last > t) continue;
        const n = (last - first) / SCRAPE_MS + 1;
        if (!counterFn) {
          values[i] = this.overTime(fn, s, first, n);
          present[i] = 1;
          continue;
        }
        if (n < 2) continue;
        let perSec: number;
        if (s.total) {
          const prev = fn === "irate" ? last - SCRAPE_MS : first;
          perSec = (s.total(last) - s.total(prev)) / ((last - prev) / 1000);
        } else if (fn === "irate") {
          perSec = s.at(last);
        } else {
          const k = Math.min(n, MAX_RATE_SAMPLES);
          let sum = 0;
          for (let j = 0; j < k; j++) {
            const idx = k === 1 ? 0 : Math.round((j * (n - 1)) / (k - 1));
            sum += s.at(last - idx * SCRAPE_MS);
          }
          perSec = sum / k;
        }
        values[i] = fn === "increase" ? perSec * (range / 1000) : perSec;
        present[i] = 1;
      }
      out.push({ labels: fn === "last_over_time" ? s.labels : dropName(s.labels), values, present });
    }
    return out;
  }

  /** An <aggregation>_over_time over the n scrapes from `first`, sampling at most a few of them. */
  private overTime(fn: RangeFn, s: SeriesDef, first: number, n: number): number {
    if (fn === "count_over_time") return n;
    if (fn === "present_over_time") return 1;
    const value = (t: number) => (s.total ? s.total(t) : s.at(t));
    const last = first + (n - 1) * SCRAPE_MS;
    if (fn === "last_over_time") return value(last);
    const k = Math.min(n, MAX_RATE_SAMPLES);
    let acc =
      fn === "min_over_time"
        ? Number.POSITIVE_INFINITY
        : fn === "max_over_time"
          ? Number.NEGATIVE_INFINITY
          : 0;
    for (let j = 0; j < k; j++) {
      const idx = k === 1 ? 0 : Math.round((j * (n - 1)) / (k - 1));
      const v = value(last - idx * SCRAPE_MS);
      if (fn === "min_over_time") acc = Math.min(acc, v);
      else if (fn === "max_over_time") acc = Math.max(acc, v);
      else acc += v;
    }
    if (fn === "avg_over_time") return acc / k;
    if (fn === "sum_over_time") return (acc / k) * n;
    return acc;
  }

  private vectorOf(node: Node, times: number[]): EvalSeries[] {
    const r = this.eval(node, times);
    if (r.kind !== "vector") throw new PromQLError("expected type instant vector, got scalar");
    return r.series;
  }

  private aggregate(node: Extract<Node, { type: "agg" }>, times: number[]): EvalSeries[] {
    const input = this.vectorOf(node.arg, times);
    const groups = new Map<string, { labels: Labels; members: EvalSeries[] }>();
    for (const s of input) {
      let labels: Labels;
      if (node.by) {
        labels = {};
        for (const k of node.by) if (s.labels[k] !== undefined && s.labels[k] !== "") labels[k] = s.labels[k];
      } else {
        labels = dropName(s.labels);
        for (const k of node.without ?? []) delete labels[k];
      }
      const key = labelsKey(labels);
      let g = groups.get(key);
      if (!g) {
        g = { labels, members: [] };
        groups.set(key, g);
      }
      g.members.push(s);
    }
    const out: EvalSeries[] = [];
    for (const g of groups.values()) {
      const values = new Float64Array(times.length);
      const present = new Uint8Array(times.length);
      for (let i = 0; i < times.length; i++) {
        let n = 0;
        let acc = 0;
        for (const m of g.members) {
          if (!m.present[i]) continue;
          const v = m.values[i];
          if (n === 0) acc = node.op === "count" ? 1 : v;
          else if (node.op === "sum" || node.op === "avg") acc += v;
          else if (node.op === "min") acc = v < acc || Number.isNaN(acc) ? v : acc;
          else if (node.op === "max") acc = v > acc || Number.isNaN(acc) ? v : acc;
          else acc += 1;
          n++;
        }
        if (n === 0) continue;
        values[i] = node.op === "avg" ? acc / n : acc;
        present[i] = 1;
      }
      out.push({ labels: g.labels, values, present });
    }
    return out;
  }

  private quantile(q: number, arg: Node, times: number[]): EvalSeries[] {
    const input = this.vectorOf(arg, times);
    const groups = new Map<string, { labels: Labels; buckets: { le: number; s: EvalSeries }[] }>();
    for (const s of input) {
      if (s.labels.le === undefined) continue;
      const le = s.labels.le === "+Inf" ? Number.POSITIVE_INFINITY : Number(s.labels.le);
      const labels = dropName(s.labels);
      delete labels.le;
      const key = labelsKey(labels);
      let g = groups.get(key);
      if (!g) {
        g = { labels, buckets: [] };
        groups.set(key, g);
      }
      g.buckets.push({ le, s });
    }
    const out: EvalSeries[] = [];
    for (const g of groups.values()) {
      g.buckets.sort((a, b) => a.le - b.le);
      const values = new Float64Array(times.length);
      const present = new Uint8Array(times.length);
      for (let i = 0; i < times.length; i++) {
        const bs: { le: number; count: number }[] = [];
        for (const b of g.buckets) if (b.s.present[i]) bs.push({ le: b.le, count: b.s.values[i] });
        if (bs.length === 0) continue;
        values[i] = bucketQuantile(q, bs);
        present[i] = 1;
      }
      out.push({ labels: g.labels, values, present });
    }
    return out;
  }
}

/** histogram_quantile over classic buckets, as Prometheus computes it (linear within a bucket). */
export function bucketQuantile(q: number, buckets: { le: number; count: number }[]): number {
  if (Number.isNaN(q)) return Number.NaN;
  if (q < 0) return Number.NEGATIVE_INFINITY;
  if (q > 1) return Number.POSITIVE_INFINITY;
  if (buckets.length < 2 || buckets[buckets.length - 1].le !== Number.POSITIVE_INFINITY) return Number.NaN;
  // Rates of buckets can come out slightly non-monotonic; Prometheus evens them out the same way.
  let max = Number.NEGATIVE_INFINITY;
  const counts = buckets.map((b) => (max = Math.max(max, b.count)));
  const total = counts[counts.length - 1];
  if (!(total > 0)) return Number.NaN;
  let rank = q * total;
  let b = counts.findIndex((c) => c >= rank);
  if (b < 0) b = counts.length - 1;
  if (b === counts.length - 1) return buckets[counts.length - 2].le;
  if (b === 0 && buckets[0].le <= 0) return buckets[0].le;
  let start = 0;
  let count = counts[b];
  if (b > 0) {
    start = buckets[b - 1].le;
    count -= counts[b - 1];
    rank -= counts[b - 1];
  }
  return start + (buckets[b].le - start) * (rank / count);
}
