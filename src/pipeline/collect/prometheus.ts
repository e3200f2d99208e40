// Prometheus: /api/v1/query_range, one request per query per UTC day, on a step grid anchored at
// the epoch so that successive runs evaluate the same instants. A request never asks for more than
// 11,000 points (the server's limit): the step is raised where a chunk would need more.
import * as z from "zod";
import type { PrometheusSourceConfig } from "../../config/schema.js";
import { UNIT_MS } from "../../util/duration.js";
import { type CollectContext, formatSeconds, httpClient, mapLimit, runQuery } from "./context.js";
import { bodyExcerpt, type HttpSourceClient, type QueryClient } from "./http.js";
import { dayOf } from "./raw-store.js";
import type { MetricSeriesRecord, SampleValue } from "./records.js";
import { Redactor } from "./redact.js";
import { bumpSkipped, Coverage, iso, type QueryReport } from "./report.js";
import { commitSegment, readWatermark } from "./watermarks.js";

export const MAX_POINTS_PER_SERIES = 11_000;
const DAY_S = 86_400;

const Watermark = z.object({ version: z.literal(1), next_s: z.number(), promql: z.string() });

const Envelope = z.looseObject({
  status: z.enum(["success", "error"]),
  data: z.unknown().optional(),
  errorType: z.string().optional(),
  error: z.string().optional(),
  warnings: z.array(z.string()).optional(),
  infos: z.array(z.string()).optional(),
});

const Matrix = z.looseObject({
  resultType: z.string(),
  result: z.array(
    z.looseObject({
      metric: z.record(z.string(), z.string()),
      values: z.array(z.unknown()).optional(),
      histograms: z.array(z.unknown()).optional(),
    }),
  ),
});

/** The smallest step (s) that keeps a range within the server's 11,000-point limit. */
export function minStepFor(rangeS: number): number {
  return Math.ceil(rangeS / MAX_POINTS_PER_SERIES);
}

/** Grafana's $__rate_interval: long enough for two scrapes, and never shorter than the step. */
export function rateInterval(stepS: number, scrapeS: number): number {
  return Math.max(stepS + scrapeS, 4 * scrapeS);
}

/** A sample value as the API sends it: a string, so that NaN and ±Inf survive JSON. */
export function parseSample(v: unknown): SampleValue | null {
  if (typeof v !== "string") return null;
  if (v === "NaN") return "NaN";
  if (v === "+Inf" || v === "Inf") return "+Inf";
  if (v === "-Inf") return "-Inf";
  if (v.trim() === "") return null;
  const n = Number(v);
  if (Number.isNaN(n)) return null;
  return n === Infinity ? "+Inf" : n === -Infinity ? "-Inf" : n;
}

const RANGE_RE = /\[(\d+(?:ms|s|m|h|d|w|y))+(?::[^\]]*)?\]/g;

/** Range selectors shorter than the step skip samples between evaluations; say so. */
function shortWindows(promql: string, stepS: number): string[] {
  const out: string[] = [];
  for (const m of promql.matchAll(RANGE_RE)) {
    if (m[0].includes(":")) continue; // a subquery sets its own resolution
    const inner = m[0].slice(1, -1);
    let ms = 0;
    for (const part of inner.matchAll(/(\d+)(ms|s|m|h|d|w|y)/g))
      ms += Number(part[1]) * (part[2] === "y" ? 365 * 86400e3 : UNIT_MS[part[2]]!);
    if (ms < stepS * 1000) out.push(m[0]);
  }
  return out;
}

export async function collectPrometheus(
  ctx: CollectContext,
  cfg: PrometheusSourceConfig,
): Promise<QueryReport[]> {
  const client = httpClient(ctx, "prometheus", cfg, ctx.settings.concurrency);
  try {
    return await mapLimit(cfg.queries, ctx.settings.concurrency, (q) =>
      runQuery(ctx, "prometheus", q.name, client, (report, http) => collectQuery(ctx, cfg, q, http!, report)),
    );
  } finally {
    client.close();
  }
}

async function collectQuery(
  ctx: CollectContext,
  cfg: PrometheusSourceConfig,
  q: PrometheusSourceConfig["queries"][number],
  http: QueryClient,
  report: QueryReport,
): Promise<void> {
  const configured = (q.step ?? cfg.step) / 1000;
  // Day chunks hold at most 86,400 s, so this step keeps every request within the point limit.
  const step = Math.max(1, Math.ceil(configured), minStepFor(DAY_S));
  if (step > configured)
    report.warnings.push(
      `step raised from ${configured}s to ${step}s (at most ${MAX_POINTS_PER_SERIES} points per request)`,
    );
  const scrape = cfg.scrape_interval / 1000;
  const promql = q.promql.replaceAll("$__rate_interval", formatSeconds(rateInterval(step, scrape)));
  for (const w of shortWindows(promql, step))
    report.warnings.push(`range ${w} is shorter than the step ${step}s: samples between steps are skipped`);

  const wm = await readWatermark(ctx.store, ctx.agent, "prometheus", q.name, Watermark);
  const endS = Math.floor((ctx.now - ctx.settleMs) / 1000 / step) * step;
  const startS = wm ? wm.next_s : Math.ceil(ctx.firstStart / 1000 / step) * step;
  report.window = { start: iso(startS * 1000), end: iso(Math.max(startS, endS) * 1000) };
  const coverage = new Coverage(startS * 1000, Math.max(ctx.gapMinMs, 2 * step * 1000));
  const redactor = new Redactor();
  report.redactions = redactor.counts;

  let chunkStart = startS;
  while (chunkStart <= endS) {
    if (ctx.signal.aborted) throw http.error("cancelled", "cancelled");
    const dayEnd = (Math.floor(chunkStart / DAY_S) + 1) * DAY_S;
    const lastOnGrid = Math.ceil(dayEnd / step) * step - step; // the last grid point before midnight
    const chunkEnd = Math.min(endS, Math.max(chunkStart, lastOnGrid));
    const records = await fetchChunk(http, q.name, promql, chunkStart, chunkEnd, step, redactor, report);
    const times = new Set<number>();
    for (const r of records) for (const p of r.points) times.add(p[0]);
    for (const t of [...times].sort((a, b) => a - b)) coverage.add(t * 1000);
    await commitSegment(
      ctx.store,
      ctx.agent,
      "prometheus",
      q.name,
      dayOf(chunkStart * 1000),
      `${q.name}-${chunkStart}`,
      records,
      { version: 1, next_s: chunkEnd + step, promql },
      report,
    );
    chunkStart = chunkEnd + step;
  }
  coverage.finish(report, Math.max(startS, endS) * 1000);
}

async function fetchChunk(
  http: QueryClient,
  query: string,
  promql: string,
  start: number,
  end: number,
  step: number,
  redactor: Redactor,
  report: QueryReport,
): Promise<MetricSeriesRecord[]> {
  const { status, json, res } = await http.getJson("api/v1/query_range", { query: promql, start, end, step });
  const env = Envelope.safeParse(json);
  if (status >= 400 || !env.success || env.data.status === "error") {
    const detail =
      env.success && env.data.error
        ? `${env.data.errorType ?? "error"}: ${env.data.error}`
        : bodyExcerpt(res);
    if (status >= 400) throw http.error("http", `HTTP ${status} ${detail}`, status);
    if (!env.success)
      throw http.error("malformed", `unexpected response (no status/data envelope): ${detail}`, status);
    throw http.error("http", `status "error": ${detail}`, status);
  }
  for (const w of [...(env.data.warnings ?? []), ...(env.data.infos ?? [])])
    if (!report.warnings.includes(w) && report.warnings.length < 50) report.warnings.push(w);
  const matrix = Matrix.safeParse(env.data.data);
  if (!matrix.success) {
    const i = matrix.error.issues[0];
    throw http.error("malformed", `unexpected response at data.${i.path.join(".")}: ${i.message}`, status);
  }
  if (matrix.data.resultType !== "matrix")
    throw http.error("malformed", `expected a matrix result, got "${matrix.data.resultType}"`, status);
  const out: MetricSeriesRecord[] = [];
  for (const [si, series] of matrix.data.result.entries()) {
    if (series.histograms?.length) {
      bumpSkipped(report, "native_histogram_series");
      bumpSkipped(report, "native_histogram_points", series.histograms.length);
    }
    if (!series.values?.length) continue;
    const points: [number, SampleValue][] = [];
    for (const [pi, p] of series.values.entries()) {
      const v = Array.isArray(p) && typeof p[0] === "number" ? parseSample(p[1]) : null;
      if (v === null)
        throw http.error(
          "malformed",
          `unexpected sample at data.result.${si}.values.${pi}: ${JSON.stringify(p).slice(0, 80)}`,
          status,
        );
      points.push([(p as [number, string])[0], v]);
    }
    out.push({
      kind: "metric_series",
      query,
      promql,
      labels: redactor.redactMap(series.metric),
      step_s: step,
      start,
      end,
      points,
    });
  }
  return out;
}

// ---- sources check -----------------------------------------------------------------------------

const BuildInfo = z.looseObject({
  status: z.literal("success"),
  data: z.looseObject({ version: z.string() }),
});
const RuntimeInfo = z.looseObject({
  status: z.literal("success"),
  data: z.looseObject({ storageRetention: z.string().optional() }),
});

export interface PrometheusProbe {
  version: string | null;
  retention: string | null;
  oldest_sample: string | null;
}

/** Version, configured retention and the oldest sample of `up` the server still holds. */
export async function probePrometheus(client: HttpSourceClient, now: number): Promise<PrometheusProbe> {
  const http = client.forQuery("(check)");
  const build = await http.getJson("api/v1/status/buildinfo", {});
  if (build.status === 401 || build.status === 403)
    throw http.error("http", `HTTP ${build.status}: not authorised`, build.status);
  if (build.status >= 400)
    throw http.error("http", `HTTP ${build.status} ${bodyExcerpt(build.res)}`, build.status);
  const version = BuildInfo.safeParse(build.json);
  const rt = await http.getJson("api/v1/status/runtimeinfo", {});
  const info = rt.status < 400 ? RuntimeInfo.safeParse(rt.json) : null;
  const retention = info?.success ? (info.data.data.storageRetention ?? null) : null;
  // Scan back a long way at a coarse step; the first point is the oldest sample within a step.
  const end = Math.floor(now / 1000);
  const start = end - 400 * DAY_S;
  const step = Math.max(3600, minStepFor(end - start));
  // count_over_time over a whole step sees every sample, whatever the scrape interval.
  const query = `count(count_over_time(up[${step}s]))`;
  const r = await http.getJson("api/v1/query_range", { query, start, end, step });
  let oldest: string | null = null;
  const m = r.status < 400 ? Matrix.safeParse((r.json as { data?: unknown })?.data) : null;
  const first = m?.success ? m.data.result[0]?.values?.[0] : undefined;
  if (Array.isArray(first) && typeof first[0] === "number") oldest = iso(first[0] * 1000);
  return { version: version.success ? version.data.data.version : null, retention, oldest_sample: oldest };
}
