// Data tools: are the sources reachable, collect what is new (a job), what has accumulated.
import * as z from "zod";
import {
  agentConfig,
  type CollectionReport,
  checkSources,
  enabledSources,
  listSegments,
  SOURCES,
  type SourceCheck,
} from "../pipeline/collect/index.js";
import { type Manifest, readDatasetManifest } from "../pipeline/dataset/index.js";
import { JobView } from "../server/jobs.js";
import type { ObjectStore } from "../store/index.js";
import { collectReportsPrefix } from "../store/layout.js";
import { AgentName, defineTool, jobText, pct, WaitS, waitForJob } from "./common.js";

const Source = z.enum(SOURCES);

const SourceCheckOut = z
  .object({
    source: Source,
    status: z.enum(["ok", "unreachable", "unauthorised", "error", "disabled"]),
    target: z.string().nullable(),
    detail: z.string(),
    latency_ms: z.number().nullable(),
    retention: z.record(z.string(), z.union([z.string(), z.number(), z.null()])),
  })
  .strict();

export const sourcesCheck = defineTool({
  name: "sources_check",
  title: "Check data sources",
  description:
    "Asks each of the agent's data sources (code repository, Prometheus, Loki, Tempo) whether it is reachable and authorised, and how far back its data goes. " +
    "Use it first, and whenever a collection failed. Nothing is stored. Next: data_collect to pull what is new, or fix the source the answer names.",
  scope: "read",
  input: z
    .object({
      agent: AgentName.optional(),
      sources: z
        .array(Source)
        .min(1)
        .max(4)
        .optional()
        .describe("Only these sources (default: every configured one)."),
    })
    .strict(),
  output: z
    .object({
      agent: z.string(),
      checked_at: z.string(),
      all_ok: z.boolean(),
      sources: z.array(SourceCheckOut),
      next: z.string(),
    })
    .strict(),
  annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: true },
  async run(args, call, env) {
    const config = env.ctx.config;
    const agent = call.agent(args.agent);
    const enabled = enabledSources(agentConfig(config, agent));
    const wanted = args.sources ?? enabled;
    const checks = new Map<string, SourceCheck>();
    let done = 0;
    await Promise.all(
      wanted.map(async (source) => {
        const all = await checkSources(config, { agent, sources: [source], signal: call.signal });
        const mine = all.find((c) => c.source === source)!;
        checks.set(source, mine);
        done++;
        await call.progress(done, wanted.length, `${source}: ${mine.status}`);
      }),
    );
    const sources = SOURCES.map(
      (s): SourceCheck =>
        checks.get(s) ?? {
          source: s,
          status: "disabled",
          target: null,
          detail: enabled.includes(s) ? "not asked for" : "not configured or switched off",
          latency_ms: null,
          retention: {},
        },
    );
    const asked = sources.filter((s) => wanted.includes(s.source));
    const allOk = asked.every((c) => c.status === "ok");
    const next = allOk
      ? "Every source answers. data_collect pulls what is new; data_status shows what has accumulated."
      : "Fix the sources that are not ok (URL, credentials, network policy), then check again; data_collect still collects from the others.";
    const text = [
      `${agent}: ${allOk ? "all sources ok" : "some sources are not ok"}`,
      ...sources.map((c) => {
        if (c.status === "disabled") return `  ${c.source}: ${c.detail}`;
        const facts = Object.entries(c.retention)
          .filter(([, v]) => v !== null)
          .map(([k, v]) => `${k}=${v}`)
          .join(", ");
        return `  ${c.source}: ${c.status}${c.latency_ms !== null ? ` in ${c.latency_ms} ms` : ""}${c.status === "ok" ? (facts ? `; ${facts}` : "") : `: ${c.detail}`}`;
      }),
      `next: ${next}`,
    ].join("\n");
    return {
      data: { agent, checked_at: new Date().toISOString(), all_ok: allOk, sources, next },
      text,
    };
  },
});

export const StartedJobOut = z.object({ started: z.boolean(), job: JobView }).strict();

export const dataCollect = defineTool({
  name: "data_collect",
  title: "Collect new data (job)",
  description:
    "Starts a job that pulls what is new from the agent's sources into its raw store (redacted, append-only, per day) and returns the job at once. " +
    "When the agent already has a run in progress, returns that job instead of starting another. " +
    "Follow it with job_status (wait_s waits up to 25 s); afterwards data_status shows what accumulated.",
  scope: "train",
  input: z.object({ agent: AgentName.optional(), wait_s: WaitS }).strict(),
  output: StartedJobOut,
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true },
  async run(args, call, env) {
    const agent = call.agent(args.agent);
    const { started, job } = await env.ctx.jobs.startRun(agent, { kind: "collect", actor: call.actor });
    const now = await waitForJob(env, call, job, args.wait_s);
    return {
      data: { started, job: now },
      text: `${started ? "started" : `not started: ${agent} already has this run in progress`}\n${jobText(now)}`,
    };
  },
});

const DayOut = z.object({ day: z.string(), segments: z.number().int(), bytes: z.number().int() }).strict();

export const dataStatus = defineTool({
  name: "data_status",
  title: "Data accumulated",
  description:
    "What the agent's raw store holds per source per day (segments and compressed bytes, newest days first), the last collection's outcome, " +
    "and the newest dataset's quality report (examples per task, baselines, why a task was skipped). " +
    "Use it before training_start to see whether there is enough data. Next: data_collect when days are missing, training_start when the data looks right.",
  scope: "read",
  input: z
    .object({
      agent: AgentName.optional(),
      days: z.number().int().min(1).max(90).default(14).describe("Newest days listed per source (1-90)."),
    })
    .strict(),
  output: z
    .object({
      agent: z.string(),
      sources: z.array(
        z
          .object({
            source: Source,
            enabled: z.boolean(),
            days: z.array(DayOut),
            truncated: z.boolean(),
            total_days: z.number().int(),
            total_segments: z.number().int(),
            total_bytes: z.number().int(),
            first_day: z.string().nullable(),
            last_day: z.string().nullable(),
          })
          .strict(),
      ),
      last_collection: z
        .object({
          run_id: z.string(),
          status: z.string(),
          finished_at: z.string(),
          records: z.number(),
          errors: z.number(),
          sources: z.record(z.string(), z.object({ status: z.string(), records: z.number() }).strict()),
        })
        .strict()
        .nullable(),
      dataset: z
        .object({
          id: z.string(),
          window: z
            .object({ start: z.string(), end: z.string(), split_at: z.string(), days: z.number() })
            .strict(),
          examples: z.object({ train: z.number().int(), val: z.number().int() }).strict(),
          quality: z
            .object({
              passed: z.boolean(),
              valid_ratio: z.number(),
              failures: z.array(z.string()),
              tasks: z.record(
                z.string(),
                z
                  .object({
                    status: z.string(),
                    reason: z.string().nullable(),
                    train: z.number().int(),
                    val: z.number().int(),
                    metric: z.string(),
                    best_baseline: z.string().nullable(),
                    baseline_score: z.number().nullable(),
                  })
                  .strict(),
              ),
            })
            .strict(),
        })
        .strict()
        .nullable(),
      next: z.string(),
    })
    .strict(),
  annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
  async run(args, call, env) {
    const { config, store } = env.ctx;
    const agent = call.agent(args.agent);
    const enabled = enabledSources(agentConfig(config, agent));
    const sources = [];
    for (const source of SOURCES) {
      const byDay = new Map<string, { segments: number; bytes: number }>();
      for (const seg of await listSegments(store, agent, source)) {
        const d = byDay.get(seg.day) ?? { segments: 0, bytes: 0 };
        d.segments++;
        d.bytes += seg.size;
        byDay.set(seg.day, d);
      }
      const days = [...byDay.entries()].sort((a, b) => (a[0] < b[0] ? 1 : -1));
      sources.push({
        source,
        enabled: enabled.includes(source),
        days: days.slice(0, args.days).map(([day, d]) => ({ day, ...d })),
        truncated: days.length > args.days,
        total_days: days.length,
        total_segments: days.reduce((n, [, d]) => n + d.segments, 0),
        total_bytes: days.reduce((n, [, d]) => n + d.bytes, 0),
        first_day: days.at(-1)?.[0] ?? null,
        last_day: days[0]?.[0] ?? null,
      });
    }
    const last = await lastCollection(env.ctx.store, agent);
    let manifest: Manifest | null = null;
    try {
      manifest = await readDatasetManifest(store, agent);
    } catch {
      manifest = null; // no dataset built yet
    }
    const dataset = manifest
      ? {
          id: manifest.id,
          window: manifest.window,
          examples: { train: manifest.counts.train, val: manifest.counts.val },
          quality: {
            passed: manifest.quality.passed,
            valid_ratio: manifest.quality.valid_ratio,
            failures: manifest.quality.failures.slice(0, 20),
            tasks: Object.fromEntries(
              Object.entries(manifest.quality.tasks).map(([task, q]) => [
                task,
                {
                  status: q.status,
                  reason: q.reason ?? null,
                  train: q.examples.train,
                  val: q.examples.val,
                  metric: q.primary_metric,
                  best_baseline: q.best_baseline,
                  baseline_score: q.best_baseline
                    ? (q.baselines[q.best_baseline]?.[q.primary_metric] ?? null)
                    : null,
                },
              ]),
            ),
          },
        }
      : null;
    const empty = sources.every((s) => s.total_segments === 0);
    const next = empty
      ? "Nothing collected yet: sources_check, then data_collect."
      : dataset && !dataset.quality.passed
        ? "The newest dataset failed its quality checks (see dataset.quality.failures): collect more days (data_collect) before training."
        : "training_start trains on this data (its build stage makes a fresh dataset from it).";
    const text = [
      `${agent}: raw data per source (newest day first)`,
      ...sources.map(
        (s) =>
          `  ${s.source}${s.enabled ? "" : " (off)"}: ${s.total_days} days, ${s.total_segments} segments, ${(s.total_bytes / 1024).toFixed(0)} KiB${s.last_day ? `, ${s.first_day}..${s.last_day}` : ""}`,
      ),
      last
        ? `last collection ${last.run_id}: ${last.status}, ${last.records} records, ${last.errors} errors at ${last.finished_at}`
        : "no collection report yet",
      dataset
        ? `dataset ${dataset.id}: ${dataset.examples.train} train / ${dataset.examples.val} validation examples, quality ${dataset.quality.passed ? "passed" : "FAILED"}; ${Object.entries(
            dataset.quality.tasks,
          )
            .map(
              ([t, q]) =>
                `${t} ${q.status === "built" ? `${q.train}/${q.val} (baseline ${q.best_baseline ?? "–"} ${pct(q.baseline_score)})` : `skipped: ${q.reason ?? "?"}`}`,
            )
            .join("; ")}`
        : "no dataset built yet",
      `next: ${next}`,
    ].join("\n");
    return { data: { agent, sources, last_collection: last, dataset, next }, text };
  },
});

async function lastCollection(store: ObjectStore, agent: string) {
  const reports = (await store.list(collectReportsPrefix(agent))).filter((o) => o.key.endsWith(".json"));
  const newest = reports.at(-1);
  if (!newest) return null;
  let r: CollectionReport;
  try {
    r = JSON.parse((await store.get(newest.key)).toString("utf8")) as CollectionReport;
  } catch {
    return null;
  }
  return {
    run_id: String(r.run_id),
    status: String(r.status),
    finished_at: String(r.finished_at),
    records: Number(r.totals?.records ?? 0),
    errors: Number(r.totals?.errors ?? 0),
    sources: Object.fromEntries(
      (r.sources ?? []).map((s) => [
        s.source,
        { status: String(s.status), records: s.queries.reduce((n, q) => n + (q.records ?? 0), 0) },
      ]),
    ),
  };
}
