// `npm run bench -- scan [--days N] [--steps N] [--seed N] [--data DIR] [--json]`: the anomaly scan against the
// simulator's staged incidents. The pipeline collects N simulated days and trains a small
// champion; each day is then scanned whole (top 10 findings) and scored against the incidents
// of that day: recall and precision at 10, F1 and the time from an incident's start to its first
// finding, beside the incident join's thresholds (no model) ranked the same way. The held-out
// days (the newest 20% of the dataset window, never trained on) are reported apart from the
// training days. Then the timing of one hour of a small homelab: ~50k log lines, 2k traces and
// 500 series, built from one real simulated hour copied with fresh ids. `--data DIR` keeps the
// collected data and trained champion in DIR and reuses them on the next run of the same seed and
// days, so the scan's settings can be tuned without collecting and training again.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseConfig } from "../config/index.js";
import { dayOf, listSegments, readSegment, writeSegment } from "../pipeline/collect/raw-store.js";
import type { LogEntryRecord, MetricSeriesRecord, TraceRecord } from "../pipeline/collect/records.js";
import { createPipeline } from "../pipeline/create.js";
import { IncidentJoin, incidentSettings } from "../pipeline/incidents.js";
import { type Finding, scanAgent } from "../pipeline/scan/index.js";
import { logFacts, nsToMs } from "../pipeline/tasks/log-triage.js";
import { ModelServer } from "../serve/index.js";
import { scanChampion } from "../serve/scan.js";
import { agentConfigFor, createSimulator } from "../simulator/index.js";
import type { GroundTruthIncident } from "../simulator/world.js";

const DAY = 86_400_000;
const HOUR = 3_600_000;
const AGENT = "bench";
/** A finding counts for an incident when it names an affected service and overlaps it, with this slack. */
const SLACK_BEFORE = 15 * 60_000;
const SLACK_AFTER = 30 * 60_000;

function str(args: string[], name: string): string | undefined {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
}

function opt(args: string[], name: string, dflt: number): number {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
}

interface Flag {
  service: string;
  start: number;
  end: number;
}

interface DayScore {
  day: string;
  heldOut: boolean;
  incidents: number;
  found: number;
  findings: number;
  matching: number;
  firstFlagMin: (number | null)[];
}

function matches(f: Flag, i: GroundTruthIncident): boolean {
  return (
    i.affected.includes(f.service) && f.start < i.end_ms + SLACK_AFTER && f.end > i.start_ms - SLACK_BEFORE
  );
}

function scoreDay(day: string, heldOut: boolean, flags: Flag[], incidents: GroundTruthIncident[]): DayScore {
  const found = incidents.filter((i) => flags.some((f) => matches(f, i)));
  return {
    day,
    heldOut,
    incidents: incidents.length,
    found: found.length,
    findings: flags.length,
    matching: flags.filter((f) => incidents.some((i) => matches(f, i))).length,
    firstFlagMin: incidents.map((i) => {
      const t = flags.filter((f) => matches(f, i)).map((f) => f.start);
      return t.length ? Math.round((Math.max(Math.min(...t), i.start_ms) - i.start_ms) / 60_000) : null;
    }),
  };
}

function summary(days: DayScore[]) {
  const inc = days.reduce((n, d) => n + d.incidents, 0);
  const found = days.reduce((n, d) => n + d.found, 0);
  const flags = days.reduce((n, d) => n + d.findings, 0);
  const match = days.reduce((n, d) => n + d.matching, 0);
  const recall = inc ? found / inc : null;
  const precision = flags ? match / flags : null;
  const f1 =
    recall !== null && precision !== null && recall + precision > 0
      ? (2 * recall * precision) / (recall + precision)
      : 0;
  const ttf = days
    .flatMap((d) => d.firstFlagMin)
    .filter((x): x is number => x !== null)
    .sort((a, b) => a - b);
  const r = (x: number | null) => (x === null ? null : Math.round(x * 1000) / 1000);
  return {
    days: days.length,
    incidents: inc,
    recall_at_10: r(recall),
    precision_at_10: r(precision),
    f1: r(f1),
    findings: flags,
    median_time_to_first_flag_min: ttf.length ? ttf[Math.floor(ttf.length / 2)] : null,
  };
}

/** The incident join over one day's records, its windows ranked by flagged buckets: the no-model baseline. */
async function thresholdFlags(
  config: ReturnType<typeof parseConfig>,
  store: ReturnType<typeof createPipeline>["store"],
  span: { start: number; end: number },
): Promise<Flag[]> {
  const ds = config.dataset;
  const join = new IncidentJoin(incidentSettings(ds.incidents), span, ds.service_labels);
  const inSpan = (ms: number) => ms >= span.start && ms < span.end;
  for (const source of ["loki", "tempo", "prometheus"] as const)
    for (const ref of await listSegments(store, AGENT, source, {
      fromDay: dayOf(span.start),
      toDay: dayOf(span.end - 1),
    })) {
      const { records } = await readSegment(store, ref);
      for (const r of records) {
        if (r.kind === "log_entry" && inSpan(nsToMs(r.ts_ns))) join.addLog(logFacts(r, ds.service_labels));
        else if (r.kind === "trace" && inSpan(nsToMs(r.start_ns))) join.addTrace(r);
        else if (r.kind === "metric_series")
          join.addSeries({ ...r, points: r.points.filter(([t]) => inSpan(t * 1000)) });
      }
    }
  return join
    .windows()
    .map((w) => ({ w, weight: w.evidence.reduce((n, e) => n + e.buckets, 0) }))
    .sort((a, b) => b.weight - a.weight || a.w.start - b.w.start)
    .slice(0, 10)
    .map(({ w }) => ({ service: w.service, start: w.start, end: w.end }));
}

const toFlag = (f: Finding): Flag => ({
  service: f.service,
  start: Date.parse(f.start),
  end: Date.parse(f.end),
});

export async function run(args: string[]) {
  const days = opt(args, "days", 15);
  const steps = opt(args, "steps", 200);
  const seed = opt(args, "seed", 1);
  const kept = str(args, "data");
  const dir = kept ?? mkdtempSync(join(tmpdir(), "trm-bench-scan-"));
  try {
    return await measure(dir, { days, steps, seed });
  } finally {
    // Without --data the trained model and its store are this bench's alone: nothing is left behind.
    if (!kept) rmSync(dir, { recursive: true, force: true });
  }
}

/** Trains (or reuses --data's champion), scans every whole day against the threshold baseline, times one busy hour. */
async function measure(dir: string, { days, steps, seed }: { days: number; steps: number; seed: number }) {
  // The simulated days end now: a reused directory's world is pinned to the end its data has.
  const pinned = join(dir, "world-end.json");
  const pinnedEnd = existsSync(pinned) ? Number(JSON.parse(readFileSync(pinned, "utf8")).end) : undefined;
  const sim = await createSimulator({ seed, days, logsPerDay: 1500, tracesPerDay: 300, end: pinnedEnd });
  let models: ModelServer | undefined;
  try {
    const all = { max_examples: 3000, min_examples: 1 };
    const config = parseConfig({
      data_dir: join(dir, "data"),
      log_level: "warn",
      agents: { [AGENT]: agentConfigFor(sim.url, { lookback: `${days}d` }) },
      model: {
        preset: "demo",
        hidden_size: 64,
        num_heads: 2,
        H_cycles: 1,
        L_cycles: 1,
        halt_max_steps: 1,
        loss_type: "softmax",
      },
      dataset: {
        window: `${days}d`,
        seq_len: 96,
        tasks: {
          code_infill: { enabled: false },
          log_triage: all,
          metric_forecast: { ...all, points: 8, step: "15m", stride: 2 },
          trace_outcome: all,
        },
      },
      train: {
        max_steps: steps,
        batch_size: 32,
        eval_interval: steps,
        checkpoint_interval: steps,
        log_interval: 50,
        eval_examples: 64,
        warmup_steps: 10,
        lr: 0.003,
        ema_decay: 0.9,
      },
      gate: { min_examples: 5 },
      serve: { max_wait_ms: 1 },
      retention: { auto: false },
    });
    const pipeline = createPipeline(config, { report: false });
    const t0 = performance.now();
    const reused =
      pinnedEnd !== undefined ? (await pipeline.registry.read(AGENT)).aliases.champion : undefined;
    const rec = reused
      ? { status: "succeeded", model_version: reused, error: null }
      : await (await pipeline.startRun({ agent: AGENT, trigger: { kind: "cli", actor: "bench" } })).done;
    if (rec.status !== "succeeded" || !rec.model_version)
      throw new Error(`training run ${rec.status}: ${rec.error}`);
    const trainS = reused ? null : Math.round((performance.now() - t0) / 1000);
    if (!reused) writeFileSync(pinned, `${JSON.stringify({ end: sim.world.end })}\n`);
    if ((await pipeline.registry.read(AGENT)).aliases.champion !== rec.model_version)
      await pipeline.registry.promote(AGENT, rec.model_version, {
        actor: "bench",
        reason: "scan bench",
        force: true,
      });
    models = new ModelServer({ config, store: pipeline.store, agents: [AGENT] });
    await models.start();
    const end = Math.floor(sim.world.end / DAY) * DAY;
    const heldFrom = end - Math.floor(days * 0.2) * DAY;
    const perDay: { model: DayScore; baseline: DayScore }[] = [];
    const misses: { kind: string; service: string; day: string; model: boolean; baseline: boolean }[] = [];
    // Whole days only; the first has no reference day before it.
    for (let d = end - DAY; d >= sim.world.start + DAY; d -= DAY) {
      const span = { start: d, end: d + DAY };
      const incidents = sim.groundTruth.incidents.filter(
        (i) => i.start_ms < span.end && i.end_ms > span.start,
      );
      const { result } = await scanChampion(models, {
        config,
        store: pipeline.store,
        registry: pipeline.registry,
        agent: AGENT,
        sinceMs: DAY,
        end: span.end,
        topK: 10,
      });
      const flags = result.findings.map(toFlag);
      const base = await thresholdFlags(config, pipeline.store, span);
      const day = dayOf(d);
      perDay.push({
        model: scoreDay(day, d >= heldFrom, flags, incidents),
        baseline: scoreDay(day, d >= heldFrom, base, incidents),
      });
      for (const i of incidents)
        misses.push({
          kind: i.kind,
          service: i.service,
          day,
          model: flags.some((f) => matches(f, i)),
          baseline: base.some((f) => matches(f, i)),
        });
      process.stderr.write(`scan bench: ${day} ${incidents.length} incidents, ${flags.length} findings\n`);
    }
    const pick = (held: boolean) => perDay.filter((p) => p.model.heldOut === held);
    const detection = {
      held_out: {
        model: summary(pick(true).map((p) => p.model)),
        threshold_baseline: summary(pick(true).map((p) => p.baseline)),
      },
      training_days: {
        model: summary(pick(false).map((p) => p.model)),
        threshold_baseline: summary(pick(false).map((p) => p.baseline)),
      },
      by_kind: Object.fromEntries(
        [...new Set(misses.map((m) => m.kind))].sort().map((k) => {
          const of = misses.filter((m) => m.kind === k);
          return [
            k,
            {
              incidents: of.length,
              found_by_model: of.filter((m) => m.model).length,
              found_by_baseline: of.filter((m) => m.baseline).length,
            },
          ];
        }),
      ),
    };
    const timing = await timeOneHour(models, config, pipeline, end);
    return {
      seed,
      days,
      train_steps: steps,
      train_run_s: trainS,
      version: rec.model_version,
      detection,
      timing,
    };
  } finally {
    await models?.stop();
    await sim.close();
  }
}

/** Copies one simulated hour to ~50k lines, 2k traces and 500 series under a second agent and scans it. */
async function timeOneHour(
  models: ModelServer,
  config: ReturnType<typeof parseConfig>,
  pipeline: ReturnType<typeof createPipeline>,
  end: number,
) {
  const store = pipeline.store;
  const hour = { start: end - 13 * HOUR, end: end - 12 * HOUR };
  const logs: LogEntryRecord[] = [];
  const traces: TraceRecord[] = [];
  const series: MetricSeriesRecord[] = [];
  for (const source of ["loki", "tempo", "prometheus"] as const)
    for (const ref of await listSegments(store, AGENT, source, {
      fromDay: dayOf(hour.start - DAY),
      toDay: dayOf(hour.end),
    })) {
      const { records } = await readSegment(store, ref);
      for (const r of records) {
        if (r.kind === "log_entry" && nsToMs(r.ts_ns) >= hour.start && nsToMs(r.ts_ns) < hour.end)
          logs.push(r);
        else if (r.kind === "trace" && nsToMs(r.start_ns) >= hour.start && nsToMs(r.start_ns) < hour.end)
          traces.push(r);
        else if (r.kind === "metric_series") series.push(r);
      }
    }
  const hex = (n: number, w: number) => n.toString(16).padStart(w, "0").slice(-w);
  const bigLogs: LogEntryRecord[] = [];
  for (let k = 0; bigLogs.length < 50_000 && logs.length; k++)
    for (const r of logs) {
      if (bigLogs.length >= 50_000) break;
      // Same templates, other numbers: what a busier hour of the same homelab looks like.
      const ns = BigInt(r.ts_ns) + BigInt(k) * 1_000n;
      bigLogs.push({ ...r, ts_ns: ns.toString(), line: r.line.replace(/\d+/, (m) => String(Number(m) + k)) });
    }
  const bigTraces: TraceRecord[] = [];
  for (let k = 0; bigTraces.length < 2_000 && traces.length; k++)
    for (const t of traces) {
      if (bigTraces.length >= 2_000) break;
      const id = hex(k, 8) + t.trace_id.slice(8);
      bigTraces.push({ ...t, trace_id: id, spans: t.spans.map((s) => ({ ...s, trace_id: id })) });
    }
  const identities = new Map<string, MetricSeriesRecord[]>();
  for (const s of series) {
    const key = JSON.stringify(s.labels);
    identities.set(key, [...(identities.get(key) ?? []), s]);
  }
  const groups = [...identities.values()];
  const bigSeries: MetricSeriesRecord[] = [];
  for (let k = 0; k * groups.length < 500 && groups.length; k++)
    for (const [g, list] of groups.entries()) {
      if (k * groups.length + g >= 500) break;
      for (const s of list) bigSeries.push({ ...s, labels: { ...s.labels, instance: `node-${k}` } });
    }
  const copy = "bench-hour";
  const day = dayOf(hour.start);
  await writeSegment(store, copy, "loki", day, "hour", bigLogs);
  await writeSegment(store, copy, "tempo", day, "hour", bigTraces);
  await writeSegment(store, copy, "prometheus", day, "hour", bigSeries);
  // The hours before it as its reference period, as many as the scan reads of it at most
  // (scan.reference_records logs), so the first scan's timing includes calibrating against them.
  const refHours = Math.ceil(config.scan.reference_records / bigLogs.length);
  const shift = (ns: string, k: number) => (BigInt(ns) - BigInt(k * HOUR) * 1_000_000n).toString();
  for (let k = 1; k <= refHours; k++) {
    const d = dayOf(hour.start - k * HOUR);
    await writeSegment(
      store,
      copy,
      "loki",
      d,
      `ref-${k}`,
      bigLogs.map((r) => ({ ...r, ts_ns: shift(r.ts_ns, k) })),
    );
    await writeSegment(
      store,
      copy,
      "tempo",
      d,
      `ref-${k}`,
      bigTraces.map((t) => ({
        ...t,
        start_ns: shift(t.start_ns, k),
        spans: t.spans.map((sp) => ({ ...sp, start_ns: shift(sp.start_ns, k) })),
      })),
    );
  }
  const cfg = { ...config, agents: { ...config.agents, [copy]: config.agents[AGENT] } };
  // The copy has no champion of its own: it is scanned with the bench agent's.
  const model = models.model(AGENT)!;
  const scan = async () => {
    const t = performance.now();
    const { result } = await scanAgent({
      config: cfg,
      store,
      model,
      agent: copy,
      sinceMs: HOUR,
      end: hour.end,
    });
    return { ms: Math.round(performance.now() - t), result };
  };
  const first = await scan();
  const second = await scan();
  return {
    logs: first.result.scanned.logs,
    traces: first.result.scanned.traces,
    series: first.result.scanned.series,
    reference_hours: refHours,
    inferences: first.result.inferences,
    findings: first.result.findings.length,
    first_ms: first.ms,
    second_ms: second.ms,
    goal_ms: 10_000,
  };
}
