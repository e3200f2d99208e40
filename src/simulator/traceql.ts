// The slice of TraceQL the simulator answers: spanset filters `{ ... }` joined by && or ||, with
// conditions on resource./span./. attributes and the intrinsics name, status, kind, duration,
// traceDuration, rootName, rootServiceName and statusMessage. Pipelines and aggregates are
// refused with a 400, as Tempo refuses a query it cannot parse.
import { type LexRules, type Tok as LexTok, lex, shown } from "./lex.js";
import type { AttrValue, SimSpan, SimTrace } from "./traces.js";

export class TraceQLError extends Error {}

const INTRINSICS = new Set([
  "name",
  "status",
  "kind",
  "duration",
  "traceDuration",
  "rootName",
  "rootServiceName",
  "statusMessage",
]);
const STATUS = new Set(["error", "ok", "unset"]);
const KINDS: Record<string, string | null> = {
  server: "SPAN_KIND_SERVER",
  client: "SPAN_KIND_CLIENT",
  internal: "SPAN_KIND_INTERNAL",
  producer: "SPAN_KIND_PRODUCER",
  consumer: "SPAN_KIND_CONSUMER",
  unspecified: null,
};

type Value =
  | { t: "string"; v: string; re?: RegExp }
  | { t: "number"; v: number }
  | { t: "duration"; us: number }
  | { t: "bool"; v: boolean }
  | { t: "status"; v: string }
  | { t: "kind"; v: string | null };

interface Field {
  scope: "resource" | "span" | "any" | "intrinsic";
  name: string;
}

type Cond =
  | { type: "cmp"; field: Field; op: string; value: Value }
  | { type: "and" | "or"; items: Cond[] }
  | { type: "all" };

export interface TraceQuery {
  sets: Cond[];
  join: "&&" | "||";
}

/** The resource a span was reported under (service, namespace, pod, version). */
export type ResourceOf = (span: SimSpan) => Record<string, string>;

type Tok = LexTok<"ident" | "number" | "duration" | "op">;

const DURATION_RE = /^(\d+(\.\d+)?)(ns|us|µs|ms|s|m|h)/;
const DURATION_US: Record<string, number> = { ns: 0.001, us: 1, µs: 1, ms: 1000, s: 1e6, m: 6e7, h: 3.6e9 };

const RULES: LexRules<"ident" | "number" | "duration" | "op"> = {
  escape: (e) => e,
  error: (message) => new TraceQLError(`invalid TraceQL query: ${message}`),
  unterminated: "unterminated string",
  next(src, i) {
    const c = src[i];
    const rest = src.slice(i);
    const d = DURATION_RE.exec(rest);
    if (d && !/[a-zA-Z0-9_]/.test(src[i + d[0].length] ?? "")) return { t: d[0], kind: "duration" };
    const n = /^-?\d+(\.\d+)?/.exec(rest);
    if (n) return { t: n[0], kind: "number" };
    if (/[a-zA-Z_.]/.test(c)) return { t: /^[a-zA-Z_.][a-zA-Z0-9_.\-:]*/.exec(rest)![0], kind: "ident" };
    const two = src.slice(i, i + 2);
    if (["&&", "||", "!=", "=~", "!~", ">=", "<="].includes(two)) return { t: two, kind: "op" };
    if ("{}()=<>|!".includes(c)) return { t: c, kind: "op" };
    return null;
  },
};

export function parseTraceQL(src: string): TraceQuery {
  const toks = lex(src, RULES);
  let p = 0;
  const peek = () => toks[p];
  const take = () => toks[p++];
  const fail = (tok: Tok): never => {
    throw new TraceQLError(
      `invalid TraceQL query: parse error at line 1, col ${tok.col}: syntax error: unexpected ${shown(tok)}`,
    );
  };
  const unsupported = (what: string): never => {
    throw new TraceQLError(
      `invalid TraceQL query: the trm-forge simulator does not serve ${what}; it serves spanset filters { ... } joined by && or ||`,
    );
  };

  const field = (tok: Tok): Field => {
    const t = tok.t;
    if (t.startsWith("resource.")) return { scope: "resource", name: t.slice(9) };
    if (t.startsWith("span.")) return { scope: "span", name: t.slice(5) };
    if (t.startsWith(".")) return { scope: "any", name: t.slice(1) };
    if (INTRINSICS.has(t)) return { scope: "intrinsic", name: t };
    if (t.includes(":")) return unsupported(`the intrinsic "${t}"`);
    return fail(tok);
  };

  const value = (f: Field, op: Tok): Value => {
    const v = take();
    if (v.kind === "string") {
      const out: Value = { t: "string", v: v.t };
      if (op.t === "=~" || op.t === "!~") {
        try {
          out.re = new RegExp(`^(?:${v.t})$`);
        } catch {
          throw new TraceQLError(`invalid TraceQL query: error parsing regexp: ${v.t}`);
        }
      }
      return out;
    }
    if (v.kind === "duration") {
      const m = DURATION_RE.exec(v.t)!;
      return { t: "duration", us: Number(m[1]) * DURATION_US[m[3]] };
    }
    if (v.kind === "number") return { t: "number", v: Number(v.t) };
    if (v.kind === "ident") {
      if (v.t === "true" || v.t === "false") return { t: "bool", v: v.t === "true" };
      if (f.name === "status" && STATUS.has(v.t)) return { t: "status", v: v.t };
      if (f.name === "kind" && v.t in KINDS) return { t: "kind", v: KINDS[v.t] };
    }
    return fail(v);
  };

  const primary = (): Cond => {
    const t = peek();
    if (t.t === "(") {
      take();
      const c = expr();
      if (take().t !== ")") fail(toks[p - 1]);
      return c;
    }
    if (t.kind !== "ident") return fail(t);
    take();
    const f = field(t);
    const op = take();
    if (!["=", "!=", ">", ">=", "<", "<=", "=~", "!~"].includes(op.t)) return fail(op);
    return { type: "cmp", field: f, op: op.t, value: value(f, op) };
  };

  const expr = (): Cond => {
    let left = primary();
    while (peek().t === "&&" || peek().t === "||") {
      const op = take().t === "&&" ? "and" : "or";
      const right = primary();
      left =
        left.type === op ? { type: op, items: [...left.items, right] } : { type: op, items: [left, right] };
    }
    return left;
  };

  const spanset = (): Cond => {
    const open = take();
    if (open.t !== "{") return fail(open);
    if (peek().t === "}") {
      take();
      return { type: "all" };
    }
    const c = expr();
    const close = take();
    if (close.t !== "}") return fail(close);
    return c;
  };

  if (peek().kind === "eof")
    throw new TraceQLError(
      "invalid TraceQL query: parse error at line 1, col 1: syntax error: unexpected $end",
    );
  const sets = [spanset()];
  let join: "&&" | "||" = "&&";
  while (peek().t === "&&" || peek().t === "||") {
    join = take().t as "&&" | "||";
    sets.push(spanset());
  }
  if (peek().t === "|") unsupported("pipelines");
  if (peek().t === ">" || peek().t === "~") unsupported("structural operators");
  if (peek().kind !== "eof") fail(peek());
  return { sets, join };
}

function attrScalar(v: AttrValue): string | number | boolean | null {
  if ("stringValue" in v) return v.stringValue;
  if ("intValue" in v) return Number(v.intValue);
  if ("doubleValue" in v) return v.doubleValue;
  if ("boolValue" in v) return v.boolValue;
  return null;
}

function compare(a: string | number | boolean | null, op: string, v: Value): boolean {
  if (a === null) return false;
  if (v.t === "string") {
    if (typeof a !== "string") return false;
    if (op === "=") return a === v.v;
    if (op === "!=") return a !== v.v;
    if (op === "=~") return v.re!.test(a);
    if (op === "!~") return !v.re!.test(a);
    return op === ">" ? a > v.v : op === ">=" ? a >= v.v : op === "<" ? a < v.v : a <= v.v;
  }
  const x = typeof a === "number" ? a : typeof a === "boolean" ? Number(a) : Number.NaN;
  const y = v.t === "number" ? v.v : v.t === "duration" ? v.us : v.t === "bool" ? Number(v.v) : Number.NaN;
  if (Number.isNaN(x) || Number.isNaN(y)) return false;
  switch (op) {
    case "=":
      return x === y;
    case "!=":
      return x !== y;
    case ">":
      return x > y;
    case ">=":
      return x >= y;
    case "<":
      return x < y;
    case "<=":
      return x <= y;
  }
  return false;
}

function evalCond(c: Cond, span: SimSpan, trace: SimTrace, resource: ResourceOf): boolean {
  switch (c.type) {
    case "all":
      return true;
    case "and":
      return c.items.every((i) => evalCond(i, span, trace, resource));
    case "or":
      return c.items.some((i) => evalCond(i, span, trace, resource));
    case "cmp": {
      const { field, op, value } = c;
      if (field.scope === "intrinsic") {
        switch (field.name) {
          case "status":
            if (value.t !== "status") return false;
            return op === "=" ? span.status === value.v : op === "!=" ? span.status !== value.v : false;
          case "kind":
            if (value.t !== "kind") return false;
            return op === "=" ? span.kind === value.v : op === "!=" ? span.kind !== value.v : false;
          case "duration":
            return compare(span.durUs, op, value);
          case "traceDuration":
            return compare(trace.endUs - trace.startUs, op, value);
          case "name":
            return compare(span.name, op, value);
          case "rootName":
            return compare(trace.rootName, op, value);
          case "rootServiceName":
            return compare(trace.rootService, op, value);
          case "statusMessage":
            return compare(span.message ?? "", op, value);
        }
        return false;
      }
      let found: string | number | boolean | null = null;
      if (field.scope !== "resource") {
        const a = span.attrs.find((x) => x.key === field.name);
        if (a) found = attrScalar(a.value);
      }
      if (found === null && field.scope !== "span") found = resource(span)[field.name] ?? null;
      return compare(found, op, value);
    }
  }
}

/** The spans of a trace that a query matched, or null when the trace does not match. */
export function matchTrace(q: TraceQuery, trace: SimTrace, resource: ResourceOf): SimSpan[] | null {
  const per = q.sets.map((c) => trace.spans.filter((s) => evalCond(c, s, trace, resource)));
  const ok = q.join === "&&" ? per.every((m) => m.length > 0) : per.some((m) => m.length > 0);
  if (!ok) return null;
  const seen = new Set<SimSpan>();
  for (const m of per) for (const s of m) seen.add(s);
  return [...seen].sort((a, b) => a.startUs - b.startUs);
}

/** The attributes a query refers to, to show on matched spans as Tempo does. */
export function referencedAttributes(q: TraceQuery): { name: string; scope: Field["scope"] }[] {
  const out: { name: string; scope: Field["scope"] }[] = [];
  const walk = (c: Cond) => {
    if (c.type === "and" || c.type === "or") c.items.forEach(walk);
    else if (c.type === "cmp" && (c.field.scope !== "intrinsic" || c.field.name === "status")) {
      if (!out.some((o) => o.name === c.field.name)) out.push({ name: c.field.name, scope: c.field.scope });
    }
  };
  q.sets.forEach(walk);
  return out;
}
