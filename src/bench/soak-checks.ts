// What the soak checks after each simulated month, from the store, the registry, /metrics and an
// MCP client of the running server, and the month's line of figures.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { listSegments, readSegment, type SegmentRef } from "../pipeline/collect/raw-store.js";
import type { RawRecord, RecordOf } from "../pipeline/collect/records.js";
import { ModelRegistry, type RegistryIndex } from "../pipeline/deploy/registry.js";
import { listRunIds, type RunRecord, readRun } from "../pipeline/record.js";
import { storeUsage } from "../pipeline/retention/gc.js";
import { FsStore, NotFoundError } from "../store/index.js";
import { collectReportsPrefix } from "../store/layout.js";
import type { ServerLogLine, SoakServer } from "./soak-server.js";
import { SOURCES, type SoakHomelab, type SourceName } from "./soak-sim.js";

export interface MonthReport {
  month: number;
  from: string;
  to: string;
  runs: { monthly: number; collects: number; collects_failed: number; resumed: number; catch_up: number };
  gate: {
    agent: string;
    run: string;
    status: string;
    version: string | null;
    passed: boolean | null;
    promoted: boolean;
    reasons: string[];
  }[];
  champion: Record<string, string | null>;
  versions_kept: Record<string, number>;
  bytes: Record<string, number>;
  store_bytes: number;
  rss_bytes: number;
  gc: { runs: number; ms: number; deleted_bytes: number };
  restarts: number;
  /** Days (UTC dates) of the month a source's data is missing from the store, per source. */
  gaps: Record<string, string[]>;
  /** Faults injected, and the operator's actions, this month. */
  events: string[];
  violations: string[];
  wall_s: number;
}

/** What the soak carries from month to month. */
export class SoakState {
  readonly store: FsStore;
  readonly registry: ModelRegistry;
  server: SoakServer | null = null;
  restarts = 0;
  /** Violations a fault's own check found, for the month's report. */
  faultViolations: string[] = [];
  month = 0;
  from = 0;
  to = 0;
  private gc = { runs: 0, ms: 0, deleted_bytes: 0 };
  private readonly history = new Map<string, RegistryIndex["history"]>();
  private readonly versions = new Map<string, Set<string>>();
  /** Per agent and source: the collected spans, ms (from the collection reports). */
  readonly covered = new Map<string, [number, number][]>();
  private readonly reportsSeen = new Set<string>();
  private readonly segmentsReported = new Set<string>();
  private readonly segmentsRead = new Set<string>();
  /** Days when an outage or downtime may leave a source without data, by source. */
  readonly expectedGaps = new Map<SourceName, Set<string>>();

  constructor(
    readonly agents: string[],
    storeDir: string,
  ) {
    this.store = new FsStore(storeDir);
    this.registry = new ModelRegistry(this.store);
    for (const s of SOURCES) this.expectedGaps.set(s, new Set());
  }

  serverLog(l: ServerLogLine): void {
    if (l.msg === "store gc") {
      this.gc.runs++;
      this.gc.ms += Number(l.ms ?? 0);
      this.gc.deleted_bytes += Number(l.deleted_bytes ?? 0);
    }
  }

  beginMonth(month: number, from: number, to: number): void {
    this.month = month;
    this.from = from;
    this.to = to;
    this.gc = { runs: 0, ms: 0, deleted_bytes: 0 };
  }

  takeGc() {
    return this.gc;
  }

  /** The registry's history must only grow, and every version ever registered stay listed. */
  checkRegistry(agent: string, index: RegistryIndex, violations: string[]): void {
    const before = this.history.get(agent) ?? [];
    const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
    if (index.history.length < before.length || !same(index.history.slice(0, before.length), before))
      violations.push(`${agent}: the registry's alias history was rewritten`);
    this.history.set(agent, index.history);
    const listed = new Set(index.versions.map((v) => v.version));
    const known = this.versions.get(agent) ?? new Set();
    for (const v of known)
      if (!listed.has(v)) violations.push(`${agent}: version ${v} vanished from the registry`);
    for (const v of listed) known.add(v);
    this.versions.set(agent, known);
  }

  /** Reads the collection reports not read yet and adds their windows to the coverage. */
  async readCollections(agent: string): Promise<void> {
    const prefix = `${collectReportsPrefix(agent)}/`;
    for (const o of await this.store.list(prefix)) {
      if (this.reportsSeen.has(o.key)) continue;
      this.reportsSeen.add(o.key);
      let rep: CollectionReportLike;
      try {
        rep = JSON.parse((await this.store.get(o.key)).toString("utf8")) as CollectionReportLike;
      } catch (err) {
        if (err instanceof NotFoundError) continue;
        throw err;
      }
      for (const s of rep.sources) {
        if (!SOURCES.includes(s.source as SourceName)) continue;
        const spans = this.covered.get(`${agent}/${s.source}`) ?? [];
        for (const q of s.queries) {
          for (const k of q.segments ?? []) this.segmentsReported.add(k);
          if (q.status === "failed" || !q.window) continue;
          const w: [number, number] = [Date.parse(q.window.start), Date.parse(q.window.end)];
          // The window, less a long stretch without data at its start (what a source's retention
          // takes); gaps inside it are quiet hours of a sparse query.
          const lead = (q.gaps ?? []).find((g) => Date.parse(g.start) <= w[0]);
          const from = lead && Date.parse(lead.end) - w[0] >= LEADING_GAP_MS ? Date.parse(lead.end) : w[0];
          if (w[1] > from) spans.push([from, w[1]]);
        }
        this.covered.set(`${agent}/${s.source}`, spans);
      }
    }
    await this.readUnreportedSegments(agent);
  }

  /**
   * Segments no report names: a collection killed after committing them (the watermark moved
   * past them) but before its report. Their data is in the store, so their records' times count.
   */
  private async readUnreportedSegments(agent: string): Promise<void> {
    for (const source of SOURCES) {
      const spans = this.covered.get(`${agent}/${source}`) ?? [];
      for (const ref of await listSegments(this.store, agent, source)) {
        if (this.segmentsReported.has(ref.key) || this.segmentsRead.has(ref.key)) continue;
        this.segmentsRead.add(ref.key);
        let records: RecordOf<typeof source>[];
        try {
          records = (await readSegment(this.store, ref as SegmentRef & { source: typeof source })).records;
        } catch (err) {
          if (err instanceof NotFoundError) continue; // gc took it meanwhile
          throw err;
        }
        const times = records.flatMap((r) => recordTimes(r as RawRecord));
        if (times.length) spans.push([Math.min(...times), Math.max(...times)]);
      }
      this.covered.set(`${agent}/${source}`, spans);
    }
  }

  /** UTC dates within [from, to) with any hour not covered by a collection of the source. */
  missingDays(agent: string, source: SourceName, from: number, to: number): string[] {
    const spans = [...(this.covered.get(`${agent}/${source}`) ?? [])].sort((a, b) => a[0] - b[0]);
    const out = new Set<string>();
    let at = from;
    const miss = (a: number, b: number) => {
      // A stretch shorter than two hours is a quiet hour, not missing data.
      if (b - a < 2 * 3_600_000) return;
      for (let t = a; t < b; t += 3_600_000) out.add(new Date(t).toISOString().slice(0, 10));
    };
    for (const [a, b] of spans) {
      if (b <= at) continue;
      if (a >= to) break;
      if (a > at) miss(at, Math.min(a, to));
      at = Math.max(at, b);
    }
    if (at < to) miss(at, to);
    return [...out].sort();
  }
}

const LEADING_GAP_MS = 3 * 3_600_000;

interface CollectionReportLike {
  sources: {
    source: string;
    queries: {
      status: string;
      window: { start: string; end: string } | null;
      gaps?: { start: string; end: string }[];
      segments?: string[];
    }[];
  }[];
}

/** A raw record's event times, ms. */
function recordTimes(r: RawRecord): number[] {
  switch (r.kind) {
    case "metric_series":
      return r.points.map((p) => p[0] * 1000);
    case "log_entry":
      return [Number(BigInt(r.ts_ns) / 1_000_000n)];
    case "trace":
      return [Number(BigInt(r.start_ns) / 1_000_000n)];
    default:
      return [];
  }
}

function stageOutput(r: RunRecord, name: string): Record<string, unknown> | null {
  return r.stages.find((s) => s.name === name)?.output ?? null;
}

const isTraining = (r: RunRecord) => r.stages.some((s) => s.name === "train" && s.requested);

async function allRuns(state: SoakState, agent: string): Promise<RunRecord[]> {
  const out: RunRecord[] = [];
  for (const id of await listRunIds(state.store, agent)) {
    try {
      out.push(await readRun(state.store, agent, id));
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
    }
  }
  return out;
}

async function metricsText(server: SoakServer): Promise<string> {
  const res = await fetch(server.url.replace(/\/mcp$/, "/metrics"));
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`);
  return res.text();
}

function gauge(text: string, name: string): { labels: Record<string, string>; value: number }[] {
  const out: { labels: Record<string, string>; value: number }[] = [];
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`)) continue;
    const m = /^[^{]+\{([^}]*)\}\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const kv of m[1].matchAll(/(\w+)="([^"]*)"/g)) labels[kv[1]] = kv[2];
    out.push({ labels, value: Number(m[2]) });
  }
  return out;
}

/** Calls a tool of the server over Streamable HTTP (no tokens configured: the local identity, admin). */
async function callTool(server: SoakServer, name: string, args: Record<string, unknown>): Promise<unknown> {
  const client = new Client({ name: "soak", version: "0" });
  await client.connect(new StreamableHTTPClientTransport(new URL(server.url)));
  try {
    const r = (await client.callTool({ name, arguments: args })) as CallToolResult;
    if (r.isError) throw new Error(r.content.map((c) => (c.type === "text" ? c.text : "")).join(" "));
    return r.structuredContent;
  } finally {
    await client.close().catch(() => undefined);
  }
}

async function predict(server: SoakServer, agent: string): Promise<{ version: string }> {
  const input = 'level=error msg="upstream timeout" service=api-gateway';
  return (await callTool(server, "model_predict", { agent, task: "log_triage", input })) as {
    version: string;
  };
}

/**
 * The operator's first step: a tiny model trained for a few steps does not beat the baselines,
 * so the gate refuses it; the newest version is promoted with force (recorded in the history).
 */
export async function bootstrapChampion(state: SoakState, server: SoakServer): Promise<string[]> {
  const done: string[] = [];
  for (const agent of state.agents) {
    const index = await state.registry.read(agent);
    const newest = index.versions.at(-1)?.version;
    if (index.aliases.champion || !newest) continue;
    await callTool(server, "model_promote", {
      agent,
      version: newest,
      force: true,
      reason: "soak: bootstrap a champion (a tiny model does not beat the baselines in a few steps)",
    });
    done.push(`${agent}: ${newest} promoted with force`);
  }
  return done;
}

const day = (ms: number) => new Date(ms).toISOString().slice(0, 10);

export async function checkMonth(
  state: SoakState,
  homelab: SoakHomelab,
  server: SoakServer,
): Promise<MonthReport> {
  const v: string[] = state.faultViolations.splice(0);
  const report: MonthReport = {
    month: state.month,
    from: day(state.from),
    to: day(state.to - 1),
    runs: { monthly: 0, collects: 0, collects_failed: 0, resumed: 0, catch_up: 0 },
    gate: [],
    champion: {},
    versions_kept: {},
    bytes: {},
    store_bytes: 0,
    rss_bytes: server.rss(),
    gc: state.takeGc(),
    restarts: state.restarts,
    gaps: {},
    events: [],
    violations: v,
    wall_s: 0,
  };
  state.restarts = 0;
  const metrics = await metricsText(server);
  for (const agent of state.agents) {
    const runs = await allRuns(state, agent);
    for (const r of runs)
      if (r.status === "running") v.push(`${agent}: run ${r.id} is still running after the server settled`);
    const mine = runs.filter((r) => {
      const t = Date.parse(r.created_at);
      return t >= state.from && t < state.to;
    });
    const monthly = mine.filter(isTraining);
    report.runs.monthly += monthly.length;
    report.runs.resumed += mine.filter((r) => r.resumes.length > 0).length;
    report.runs.catch_up += mine.filter((r) => r.trigger.kind === "catch-up").length;
    if (monthly.length !== 1) v.push(`${agent}: ${monthly.length} monthly runs (want exactly 1)`);
    for (const r of monthly) {
      const ev = stageOutput(r, "evaluate") as { gate?: { passed: boolean; reasons: string[] } } | null;
      const dep = stageOutput(r, "deploy") as { promoted_to?: string | null } | null;
      const g = {
        agent,
        run: r.id,
        status: r.status,
        version: r.model_version,
        passed: ev?.gate?.passed ?? null,
        promoted: Boolean(dep?.promoted_to),
        reasons: ev?.gate?.reasons ?? [],
      };
      report.gate.push(g);
      if (r.status !== "succeeded") v.push(`${agent}: monthly run ${r.id} ${r.status}: ${r.error}`);
      else if (g.passed === false && !g.reasons.length)
        v.push(`${agent}: monthly run ${r.id} was refused by the gate without reasons`);
      else if (g.passed === null) v.push(`${agent}: monthly run ${r.id} has no gate verdict`);
    }
    const collects = mine.filter((r) => !isTraining(r));
    report.runs.collects += collects.length;
    report.runs.collects_failed += collects.filter((r) => r.status !== "succeeded").length;

    // The registry: append-only, complete, and its champion answers.
    const index = await state.registry.read(agent);
    state.checkRegistry(agent, index, v);
    const pruned = new Set((index.pruned ?? []).map((p) => p.version));
    report.versions_kept[agent] = index.versions.filter((x) => !pruned.has(x.version)).length;
    for (const r of monthly)
      if (r.model_version && !index.versions.some((x) => x.version === r.model_version))
        v.push(`${agent}: run ${r.id}'s version ${r.model_version} is not in the registry`);
    // Every kept version loads (a gc killed midway never leaves one half deleted).
    for (const x of index.versions)
      if (!pruned.has(x.version))
        await state.registry
          .load(agent, x.version)
          .catch((err: Error) => v.push(`${agent}: kept version ${x.version} does not load: ${err.message}`));
    const champion = index.aliases.champion;
    report.champion[agent] = champion;
    if (!champion) v.push(`${agent}: no champion`);
    else {
      if (pruned.has(champion)) v.push(`${agent}: the champion ${champion} was pruned`);
      try {
        const p = await predict(server, agent);
        if (p.version !== champion)
          v.push(`${agent}: model_predict answered with ${p.version}, the champion is ${champion}`);
      } catch (err) {
        v.push(`${agent}: the champion does not answer model_predict: ${(err as Error).message}`);
      }
      const served = gauge(metrics, "trm_forge_served_model_info").filter(
        (g) => g.labels.agent === agent && g.labels.alias === "champion" && g.value === 1,
      );
      if (served.length && !served.some((g) => g.labels.version === champion))
        v.push(
          `${agent}: /metrics serves ${served.map((g) => g.labels.version).join(",")} as champion, the registry says ${champion}`,
        );
    }
    const lastOk = runs
      .filter((r) => r.status === "succeeded" && r.ended_at)
      .map((r) => Date.parse(r.ended_at!))
      .sort((a, b) => b - a)[0];
    const shown = gauge(metrics, "trm_forge_run_last_success_timestamp_seconds").find(
      (g) => g.labels.agent === agent,
    );
    if (lastOk && (!shown || Math.abs(shown.value * 1000 - lastOk) > 1000))
      v.push(
        `${agent}: /metrics shows the last success at ${shown?.value ?? "nothing"}, the store ${lastOk / 1000}`,
      );

    // Collection gaps: exactly the outages.
    await state.readCollections(agent);
    const horizon = Math.min(state.to, homelab.now) - 3_600_000;
    for (const s of SOURCES) {
      const missing = state.missingDays(agent, s, state.from, horizon);
      if (missing.length) report.gaps[`${agent}/${s}`] = missing;
      const expected = state.expectedGaps.get(s)!;
      const unexpected = missing.filter((d) => !expected.has(d));
      if (unexpected.length)
        v.push(`${agent}: ${s} data missing on ${unexpected.join(", ")} without an outage`);
    }
  }

  // Bytes per prefix, and /metrics against the store.
  const usage = await storeUsage(state.store, state.agents);
  const shown = gauge(metrics, "trm_forge_store_bytes");
  for (const u of usage) {
    for (const p of u.prefixes) {
      report.bytes[p.prefix] = (report.bytes[p.prefix] ?? 0) + p.bytes;
      const g = shown.find((x) => x.labels.agent === u.agent && x.labels.prefix === p.prefix);
      // The gauge is set by the last gc; the run records and schedule state written after it differ a little.
      const tolerance = Math.max(256 * 1024, p.bytes * 0.05);
      if (p.prefix !== "other" && p.prefix !== "runs" && (!g || Math.abs(g.value - p.bytes) > tolerance))
        v.push(
          `${u.agent}: /metrics store bytes for ${p.prefix} ${g?.value ?? "missing"}, the store holds ${p.bytes}`,
        );
    }
    report.store_bytes += u.bytes;
  }
  return report;
}
