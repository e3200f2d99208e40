// Tempo: TraceQL search (/api/search?q=) over windows of at most 168 h, then every trace body
// (/api/v2/traces/<id>, falling back to /api/traces/<id>) with bounded concurrency. Search has no
// cursor and returns "the first N found", so a window that comes back full is split in two and
// searched again. Trace IDs are normalised to 32 lowercase hex characters (search strips leading
// zeros; bodies carry base64) and de-duplicated across windows, queries and runs.
import picomatch from "picomatch";
import * as z from "zod";
import type { TempoSourceConfig } from "../../config/schema.js";
import { formatDuration } from "../../util/duration.js";
import { type CollectContext, httpClient, mapLimit, runQuery, segmentFull } from "./context.js";
import { bodyExcerpt, type HttpSourceClient, type QueryClient, SourceError } from "./http.js";
import { dayOf } from "./raw-store.js";
import type { SpanRecord, TraceRecord } from "./records.js";
import { Redactor } from "./redact.js";
import { bumpSkipped, Coverage, iso, type QueryReport } from "./report.js";
import { commitSegment, readWatermark } from "./watermarks.js";

export const TEMPO_MAX_WINDOW_S = 168 * 3600;
/** Trace IDs remembered past the watermark: traces that straddle it come back in the next run's first window. */
const RECENT_S = 3600;
const RECENT_MAX = 20_000;

const Watermark = z.object({
  version: z.literal(1),
  end_s: z.number().int(),
  recent: z.array(z.string().regex(/^[0-9a-f]{32}$/)),
});

const SearchResponse = z.looseObject({
  traces: z
    .array(
      z.looseObject({
        traceID: z.string().min(1),
        rootServiceName: z.string().optional(),
        rootTraceName: z.string().optional(),
        startTimeUnixNano: z.union([z.string(), z.number()]).optional(),
        durationMs: z.number().optional(),
      }),
    )
    .nullish(),
});
type TraceMeta = NonNullable<z.infer<typeof SearchResponse>["traces"]>[number];

/** The default searches: both agents, one per configured namespace, slow traces, error traces. */
export function defaultTempoQueries(namespaces: Record<string, string>): { name: string; traceql: string }[] {
  return [
    { name: "service_agent_sre", traceql: '{ resource.service.name = "agent-sre" }' },
    { name: "service_agent_bruno", traceql: '{ resource.service.name = "agent-bruno" }' },
    ...Object.entries(namespaces).map(([key, ns]) => ({
      name: `namespace_${key}`,
      traceql: `{ resource.k8s.namespace.name = "${ns}" }`,
    })),
    { name: "slow", traceql: "{ traceDuration > 5s }" },
    { name: "errors", traceql: "{ status = error }" },
  ];
}

// ---- ids and values ----------------------------------------------------------------------------

/**
 * A trace ID as 32 lowercase hex characters. Search results send hex with leading zeros stripped
 * (`hexOnly`); bodies send base64 of the raw bytes, and some producers send full-length hex.
 */
export function normaliseTraceId(id: string, hexOnly = false): string | null {
  return normaliseId(id, 16, hexOnly);
}

export function normaliseSpanId(id: string): string | null {
  return normaliseId(id, 8, false);
}

function normaliseId(id: string, bytes: number, hexOnly: boolean): string | null {
  const hexLen = bytes * 2;
  const isHex = /^[0-9a-fA-F]+$/.test(id);
  if (isHex && id.length === hexLen) return id.toLowerCase();
  if (!hexOnly && /^[A-Za-z0-9+/_-]+={0,2}$/.test(id)) {
    const buf = Buffer.from(id.replace(/-/g, "+").replace(/_/g, "/"), "base64");
    if (buf.length === bytes) return buf.toString("hex");
  }
  if (isHex && id.length < hexLen) return id.toLowerCase().padStart(hexLen, "0");
  return null;
}

const KINDS = ["unspecified", "internal", "server", "client", "producer", "consumer"];

function spanKind(k: unknown): string {
  if (typeof k === "number") return KINDS[k] ?? "unspecified";
  if (typeof k === "string") return k.replace(/^SPAN_KIND_/, "").toLowerCase() || "unspecified";
  return "unspecified";
}

function spanStatus(s: unknown): "unset" | "ok" | "error" {
  const code = (s as { code?: unknown } | null)?.code;
  if (code === 2 || code === "STATUS_CODE_ERROR" || code === "ERROR") return "error";
  if (code === 1 || code === "STATUS_CODE_OK" || code === "OK") return "ok";
  return "unset";
}

/** int64 fields arrive as strings (gogo jsonpb) or numbers (other producers). */
function nanos(v: unknown): bigint | null {
  if (typeof v === "string" && /^\d{1,20}$/.test(v)) return BigInt(v);
  if (typeof v === "number" && Number.isFinite(v) && v >= 0) return BigInt(Math.round(v));
  return null;
}

type AttrValue = string | number | boolean;

function anyValue(v: unknown): AttrValue | undefined {
  if (!v || typeof v !== "object") return undefined;
  const o = v as Record<string, unknown>;
  if (typeof o.stringValue === "string") return o.stringValue;
  if (typeof o.boolValue === "boolean") return o.boolValue;
  if (o.intValue !== undefined) {
    const n = Number(o.intValue);
    return Number.isSafeInteger(n) ? n : String(o.intValue);
  }
  if (o.doubleValue !== undefined) return Number(o.doubleValue);
  if (o.arrayValue || o.kvlistValue) return JSON.stringify(o.arrayValue ?? o.kvlistValue);
  if (typeof o.bytesValue === "string") return o.bytesValue;
  return undefined;
}

function attrs(
  list: unknown,
  keep: (k: string) => boolean,
  redactor: Redactor,
  out: Record<string, AttrValue>,
): void {
  if (!Array.isArray(list)) return;
  for (const kv of list) {
    const key = (kv as { key?: unknown })?.key;
    if (typeof key !== "string" || !keep(key)) continue;
    const v = anyValue((kv as { value?: unknown }).value);
    if (v === undefined) continue;
    out[key] = typeof v === "string" ? redactor.redactValue(key, v) : v;
  }
}

/**
 * Flattens a trace body (v2 {trace:{resourceSpans}} or v1 {batches}) to span records. Throws a
 * plain Error describing what is wrong; the caller adds source, query and trace ID.
 */
export function flattenTrace(
  body: unknown,
  traceId: string,
  keep: (k: string) => boolean,
  redactor: Redactor,
): { spans: SpanRecord[]; partial: boolean } {
  const b = body as {
    trace?: { resourceSpans?: unknown };
    batches?: unknown;
    resourceSpans?: unknown;
    status?: unknown;
  };
  if (!b || typeof b !== "object") throw new Error("body is not a JSON object");
  const rs = b.trace?.resourceSpans ?? b.batches ?? b.resourceSpans;
  if (rs === undefined && b.trace && typeof b.trace === "object")
    return { spans: [], partial: b.status === "PARTIAL" || b.status === 1 };
  if (!Array.isArray(rs)) throw new Error("no resourceSpans/batches array in the body");
  const spans: SpanRecord[] = [];
  rs.forEach((r: unknown, ri: number) => {
    const res = r as {
      resource?: { attributes?: unknown };
      scopeSpans?: unknown;
      instrumentationLibrarySpans?: unknown;
    };
    const resAttrs: Record<string, AttrValue> = {};
    let service = "";
    if (Array.isArray(res?.resource?.attributes)) {
      for (const kv of res.resource.attributes as { key?: string; value?: unknown }[]) {
        if (kv?.key === "service.name") service = String(anyValue(kv.value) ?? "");
      }
      attrs(res.resource.attributes, keep, redactor, resAttrs);
    }
    const scopes = res?.scopeSpans ?? res?.instrumentationLibrarySpans ?? [];
    if (!Array.isArray(scopes)) throw new Error(`resourceSpans.${ri}: scopeSpans is not an array`);
    for (const sc of scopes) {
      const list = (sc as { spans?: unknown })?.spans ?? [];
      if (!Array.isArray(list)) throw new Error(`resourceSpans.${ri}: spans is not an array`);
      for (const sp of list as Record<string, unknown>[]) {
        const tid = typeof sp.traceId === "string" ? normaliseTraceId(sp.traceId) : traceId;
        const sid = typeof sp.spanId === "string" ? normaliseSpanId(sp.spanId) : null;
        if (!sid) throw new Error(`span with an unreadable spanId ${JSON.stringify(sp.spanId)}`);
        const parent =
          typeof sp.parentSpanId === "string" && sp.parentSpanId ? normaliseSpanId(sp.parentSpanId) : null;
        const start = nanos(sp.startTimeUnixNano);
        const end = nanos(sp.endTimeUnixNano);
        if (start === null)
          throw new Error(
            `span ${sid}: unreadable startTimeUnixNano ${JSON.stringify(sp.startTimeUnixNano)}`,
          );
        const a: Record<string, AttrValue> = { ...resAttrs };
        attrs(sp.attributes, keep, redactor, a);
        const status = spanStatus(sp.status);
        const message = (sp.status as { message?: unknown } | undefined)?.message;
        spans.push({
          trace_id: tid ?? traceId,
          span_id: sid,
          parent_span_id: parent,
          service: redactor.redact(service),
          name: redactor.redact(typeof sp.name === "string" ? sp.name : ""),
          kind: spanKind(sp.kind),
          start_ns: start.toString(),
          duration_ns: end !== null && end > start ? Number(end - start) : 0,
          status,
          ...(typeof message === "string" && message ? { status_message: redactor.redact(message) } : {}),
          attributes: a,
        });
      }
    }
  });
  spans.sort((x, y) =>
    BigInt(x.start_ns) < BigInt(y.start_ns) ? -1 : BigInt(x.start_ns) > BigInt(y.start_ns) ? 1 : 0,
  );
  return { spans, partial: b.status === "PARTIAL" || b.status === 1 };
}

// ---- collection --------------------------------------------------------------------------------

interface TempoRun {
  /** Trace IDs stored by any Tempo query in this run or remembered from the last one. */
  seen: Set<string>;
  /** Traces Tempo answered as PARTIAL, per query: stored with partial: true. */
  partial: Map<string, number>;
  /** Whether the server has the v2 trace route; learnt on the first 404. */
  v2: boolean | null;
  keep: (k: string) => boolean;
}

export async function collectTempo(ctx: CollectContext, cfg: TempoSourceConfig): Promise<QueryReport[]> {
  const client = httpClient(ctx, "tempo", cfg, cfg.fetch_concurrency);
  const queries = cfg.queries ?? defaultTempoQueries(ctx.agentConfig.namespaces);
  const run: TempoRun = {
    seen: new Set(),
    partial: new Map(),
    v2: null,
    keep: picomatch(cfg.attributes, { dot: true }),
  };
  try {
    // One query at a time and in config order: which query a shared trace lands in is then fixed.
    return await mapLimit(queries, 1, (q) =>
      runQuery(ctx, "tempo", q.name, client, (report, http) => collectQuery(ctx, cfg, q, http!, report, run)),
    );
  } finally {
    client.close();
  }
}

async function collectQuery(
  ctx: CollectContext,
  cfg: TempoSourceConfig,
  q: { name: string; traceql: string },
  http: QueryClient,
  report: QueryReport,
  run: TempoRun,
): Promise<void> {
  const wm = await readWatermark(ctx.store, ctx.agent, "tempo", q.name, Watermark);
  for (const id of wm?.recent ?? []) run.seen.add(id);
  const configuredS = Math.max(1, Math.round(cfg.search_window / 1000));
  const windowS = Math.min(TEMPO_MAX_WINDOW_S, configuredS);
  if (configuredS > windowS)
    report.warnings.push(
      `search_window ${formatDuration(cfg.search_window)} cut to 168h (Tempo's max_duration)`,
    );
  const minWindowS = Math.max(1, Math.min(windowS, Math.round(cfg.min_search_window / 1000)));
  const endS = Math.floor((ctx.now - ctx.settleMs) / 1000);
  const startS = wm ? wm.end_s : Math.floor(ctx.firstStart / 1000);
  report.window = { start: iso(startS * 1000), end: iso(Math.max(startS, endS) * 1000) };
  const coverage = new Coverage(startS * 1000, ctx.gapMinMs);
  const redactor = new Redactor();
  report.redactions = redactor.counts;
  let stored = 0;
  let buffer: TraceRecord[] = [];
  let bufferBytes = 0;
  let segStart = startS;
  let recent: { id: string; startS: number }[] = [];

  // `suffix` marks a segment cut short by the cap, whose watermark stays at its last window's
  // start: the next run's first segment then gets a different name and cannot replace it.
  const commit = async (end: number, suffix = "") => {
    buffer.sort((a, b) => (a.start_ns < b.start_ns ? -1 : a.start_ns > b.start_ns ? 1 : 0));
    recent = recent.filter((r) => r.startS >= end - RECENT_S).slice(-RECENT_MAX);
    await commitSegment(
      ctx.store,
      ctx.agent,
      "tempo",
      q.name,
      dayOf(segStart * 1000),
      `${q.name}-${segStart}${suffix}`,
      buffer,
      { version: 1, end_s: end, recent: recent.map((r) => r.id) },
      report,
    );
    buffer = [];
    bufferBytes = 0;
    segStart = end;
  };

  let ws = startS;
  while (ws < endS) {
    const gridEnd = (Math.floor(ws / windowS) + 1) * windowS;
    const dayEnd = (Math.floor(ws / 86400) + 1) * 86400;
    const we = Math.min(gridEnd, dayEnd, endS);
    const found = await searchWindow(http, cfg, q.traceql, ws, we, minWindowS, report);
    const fresh: TraceMeta[] = [];
    for (const t of found) {
      const id = normaliseTraceId(t.traceID, true);
      if (!id) {
        report.warnings.length < 50 &&
          report.warnings.push(`search returned an unreadable traceID ${JSON.stringify(t.traceID)}`);
        continue;
      }
      if (run.seen.has(id)) {
        bumpSkipped(report, "duplicates");
        continue;
      }
      run.seen.add(id);
      fresh.push({ ...t, traceID: id });
    }
    const room = cfg.max_traces - stored;
    const take = fresh.slice(0, Math.max(0, room));
    // Until one body has told whether the v2 route exists, fetch a single trace first.
    const first =
      run.v2 === null && take.length ? [await fetchTrace(http, take[0], run, report, redactor, q.name)] : [];
    const rest = await mapLimit(take.slice(first.length), cfg.fetch_concurrency, (t) =>
      fetchTrace(http, t, run, report, redactor, q.name),
    );
    const bodies = [...first, ...rest];
    const starts: number[] = [];
    for (const rec of bodies) {
      if (!rec) continue;
      buffer.push(rec);
      bufferBytes += rec.spans.length * 400;
      stored++;
      const ms = Number(BigInt(rec.start_ns) / 1_000_000n);
      starts.push(ms);
      recent.push({ id: rec.trace_id, startS: Math.floor(ms / 1000) });
    }
    for (const ms of starts.sort((a, b) => a - b)) coverage.add(ms);
    if (fresh.length > take.length) {
      report.caps_hit.push(
        `max_traces ${cfg.max_traces}: stopped in the window ending ${iso(we * 1000)}; the next run continues from its start`,
      );
      report.status = "partial";
      // The window is incomplete: the watermark stays at its start so that the next run redoes it,
      // and the traces stored here are remembered so that it does not store them twice.
      await commit(ws, `-part${take.length}`);
      break;
    }
    ws = we;
    if (segmentFull(ctx, buffer.length, bufferBytes) || ws >= dayEnd || ws >= endS) await commit(ws);
    if (ctx.signal.aborted) throw http.error("cancelled", "cancelled");
  }
  coverage.finish(report, Math.max(ws, startS) * 1000);
  const partial = run.partial.get(q.name);
  if (partial)
    report.warnings.push(
      `${partial} traces were PARTIAL (not every block searched); stored with partial: true`,
    );
}

/** Searches [start, end]; a full answer means more may exist, so the window is halved and searched again. */
async function searchWindow(
  http: QueryClient,
  cfg: TempoSourceConfig,
  traceql: string,
  start: number,
  end: number,
  minWindowS: number,
  report: QueryReport,
): Promise<TraceMeta[]> {
  const { status, json, res } = await http.getJson("api/search", {
    q: traceql,
    start,
    end,
    limit: cfg.search_limit,
    spss: cfg.spss,
  });
  if (status >= 400) throw http.error("http", `HTTP ${status}: ${bodyExcerpt(res)}`, status);
  const parsed = SearchResponse.safeParse(json);
  if (!parsed.success) {
    const i = parsed.error.issues[0];
    throw http.error(
      "malformed",
      `unexpected search response at ${i.path.join(".") || "(top)"}: ${i.message}`,
      status,
    );
  }
  const traces = parsed.data.traces ?? [];
  if (traces.length < cfg.search_limit) return traces;
  if (end - start <= minWindowS) {
    report.caps_hit.push(
      `search_limit ${cfg.search_limit} reached in ${iso(start * 1000)}..${iso(end * 1000)} at the smallest window; some traces there may be missed`,
    );
    return traces;
  }
  const mid = start + Math.floor((end - start) / 2);
  const a = await searchWindow(http, cfg, traceql, start, mid, minWindowS, report);
  const b = await searchWindow(http, cfg, traceql, mid, end, minWindowS, report);
  return [...a, ...b];
}

async function fetchTrace(
  http: QueryClient,
  meta: TraceMeta,
  run: TempoRun,
  report: QueryReport,
  redactor: Redactor,
  query: string,
): Promise<TraceRecord | null> {
  const id = meta.traceID;
  let body: unknown = null;
  for (const version of run.v2 === false ? ["v1"] : ["v2", "v1"]) {
    const path = version === "v2" ? `api/v2/traces/${id}` : `api/traces/${id}`;
    const r = await http.getJson(path, {});
    if (r.status === 404) {
      // Older Tempo has no v2 route; 404 also means "no such trace", so try v1 before deciding.
      continue;
    }
    if (r.status >= 400)
      throw http.error("http", `HTTP ${r.status} for trace ${id}: ${bodyExcerpt(r.res)}`, r.status);
    if (version === "v1" && run.v2 === null) run.v2 = false;
    if (version === "v2") run.v2 = true;
    body = r.json;
    break;
  }
  if (body === null) {
    bumpSkipped(report, "traces_not_found");
    return null;
  }
  let flat: { spans: SpanRecord[]; partial: boolean };
  try {
    flat = flattenTrace(body, id, run.keep, redactor);
  } catch (err) {
    bumpSkipped(report, "unreadable_traces");
    if (report.errors.length < 20)
      report.errors.push(
        new SourceError("tempo", query, "malformed", `trace ${id}: ${(err as Error).message}`).message,
      );
    return null;
  }
  if (flat.partial) run.partial.set(query, (run.partial.get(query) ?? 0) + 1);
  const spans = flat.spans;
  const ids = new Set(spans.map((s) => s.span_id));
  const root = spans.find((s) => !s.parent_span_id || !ids.has(s.parent_span_id));
  const startNs = spans.length ? BigInt(spans[0].start_ns) : (nanos(meta.startTimeUnixNano) ?? 0n);
  let endNs = startNs;
  for (const s of spans) {
    const e = BigInt(s.start_ns) + BigInt(Math.round(s.duration_ns));
    if (e > endNs) endNs = e;
  }
  const durationMsValue = spans.length ? Number(endNs - startNs) / 1e6 : (meta.durationMs ?? 0);
  return {
    kind: "trace",
    query,
    trace_id: id,
    root_service: redactor.redact(root?.service ?? meta.rootServiceName ?? ""),
    root_name: redactor.redact(root?.name ?? meta.rootTraceName ?? ""),
    start_ns: startNs.toString(),
    duration_ms: durationMsValue,
    spans,
    ...(flat.partial ? { partial: true } : {}),
  };
}

// ---- sources check -----------------------------------------------------------------------------

export interface TempoProbe {
  traces_last_hour: number | null;
  max_search_duration: string | null;
}

/** A search over the last hour (reachable, authorised) and one over 8 days (a 400 names the limit). */
export async function probeTempo(client: HttpSourceClient, now: number): Promise<TempoProbe> {
  const http = client.forQuery("(check)");
  const end = Math.floor(now / 1000);
  const r = await http.getJson("api/search", { q: "{}", start: end - 3600, end, limit: 20 });
  if (r.status === 401 || r.status === 403)
    throw http.error("http", `HTTP ${r.status}: not authorised`, r.status);
  if (r.status >= 400) throw http.error("http", `HTTP ${r.status}: ${bodyExcerpt(r.res)}`, r.status);
  const parsed = SearchResponse.safeParse(r.json);
  if (!parsed.success) throw http.error("malformed", "unexpected search response", r.status);
  const long = await http.get("api/search", { q: "{}", start: end - 8 * 86400, end, limit: 1 });
  const m = /exceeds ([0-9hms.]+)/.exec(long.body.toString("utf8"));
  return {
    traces_last_hour: parsed.data.traces?.length ?? 0,
    max_search_duration: long.status === 400 && m ? m[1] : long.status < 400 ? ">= 192h" : null,
  };
}
