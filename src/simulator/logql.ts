// The slice of LogQL the simulator answers: a stream selector, line filters (|= != |~ !~), the
// json and logfmt parsers (which add extracted labels, as Loki does), label filters, drop and
// keep. Log queries only; metric queries and other stages are refused with a 400, as Loki
// refuses what it cannot parse.
import { type LexRules, type Tok as LexTok, lex, shown } from "./lex.js";
import type { Labels } from "./metrics.js";

export class LogQLError extends Error {}

interface Matcher {
  name: string;
  op: "=" | "!=" | "=~" | "!~";
  value: string;
  re?: RegExp;
}

type Stage =
  | { type: "line"; op: "|=" | "!=" | "|~" | "!~"; value: string; re?: RegExp }
  | { type: "json" }
  | { type: "logfmt" }
  | { type: "label"; name: string; op: string; value: string | number; re?: RegExp }
  | { type: "drop" | "keep"; names: string[] };

export interface LogQuery {
  matchers: Matcher[];
  stages: Stage[];
}

const SERVED = "stream selectors, line filters (|= != |~ !~), json, logfmt, label filters, drop and keep";

type Tok = LexTok<"ident" | "number" | "op">;

const RULES: LexRules<"ident" | "number" | "op"> = {
  escape: (e) => (e === "n" ? "\n" : e === "t" ? "\t" : e),
  error: (message) => new LogQLError(message),
  unterminated: "literal not terminated",
  next(src, i) {
    const c = src[i];
    if (/[a-zA-Z_]/.test(c)) return { t: /^[a-zA-Z_][a-zA-Z0-9_.]*/.exec(src.slice(i))![0], kind: "ident" };
    if (/[0-9]/.test(c)) return { t: /^[0-9][0-9.a-zA-Z]*/.exec(src.slice(i))![0], kind: "number" };
    const two = src.slice(i, i + 2);
    if (["|=", "|~", "!=", "!~", "=~", ">=", "<=", "=="].includes(two)) return { t: two, kind: "op" };
    if ("{}(),|=<>[]".includes(c)) return { t: c, kind: "op" };
    return null;
  },
};

function regex(value: string, col: number, anchored: boolean): RegExp {
  try {
    return new RegExp(anchored ? `^(?:${value})$` : value);
  } catch {
    throw new LogQLError(`parse error at line 1, col ${col}: error parsing regexp: ${value}`);
  }
}

export function parseLogQL(src: string): LogQuery {
  const toks = lex(src, RULES);
  let p = 0;
  const peek = () => toks[p];
  const take = () => toks[p++];
  const fail = (tok: Tok, what?: string): never => {
    throw new LogQLError(
      `parse error at line 1, col ${tok.col}: syntax error: unexpected ${shown(tok)}${what ? `, expecting ${what}` : ""}`,
    );
  };
  if (peek().t !== "{") {
    const t = peek();
    if (
      t.kind === "ident" &&
      /^(count_over_time|rate|bytes_rate|bytes_over_time|sum|avg|max|min|count|topk|sum_over_time|quantile_over_time|absent_over_time|rate_counter)$/.test(
        t.t,
      )
    ) {
      throw new LogQLError(
        `the trm-forge simulator serves log queries only, not metric queries ("${t.t}"); it serves ${SERVED}`,
      );
    }
    if (t.kind === "eof") throw new LogQLError("parse error : syntax error: unexpected $end");
    fail(t, "{");
  }
  take();
  const matchers: Matcher[] = [];
  while (peek().t !== "}") {
    const name = take();
    if (name.kind !== "ident") fail(name, "IDENTIFIER");
    const op = take();
    if (!["=", "!=", "=~", "!~"].includes(op.t)) fail(op, "= or != or =~ or !~");
    const v = take();
    if (v.kind !== "string") fail(v, "STRING");
    const m: Matcher = { name: name.t, op: op.t as Matcher["op"], value: v.t };
    if (m.op === "=~" || m.op === "!~") m.re = regex(m.value, v.col, true);
    matchers.push(m);
    if (peek().t === ",") take();
    else if (peek().t !== "}") fail(peek(), ", or }");
  }
  take();
  if (matchers.length === 0) throw new LogQLError("parse error at line 1, col 1: syntax error: unexpected }");
  const nonEmpty = matchers.some(
    (m) => (m.op === "=" && m.value !== "") || (m.op === "=~" && !m.re!.test("")),
  );
  if (!nonEmpty) {
    throw new LogQLError(
      'queries require at least one regexp or equality matcher that does not have an empty-compatible value. For instance, app=~".*" does not meet this requirement, but app=~".+" will',
    );
  }
  const stages: Stage[] = [];
  while (peek().kind !== "eof") {
    const t = take();
    if (t.t === "|=" || t.t === "!=" || t.t === "|~" || t.t === "!~") {
      const v = take();
      if (v.kind !== "string") fail(v, "STRING");
      const stage: Stage = { type: "line", op: t.t, value: v.t };
      if (t.t === "|~" || t.t === "!~") stage.re = regex(v.t, v.col, false);
      stages.push(stage);
      if (peek().t === "or")
        throw new LogQLError(
          `the trm-forge simulator does not serve "or" in line filters; it serves ${SERVED}`,
        );
      continue;
    }
    if (t.t !== "|") fail(t);
    const s = take();
    if (s.kind !== "ident") fail(s, "IDENTIFIER");
    if (s.t === "json" || s.t === "logfmt") {
      if (peek().kind === "ident" && peek().t !== "" && toks[p + 1]?.t === "=") {
        throw new LogQLError(
          `the trm-forge simulator serves "${s.t}" without parameters only; it serves ${SERVED}`,
        );
      }
      stages.push({ type: s.t });
      continue;
    }
    if (s.t === "drop" || s.t === "keep") {
      const names: string[] = [];
      for (;;) {
        const n = take();
        if (n.kind !== "ident") fail(n, "IDENTIFIER");
        names.push(n.t);
        if (peek().t !== ",") break;
        take();
      }
      stages.push({ type: s.t, names });
      continue;
    }
    const op = peek();
    if (["=", "!=", "=~", "!~", ">", ">=", "<", "<=", "=="].includes(op.t)) {
      take();
      const v = take();
      if (v.kind !== "string" && v.kind !== "number") fail(v, "STRING or NUMBER");
      const stage: Stage = {
        type: "label",
        name: s.t,
        op: op.t,
        value: v.kind === "number" ? Number(v.t) : v.t,
      };
      if (op.t === "=~" || op.t === "!~") stage.re = regex(v.t, v.col, true);
      if (v.kind === "number" && Number.isNaN(stage.value)) {
        throw new LogQLError(`the trm-forge simulator compares labels with plain numbers only, not "${v.t}"`);
      }
      stages.push(stage);
      continue;
    }
    throw new LogQLError(`the trm-forge simulator does not serve the "${s.t}" stage; it serves ${SERVED}`);
  }
  return { matchers, stages };
}

export function matchesStream(q: LogQuery, labels: Labels): boolean {
  for (const m of q.matchers) {
    const v = labels[m.name] ?? "";
    if (m.op === "=" && v !== m.value) return false;
    if (m.op === "!=" && v === m.value) return false;
    if (m.op === "=~" && !m.re!.test(v)) return false;
    if (m.op === "!~" && m.re!.test(v)) return false;
  }
  return true;
}

class ParseFailure {
  constructor(readonly details: string) {}
}

function sanitizeKey(k: string): string {
  const s = k.replace(/[^a-zA-Z0-9_]/g, "_");
  return /^[0-9]/.test(s) ? `_${s}` : s;
}

function addExtracted(out: Labels, stream: Labels, key: string, value: string): void {
  let k = sanitizeKey(key);
  if (k === "") return;
  if (k in stream) k = `${k}_extracted`;
  if (!(k in out)) out[k] = value;
}

function flattenJson(obj: Record<string, unknown>, prefix: string, out: Labels, stream: Labels): void {
  for (const [k, v] of Object.entries(obj)) {
    const key = prefix ? `${prefix}_${k}` : k;
    if (v === null || Array.isArray(v)) continue;
    if (typeof v === "object") flattenJson(v as Record<string, unknown>, key, out, stream);
    else addExtracted(out, stream, key, String(v));
  }
}

function jsonLabels(line: string, stream: Labels): Labels | ParseFailure {
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch {
    parsed = undefined;
  }
  if (parsed === undefined || parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    const head = line.slice(0, 10);
    return new ParseFailure(
      `ReadMapCB: expect { or n, but found ${line[0] ?? ""}, error found in #1 byte of ...|${head}|..., bigger context ...|${line.slice(0, 32)}|...`,
    );
  }
  const out: Labels = {};
  flattenJson(parsed as Record<string, unknown>, "", out, stream);
  return out;
}

function logfmtLabels(line: string, stream: Labels): Labels | ParseFailure {
  const out: Labels = {};
  let i = 0;
  while (i < line.length) {
    while (i < line.length && line[i] === " ") i++;
    let j = i;
    while (j < line.length && line[j] !== "=" && line[j] !== " ") j++;
    const key = line.slice(i, j);
    if (j >= line.length || line[j] === " ") {
      i = j;
      continue;
    }
    j++;
    let value = "";
    if (line[j] === '"') {
      let k = j + 1;
      while (k < line.length && line[k] !== '"') k += line[k] === "\\" ? 2 : 1;
      if (k >= line.length)
        return new ParseFailure(`logfmt syntax error at pos ${j + 1} : unterminated quoted value`);
      try {
        value = JSON.parse(line.slice(j, k + 1)) as string;
      } catch {
        value = line.slice(j + 1, k);
      }
      i = k + 1;
    } else {
      let k = j;
      while (k < line.length && line[k] !== " ") k++;
      value = line.slice(j, k);
      i = k;
    }
    if (key) addExtracted(out, stream, key, value);
  }
  return out;
}

function labelMatches(stage: Extract<Stage, { type: "label" }>, value: string | undefined): boolean {
  const v = value ?? "";
  if (typeof stage.value === "number") {
    const n = Number(v);
    if (v === "" || Number.isNaN(n)) return false;
    switch (stage.op) {
      case "=":
      case "==":
        return n === stage.value;
      case "!=":
        return n !== stage.value;
      case ">":
        return n > stage.value;
      case ">=":
        return n >= stage.value;
      case "<":
        return n < stage.value;
      case "<=":
        return n <= stage.value;
    }
    return false;
  }
  switch (stage.op) {
    case "=":
    case "==":
      return v === stage.value;
    case "!=":
      return v !== stage.value;
    case "=~":
      return stage.re!.test(v);
    case "!~":
      return !stage.re!.test(v);
  }
  throw new LogQLError(`the trm-forge simulator compares string labels with = != =~ !~ only`);
}

/** Runs the pipeline over one entry: its output labels, or null when a filter drops it. */
export function applyPipeline(q: LogQuery, stream: Labels, line: string): Labels | null {
  let labels: Labels = stream;
  let copied = false;
  const own = () => {
    if (!copied) {
      labels = { ...labels };
      copied = true;
    }
    return labels;
  };
  for (const st of q.stages) {
    switch (st.type) {
      case "line": {
        const hit = st.re ? st.re.test(line) : line.includes(st.value);
        if ((st.op === "|=" || st.op === "|~") !== hit) return null;
        break;
      }
      case "json":
      case "logfmt": {
        if (labels.__error__) break;
        const got = st.type === "json" ? jsonLabels(line, stream) : logfmtLabels(line, stream);
        const l = own();
        if (got instanceof ParseFailure) {
          l.__error__ = st.type === "json" ? "JSONParserErr" : "LogfmtParserErr";
          l.__error_details__ = got.details;
        } else {
          for (const [k, v] of Object.entries(got)) if (!(k in l)) l[k] = v;
        }
        break;
      }
      case "label":
        if (!labelMatches(st, labels[st.name])) return null;
        break;
      case "drop": {
        const l = own();
        for (const n of st.names) delete l[n];
        break;
      }
      case "keep": {
        const kept: Labels = {};
        for (const n of st.names) if (labels[n] !== undefined) kept[n] = labels[n];
        labels = kept;
        copied = true;
        break;
      }
    }
  }
  return labels;
}
