// Local Loki and Tempo servers for the collection tests and benchmark. Neither can be installed
// here, so these speak their documented HTTP APIs, shaped like the recorded responses in
// shared/reference/observability-apis.md: Loki's streams envelope with nanosecond string
// timestamps and plain-text errors; Tempo's TraceQL search (leading zeros stripped from trace IDs)
// and v1/v2 trace bodies with base64 IDs and string int64s. They understand only the small LogQL
// and TraceQL subsets the default queries use. Faults (5xx, slow or truncated bodies, plain-text
// errors) are injected per request.
import { createHash } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

// ---- the HTTP shell ----------------------------------------------------------------------------

export interface FakeRequest {
  path: string;
  params: URLSearchParams;
  headers: IncomingMessage["headers"];
  /** 1-based count of requests to this server so far, this one included. */
  n: number;
}

export interface FakeResponse {
  status: number;
  body: string;
  contentType?: string;
  /** Wait this long before answering. */
  delayMs?: number;
  /** Send only the first N bytes of the body, then end the response. */
  truncateAt?: number;
  headers?: Record<string, string>;
}

/** A fault hook: return a response to send instead of the real one, or a delay/truncation to apply to it. */
export type Fault = (req: FakeRequest) => Partial<FakeResponse> | undefined;

const textResponse = (status: number, body: string): FakeResponse => ({
  status,
  body: body.endsWith("\n") ? body : `${body}\n`,
  contentType: "text/plain; charset=utf-8",
});
const jsonResponse = (body: unknown): FakeResponse => ({
  status: 200,
  body: JSON.stringify(body),
  contentType: "application/json",
});

abstract class FakeServer {
  readonly requests: FakeRequest[] = [];
  faults: Fault[] = [];
  /** When set, requests without this bearer token get 401. */
  token?: string;
  /** When set, requests without this X-Scope-OrgID get 400 "no org id". */
  tenant?: string;
  private server: Server | null = null;
  /** Keep the request log short in long benchmarks. */
  logRequests = true;
  private count = 0;

  protected abstract handle(req: FakeRequest): FakeResponse;

  async start(): Promise<string> {
    this.server = createServer((req, res) => this.serve(req, res));
    await new Promise<void>((resolve) => this.server!.listen(0, "127.0.0.1", resolve));
    return `http://127.0.0.1:${(this.server!.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    if (!this.server) return;
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server!.close(() => resolve()));
    this.server = null;
  }

  private serve(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? "/", "http://x");
    const fr: FakeRequest = {
      path: url.pathname,
      params: url.searchParams,
      headers: req.headers,
      n: ++this.count,
    };
    if (this.logRequests) this.requests.push(fr);
    let out: FakeResponse;
    if (this.token && req.headers.authorization !== `Bearer ${this.token}`)
      out = textResponse(401, "unauthorized");
    else if (this.tenant && req.headers["x-scope-orgid"] !== this.tenant)
      out = textResponse(400, "no org id");
    else {
      const injected = this.faults.map((f) => f(fr)).find(Boolean);
      try {
        out = injected?.status
          ? ({ contentType: "text/plain; charset=utf-8", body: "", ...injected } as FakeResponse)
          : this.handle(fr);
      } catch (err) {
        out = textResponse(500, `fake: ${(err as Error).message}`);
      }
      if (injected && !injected.status) out = { ...out, ...injected };
    }
    const send = () => {
      if (res.destroyed) return;
      const body = out.truncateAt !== undefined ? out.body.slice(0, out.truncateAt) : out.body;
      res.writeHead(out.status, {
        "content-type": out.contentType ?? "application/json",
        ...(out.headers ?? {}),
      });
      res.end(body);
    };
    if (out.delayMs) setTimeout(send, out.delayMs);
    else send();
  }
}

// ---- Loki --------------------------------------------------------------------------------------

export interface LogEntry {
  /** Nanoseconds since the epoch. */
  ts: bigint;
  labels: Record<string, string>;
  line: string;
}

/** Where the fake's log entries come from: a list, or a generator for large benchmarks. */
export interface LogSource {
  /** Entries with start <= ts < end matching the selector, oldest first (forward) or newest first. */
  select(
    start: bigint,
    end: bigint,
    limit: number,
    forward: boolean,
    match: (labels: Record<string, string>, line: string) => boolean,
  ): LogEntry[];
  labelNames(): string[];
}

export class ListLogSource implements LogSource {
  private readonly entries: LogEntry[];
  constructor(entries: LogEntry[]) {
    this.entries = [...entries].sort((a, b) => (a.ts < b.ts ? -1 : a.ts > b.ts ? 1 : 0));
  }
  select(
    start: bigint,
    end: bigint,
    limit: number,
    forward: boolean,
    match: (l: Record<string, string>, line: string) => boolean,
  ) {
    const out: LogEntry[] = [];
    const n = this.entries.length;
    for (let k = 0; k < n && out.length < limit; k++) {
      const e = this.entries[forward ? k : n - 1 - k];
      if (e.ts < start || e.ts >= end) continue;
      if (match(e.labels, e.line)) out.push(e);
    }
    return out;
  }
  labelNames(): string[] {
    return [...new Set(this.entries.flatMap((e) => Object.keys(e.labels)))].sort();
  }
}

/** `count` entries evenly spread over [startNs, startNs + spanNs), made on demand by `make(i)`. */
export class GeneratedLogSource implements LogSource {
  constructor(
    private readonly startNs: bigint,
    private readonly spanNs: bigint,
    private readonly count: number,
    private readonly make: (i: number) => { labels: Record<string, string>; line: string },
  ) {}
  private tsOf(i: number): bigint {
    return this.startNs + (this.spanNs * BigInt(i)) / BigInt(this.count);
  }
  private firstAtOrAfter(ts: bigint): number {
    let lo = 0;
    let hi = this.count;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.tsOf(mid) < ts) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
  select(
    start: bigint,
    end: bigint,
    limit: number,
    forward: boolean,
    match: (l: Record<string, string>, line: string) => boolean,
  ) {
    const a = this.firstAtOrAfter(start);
    const b = this.firstAtOrAfter(end);
    const out: LogEntry[] = [];
    for (let k = 0; k < b - a && out.length < limit; k++) {
      const i = forward ? a + k : b - 1 - k;
      const e = this.make(i);
      if (match(e.labels, e.line)) out.push({ ts: this.tsOf(i), ...e });
    }
    return out;
  }
  labelNames(): string[] {
    return Object.keys(this.make(0).labels).sort();
  }
}

interface Selector {
  match: (labels: Record<string, string>, line: string) => boolean;
}

/** `{a="x", b=~"re", c!="y"}` followed by `|= "s"`, `!= "s"` or `| json` (parsing labels is not modelled). */
export function parseLogQL(q: string): Selector {
  const m = /^\s*\{([^}]*)\}(.*)$/s.exec(q);
  if (!m)
    throw new Error(
      `parse error at line 1, col 1: syntax error: unexpected ${JSON.stringify(q.slice(0, 10))}`,
    );
  const matchers: ((l: Record<string, string>) => boolean)[] = [];
  for (const part of m[1]
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)) {
    const mm = /^([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"$/.exec(part);
    if (!mm) throw new Error(`parse error at line 1, col 2: syntax error: unexpected ${part}`);
    const [, name, op, raw] = mm;
    const value = raw.replace(/\\(.)/g, "$1");
    const re = op.includes("~") ? new RegExp(`^(?:${value})$`) : null;
    matchers.push((l) => {
      const v = l[name] ?? "";
      if (op === "=") return v === value;
      if (op === "!=") return v !== value;
      if (op === "=~") return re!.test(v);
      return !re!.test(v);
    });
  }
  if (!matchers.length)
    throw new Error("parse error : queries require at least one regexp or equality matcher");
  const filters: ((line: string) => boolean)[] = [];
  let rest = m[2].trim();
  while (rest) {
    const f = /^(\|=|!=)\s*"((?:[^"\\]|\\.)*)"\s*/.exec(rest);
    if (f) {
      const needle = f[2].replace(/\\(.)/g, "$1");
      filters.push(f[1] === "|=" ? (l) => l.includes(needle) : (l) => !l.includes(needle));
      rest = rest.slice(f[0].length);
      continue;
    }
    const j = /^\|\s*(json|logfmt)\s*/.exec(rest);
    if (j) {
      rest = rest.slice(j[0].length);
      continue;
    }
    throw new Error(
      `parse error at line 1, col ${q.length - rest.length + 1}: syntax error: unexpected ${rest.slice(0, 12)}`,
    );
  }
  return { match: (l, line) => matchers.every((f) => f(l)) && filters.every((f) => f(line)) };
}

/** Loki timestamps: integer nanoseconds, float seconds or RFC3339. */
function lokiTime(v: string | null, fallback: bigint): bigint {
  if (v === null || v === "") return fallback;
  if (/^\d+$/.test(v)) return BigInt(v);
  if (/^\d+\.\d+$/.test(v)) return BigInt(Math.round(Number(v) * 1e6)) * 1000n;
  const ms = Date.parse(v);
  if (Number.isNaN(ms)) throw new Error(`invalid parameter: cannot parse "${v}" to a valid timestamp`);
  return BigInt(ms) * 1_000_000n;
}

export class FakeLoki extends FakeServer {
  /** Loki's max_entries_limit_per_query. */
  maxEntriesLimit = 5000;
  /** Loki's max_query_length, ms. */
  maxQueryLengthMs = 721 * 3600e3;

  constructor(public source: LogSource) {
    super();
  }

  protected handle(req: FakeRequest): FakeResponse {
    if (req.path === "/ready") return textResponse(200, "ready");
    if (req.path === "/loki/api/v1/labels")
      return jsonResponse({ status: "success", data: this.source.labelNames() });
    if (req.path !== "/loki/api/v1/query_range") return textResponse(404, "404 page not found");
    const p = req.params;
    const nowNs = BigInt(Date.now()) * 1_000_000n;
    let sel: Selector;
    let start: bigint;
    let end: bigint;
    try {
      end = lokiTime(p.get("end"), nowNs);
      start = lokiTime(p.get("start"), end - 3600n * 1_000_000_000n);
      sel = parseLogQL(p.get("query") ?? "");
    } catch (err) {
      return textResponse(400, (err as Error).message);
    }
    const limit = Number(p.get("limit") ?? 100);
    if (limit > this.maxEntriesLimit)
      return textResponse(
        400,
        `max entries limit per query exceeded, limit > max_entries_limit (${limit} > ${this.maxEntriesLimit})`,
      );
    const lengthMs = Number((end - start) / 1_000_000n);
    if (lengthMs > this.maxQueryLengthMs)
      return textResponse(
        400,
        `the query time range exceeds the limit (query length: ${goDuration(lengthMs)}, limit: ${goDuration(this.maxQueryLengthMs)})`,
      );
    const forward = p.get("direction") === "forward";
    const entries = this.source.select(start, end, limit, forward, sel.match);
    // Group by stream, each stream in the direction's order; streams in first-seen order.
    const streams = new Map<
      Record<string, string> | string,
      { stream: Record<string, string>; values: [string, string][] }
    >();
    const keyOf = new Map<Record<string, string>, string>();
    for (const e of entries) {
      let key = keyOf.get(e.labels);
      if (key === undefined) {
        key = JSON.stringify(Object.entries(e.labels).sort());
        keyOf.set(e.labels, key);
      }
      let s = streams.get(key);
      if (!s) {
        s = { stream: e.labels, values: [] };
        streams.set(key, s);
      }
      s.values.push([e.ts.toString(), e.line]);
    }
    return jsonResponse({
      status: "success",
      data: { resultType: "streams", result: [...streams.values()], stats: {} },
    });
  }
}

function goDuration(ms: number): string {
  const h = Math.floor(ms / 3600e3);
  const m = Math.floor((ms % 3600e3) / 60e3);
  const s = (ms % 60e3) / 1000;
  return `${h}h${m}m${s}s`;
}

// ---- Tempo -------------------------------------------------------------------------------------

export interface FakeSpan {
  spanId: string;
  parentSpanId?: string;
  service: string;
  namespace?: string;
  name: string;
  /** OTLP span kind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer. */
  kind?: number;
  startNs: bigint;
  durationNs: bigint;
  status?: { code: 0 | 1 | 2; message?: string };
  attributes?: Record<string, string | number | boolean>;
}

export interface FakeTrace {
  /** 32 hex characters; may start with zeros. */
  traceId: string;
  spans: FakeSpan[];
  /** Answer the v2 body with status PARTIAL. */
  partial?: boolean;
}

export interface TraceSource {
  /** Traces overlapping [startS, endS], in the order the search "finds" them. */
  search(startS: number, endS: number, match: (t: FakeTrace) => boolean, limit: number): FakeTrace[];
  get(traceId: string): FakeTrace | undefined;
}

export class ListTraceSource implements TraceSource {
  private readonly byId = new Map<string, FakeTrace>();
  private readonly order: FakeTrace[];
  constructor(traces: FakeTrace[]) {
    for (const t of traces) this.byId.set(t.traceId, t);
    // Tempo returns "the first N found" by a parallel search: not time order. A fixed shuffle.
    this.order = [...traces].sort((a, b) => (hash(a.traceId) < hash(b.traceId) ? -1 : 1));
  }
  search(startS: number, endS: number, match: (t: FakeTrace) => boolean, limit: number): FakeTrace[] {
    const out: FakeTrace[] = [];
    for (const t of this.order) {
      if (out.length >= limit) break;
      const { start, end } = bounds(t);
      if (end < BigInt(startS) * 1_000_000_000n || start > BigInt(endS) * 1_000_000_000n) continue;
      if (match(t)) out.push(t);
    }
    return out;
  }
  get(traceId: string) {
    return this.byId.get(traceId);
  }
}

/** `count` traces spread over [startNs, startNs + spanNs), made on demand; the index is in the ID. */
export class GeneratedTraceSource implements TraceSource {
  constructor(
    private readonly startNs: bigint,
    private readonly spanNs: bigint,
    private readonly count: number,
    private readonly make: (i: number, traceId: string, startNs: bigint) => FakeTrace,
  ) {}
  private startOf(i: number): bigint {
    return this.startNs + (this.spanNs * BigInt(i)) / BigInt(this.count);
  }
  private idOf(i: number): string {
    return `${hash(String(i)).slice(0, 24)}${i.toString(16).padStart(8, "0")}`;
  }
  private at(i: number): FakeTrace {
    return this.make(i, this.idOf(i), this.startOf(i));
  }
  search(startS: number, endS: number, match: (t: FakeTrace) => boolean, limit: number): FakeTrace[] {
    const out: FakeTrace[] = [];
    const s = BigInt(startS) * 1_000_000_000n;
    const e = BigInt(endS) * 1_000_000_000n;
    let i = Number(((s - this.startNs) * BigInt(this.count)) / this.spanNs) - 1;
    for (i = Math.max(0, i); i < this.count && out.length < limit; i++) {
      const st = this.startOf(i);
      if (st > e) break;
      const t = this.at(i);
      if (bounds(t).end < s) continue;
      if (match(t)) out.push(t);
    }
    return out;
  }
  get(traceId: string) {
    const i = Number.parseInt(traceId.slice(24), 16);
    if (!Number.isInteger(i) || i < 0 || i >= this.count || this.idOf(i) !== traceId) return undefined;
    return this.at(i);
  }
}

function hash(s: string): string {
  return createHash("sha256").update(s).digest("hex");
}

function bounds(t: FakeTrace): { start: bigint; end: bigint } {
  let start = t.spans[0].startNs;
  let end = start;
  for (const s of t.spans) {
    if (s.startNs < start) start = s.startNs;
    if (s.startNs + s.durationNs > end) end = s.startNs + s.durationNs;
  }
  return { start, end };
}

function rootOf(t: FakeTrace): FakeSpan {
  return t.spans.find((s) => !s.parentSpanId) ?? t.spans[0];
}

const DURATION_UNITS: Record<string, number> = {
  ns: 1e-9,
  us: 1e-6,
  µs: 1e-6,
  ms: 1e-3,
  s: 1,
  m: 60,
  h: 3600,
};

/** The TraceQL the default queries use: `{}`, `{ resource.x = "v" }`, `{ .x = "v" }`, `{ span.x = "v" }`, `{ status = error }`, `{ duration|traceDuration op 5s }`. */
export function parseTraceQL(q: string): (t: FakeTrace) => boolean {
  const m = /^\s*\{\s*(?:([A-Za-z0-9_.]+)\s*(=|!=|>=|<=|>|<)\s*(.+?))?\s*\}\s*$/.exec(q);
  if (!m)
    throw new Error(`invalid TraceQL query: parse error at line 1, col 1: syntax error: ${q.slice(0, 20)}`);
  const [, field, op, raw] = m;
  if (!field) return () => true;
  const cmp = (a: number, b: number) =>
    op === ">"
      ? a > b
      : op === ">="
        ? a >= b
        : op === "<"
          ? a < b
          : op === "<="
            ? a <= b
            : op === "="
              ? a === b
              : a !== b;
  if (field === "duration" || field === "traceDuration") {
    const d = /^(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)$/.exec(raw.trim());
    if (!d) throw new Error(`invalid TraceQL query: parse error: bad duration ${raw}`);
    const limitNs = Number(d[1]) * DURATION_UNITS[d[2]] * 1e9;
    if (field === "traceDuration")
      return (t) => {
        const b = bounds(t);
        return cmp(Number(b.end - b.start), limitNs);
      };
    return (t) => t.spans.some((s) => cmp(Number(s.durationNs), limitNs));
  }
  if (field === "status") {
    const want = { error: 2, ok: 1, unset: 0 }[raw.trim()];
    if (want === undefined) throw new Error(`invalid TraceQL query: parse error: bad status ${raw}`);
    return (t) => t.spans.some((s) => ((s.status?.code ?? 0) === want) === (op === "="));
  }
  const str = /^"((?:[^"\\]|\\.)*)"$/.exec(raw.trim());
  if (!str || (op !== "=" && op !== "!="))
    throw new Error(`invalid TraceQL query: parse error: unsupported ${field} ${op} ${raw}`);
  const value = str[1];
  const name = field.replace(/^(resource|span)?\./, "");
  const get = (s: FakeSpan): unknown =>
    name === "service.name" ? s.service : name === "k8s.namespace.name" ? s.namespace : s.attributes?.[name];
  return (t) => t.spans.some((s) => (String(get(s) ?? "") === value) === (op === "="));
}

const b64 = (hex: string) => Buffer.from(hex, "hex").toString("base64");

function kv(key: string, v: string | number | boolean) {
  if (typeof v === "string") return { key, value: { stringValue: v } };
  if (typeof v === "boolean") return { key, value: { boolValue: v } };
  if (Number.isInteger(v)) return { key, value: { intValue: String(v) } };
  return { key, value: { doubleValue: v } };
}

const KIND_NAMES = [
  "",
  "SPAN_KIND_INTERNAL",
  "SPAN_KIND_SERVER",
  "SPAN_KIND_CLIENT",
  "SPAN_KIND_PRODUCER",
  "SPAN_KIND_CONSUMER",
];

/** OTLP resourceSpans as Tempo's gogo jsonpb writes them: base64 IDs, string int64s, enum names. */
export function resourceSpans(t: FakeTrace): unknown[] {
  const byService = new Map<string, FakeSpan[]>();
  for (const s of t.spans) {
    const k = `${s.service}\0${s.namespace ?? ""}`;
    byService.set(k, [...(byService.get(k) ?? []), s]);
  }
  return [...byService.values()].map((spans) => ({
    resource: {
      attributes: [
        kv("service.name", spans[0].service),
        ...(spans[0].namespace ? [kv("k8s.namespace.name", spans[0].namespace)] : []),
      ],
    },
    scopeSpans: [
      {
        scope: { name: "opentelemetry.instrumentation.fake", version: "1.0.0" },
        spans: spans.map((s) => ({
          traceId: b64(t.traceId),
          spanId: b64(s.spanId),
          ...(s.parentSpanId ? { parentSpanId: b64(s.parentSpanId) } : {}),
          name: s.name,
          ...(s.kind ? { kind: KIND_NAMES[s.kind] } : {}),
          startTimeUnixNano: s.startNs.toString(),
          endTimeUnixNano: (s.startNs + s.durationNs).toString(),
          ...(s.attributes ? { attributes: Object.entries(s.attributes).map(([k, v]) => kv(k, v)) } : {}),
          status: s.status?.code
            ? {
                code: s.status.code === 2 ? "STATUS_CODE_ERROR" : "STATUS_CODE_OK",
                ...(s.status.message ? { message: s.status.message } : {}),
              }
            : {},
        })),
      },
    ],
  }));
}

function searchMeta(t: FakeTrace, spss: number) {
  const root = rootOf(t);
  const b = bounds(t);
  const spanSet = {
    spans: t.spans.slice(0, spss).map((s) => ({
      spanID: s.spanId,
      startTimeUnixNano: s.startNs.toString(),
      durationNanos: s.durationNs.toString(),
      attributes: [kv("service.name", s.service)],
    })),
    matched: t.spans.length,
  };
  return {
    traceID: t.traceId.replace(/^0+/, ""),
    rootServiceName: root.service,
    rootTraceName: root.name,
    startTimeUnixNano: b.start.toString(),
    durationMs: Math.round(Number(b.end - b.start) / 1e6),
    spanSet,
    spanSets: [spanSet],
  };
}

export class FakeTempo extends FakeServer {
  /** query_frontend.search.max_duration */
  maxSearchHours = 168;
  /** Older Tempo has no /api/v2/traces route. */
  v2 = true;

  constructor(public source: TraceSource) {
    super();
  }

  protected handle(req: FakeRequest): FakeResponse {
    if (req.path === "/api/echo") return textResponse(200, "echo");
    if (req.path === "/ready") return textResponse(200, "ready");
    if (req.path === "/api/search") {
      const p = req.params;
      const end = Number(p.get("end") ?? Math.floor(Date.now() / 1000));
      const start = Number(p.get("start") ?? end - 3600);
      if (end - start > this.maxSearchHours * 3600)
        return textResponse(
          400,
          `range specified by start and end exceeds ${this.maxSearchHours}h0m0s. received start=${start} end=${end}`,
        );
      const spss = Number(p.get("spss") ?? 3);
      if (spss > 100) return textResponse(400, `spans per span set exceeds 100. received ${spss}`);
      let match: (t: FakeTrace) => boolean;
      try {
        match = parseTraceQL(p.get("q") ?? "{}");
      } catch (err) {
        return textResponse(400, (err as Error).message);
      }
      const limit = Number(p.get("limit") ?? 20);
      const found = this.source.search(start, end, match, limit);
      return jsonResponse({
        traces: found.map((t) => searchMeta(t, spss)),
        metrics: { inspectedBytes: String(found.length * 1200), completedJobs: 1, totalJobs: 1 },
      });
    }
    const v2 = /^\/api\/v2\/traces\/([0-9a-fA-F]+)$/.exec(req.path);
    const v1 = /^\/api\/traces\/([0-9a-fA-F]+)$/.exec(req.path);
    if ((v2 && this.v2) || v1) {
      const id = (v2 ?? v1)![1].toLowerCase().padStart(32, "0");
      const t = this.source.get(id);
      if (!t) return textResponse(404, "trace not found");
      const rs = resourceSpans(t);
      if (v2)
        return jsonResponse({
          trace: { resourceSpans: rs },
          metrics: { inspectedBytes: "18234" },
          ...(t.partial ? { status: "PARTIAL", message: "some blocks were not searched" } : {}),
        });
      return jsonResponse({ batches: rs });
    }
    return textResponse(404, "404 page not found");
  }
}
