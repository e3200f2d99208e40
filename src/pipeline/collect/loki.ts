// Loki: /loki/api/v1/query_range, paginated the way logcli does it, but forward (oldest first) so
// that a run stopped by the cap or a crash resumes exactly where it stopped. Each page asks for at
// most batch_size (≤ 5000) entries; the next page starts at the newest timestamp of the last one
// (start is inclusive), and the entries already stored at that timestamp are dropped when they
// come back. Times are nanoseconds, kept as decimal strings end to end.
import { createHash } from "node:crypto";
import * as z from "zod";
import type { LokiSourceConfig } from "../../config/schema.js";
import { UNIT_MS } from "../../util/duration.js";
import {
  type CollectContext,
  expandNamespaces,
  httpClient,
  mapLimit,
  runQuery,
  segmentFull,
} from "./context.js";
import { bodyExcerpt, type HttpSourceClient, type QueryClient } from "./http.js";
import { dayOf } from "./raw-store.js";
import type { LogEntryRecord } from "./records.js";
import { Redactor } from "./redact.js";
import { bumpSkipped, Coverage, iso, type QueryReport } from "./report.js";
import { commitSegment, readWatermark } from "./watermarks.js";

export const LOKI_MAX_BATCH = 5000;
const NS_PER_MS = 1_000_000n;
const DAY_NS = 86_400_000n * NS_PER_MS;

const Watermark = z.object({
  version: z.literal(1),
  ts_ns: z.string().regex(/^\d{1,20}$/),
  /** Hashes of the entries at ts_ns already stored (never the lines themselves). */
  boundary: z.array(z.string()),
  logql: z.string(),
});
type Watermark = z.infer<typeof Watermark>;

interface Entry {
  ts: string;
  /** ts left-padded to 20 digits: compares as a string. */
  key: string;
  stream: number;
  line: string;
  meta?: Record<string, string>;
}

interface Page {
  entries: Entry[];
  streams: Record<string, string>[];
}

const pad = (ts: string) => ts.padStart(20, "0");
const nsToMs = (ns: bigint) => Number(ns / NS_PER_MS);

/** The config's units, and the ones Go and Prometheus print besides. */
const GO_UNIT_MS: Record<string, number> = { ...UNIT_MS, y: 365 * 86400e3, us: 1e-3, µs: 1e-3, ns: 1e-6 };

/**
 * "721h0m0s", "1h30m", "90s" (Go durations) and "30d1h", "1w" (Prometheus durations, which Loki
 * uses to print its limits) in ms; null when unreadable. Two-letter units come first in the
 * alternation so "100ms" is not read as 100 minutes and a stray "s".
 */
export function parseGoDuration(s: string): number | null {
  let ms = 0;
  let matched = "";
  for (const m of s.matchAll(/(\d+(?:\.\d+)?)(ms|us|µs|ns|y|w|d|h|m|s)/g)) {
    ms += Number(m[1]) * GO_UNIT_MS[m[2]]!;
    matched += m[0];
  }
  return matched && matched === s.trim() ? ms : null;
}

export async function collectLoki(ctx: CollectContext, cfg: LokiSourceConfig): Promise<QueryReport[]> {
  const client = httpClient(ctx, "loki", cfg, ctx.settings.concurrency);
  try {
    return await mapLimit(cfg.queries, ctx.settings.concurrency, (q, i) =>
      runQuery(ctx, "loki", q.name, client, (report, http) => {
        const logql = expandNamespaces(
          q.logql,
          ctx.agentConfig.namespaces,
          `agents.${ctx.agent}.sources.loki.queries.${i}.logql`,
        );
        return collectQuery(ctx, cfg, q.name, logql, http!, report);
      }),
    );
  } finally {
    client.close();
  }
}

async function collectQuery(
  ctx: CollectContext,
  cfg: LokiSourceConfig,
  name: string,
  logql: string,
  http: QueryClient,
  report: QueryReport,
): Promise<void> {
  const wm = await readWatermark(ctx.store, ctx.agent, "loki", name, Watermark);
  const endNs = BigInt(ctx.now - ctx.settleMs) * NS_PER_MS;
  let cursor = wm ? BigInt(wm.ts_ns) : BigInt(ctx.firstStart) * NS_PER_MS;
  let boundary = new Set(wm?.boundary ?? []);
  report.window = { start: iso(nsToMs(cursor)), end: iso(nsToMs(endNs > cursor ? endNs : cursor)) };
  const coverage = new Coverage(nsToMs(cursor), ctx.gapMinMs);
  const redactor = new Redactor();
  report.redactions = redactor.counts;
  const labelCache = new Map<string, Record<string, string>>();
  let batch = cfg.batch_size;
  let windowNs = DAY_NS;
  let collected = 0;

  let buffer: LogEntryRecord[] = [];
  let bufferBytes = 0;
  let segName = `${name}-${cursor}-${boundary.size}`;
  let segDay = dayOf(nsToMs(cursor));
  const commit = async () => {
    const state: Watermark = { version: 1, ts_ns: cursor.toString(), boundary: [...boundary], logql };
    await commitSegment(ctx.store, ctx.agent, "loki", name, segDay, segName, buffer, state, report);
    buffer = [];
    bufferBytes = 0;
    segName = `${name}-${cursor}-${boundary.size}`;
    segDay = dayOf(nsToMs(cursor));
  };

  while (cursor < endNs) {
    // One day at a time: segments live under their day, and Loki caps the range of one query.
    const dayEnd = (cursor / DAY_NS + 1n) * DAY_NS;
    const dayStop = dayEnd < endNs ? dayEnd : endNs;
    let stop = cursor + windowNs < dayStop ? cursor + windowNs : dayStop;
    for (;;) {
      if (ctx.signal.aborted) throw http.error("cancelled", "cancelled");
      const limit = Math.min(batch, cfg.max_entries - collected);
      const res = await fetchPage(http, logql, cursor, stop, limit);
      if ("retry" in res) {
        if (res.retry.batch) {
          report.warnings.push(
            `server allows ${res.retry.batch} entries per request; batch size lowered from ${batch}`,
          );
          batch = res.retry.batch;
        }
        if (res.retry.windowNs) {
          windowNs = res.retry.windowNs;
          stop = cursor + windowNs < dayStop ? cursor + windowNs : dayStop;
          report.warnings.push(
            `server allows queries of ${Number(windowNs / NS_PER_MS) / 1000}s; windows shortened`,
          );
        }
        continue;
      }
      const { entries, streams } = res;
      // Per page, not per entry: window bounds as sortable strings, and each stream's labels redacted once.
      const cursorKey = pad(cursor.toString());
      const stopKey = pad(stop.toString());
      const labelsOf = streams.map((l) => redactedLabels(l, labelCache, redactor));
      let fresh = 0;
      for (const e of entries) {
        if (e.key < cursorKey || e.key >= stopKey) {
          bumpSkipped(report, "outside_window");
          continue;
        }
        if (e.key === cursorKey && boundary.has(entryId(streams[e.stream], e.line))) {
          bumpSkipped(report, "duplicates");
          continue;
        }
        fresh++;
        const rec: LogEntryRecord = {
          kind: "log_entry",
          query: name,
          ts_ns: e.ts,
          labels: labelsOf[e.stream],
          line: redactor.redact(e.line),
        };
        if (e.meta) rec.metadata = redactor.redactMap(e.meta);
        buffer.push(rec);
        bufferBytes += rec.line.length + 160;
        coverage.add(Number(e.key.slice(0, 14)));
      }
      collected += fresh;
      if (entries.length < limit) {
        // The window is exhausted: everything before `stop` is stored.
        cursor = stop;
        boundary = new Set();
        if (collected >= cfg.max_entries) break;
        if (stop >= dayStop) break;
        stop = cursor + windowNs < dayStop ? cursor + windowNs : dayStop;
        continue;
      }
      const newest = BigInt(entries[entries.length - 1].ts);
      if (newest < cursor)
        throw http.error(
          "malformed",
          `a full page ended before the requested start ${cursor}: the server ignored start`,
        );
      const newestKey = entries[entries.length - 1].key;
      const atNewest = new Set(
        entries.filter((e) => e.key === newestKey).map((e) => entryId(streams[e.stream], e.line)),
      );
      if (newest === cursor && fresh === 0) {
        // A whole page of one timestamp, all seen: a bigger page is the only way forward.
        if (batch < LOKI_MAX_BATCH && cfg.max_entries - collected > limit) {
          batch = Math.min(LOKI_MAX_BATCH, batch * 2);
          continue;
        }
        report.warnings.push(
          `more than ${limit} entries share timestamp ${cursor}; the rest of that nanosecond was skipped`,
        );
        cursor += 1n;
        boundary = new Set();
        continue;
      }
      boundary = newest === cursor ? new Set([...boundary, ...atNewest]) : atNewest;
      cursor = newest;
      if (collected >= cfg.max_entries) break;
      if (segmentFull(ctx, buffer.length, bufferBytes)) await commit();
    }
    if (collected >= cfg.max_entries) {
      report.caps_hit.push(
        `max_entries ${cfg.max_entries}: stopped at ${iso(nsToMs(cursor))}; the next run continues from there`,
      );
      report.status = "partial";
      await commit();
      break;
    }
    await commit();
  }
  coverage.finish(report, nsToMs(cursor > endNs ? cursor : endNs));
}

function entryId(labels: Record<string, string>, line: string): string {
  return createHash("sha256").update(labelsKey(labels)).update("\0").update(line).digest("hex").slice(0, 24);
}

function labelsKey(labels: Record<string, string>): string {
  return JSON.stringify(
    Object.keys(labels)
      .sort()
      .map((k) => [k, labels[k]]),
  );
}

function redactedLabels(
  labels: Record<string, string>,
  cache: Map<string, Record<string, string>>,
  redactor: Redactor,
): Record<string, string> {
  const key = labelsKey(labels);
  let r = cache.get(key);
  if (!r) {
    r = redactor.redactMap(labels);
    if (cache.size > 10_000) cache.clear();
    cache.set(key, r);
  }
  return r;
}

type PageResult = Page | { retry: { batch?: number; windowNs?: bigint } };

async function fetchPage(
  http: QueryClient,
  logql: string,
  start: bigint,
  end: bigint,
  limit: number,
): Promise<PageResult> {
  const res = await http.get("loki/api/v1/query_range", {
    query: logql,
    start: start.toString(),
    end: end.toString(),
    limit,
    direction: "forward",
  });
  const text = res.body.toString("utf8");
  if (res.status >= 400) {
    // Loki answers limit errors in plain text; two of them say how to ask instead.
    const entries = /max entries limit.*\((\d+) > (\d+)\)/.exec(text);
    if (res.status === 400 && entries && Number(entries[2]) > 0 && Number(entries[2]) < limit)
      return { retry: { batch: Number(entries[2]) } };
    const length = /query time range exceeds the limit \(query length: [^,]+, limit: ([^)]+)\)/.exec(text);
    const limitMs = length ? parseGoDuration(length[1]) : null;
    if (res.status === 400 && limitMs && BigInt(Math.floor(limitMs)) * NS_PER_MS < end - start)
      return { retry: { windowNs: BigInt(Math.floor(limitMs * 0.99)) * NS_PER_MS } };
    throw http.error("http", `HTTP ${res.status}: ${bodyExcerpt(res)}`, res.status);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw http.error(
      "malformed",
      `response is not valid JSON (${(err as Error).message}); it began: ${bodyExcerpt(res)}`,
      res.status,
    );
  }
  return parseStreams(json, (detail) => http.error("malformed", detail, res.status));
}

/** Checks the streams response by hand (it is the hot path) and flattens it in time order. */
export function parseStreams(json: unknown, bad: (detail: string) => Error): Page {
  const j = json as { status?: unknown; data?: { resultType?: unknown; result?: unknown } } | null;
  if (!j || typeof j !== "object" || j.status !== "success" || !j.data || typeof j.data !== "object")
    throw bad(
      `unexpected response: expected {"status":"success","data":{...}}, got ${JSON.stringify(json).slice(0, 120)}`,
    );
  if (j.data.resultType !== "streams")
    throw bad(
      `expected resultType "streams", got ${JSON.stringify(j.data.resultType)} (a metric query? use a log query)`,
    );
  if (!Array.isArray(j.data.result)) throw bad("unexpected response: data.result is not an array");
  const streams: Record<string, string>[] = [];
  const entries: Entry[] = [];
  j.data.result.forEach((s: unknown, si: number) => {
    const st = s as { stream?: unknown; values?: unknown };
    if (!st || typeof st.stream !== "object" || st.stream === null || !Array.isArray(st.values))
      throw bad(`unexpected stream at data.result.${si}: needs "stream" and "values"`);
    for (const v of Object.values(st.stream))
      if (typeof v !== "string") throw bad(`non-string label at data.result.${si}.stream`);
    streams.push(st.stream as Record<string, string>);
    st.values.forEach((v: unknown, vi: number) => {
      if (
        !Array.isArray(v) ||
        typeof v[0] !== "string" ||
        !/^\d{1,20}$/.test(v[0]) ||
        typeof v[1] !== "string"
      )
        throw bad(`unexpected entry at data.result.${si}.values.${vi}: ${JSON.stringify(v).slice(0, 80)}`);
      const e: Entry = { ts: v[0], key: pad(v[0]), stream: si, line: v[1] };
      if (v.length > 2 && v[2] && typeof v[2] === "object") {
        const meta = flattenMetadata(v[2] as Record<string, unknown>);
        if (meta) e.meta = meta;
      }
      entries.push(e);
    });
  });
  // Time order; ties by stream labels, then line, so that pages sort the same on every run.
  const streamKeys = streams.map(labelsKey);
  const cmp = (x: string, y: string) => (x < y ? -1 : x > y ? 1 : 0);
  entries.sort(
    (a, b) =>
      cmp(a.key, b.key) ||
      (a.stream === b.stream ? 0 : cmp(streamKeys[a.stream], streamKeys[b.stream])) ||
      cmp(a.line, b.line),
  );
  return { entries, streams };
}

/** Structured metadata: a flat map, or {structuredMetadata, parsed} with categorize-labels. */
function flattenMetadata(m: Record<string, unknown>): Record<string, string> | undefined {
  const out: Record<string, string> = {};
  const take = (o: unknown) => {
    if (!o || typeof o !== "object") return;
    for (const [k, v] of Object.entries(o)) if (typeof v === "string") out[k] = v;
  };
  if ("structuredMetadata" in m || "parsed" in m) {
    take(m.structuredMetadata);
    take(m.parsed);
  } else take(m);
  return Object.keys(out).length ? out : undefined;
}

// ---- sources check -----------------------------------------------------------------------------

export interface LokiProbe {
  labels: number | null;
  oldest_entry: string | null;
  max_query_length: string | null;
}

/**
 * Reachability via /labels, the accepted range by asking for 31 days (a 400 names the limit), and
 * the oldest entry the first query can still reach (max_query_lookback and retention cut it).
 */
export async function probeLoki(client: HttpSourceClient, logql: string, now: number): Promise<LokiProbe> {
  const http = client.forQuery("(check)");
  const labels = await http.getJson("loki/api/v1/labels", {});
  if (labels.status === 401 || labels.status === 403)
    throw http.error("http", `HTTP ${labels.status}: not authorised`, labels.status);
  if (labels.status >= 400)
    throw http.error("http", `HTTP ${labels.status}: ${bodyExcerpt(labels.res)}`, labels.status);
  const names = (labels.json as { data?: unknown })?.data;
  let start = BigInt(now - 31 * 86400e3) * NS_PER_MS;
  const end = BigInt(now) * NS_PER_MS;
  let maxLen: string | null = null;
  for (let i = 0; i < 2; i++) {
    const r = await http.get("loki/api/v1/query_range", {
      query: logql,
      start: start.toString(),
      end: end.toString(),
      limit: 1,
      direction: "forward",
    });
    const text = r.body.toString("utf8");
    const m = /query time range exceeds the limit \(query length: [^,]+, limit: ([^)]+)\)/.exec(text);
    if (r.status === 400 && m) {
      maxLen = m[1];
      const ms = parseGoDuration(m[1]);
      if (!ms) break;
      start = end - BigInt(Math.floor(ms * 0.99)) * NS_PER_MS;
      continue;
    }
    if (r.status >= 400) throw http.error("http", `HTTP ${r.status}: ${bodyExcerpt(r)}`, r.status);
    let page: Page;
    try {
      page = parseStreams(JSON.parse(text), (d) => new Error(d));
    } catch (err) {
      throw http.error("malformed", (err as Error).message, r.status);
    }
    const first = page.entries[0];
    return {
      labels: Array.isArray(names) ? names.length : null,
      oldest_entry: first ? iso(nsToMs(BigInt(first.ts))) : null,
      max_query_length: maxLen,
    };
  }
  return { labels: Array.isArray(names) ? names.length : null, oldest_entry: null, max_query_length: maxLen };
}
