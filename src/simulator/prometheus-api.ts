// Prometheus's HTTP API as the simulator serves it: query_range and query with Prometheus's own
// parameter rules and error strings, values as strings, timestamps at start + k*step; plus the
// status endpoints a client reads to learn the version and the retention.
import type { ApiRequest, ApiResponse } from "./http.js";
import { json, text } from "./http.js";
import type { Labels } from "./metrics.js";
import {
  compareLabels,
  type EvalResult,
  type EvalSeries,
  PromQLError,
  parsePromDuration,
  parsePromQL,
} from "./promql.js";
import type { World } from "./world.js";

const MAX_POINTS = 11_000;

class BadData extends Error {}

function errorBody(type: string, message: string): string {
  return JSON.stringify({ status: "error", errorType: type, error: message });
}

function badData(message: string): ApiResponse {
  return json(400, errorBody("bad_data", message));
}

/** A Prometheus time parameter (float seconds or RFC 3339) in unix ms. */
export function parsePromTime(value: string | null, param: string): number {
  const v = value ?? "";
  if (/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(v)) {
    const f = Number(v);
    const s = Math.trunc(f);
    return s * 1000 + Math.round((f - s) * 1000);
  }
  if (/^\d{4}-\d{2}-\d{2}T/.test(v)) {
    const ms = Date.parse(v);
    if (Number.isFinite(ms)) return ms;
  }
  throw new BadData(`invalid parameter "${param}": cannot parse "${v}" to a valid timestamp`);
}

/** A Prometheus duration parameter (float seconds or 5m-style) in ms. */
export function parsePromStep(value: string | null, param: string): number {
  const v = value ?? "";
  if (/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(v)) return Math.round(Number(v) * 1000);
  const d = parsePromDuration(v);
  if (d !== null) return d;
  throw new BadData(`invalid parameter "${param}": cannot parse "${v}" to a valid duration`);
}

/** A timestamp as Prometheus writes it: seconds, then a 3-digit millisecond fraction when non-zero. */
export function formatTimestamp(ms: number): string {
  const sign = ms < 0 ? "-" : "";
  const a = Math.abs(ms);
  const frac = a % 1000;
  return `${sign}${Math.floor(a / 1000)}${frac ? `.${String(frac).padStart(3, "0")}` : ""}`;
}

/** A sample value as Go's strconv.FormatFloat(v, 'f', -1, 64) writes it: shortest, no exponent. */
export function formatSample(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Number.POSITIVE_INFINITY) return "+Inf";
  if (v === Number.NEGATIVE_INFINITY) return "-Inf";
  const s = String(v);
  const m = /^(-?)(\d)(?:\.(\d+))?e([+-]\d+)$/.exec(s);
  if (!m) return s;
  const [, sign, lead, rest = "", expText] = m;
  const digits = lead + rest;
  const exp = Number(expText);
  if (exp < 0) return `${sign}0.${"0".repeat(-exp - 1)}${digits}`;
  return `${sign}${digits}${"0".repeat(Math.max(0, exp - rest.length))}`;
}

function metricJson(l: Labels): string {
  return JSON.stringify(l);
}

function sortedSeries(r: EvalResult, times: number[]): EvalSeries[] {
  if (r.kind === "scalar")
    return [{ labels: {}, values: r.values, present: new Uint8Array(times.length).fill(1) }];
  return r.series
    .filter((s) => s.present.some((p) => p === 1))
    .sort((a, b) => compareLabels(a.labels, b.labels));
}

function limitSeries(
  series: EvalSeries[],
  limitParam: string | null,
): { series: EvalSeries[]; warnings: string[] } {
  const limit = limitParam ? Number(limitParam) : 0;
  if (limitParam && (!Number.isInteger(limit) || limit < 0)) {
    throw new BadData(`invalid parameter "limit": limit must be a positive number`);
  }
  if (limit > 0 && series.length > limit)
    return { series: series.slice(0, limit), warnings: ["results truncated due to limit"] };
  return { series, warnings: [] };
}

export class PrometheusApi {
  readonly name = "prometheus" as const;
  constructor(private readonly world: World) {}

  handle(req: ApiRequest): ApiResponse | null {
    const { path } = req;
    if (path === "/-/ready") return text(200, "Prometheus Server is Ready.\n");
    if (path === "/-/healthy") return text(200, "Prometheus Server is Healthy.\n");
    if (!path.startsWith("/api/v1/")) return null;
    if (req.method !== "GET" && req.method !== "POST")
      return json(405, errorBody("bad_data", "method not allowed"));
    try {
      if (path === "/api/v1/query_range") return this.queryRange(req.params);
      if (path === "/api/v1/query") return this.query(req.params);
      if (path === "/api/v1/labels") return this.ok(this.labelNames());
      const lv = /^\/api\/v1\/label\/([^/]+)\/values$/.exec(path);
      if (lv) return this.ok(this.labelValues(decodeURIComponent(lv[1])));
      if (path === "/api/v1/status/buildinfo") return this.ok(this.buildInfo());
      if (path === "/api/v1/status/runtimeinfo") return this.ok(this.runtimeInfo());
      if (path === "/api/v1/status/flags") return this.ok(this.flags());
      if (path === "/api/v1/status/tsdb") return this.ok(this.tsdb());
      return json(404, errorBody("not_found", `unknown API endpoint ${path}`));
    } catch (err) {
      if (err instanceof BadData) return badData(err.message);
      if (err instanceof PromQLError) return badData(`invalid parameter "query": ${err.message}`);
      throw err;
    }
  }

  private ok(data: unknown): ApiResponse {
    return json(200, JSON.stringify({ status: "success", data }));
  }

  private parse(q: string | null) {
    try {
      return parsePromQL(q ?? "");
    } catch (err) {
      if (err instanceof PromQLError) throw new BadData(`invalid parameter "query": ${err.message}`);
      throw err;
    }
  }

  private queryRange(p: URLSearchParams): ApiResponse {
    const start = parsePromTime(p.get("start"), "start");
    const end = parsePromTime(p.get("end"), "end");
    if (end < start)
      throw new BadData('invalid parameter "end": end timestamp must not be before start time');
    const step = parsePromStep(p.get("step"), "step");
    if (step <= 0) {
      throw new BadData(
        'invalid parameter "step": zero or negative query resolution step widths are not accepted. Try a positive integer',
      );
    }
    if (Math.floor((end - start) / step) > MAX_POINTS) {
      throw new BadData(
        "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
      );
    }
    const node = this.parse(p.get("query"));
    const times: number[] = [];
    for (let t = start; t <= end; t += step) times.push(t);
    const { series, warnings } = limitSeries(
      sortedSeries(this.world.promql.eval(node, times), times),
      p.get("limit"),
    );
    const parts: string[] = [];
    for (const s of series) {
      const pts: string[] = [];
      for (let i = 0; i < times.length; i++) {
        if (s.present[i]) pts.push(`[${formatTimestamp(times[i])},"${formatSample(s.values[i])}"]`);
      }
      parts.push(`{"metric":${metricJson(s.labels)},"values":[${pts.join(",")}]}`);
    }
    const warn = warnings.length ? `,"warnings":${JSON.stringify(warnings)}` : "";
    return json(
      200,
      `{"status":"success","data":{"resultType":"matrix","result":[${parts.join(",")}]}${warn}}`,
    );
  }

  private query(p: URLSearchParams): ApiResponse {
    const t = p.get("time") ? parsePromTime(p.get("time"), "time") : Date.now();
    const node = this.parse(p.get("query"));
    const r = this.world.promql.eval(node, [t]);
    if (r.kind === "scalar") {
      return json(
        200,
        `{"status":"success","data":{"resultType":"scalar","result":[${formatTimestamp(t)},"${formatSample(r.values[0])}"]}}`,
      );
    }
    const { series, warnings } = limitSeries(sortedSeries(r, [t]), p.get("limit"));
    const parts = series.map(
      (s) =>
        `{"metric":${metricJson(s.labels)},"value":[${formatTimestamp(t)},"${formatSample(s.values[0])}"]}`,
    );
    const warn = warnings.length ? `,"warnings":${JSON.stringify(warnings)}` : "";
    return json(
      200,
      `{"status":"success","data":{"resultType":"vector","result":[${parts.join(",")}]}${warn}}`,
    );
  }

  private allLabels(): Labels[] {
    const out: Labels[] = [];
    for (const f of this.world.metrics.families) for (const s of f.series()) out.push(s.labels);
    return out;
  }

  private labelNames(): string[] {
    const names = new Set<string>();
    for (const l of this.allLabels()) for (const k of Object.keys(l)) names.add(k);
    return [...names].sort();
  }

  private labelValues(name: string): string[] {
    const values = new Set<string>();
    for (const l of this.allLabels()) if (l[name] !== undefined) values.add(l[name]);
    return [...values].sort();
  }

  private buildInfo() {
    return {
      version: "2.53.0",
      revision: "trm-forge-simulator",
      branch: "simulator",
      buildUser: "trm-forge simulate",
      buildDate: "20260101-00:00:00",
      goVersion: "go1.22.5",
    };
  }

  private retention(): string {
    return `${Math.ceil(this.world.days)}d`;
  }

  private runtimeInfo() {
    const started = new Date(this.world.start).toISOString();
    return {
      startTime: started,
      CWD: "/prometheus",
      reloadConfigSuccess: true,
      lastConfigTime: started,
      corruptionCount: 0,
      goroutineCount: 42,
      GOMAXPROCS: 2,
      GOMEMLIMIT: Number.MAX_SAFE_INTEGER,
      GOGC: "",
      GODEBUG: "",
      storageRetention: this.retention(),
    };
  }

  private flags() {
    return {
      "storage.tsdb.retention.time": this.retention(),
      "storage.tsdb.path": "/prometheus",
      "query.lookback-delta": "5m",
      "query.max-samples": "50000000",
      "query.timeout": "2m",
      "enable-feature": "native-histograms",
    };
  }

  private tsdb() {
    const horizon = this.world.horizon();
    const counts = this.world.metrics.families.map((f) => ({
      name: f.name,
      value: f.series().filter((s) => s.from <= horizon && s.to > horizon - 7_200_000).length,
    }));
    const numSeries = counts.reduce((a, c) => a + c.value, 0);
    return {
      headStats: {
        numSeries,
        numLabelPairs: this.labelNames().length,
        chunkCount: numSeries * 2,
        // The head block holds the last couple of hours; the oldest sample is in
        // prometheus_tsdb_lowest_timestamp_seconds.
        minTime: Math.max(this.world.start, horizon - 7_200_000),
        maxTime: horizon,
      },
      seriesCountByMetricName: counts.sort((a, b) => b.value - a.value).slice(0, 10),
      labelValueCountByLabelName: [],
      memoryInBytesByLabelName: [],
      seriesCountByLabelValuePair: [],
    };
  }
}
