// Loki's HTTP API as the simulator serves it: query_range over log streams with Loki's limit,
// direction and time rules (start inclusive, end exclusive, nanoseconds), a total order that
// keeps pagination stable across equal timestamps, plain-text errors, and the label and status
// endpoints a client reads to learn what is there and how far back it goes.

import { SERVICES } from "./homelab.js";
import { type ApiRequest, type ApiResponse, goDuration, json, modelDuration, text } from "./http.js";
import { applyPipeline, LogQLError, type LogQuery, matchesStream, parseLogQL } from "./logql.js";
import { HOUR_MS, type LogEntry } from "./logs.js";
import type { Labels } from "./metrics.js";
import { labelsKey } from "./promql.js";
import type { World } from "./world.js";

export const MAX_ENTRIES = 5000;
const MAX_QUERY_LENGTH_MS = 721 * HOUR_MS;

/** A log entry as the API serves it. */
export type ServedLog = Pick<LogEntry, "ms" | "subNs" | "ts" | "labels" | "line">;

/** What a Loki API serves: the simulated homelab (`worldLogs`), or entries a test or bench gives it. */
export interface LogStore {
  /** No entry is older than this, unix ms. */
  readonly start: number;
  /** No entry is newer than this (the real clock for a live world). */
  horizon(): number;
  /** The entries of hour `h` (unix ms / HOUR_MS) whose streams may match the query, any order. */
  hour(h: number, query: LogQuery): Iterable<ServedLog>;
  labelNames(): string[];
  labelValues(name: string, startMs: number, endMs: number): string[];
  /** Shown as retention_period on /config. */
  readonly retentionMs: number;
}

const fixedLabels = (svc: (typeof SERVICES)[number]): Labels => ({
  app: svc.name,
  container: svc.container,
  namespace: svc.namespace,
  service_name: svc.name,
});

/** The simulated homelab's logs as a Loki store. */
export function worldLogs(world: World): LogStore {
  return {
    start: world.start,
    horizon: () => world.horizon(),
    retentionMs: Math.ceil(world.days) * 86_400_000,
    *hour(h, query) {
      // The matchers on labels a whole service shares decide whether its streams can match at all.
      for (const svc of SERVICES) {
        const probe = fixedLabels(svc);
        if (!matchesStream({ matchers: query.matchers.filter((m) => m.name in probe), stages: [] }, probe))
          continue;
        yield* world.logs.bucket(svc.name, h);
      }
    },
    labelNames: () => ["app", "container", "namespace", "pod", "service_name"],
    labelValues(name, startMs, endMs) {
      const values = new Set<string>();
      for (const s of SERVICES) {
        const fixed = fixedLabels(s);
        if (name === "pod") {
          for (const pod of world.tl.pods(s.name))
            if (pod.from < endMs && pod.to > startMs) values.add(pod.name);
        } else if (fixed[name] !== undefined) values.add(fixed[name]);
      }
      return [...values].sort();
    },
  };
}

class BadRequest extends Error {}

/** A point in time to the nanosecond: unix ms plus nanoseconds within the ms. */
interface Ns {
  ms: number;
  sub: number;
}

/** A Loki time parameter: integer nanoseconds (seconds when 10 digits or fewer), float seconds, or RFC 3339. */
export function parseLokiTime(value: string, param: string): Ns {
  if (value.includes(".") && /^\d+\.\d*$/.test(value)) {
    const f = Number(value);
    const s = Math.trunc(f);
    return { ms: s * 1000 + Math.round((f - s) * 1000), sub: 0 };
  }
  if (/^-?\d+$/.test(value)) {
    const n = BigInt(value);
    const ns = value.replace("-", "").length <= 10 ? n * 1_000_000_000n : n;
    return { ms: Number(ns / 1_000_000n), sub: Number(ns % 1_000_000n) };
  }
  const m = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$/.exec(value);
  if (m) {
    const base = Date.parse(`${m[1]}${m[4]}`);
    const frac = (m[3] ?? "").padEnd(9, "0");
    return { ms: base + Number(frac.slice(0, 3)), sub: Number(frac.slice(3)) };
  }
  throw new BadRequest(`invalid ${param} parameter: cannot parse "${value}" as a timestamp`);
}

function cmpNs(a: Ns, b: Ns): number {
  return a.ms - b.ms || a.sub - b.sub;
}

interface Hit {
  e: ServedLog;
  labels: Labels;
  key: string;
}

/** Loki's total order for one direction: time, then stream, then line. */
function order(forward: boolean) {
  return (a: Hit, b: Hit): number => {
    const c =
      a.e.ms - b.e.ms ||
      a.e.subNs - b.e.subNs ||
      (a.key < b.key ? -1 : a.key > b.key ? 1 : 0) ||
      (a.e.line < b.e.line ? -1 : a.e.line > b.e.line ? 1 : 0);
    return forward ? c : -c;
  };
}

export class LokiApi {
  readonly name = "loki" as const;
  /** Loki's max_entries_limit_per_query; a test may lower it. */
  maxEntries = MAX_ENTRIES;

  constructor(private readonly store: LogStore) {}

  handle(req: ApiRequest): ApiResponse | null {
    const { path } = req;
    if (path === "/config") return text(200, this.config());
    if (!path.startsWith("/loki/api/v1/")) return null;
    if (req.method !== "GET" && req.method !== "POST") return text(405, "method not allowed");
    try {
      if (path === "/loki/api/v1/query_range") return this.queryRange(req.params);
      if (path === "/loki/api/v1/query") return this.instant(req.params);
      if (path === "/loki/api/v1/labels") return this.ok(this.labelNames());
      const lv = /^\/loki\/api\/v1\/label\/([^/]+)\/values$/.exec(path);
      if (lv) return this.ok(this.labelValues(decodeURIComponent(lv[1]), req.params));
      if (path === "/loki/api/v1/status/buildinfo") {
        return json(
          200,
          JSON.stringify({
            version: "3.3.2",
            revision: "trm-forge-simulator",
            branch: "simulator",
            buildUser: "trm-forge simulate",
            buildDate: "2026-01-01T00:00:00Z",
            goVersion: "go1.23.4",
          }),
        );
      }
      return text(404, "404 page not found");
    } catch (err) {
      if (err instanceof BadRequest || err instanceof LogQLError) return text(400, err.message);
      throw err;
    }
  }

  private ok(data: unknown): ApiResponse {
    return json(200, JSON.stringify({ status: "success", data }));
  }

  private window(p: URLSearchParams): { start: Ns; end: Ns } {
    const now = Date.now();
    const end = p.get("end") ? parseLokiTime(p.get("end")!, "end") : { ms: now, sub: 0 };
    let start: Ns;
    if (p.get("start")) start = parseLokiTime(p.get("start")!, "start");
    else if (p.get("since")) {
      const since = /^(\d+)(ms|s|m|h|d)$/.exec(p.get("since")!);
      if (!since) throw new BadRequest(`invalid since parameter: ${p.get("since")}`);
      const mult: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: HOUR_MS, d: 86_400_000 };
      start = { ms: end.ms - Number(since[1]) * mult[since[2]], sub: end.sub };
    } else start = { ms: end.ms - HOUR_MS, sub: end.sub };
    return { start, end };
  }

  private queryRange(p: URLSearchParams): ApiResponse {
    const limitText = p.get("limit") ?? "100";
    if (!/^\d+$/.test(limitText))
      throw new BadRequest(
        `invalid limit parameter: strconv.ParseInt: parsing "${limitText}": invalid syntax`,
      );
    const limit = Number(limitText);
    if (limit <= 0) throw new BadRequest("limit must be a positive value");
    const dirText = (p.get("direction") ?? "backward").toLowerCase();
    if (dirText !== "forward" && dirText !== "backward")
      throw new BadRequest(`invalid direction "${p.get("direction")}"`);
    const { start, end } = this.window(p);
    if (cmpNs(end, start) <= 0)
      throw new BadRequest("end timestamp must not be before or equal to start time");
    const query = parseLogQL(p.get("query") ?? "");
    if (limit > this.maxEntries) {
      throw new BadRequest(
        `max entries limit per query exceeded, limit > max_entries_limit (${limit} > ${this.maxEntries})`,
      );
    }
    const span = end.ms - start.ms;
    if (span > MAX_QUERY_LENGTH_MS) {
      throw new BadRequest(
        // Loki prints the length as a Go time.Duration and the limit as a Prometheus model.Duration.
        `the query time range exceeds the limit (query length: ${goDuration(span)}, limit: ${modelDuration(MAX_QUERY_LENGTH_MS)})`,
      );
    }
    const t0 = Date.now();
    const forward = dirText === "forward";
    const { hits, scanned, bytes } = this.select(query, start, end, limit, forward);
    hits.sort(order(forward));
    const page = hits.slice(0, limit);
    const streams = new Map<string, { labels: Labels; values: string[] }>();
    for (const h of page) {
      let s = streams.get(h.key);
      if (!s) {
        s = { labels: h.labels, values: [] };
        streams.set(h.key, s);
      }
      s.values.push(`[${JSON.stringify(h.e.ts)},${JSON.stringify(h.e.line)}]`);
    }
    const result = [...streams.values()].map(
      (s) => `{"stream":${JSON.stringify(s.labels)},"values":[${s.values.join(",")}]}`,
    );
    const stats = this.stats(scanned, bytes, page.length, (Date.now() - t0) / 1000);
    return json(
      200,
      `{"status":"success","data":{"resultType":"streams","result":[${result.join(",")}],"stats":${JSON.stringify(stats)}}}`,
    );
  }

  /**
   * The entries in [start, end) that the selector and pipeline keep, hour by hour in the query's
   * direction, stopping after the hour in which `limit` was reached: later hours can only hold
   * entries that sort after those.
   */
  private select(
    query: LogQuery,
    start: Ns,
    end: Ns,
    limit: number,
    forward: boolean,
  ): { hits: Hit[]; scanned: number; bytes: number } {
    const w = this.store;
    const lo: Ns = cmpNs(start, { ms: w.start, sub: 0 }) < 0 ? { ms: w.start, sub: 0 } : start;
    const horizon = w.horizon();
    const hi: Ns = cmpNs(end, { ms: horizon + 1, sub: 0 }) > 0 ? { ms: horizon + 1, sub: 0 } : end;
    const hits: Hit[] = [];
    let scanned = 0;
    let bytes = 0;
    if (cmpNs(hi, lo) <= 0) return { hits, scanned, bytes };
    const keyCache = new Map<Labels, string>();
    const first = Math.floor(lo.ms / HOUR_MS);
    const last = Math.floor((hi.ms - 1) / HOUR_MS);
    for (let k = 0; k <= last - first && hits.length < limit; k++) {
      const h = forward ? first + k : last - k;
      for (const e of w.hour(h, query)) {
        const t = { ms: e.ms, sub: e.subNs };
        if (cmpNs(t, lo) < 0 || cmpNs(t, hi) >= 0) continue;
        if (!matchesStream(query, e.labels)) continue;
        scanned++;
        bytes += e.line.length;
        const labels = applyPipeline(query, e.labels, e.line);
        if (!labels) continue;
        let key = keyCache.get(labels);
        if (key === undefined) {
          key = labelsKey(labels);
          keyCache.set(labels, key);
        }
        hits.push({ e, labels, key });
      }
    }
    return { hits, scanned, bytes };
  }

  private instant(p: URLSearchParams): ApiResponse {
    const q = p.get("query") ?? "";
    parseLogQL(q);
    throw new BadRequest(
      "log queries are not supported as an instant query type, please change your query to a range query type",
    );
  }

  private labelNames(): string[] {
    return this.store.labelNames();
  }

  private labelValues(name: string, p: URLSearchParams): string[] {
    const { start, end } = this.window(p);
    return this.store.labelValues(name, start.ms, end.ms);
  }

  private stats(lines: number, bytes: number, returned: number, execS: number) {
    const store = {
      totalChunksRef: 0,
      totalChunksDownloaded: 0,
      chunksDownloadTime: 0,
      queryReferencedStructuredMetadata: false,
      chunk: {
        headChunkBytes: 0,
        headChunkLines: 0,
        decompressedBytes: bytes,
        decompressedLines: lines,
        compressedBytes: Math.round(bytes / 6),
        totalDuplicates: 0,
        postFilterLines: returned,
        headChunkStructuredMetadataBytes: 0,
        decompressedStructuredMetadataBytes: 0,
      },
      chunkRefsFetchTime: 0,
      congestionControlLatency: 0,
      pipelineWrapperFilteredLines: 0,
    };
    const cache = {
      entriesFound: 0,
      entriesRequested: 0,
      entriesStored: 0,
      bytesReceived: 0,
      bytesSent: 0,
      requests: 0,
      downloadTime: 0,
      queryLengthServed: 0,
    };
    return {
      summary: {
        bytesProcessedPerSecond: execS > 0 ? Math.round(bytes / execS) : bytes,
        linesProcessedPerSecond: execS > 0 ? Math.round(lines / execS) : lines,
        totalBytesProcessed: bytes,
        totalLinesProcessed: lines,
        execTime: execS,
        queueTime: 0,
        subqueries: 0,
        totalEntriesReturned: returned,
        splits: 0,
        shards: 0,
        totalPostFilterLines: returned,
        totalChunksMatched: 0,
        totalStructuredMetadataBytesProcessed: 0,
      },
      querier: { store },
      ingester: { totalReached: 1, totalChunksMatched: 0, totalBatches: 1, totalLinesSent: returned, store },
      cache: {
        chunk: cache,
        index: cache,
        result: cache,
        statsResult: cache,
        volumeResult: cache,
        seriesResult: cache,
        labelResult: cache,
        instantMetricResult: cache,
      },
    };
  }

  private config(): string {
    return [
      "# trm-forge simulator: the limits it enforces, as Loki's /config shows them",
      "auth_enabled: false",
      "limits_config:",
      `    max_entries_limit_per_query: ${this.maxEntries}`,
      "    max_query_length: 721h",
      "    max_query_lookback: 0s",
      `    retention_period: ${modelDuration(this.store.retentionMs)}`,
      "    query_timeout: 1m",
      "",
    ].join("\n");
  }
}
