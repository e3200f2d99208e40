// Tempo's HTTP API as the simulator serves it: search (TraceQL q= or legacy tags=) with Tempo's
// limits and metadata shapes (hex trace IDs with leading zeros stripped, string nanoseconds), and
// trace by ID in v1 ({batches}) and v2 ({trace:{resourceSpans}}) OTLP JSON with base64 IDs.

import { service } from "./homelab.js";
import { type ApiRequest, type ApiResponse, goDuration, json, parseGoDuration, text } from "./http.js";
import { matchTrace, parseTraceQL, referencedAttributes, TraceQLError, type TraceQuery } from "./traceql.js";
import { type Attr, type SimSpan, type SimTrace, TRACE_BUCKET_MS } from "./traces.js";
import type { World } from "./world.js";

const MAX_RANGE_S = 168 * 3600;
const MAX_SPSS = 100;
/** No simulated trace lasts longer than this, so searches look this far before their start. */
const LONGEST_TRACE_MS = 120_000;

class BadRequest extends Error {}

/** What a Tempo API serves: the simulated homelab (`worldTraces`), or traces a test or bench gives it. */
export interface TraceStore {
  /** No trace starts before this, unix ms. */
  readonly start: number;
  /** No trace starts after this (the real clock for a live world). */
  horizon(): number;
  /** Every trace that may overlap [fromMs, toMs] (the API checks), any order. */
  overlapping(fromMs: number, toMs: number): Iterable<SimTrace>;
  byId(hex32: string): SimTrace | null;
  /** The OTLP resource attributes of the process that reported a span. */
  resourceOf(span: SimSpan): Record<string, string>;
  /** The instrumentation scope that made a span. */
  scopeOf(span: SimSpan): { name: string; version: string };
  /** A v2 lookup of this trace answers status PARTIAL (not every block was searched). */
  partial?(trace: SimTrace): boolean;
  /** Shown as block_retention on /status/config. */
  readonly retentionMs: number;
}

/** The simulated homelab's traces as a Tempo store. */
export function worldTraces(world: World): TraceStore {
  return {
    start: world.start,
    horizon: () => world.horizon(),
    retentionMs: Math.ceil(world.days) * 86_400_000,
    *overlapping(fromMs, toMs) {
      const first = Math.floor((Math.max(fromMs, world.start) - LONGEST_TRACE_MS) / TRACE_BUCKET_MS);
      const last = Math.floor(toMs / TRACE_BUCKET_MS);
      for (let b = first; b <= last; b++) yield* world.traces.bucket(b);
    },
    byId: (hex32) => world.traces.byId(hex32),
    resourceOf: world.resourceOf,
    scopeOf: (span) => service(span.service).scope,
  };
}

function b64(hex: string): string {
  return Buffer.from(hex, "hex").toString("base64");
}

/** Tempo's util.TraceIDToHexString: hex with leading zeros stripped. */
export function stripLeadingZeros(hex: string): string {
  const s = hex.replace(/^0+/, "");
  return s === "" ? "0" : s;
}

function parseIntParam(v: string | null, name: string): number | null {
  if (v === null || v === "") return null;
  if (!/^-?\d+$/.test(v))
    throw new BadRequest(`invalid ${name}: strconv.ParseInt: parsing "${v}": invalid syntax`);
  return Number(v);
}

interface LegacySearch {
  tags: [string, string][];
  minUs: number | null;
  maxUs: number | null;
}

function parseTags(v: string): [string, string][] {
  const out: [string, string][] = [];
  const re = /([^\s=]+)=("((?:[^"\\]|\\.)*)"|\S+)/g;
  for (const m of v.matchAll(re)) out.push([m[1], m[3] !== undefined ? m[3] : m[2]]);
  if (out.length === 0 && v.trim() !== "") throw new BadRequest(`invalid tags: ${v}`);
  return out;
}

export class TempoApi {
  readonly name = "tempo" as const;
  /** False: answer as an older Tempo without the /api/v2/traces route. */
  v2 = true;

  constructor(private readonly store: TraceStore) {}

  handle(req: ApiRequest): ApiResponse | null {
    const { path } = req;
    if (path === "/api/echo") return { status: 200, type: "text/plain; charset=utf-8", body: "echo" };
    if (path === "/ready") return text(200, "ready");
    if (path === "/status/config") return text(200, this.config());
    if (!path.startsWith("/api/")) return null;
    if (req.method !== "GET") return text(405, "method not allowed");
    try {
      if (path === "/api/search") return this.search(req.params);
      const v2 = /^\/api\/v2\/traces\/([^/]+)$/.exec(path);
      if (v2 && !this.v2) return text(404, "404 page not found");
      if (v2) return this.traceById(v2[1], req, "v2");
      const v1 = /^\/api\/traces\/([^/]+)$/.exec(path);
      if (v1) return this.traceById(v1[1], req, "v1");
      if (path === "/api/status/buildinfo") {
        return json(
          200,
          JSON.stringify({
            version: "2.6.1",
            revision: "trm-forge-simulator",
            branch: "simulator",
            buildUser: "trm-forge simulate",
            buildDate: "2026-01-01T00:00:00Z",
            goVersion: "go1.23.4",
          }),
        );
      }
      if (path === "/api/search/tags") {
        return json(
          200,
          JSON.stringify({
            tagNames: [
              "http.request.method",
              "http.response.status_code",
              "http.route",
              "k8s.namespace.name",
              "k8s.pod.name",
              "service.name",
              "service.version",
            ],
          }),
        );
      }
      return null;
    } catch (err) {
      if (err instanceof BadRequest || err instanceof TraceQLError) return text(400, err.message);
      throw err;
    }
  }

  private search(p: URLSearchParams): ApiResponse {
    let start = parseIntParam(p.get("start"), "start");
    let end = parseIntParam(p.get("end"), "end");
    if ((start === null) !== (end === null))
      throw new BadRequest("invalid start/end: both or neither must be given");
    if (start !== null && end !== null) {
      if (end < start)
        throw new BadRequest(`http parameter start must be before end. received start=${start} end=${end}`);
      if (end - start > MAX_RANGE_S) {
        throw new BadRequest(
          `range specified by start and end exceeds 168h0m0s. received start=${start} end=${end}`,
        );
      }
    } else {
      // Without a range Tempo searches only what its ingesters still hold: the recent past.
      end = Math.floor(this.store.horizon() / 1000);
      start = end - 3600;
    }
    const limitParam = parseIntParam(p.get("limit"), "limit");
    if (limitParam !== null && limitParam < 0)
      throw new BadRequest(`invalid limit: must be a positive number`);
    const limit = limitParam ? limitParam : 20;
    const spssParam = parseIntParam(p.get("spss"), "spss");
    if (spssParam !== null && spssParam <= 0) throw new BadRequest("invalid spss: must be a positive number");
    const spss = spssParam ?? 3;
    if (spss > MAX_SPSS) throw new BadRequest(`spans per span set exceeds ${MAX_SPSS}. received ${spss}`);

    const q = p.get("q");
    let query: TraceQuery | null = null;
    let legacy: LegacySearch | null = null;
    if (q !== null && q.trim() !== "") query = parseTraceQL(q);
    else {
      const dur = (name: string): number | null => {
        const v = p.get(name);
        if (!v) return null;
        const ms = parseGoDuration(v);
        if (ms === null) throw new BadRequest(`invalid ${name}: time: invalid duration "${v}"`);
        return ms * 1000;
      };
      legacy = { tags: parseTags(p.get("tags") ?? ""), minUs: dur("minDuration"), maxUs: dur("maxDuration") };
    }

    const fromMs = start * 1000;
    const toMs = Math.min(end * 1000 + 999, this.store.horizon());
    const found: { trace: SimTrace; spans: SimSpan[] | null }[] = [];
    let inspected = 0;
    let bytes = 0;
    if (toMs >= Math.max(fromMs, this.store.start)) {
      for (const t of this.store.overlapping(fromMs, toMs)) {
        // A trace is found when it overlaps the range and has started by the simulated "now".
        if (t.startUs > toMs * 1000 || t.endUs < fromMs * 1000) continue;
        inspected++;
        bytes += 180 * t.spans.length;
        if (query) {
          const spans = matchTrace(query, t, (s) => this.store.resourceOf(s));
          if (spans) found.push({ trace: t, spans });
        } else if (legacy && this.legacyMatch(legacy, t)) found.push({ trace: t, spans: null });
      }
    }
    found.sort((a, b) => b.trace.startUs - a.trace.startUs || (a.trace.traceId < b.trace.traceId ? -1 : 1));
    const shown = found.slice(0, limit);
    const refs = query ? referencedAttributes(query) : [];
    const traces = shown.map(({ trace, spans }) => {
      const meta: Record<string, unknown> = {
        traceID: stripLeadingZeros(trace.traceId),
        rootServiceName: trace.rootService,
        rootTraceName: trace.rootName,
        startTimeUnixNano: `${trace.startUs}000`,
      };
      const durationMs = Math.floor((trace.endUs - trace.startUs) / 1000);
      if (durationMs > 0) meta.durationMs = durationMs;
      if (spans) {
        const set = {
          spans: spans.slice(0, spss).map((s) => {
            const attributes = this.shownAttributes(s, refs);
            return {
              spanID: s.spanId,
              startTimeUnixNano: `${s.startUs}000`,
              durationNanos: `${s.durUs}000`,
              ...(attributes.length ? { attributes } : {}),
            };
          }),
          matched: spans.length,
        };
        meta.spanSet = set;
        meta.spanSets = [set];
      }
      return meta;
    });
    const blocks = Math.max(1, Math.ceil((end - start) / 3600));
    return json(
      200,
      JSON.stringify({
        traces,
        metrics: {
          inspectedTraces: inspected,
          inspectedBytes: String(bytes),
          totalBlocks: blocks,
          completedJobs: blocks,
          totalJobs: blocks,
        },
      }),
    );
  }

  private shownAttributes(s: SimSpan, refs: { name: string; scope: string }[]): Attr[] {
    const out: Attr[] = [];
    for (const r of refs) {
      if (r.name === "status") {
        out.push({ key: "status", value: { stringValue: s.status } });
        continue;
      }
      const own = r.scope !== "resource" ? s.attrs.find((a) => a.key === r.name) : undefined;
      if (own) out.push(own);
      else if (r.scope !== "span") {
        const v = this.store.resourceOf(s)[r.name];
        if (v !== undefined) out.push({ key: r.name, value: { stringValue: v } });
      }
    }
    return out;
  }

  private legacyMatch(q: LegacySearch, t: SimTrace): boolean {
    const dur = t.endUs - t.startUs;
    if (q.minUs !== null && dur < q.minUs) return false;
    if (q.maxUs !== null && dur > q.maxUs) return false;
    return q.tags.every(([k, v]) =>
      t.spans.some((s) => {
        const needle = v.toLowerCase();
        const own = s.attrs.find((a) => a.key === k);
        const value = own ? JSON.stringify(Object.values(own.value)[0]) : this.store.resourceOf(s)[k];
        if (k === "name") return s.name.toLowerCase().includes(needle);
        return value?.toLowerCase().includes(needle) === true;
      }),
    );
  }

  private traceById(idText: string, req: ApiRequest, version: "v1" | "v2"): ApiResponse {
    if (!/^[0-9a-fA-F]{1,32}$/.test(idText)) throw new BadRequest(`invalid trace id: ${idText}`);
    const accept = req.headers.accept ?? "";
    if (accept.includes("application/protobuf") && !accept.includes("json")) {
      return text(406, "the trm-forge simulator answers trace lookups in JSON only");
    }
    const hex = idText.toLowerCase().padStart(32, "0");
    const trace = this.store.byId(hex);
    const notFound = text(404, `Unable to find ${hex}`);
    if (!trace || trace.startUs / 1000 > this.store.horizon() || trace.startUs / 1000 < this.store.start)
      return notFound;
    const start = parseIntParam(req.params.get("start"), "start");
    const end = parseIntParam(req.params.get("end"), "end");
    if (start !== null && trace.endUs < start * 1e6) return notFound;
    if (end !== null && trace.startUs > (end + 1) * 1e6) return notFound;
    const resourceSpans = this.otlp(trace);
    if (version === "v1") return json(200, JSON.stringify({ batches: resourceSpans }));
    return json(
      200,
      JSON.stringify({
        trace: { resourceSpans },
        metrics: { inspectedBytes: String(180 * trace.spans.length) },
        ...(this.store.partial?.(trace)
          ? { status: "PARTIAL", message: "some blocks were not searched" }
          : {}),
      }),
    );
  }

  /** The trace as OTLP resourceSpans, one per reporting process, as Tempo's jsonpb marshals it. */
  private otlp(trace: SimTrace) {
    const groups = new Map<string, SimSpan[]>();
    for (const s of trace.spans) {
      const key = `${s.service}\u0000${s.pod}`;
      let g = groups.get(key);
      if (!g) {
        g = [];
        groups.set(key, g);
      }
      g.push(s);
    }
    const traceId = b64(trace.traceId);
    return [...groups.values()].map((spans) => {
      const res = this.store.resourceOf(spans[0]);
      const scope = this.store.scopeOf(spans[0]);
      return {
        resource: { attributes: Object.entries(res).map(([key, v]) => ({ key, value: { stringValue: v } })) },
        scopeSpans: [
          {
            scope: { name: scope.name, version: scope.version },
            spans: spans.map((s) => ({
              traceId,
              spanId: b64(s.spanId),
              ...(s.parentId ? { parentSpanId: b64(s.parentId) } : {}),
              name: s.name,
              ...(s.kind ? { kind: s.kind } : {}),
              startTimeUnixNano: `${s.startUs}000`,
              endTimeUnixNano: `${s.startUs + s.durUs}000`,
              ...(s.attrs.length ? { attributes: s.attrs } : {}),
              ...(s.events.length
                ? {
                    events: s.events.map((e) => ({
                      timeUnixNano: `${e.timeUs}000`,
                      name: e.name,
                      ...(e.attrs.length ? { attributes: e.attrs } : {}),
                    })),
                  }
                : {}),
              status:
                s.status === "error"
                  ? { code: "STATUS_CODE_ERROR", ...(s.message ? { message: s.message } : {}) }
                  : s.status === "ok"
                    ? { code: "STATUS_CODE_OK" }
                    : {},
            })),
          },
        ],
      };
    });
  }

  private config(): string {
    return [
      "# trm-forge simulator: the limits it enforces, as Tempo's /status/config shows them",
      "query_frontend:",
      "    search:",
      `        max_duration: ${goDuration(MAX_RANGE_S * 1000)}`,
      "        default_result_limit: 20",
      "        max_spans_per_span_set: 100",
      "compactor:",
      "    compaction:",
      `        block_retention: ${goDuration(this.store.retentionMs)}`,
      "",
    ].join("\n");
  }
}
