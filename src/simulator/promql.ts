// The slice of PromQL the simulator answers: selectors with matchers, rate/irate/increase over a
// range, sum/avg/min/max/count by|without, histogram_quantile, and number literals. This is enough
// for the demo config's queries in any grouping; it is not a PromQL engine, and anything outside it
// is refused with a bad_data error that says so.
import type { Family, HomelabMetrics, Labels, SeriesDef } from "./metrics.js";
import { SCRAPE_MS } from "./timeline.js";

export class PromQLError extends Error {}

interface Matcher {
  name: string;
  op: "=" | "!=" | "=~" | "!~";
  value: string;
  re?: RegExp;
}

type Node =
  | { type: "selector"; name: string | null; matchers: Matcher[]; rangeMs?: number }
  | { type: "call"; fn: RangeFn; arg: Extract<Node, { type: "selector" }> }
  | { type: "quantile"; q: number; arg: Node }
  | { type: "agg"; op: AggOp; by?: string[]; without?: string[]; arg: Node }
  | { type: "number"; value: number }
  | { type: "vector"; value: number }
  | { type: "time" };

type AggOp = "sum" | "avg" | "min" | "max" | "count";
const RANGE_FNS = [
  "rate",
  "irate",
  "increase",
  "count_over_time",
  "min_over_time",
  "max_over_time",
  "avg_over_time",
  "sum_over_time",
  "last_over_time",
  "present_over_time",
] as const;
type RangeFn = (typeof RANGE_FNS)[number];
const AGG_OPS = new Set(["sum", "avg", "min", "max", "count"]);
const SERVED =
  "selectors, rate/irate/increase(x[d]), <aggregation>_over_time(x[d]), sum/avg/min/max/count by|without, histogram_quantile";

interface Token {
  kind: "ident" | "string" | "number" | "duration" | "punct" | "eof";
  text: string;
  value?: string | number;
  col: number;
}

const DURATION_UNITS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
  y: 31_536_000_000,
};

/** A Prometheus duration such as 5m, 1h30m or 250ms, in milliseconds; null when it is not one. */
export function parsePromDuration(text: string): number | null {
  if (!/^(\d+(ms|s|m|h|d|w|y))+$/.test(text)) return null;
  let ms = 0;
  for (const m of text.matchAll(/(\d+)(ms|s|m|h|d|w|y)/g)) ms += Number(m[1]) * DURATION_UNITS[m[2]];
  return ms;
}

function tokenize(src: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i];
    const col = i + 1;
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    if (c === "#") break;
    if (/[a-zA-Z_:]/.test(c)) {
      let j = i + 1;
      while (j < src.length && /[a-zA-Z0-9_:]/.test(src[j])) j++;
      out.push({ kind: "ident", text: src.slice(i, j), col });
      i = j;
      continue;
    }
    if (/[0-9.]/.test(c)) {
      const m = /^(\d+(ms|s|m|h|d|w|y))+/.exec(src.slice(i));
      if (m && !/^[0-9.]*[eE]/.test(m[0])) {
        out.push({ kind: "duration", text: m[0], value: parsePromDuration(m[0]) ?? 0, col });
        i += m[0].length;
        continue;
      }
      const n = /^(\d*\.?\d+([eE][+-]?\d+)?|0x[0-9a-fA-F]+)/.exec(src.slice(i));
      if (!n) throw new PromQLError(`1:${col}: parse error: unexpected character: '${c}'`);
      out.push({ kind: "number", text: n[0], value: Number(n[0]), col });
      i += n[0].length;
      continue;
    }
    if (c === '"' || c === "'" || c === "`") {
      let j = i + 1;
      let s = "";
      while (j < src.length && src[j] !== c) {
        if (src[j] === "\\" && c !== "`" && j + 1 < src.length) {
          const e = src[j + 1];
          s += e === "n" ? "\n" : e === "t" ? "\t" : e;
          j += 2;
        } else s += src[j++];
      }
      if (j >= src.length) throw new PromQLError(`1:${col}: parse error: unterminated quoted string ${c}`);
      out.push({ kind: "string", text: src.slice(i, j + 1), value: s, col });
      i = j + 1;
      continue;
    }
    const two = src.slice(i, i + 2);
    if (["!=", "=~", "!~", "==", ">=", "<="].includes(two)) {
      out.push({ kind: "punct", text: two, col });
      i += 2;
      continue;
    }
    if ("(){}[],=+-*/^%<>@".includes(c)) {
      out.push({ kind: "punct", text: c, col });
      i++;
      continue;
    }
    throw new PromQLError(`1:${col}: parse error: unexpected character: '${c}'`);
  }
  out.push({ kind: "eof", text: "", col: src.length + 1 });
  return out;
}

class Parser {
  private pos = 0;
  constructor(private readonly toks: Token[]) {}

  private peek(): Token {
    return this.toks[this.pos];
  }
  private take(): Token {
    return this.toks[this.pos++];
  }
  private expect(text: string): Token {
    const t = this.take();
    if (t.text !== text) {
      const what = t.kind === "eof" ? "end of input" : `"${t.text}"`;
      throw new PromQLError(`1:${t.col}: parse error: unexpected ${what}, expected "${text}"`);
    }
    return t;
  }

  parseTop(): Node {
    if (this.peek().kind === "eof") throw new PromQLError("1:1: parse error: no expression found in input");
    const n = this.parseExpr();
    const t = this.peek();
    if (t.kind !== "eof") {
      if (
        ["+", "-", "*", "/", "%", "^", "==", "!=", ">", "<", ">=", "<="].includes(t.text) ||
        t.text === "and"
      )
        throw new PromQLError(
          `the simulator does not evaluate binary operators ("${t.text}"); it serves ${SERVED}`,
        );
      if (t.text === "offset" || t.text === "@")
        throw new PromQLError(`the simulator does not evaluate "${t.text}" modifiers; it serves ${SERVED}`);
      throw new PromQLError(`1:${t.col}: parse error: unexpected "${t.text}"`);
    }
    return n;
  }

  private parseExpr(): Node {
    const t = this.peek();
    if (t.kind === "number") {
      this.take();
      return { type: "number", value: t.value as number };
    }
    if (t.text === "(") {
      this.take();
      const inner = this.parseExpr();
      this.expect(")");
      return inner;
    }
    if (t.text === "{") return this.parseSelector(null);
    if (t.kind !== "ident") {
      const what = t.kind === "eof" ? "end of input" : `"${t.text}"`;
      throw new PromQLError(`1:${t.col}: parse error: unexpected ${what}`);
    }
    const name = t.text;
    const next = this.toks[this.pos + 1];
    if (AGG_OPS.has(name) && (next.text === "(" || next.text === "by" || next.text === "without")) {
      return this.parseAgg();
    }
    if (next.text === "(") return this.parseCall();
    if (name === "Inf" || name === "NaN") {
      this.take();
      return { type: "number", value: name === "Inf" ? Number.POSITIVE_INFINITY : Number.NaN };
    }
    this.take();
    return this.parseSelector(name);
  }

  private parseGrouping(): string[] {
    this.expect("(");
    const labels: string[] = [];
    while (this.peek().text !== ")") {
      const t = this.take();
      if (t.kind !== "ident")
        throw new PromQLError(`1:${t.col}: parse error: unexpected "${t.text}" in grouping opts`);
      labels.push(t.text);
      if (this.peek().text === ",") this.take();
    }
    this.expect(")");
    return labels;
  }

  private parseAgg(): Node {
    const op = this.take().text as AggOp;
    let by: string[] | undefined;
    let without: string[] | undefined;
    const grouping = () => {
      const kw = this.peek().text;
      if (kw === "by") {
        this.take();
        by = this.parseGrouping();
      } else if (kw === "without") {
        this.take();
        without = this.parseGrouping();
      }
    };
    grouping();
    this.expect("(");
    const arg = this.parseExpr();
    if (this.peek().text === ",") throw new PromQLError(`the simulator does not serve parameterised "${op}"`);
    this.expect(")");
    if (!by && !without) grouping();
    return { type: "agg", op, by, without, arg };
  }

  private parseCall(): Node {
    const fn = this.take();
    this.expect("(");
    let node: Node;
    if ((RANGE_FNS as readonly string[]).includes(fn.text)) {
      const arg = this.parseExpr();
      if (arg.type !== "selector" || arg.rangeMs === undefined) {
        throw new PromQLError(
          `1:${fn.col}: parse error: expected type range vector in call to function "${fn.text}", got instant vector`,
        );
      }
      node = { type: "call", fn: fn.text as RangeFn, arg };
    } else if (fn.text === "histogram_quantile") {
      const q = this.parseExpr();
      if (q.type !== "number") throw new PromQLError(`the simulator needs a number literal as the quantile`);
      this.expect(",");
      node = { type: "quantile", q: q.value, arg: this.parseExpr() };
    } else if (fn.text === "vector") {
      const v = this.parseExpr();
      if (v.type !== "number") throw new PromQLError(`the simulator needs a number literal in vector()`);
      node = { type: "vector", value: v.value };
    } else if (fn.text === "time") {
      node = { type: "time" };
    } else {
      throw new PromQLError(`the simulator does not evaluate the function "${fn.text}"; it serves ${SERVED}`);
    }
    this.expect(")");
    return node;
  }

  private parseSelector(name: string | null): Extract<Node, { type: "selector" }> {
    const matchers: Matcher[] = [];
    if (this.peek().text === "{") {
      this.take();
      while (this.peek().text !== "}") {
        const l = this.take();
        if (l.kind !== "ident")
          throw new PromQLError(`1:${l.col}: parse error: unexpected "${l.text}" in label matching`);
        const op = this.take();
        if (!["=", "!=", "=~", "!~"].includes(op.text))
          throw new PromQLError(
            `1:${op.col}: parse error: unexpected "${op.text}" in label matching, expected label matching operator`,
          );
        const v = this.take();
        if (v.kind !== "string")
          throw new PromQLError(
            `1:${v.col}: parse error: unexpected "${v.text}" in label matching, expected string`,
          );
        const m: Matcher = { name: l.text, op: op.text as Matcher["op"], value: v.value as string };
        if (m.op === "=~" || m.op === "!~") {
          try {
            m.re = new RegExp(`^(?:${m.value})$`);
          } catch {
            throw new PromQLError(`1:${v.col}: parse error: error parsing regexp: ${m.value}`);
          }
        }
        matchers.push(m);
        if (this.peek().text === ",") this.take();
      }
      this.expect("}");
    }
    const nameMatcher = matchers.find((m) => m.name === "__name__" && m.op === "=");
    const metric = name ?? nameMatcher?.value ?? null;
    if (!metric) throw new PromQLError("the simulator needs a metric name in every selector");
    if (matchers.length === 0 && name === null)
      throw new PromQLError("vector selector must contain at least one non-empty matcher");
    const node: Extract<Node, { type: "selector" }> = { type: "selector", name: metric, matchers };
    if (this.peek().text === "[") {
      this.take();
      const d = this.take();
      if (d.kind !== "duration")
        throw new PromQLError(`1:${d.col}: parse error: bad duration syntax: "${d.text}"`);
      this.expect("]");
      node.rangeMs = d.value as number;
      if (this.peek().text === "[" || this.peek().text === ":")
        throw new PromQLError("the simulator does not evaluate subqueries");
    }
    return node;
  }
}

export function parsePromQL(src: string): Node {
  return new Parser(tokenize(src)).parseTop();
}

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
