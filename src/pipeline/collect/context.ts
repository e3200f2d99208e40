// What every source collector receives, and the small helpers they share.
import type { Logger } from "pino";
import type { AgentConfig, CollectSettings } from "../../config/schema.js";
import { ConfigError } from "../../errors.js";
import type { ObjectStore } from "../../store/index.js";
import { HttpSourceClient, type QueryClient } from "./http.js";
import type { SourceName } from "./records.js";
import { newQueryReport, type QueryReport } from "./report.js";

export interface CollectContext {
  agent: string;
  agentConfig: AgentConfig;
  settings: CollectSettings;
  store: ObjectStore;
  /** "Now" for this run, ms since the epoch; the window ends at now − settle. */
  now: number;
  /** Where a query collected for the first time starts, ms since the epoch. */
  firstStart: number;
  settleMs: number;
  gapMinMs: number;
  /** How old the code source's last full snapshot may get before it stores the whole tree again. */
  codeSnapshotEveryMs: number;
  signal: AbortSignal;
  env: NodeJS.ProcessEnv;
  log: Logger;
}

/** Seconds as a PromQL/Go duration ("90s", "5m", "1h"). */
export function formatSeconds(s: number): string {
  if (s % 3600 === 0) return `${s / 3600}h`;
  if (s % 60 === 0) return `${s / 60}m`;
  return `${s}s`;
}

interface HttpSourceConfig {
  url: string;
  auth?:
    | { bearer: { env: string } | { file: string } }
    | { basic: { username: string; password: { env: string } | { file: string } } };
  tenant?: string;
  ca_file?: string;
  /** ms */
  timeout: number;
  retries: number;
}

export function httpClient(
  ctx: CollectContext,
  source: SourceName,
  cfg: HttpSourceConfig,
  maxSockets = 8,
): HttpSourceClient {
  return new HttpSourceClient({
    source,
    url: cfg.url,
    auth: cfg.auth,
    tenant: cfg.tenant,
    caFile: cfg.ca_file,
    timeoutMs: cfg.timeout,
    retries: cfg.retries,
    backoffBaseMs: ctx.settings.backoff_base,
    backoffMaxMs: ctx.settings.backoff_max,
    maxResponseBytes: ctx.settings.max_response_mb * 1024 * 1024,
    maxSockets,
    signal: ctx.signal,
    configPath: `agents.${ctx.agent}.sources.${source}`,
    env: ctx.env,
  });
}

/** `${key}` → namespaces[key]; an unknown key is a config error naming the query. */
export function expandNamespaces(
  template: string,
  namespaces: Record<string, string>,
  where: string,
): string {
  return template.replace(/\$\{([a-z0-9_]+)\}/g, (_m, key: string) => {
    const v = namespaces[key];
    if (v === undefined)
      throw new ConfigError(
        `${where}: \${${key}} is not in namespaces (have: ${Object.keys(namespaces).join(", ") || "none"})`,
      );
    return v;
  });
}

/** Whether a segment buffer is full: by records or by (approximate) uncompressed bytes. */
export function segmentFull(ctx: CollectContext, records: number, bytes: number): boolean {
  return records >= ctx.settings.segment_max_records || bytes >= ctx.settings.segment_max_mb * 1024 * 1024;
}

/** Runs fn over items with at most `limit` at once, keeping the input order in the result. */
export async function mapLimit<T, R>(
  items: T[],
  limit: number,
  fn: (item: T, i: number) => Promise<R>,
): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/**
 * Runs one query's collection, turning any failure into the report (one query failing never
 * stops the others) and copying the query's request counts in.
 */
export async function runQuery(
  ctx: CollectContext,
  source: SourceName,
  query: string,
  client: HttpSourceClient | null,
  body: (report: QueryReport, http: QueryClient | null) => Promise<void>,
): Promise<QueryReport> {
  const report = newQueryReport(source, query);
  const t0 = Date.now();
  const http = client ? client.forQuery(query) : null;
  try {
    await body(report, http);
    // Errors recorded along the way (an unreadable trace) leave the rest stored: partial.
    if (report.errors.length && report.status === "ok") report.status = "partial";
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    report.errors.push(msg);
    report.status = ctx.signal.aborted ? "cancelled" : report.records > 0 ? "partial" : "failed";
    ctx.log.warn({ source, query, err: msg }, "query failed");
  }
  if (http) {
    report.requests = http.stats.requests;
    report.retries = http.stats.retries;
  }
  report.duration_ms = Date.now() - t0;
  return report;
}
