// Collection: the one entry point the CLI, the scheduler and the MCP tools call. Sources run side
// by side; a failing source or query is reported, never fatal to the others. The report is stored
// with the data, under raw/<agent>/_reports/.
import { randomBytes } from "node:crypto";
import { mkdir, open, readFile, realpath, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import type { Config } from "../../config/index.js";
import type { AgentConfig } from "../../config/schema.js";
import { UsageError, WorkError } from "../../errors.js";
import { childLogger } from "../../log.js";
import { collectErrors, collectRecords } from "../../metrics.js";
import { type ObjectStore, openStore } from "../../store/index.js";
import { collectReportKey } from "../../store/layout.js";
import { pidAlive } from "../../util/process.js";
import { collectCode, headCommit } from "./code.js";
import { type CollectContext, expandNamespaces, httpClient } from "./context.js";
import { SourceError } from "./http.js";
import { collectLoki, probeLoki } from "./loki.js";
import { collectPrometheus, probePrometheus } from "./prometheus.js";
import { SOURCES, type SourceName } from "./records.js";
import {
  type CollectionReport,
  iso,
  newQueryReport,
  overallStatus,
  type QueryReport,
  type QueryStatus,
  type SourceReport,
} from "./report.js";
import { collectTempo, probeTempo } from "./tempo.js";

export { SourceError } from "./http.js";
export { listSegments, readSegment, type SegmentRef, segmentKey } from "./raw-store.js";
export * from "./records.js";
export { classifyKey, Redactor, secretLike } from "./redact.js";
export { type CollectionReport, formatReport, type QueryReport, type SourceReport } from "./report.js";
export { watermarkKey } from "./watermarks.js";

export interface CollectOptions {
  agent: string;
  /** Only these sources (default: every source the agent has configured and enabled). */
  sources?: SourceName[];
  /** Look-back of queries collected for the first time, in ms (default: the config's). */
  sinceMs?: number;
  /** "Now", ms since the epoch (tests). */
  now?: number;
  signal?: AbortSignal;
  /** Default: openStore(config). */
  store?: ObjectStore;
  env?: NodeJS.ProcessEnv;
  /** Called as each query finishes. */
  onQuery?: (report: QueryReport) => void;
}

/** The agent's config; an unknown agent is a usage error that lists the known ones. */
export function agentConfig(config: Config, agent: string): AgentConfig {
  const a = config.agents[agent];
  if (!a) {
    const known = Object.keys(config.agents);
    throw new UsageError(
      `agents.${agent}: no such agent in the config (${known.length ? `configured: ${known.join(", ")}` : "no agents configured"})`,
    );
  }
  return a;
}

/** Sources the agent has configured and not switched off, in the fixed order. */
export function enabledSources(a: AgentConfig): SourceName[] {
  return SOURCES.filter((s) => a.sources[s] && a.sources[s]!.enabled);
}

function pickSources(a: AgentConfig, agent: string, wanted?: SourceName[]): SourceName[] {
  const enabled = enabledSources(a);
  if (!wanted?.length) return enabled;
  for (const s of wanted) {
    if (!SOURCES.includes(s)) throw new UsageError(`unknown source "${s}" (one of ${SOURCES.join(", ")})`);
    if (!enabled.includes(s))
      throw new UsageError(`agents.${agent}.sources.${s}: not configured or switched off for this agent`);
  }
  return SOURCES.filter((s) => wanted.includes(s));
}

/** One collection per agent at a time, across processes: a lock file holding the owner's pid. */
async function lock(dataDir: string, agent: string): Promise<() => Promise<void>> {
  const dir = join(dataDir, "locks");
  await mkdir(dir, { recursive: true });
  const path = join(dir, `collect-${agent}.lock`);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fh = await open(path, "wx");
      await fh.writeFile(String(process.pid));
      await fh.close();
      return () => rm(path, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const pid = Number((await readFile(path, "utf8").catch(() => "")).trim());
      if (pid && pid !== process.pid && pidAlive(pid))
        throw new WorkError(`a collection for ${agent} is already running (pid ${pid}; lock ${path})`);
      if (pid === process.pid)
        throw new WorkError(`a collection for ${agent} is already running in this process`);
      await rm(path, { force: true }); // stale: its owner is gone
    }
  }
  throw new WorkError(`cannot take the collection lock ${path}`);
}

/** Collects every selected source of one agent, stores the segments and the report, returns the report. */
export async function collect(config: Config, opts: CollectOptions): Promise<CollectionReport> {
  const a = agentConfig(config, opts.agent);
  const sources = pickSources(a, opts.agent, opts.sources);
  const store = opts.store ?? openStore(config, opts.env);
  const now = opts.now ?? Date.now();
  const started = Date.now();
  const runId = `${iso(now)
    .replace(/[-:]/g, "")
    .replace(/\.\d+Z$/, "Z")}-${randomBytes(3).toString("hex")}`;
  const log = childLogger({ agent: opts.agent, run: runId });
  const signal = opts.signal ?? new AbortController().signal;
  const lookbackMs = opts.sinceMs ?? a.lookback ?? config.collect.lookback;
  const ctx: CollectContext = {
    agent: opts.agent,
    agentConfig: a,
    settings: config.collect,
    store,
    now,
    firstStart: now - lookbackMs,
    settleMs: config.collect.settle,
    gapMinMs: config.collect.gap_min,
    // Half the window: a snapshot is refreshed well before retention's age rule reaches it.
    codeSnapshotEveryMs: config.dataset.window / 2,
    signal,
    env: opts.env ?? process.env,
    log,
  };
  const unlock = await lock(config.data_dir, opts.agent);
  try {
    log.info({ sources, store: store.description }, "collection started");
    const reports = await Promise.all(
      SOURCES.map(async (source): Promise<SourceReport> => {
        if (!sources.includes(source)) return { source, status: "disabled", queries: [] };
        let queries: QueryReport[];
        try {
          queries = await runSource(ctx, source);
        } catch (err) {
          // A source that cannot even start (a missing credential, a bad CA file) fails alone.
          const q: QueryReport = failedSource(source, err);
          queries = [q];
        }
        for (const q of queries) {
          collectRecords.inc({ agent: opts.agent, source }, q.records);
          if (q.errors.length) collectErrors.inc({ agent: opts.agent, source }, q.errors.length);
          opts.onQuery?.(q);
        }
        return { source, status: overallStatus(queries.map((q) => q.status)), queries };
      }),
    );
    const all = reports.flatMap((r) => r.queries);
    const finished = Date.now();
    const status: QueryStatus = signal.aborted ? "cancelled" : overallStatus(all.map((q) => q.status));
    const report: CollectionReport = {
      run_id: runId,
      agent: opts.agent,
      status,
      started_at: iso(started),
      finished_at: iso(finished),
      duration_ms: finished - started,
      store: store.description,
      report_key: collectReportKey(opts.agent, runId),
      sources: reports,
      totals: {
        records: sum(all.map((q) => q.records)),
        bytes: sum(all.map((q) => q.bytes)),
        segments: sum(all.map((q) => q.segments.length)),
        redactions: sum(all.map((q) => sum(Object.values(q.redactions)))),
        errors: sum(all.map((q) => q.errors.length)),
      },
    };
    await store.put(report.report_key, `${JSON.stringify(report, null, 2)}\n`, {
      contentType: "application/json",
    });
    log.info({ status, records: report.totals.records, errors: report.totals.errors }, "collection finished");
    return report;
  } finally {
    await unlock();
  }
}

function runSource(ctx: CollectContext, source: SourceName): Promise<QueryReport[]> {
  const s = ctx.agentConfig.sources;
  switch (source) {
    case "code":
      return collectCode(ctx, s.code!);
    case "prometheus":
      return collectPrometheus(ctx, s.prometheus!);
    case "loki":
      return collectLoki(ctx, s.loki!);
    case "tempo":
      return collectTempo(ctx, s.tempo!);
  }
}

function failedSource(source: SourceName, err: unknown): QueryReport {
  return {
    ...newQueryReport(source, "*"),
    status: "failed",
    errors: [`${source}: ${err instanceof Error ? err.message : String(err)}`],
  };
}

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

// ---- sources check -----------------------------------------------------------------------------

export interface SourceCheck {
  source: SourceName;
  status: "ok" | "unreachable" | "unauthorised" | "error" | "disabled";
  /** The base URL or repository path. */
  target: string | null;
  detail: string;
  latency_ms: number | null;
  /** What the API says about how far back data goes. */
  retention: Record<string, string | number | null>;
}

export interface CheckOptions {
  agent: string;
  sources?: SourceName[];
  signal?: AbortSignal;
  now?: number;
  env?: NodeJS.ProcessEnv;
}

/** For each source: reachable? authorised? how much history does it hold? */
export async function checkSources(config: Config, opts: CheckOptions): Promise<SourceCheck[]> {
  const a = agentConfig(config, opts.agent);
  const sources = pickSources(a, opts.agent, opts.sources);
  const now = opts.now ?? Date.now();
  const ctx: CollectContext = {
    agent: opts.agent,
    agentConfig: a,
    settings: { ...config.collect, backoff_max: 2000 },
    store: null as unknown as ObjectStore,
    now,
    firstStart: now,
    settleMs: 0,
    gapMinMs: 0,
    codeSnapshotEveryMs: config.dataset.window / 2,
    signal: opts.signal ?? new AbortController().signal,
    env: opts.env ?? process.env,
    log: childLogger({ agent: opts.agent }),
  };
  return Promise.all(
    SOURCES.map(async (source): Promise<SourceCheck> => {
      const cfg = a.sources[source];
      if (!sources.includes(source) || !cfg)
        return {
          source,
          status: "disabled",
          target: null,
          detail: "not configured or switched off",
          latency_ms: null,
          retention: {},
        };
      const t0 = Date.now();
      const target = "url" in cfg ? cfg.url : cfg.path;
      try {
        const retention = await probe(ctx, source, now);
        return { source, status: "ok", target, detail: "reachable", latency_ms: Date.now() - t0, retention };
      } catch (err) {
        const e = err as SourceError;
        const status =
          e instanceof SourceError
            ? e.status === 401 || e.status === 403
              ? "unauthorised"
              : e.kind === "network" || e.kind === "timeout"
                ? "unreachable"
                : "error"
            : "error";
        return { source, status, target, detail: e.message, latency_ms: Date.now() - t0, retention: {} };
      }
    }),
  );
}

async function probe(
  ctx: CollectContext,
  source: SourceName,
  now: number,
): Promise<Record<string, string | number | null>> {
  const s = ctx.agentConfig.sources;
  if (source === "code") {
    const root = await realpath(s.code!.path).catch(() => null);
    if (!root || !(await stat(root)).isDirectory())
      throw new Error(`repository ${s.code!.path} is not a readable directory`);
    return { commit: await headCommit(root) };
  }
  const cfg = s[source]!;
  // One attempt per probe: a check should answer quickly.
  const client = httpClient(ctx, source, {
    ...(cfg as { url: string; timeout: number; retries: number }),
    retries: 0,
  });
  try {
    if (source === "prometheus") return { ...(await probePrometheus(client, now)) };
    if (source === "loki") {
      const first = expandNamespaces(
        s.loki!.queries[0].logql,
        ctx.agentConfig.namespaces,
        `agents.${ctx.agent}.sources.loki.queries.0.logql`,
      );
      return { ...(await probeLoki(client, first, now)) };
    }
    return { ...(await probeTempo(client, now)) };
  } finally {
    client.close();
  }
}
