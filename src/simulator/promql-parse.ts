// The parser of the slice of PromQL the simulator answers: selectors with matchers, rate/irate/increase over a
// range, sum/avg/min/max/count by|without, histogram_quantile, and number literals. This is enough
// for the demo config's queries in any grouping; it is not a PromQL engine, and anything outside it
// is refused with a bad_data error that says so.
export class PromQLError extends Error {}

export interface Matcher {
  name: string;
  op: "=" | "!=" | "=~" | "!~";
  value: string;
  re?: RegExp;
}

export type Node =
  | { type: "selector"; name: string | null; matchers: Matcher[]; rangeMs?: number }
  | { type: "call"; fn: RangeFn; arg: Extract<Node, { type: "selector" }> }
  | { type: "quantile"; q: number; arg: Node }
  | { type: "agg"; op: AggOp; by?: string[]; without?: string[]; arg: Node }
  | { type: "number"; value: number }
  | { type: "vector"; value: number }
  | { type: "time" };

export type AggOp = "sum" | "avg" | "min" | "max" | "count";
export const RANGE_FNS = [
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
export type RangeFn = (typeof RANGE_FNS)[number];
export const AGG_OPS = new Set(["sum", "avg", "min", "max", "count"]);
export const SERVED =
  "selectors, rate/irate/increase(x[d]), <aggregation>_over_time(x[d]), sum/avg/min/max/count by|without, histogram_quantile";

export interface Token {
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
