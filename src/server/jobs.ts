// Jobs: the long work a tool call starts and returns from at once. A collect or training job is a
// pipeline run (its id is the run id, so runs the scheduler or the CLI started are jobs too); an
// evaluation job scores a registered version. Every job started in this process gets a record in
// the store (jobs/<agent>/<id>.json: kind, who asked, and whether a shutdown interrupted it), so a
// restarted server lists past jobs and resumes the interrupted ones.
//
// Shutdown aborts with a ShutdownError, never the pipeline's CancelledError: the train stage
// writes a checkpoint and a Kubernetes training Job is left running, and the run is resumed by the
// next server instead of counting as cancelled by a person.
import * as z from "zod";
import type { Config } from "../config/index.js";
import { UsageError, WorkError } from "../errors.js";
import { childLogger } from "../log.js";
import { timeId } from "../pipeline/common/ids.js";
import { peekRunLease } from "../pipeline/common/lease.js";
import { LOG_LINES_KEPT, LogLine, PROGRESS_WRITE_MS, Progress, stageOutput } from "../pipeline/contract.js";
import { createPipeline } from "../pipeline/create.js";
import type { DeployHook } from "../pipeline/deploy/stage.js";
import { evaluateVersion } from "../pipeline/evaluate.js";
import {
  CancelledError,
  type Pipeline,
  type RunEvent,
  type RunRecord,
  STAGES,
  type StageFns,
  type StageName,
  type StartedRun,
  type StartRunOptions,
} from "../pipeline/run.js";
import { NotFoundError, type ObjectStore } from "../store/index.js";

export const JOB_KINDS = ["collect", "training", "evaluation"] as const;
export type JobKind = (typeof JOB_KINDS)[number];
export const JOB_STATES = ["running", "succeeded", "failed", "cancelled", "interrupted"] as const;
export type JobState = (typeof JOB_STATES)[number];

const JOB_ID_RE = /^[rj]\d{8}-\d{6}-\d{3}-[0-9a-f]{4}$/;

/** A server shutdown: the job stops at a step boundary and is resumed by the next server. */
export class ShutdownError extends Error {
  override name = "ShutdownError";
}

export class JobNotFoundError extends WorkError {
  override name = "JobNotFoundError";
}

export const JobRecord = z
  .object({
    schema: z.literal(1),
    id: z.string().regex(JOB_ID_RE),
    kind: z.enum(JOB_KINDS),
    agent: z.string(),
    status: z.enum(JOB_STATES),
    /** Who started it: "mcp:<identity>", "schedule", "startup". */
    actor: z.string(),
    created_at: z.string(),
    updated_at: z.string(),
    ended_at: z.string().nullable(),
    /** The pipeline run of a collect or training job (the same id). */
    run_id: z.string().nullable(),
    /** What was asked. */
    request: z.record(z.string(), z.unknown()),
    result: z.record(z.string(), z.unknown()).nullable(),
    error: z.string().nullable(),
    /** Evaluation jobs keep their own progress and log (a run keeps them in run.json). */
    progress: Progress.nullable(),
    log: z.array(LogLine),
    /** When a server shutdown stopped it; the next server resumes it. */
    interrupted_at: z.string().nullable(),
  })
  .strict();
export type JobRecord = z.infer<typeof JobRecord>;

/** What job_status and trm://jobs/{id} show. */
export const JobView = z
  .object({
    job_id: z.string(),
    kind: z.enum(JOB_KINDS),
    agent: z.string(),
    status: z.enum(JOB_STATES),
    actor: z.string(),
    created_at: z.string(),
    updated_at: z.string(),
    ended_at: z.string().nullable(),
    stage: z.string().nullable(),
    step: z.number().nullable(),
    total_steps: z.number().nullable(),
    eta_s: z.number().nullable(),
    /** 0..1 over the whole job. */
    fraction: z.number().nullable(),
    message: z.string().nullable(),
    metrics: z.record(z.string(), z.number()),
    stages: z.array(
      z
        .object({
          name: z.string(),
          status: z.string(),
          attempts: z.number().int(),
          error: z.string().nullable(),
          started_at: z.string().nullable(),
          ended_at: z.string().nullable(),
        })
        .strict(),
    ),
    result: z.record(z.string(), z.unknown()).nullable(),
    error: z.string().nullable(),
    /** What to call next. */
    next: z.string(),
  })
  .strict();
export type JobView = z.infer<typeof JobView>;

export type JobSummary = Pick<
  JobView,
  "job_id" | "kind" | "agent" | "status" | "stage" | "actor" | "created_at" | "ended_at" | "error"
> & { model_version: string | null };

export function jobKey(agent: string, id: string): string {
  return `jobs/${agent}/${id}.json`;
}

export function isJobId(id: string): boolean {
  return JOB_ID_RE.test(id);
}

export interface JobManagerOptions {
  config: Config;
  store: ObjectStore;
  /** Stage implementations to use instead of the real ones (tests). */
  stages?: Partial<StageFns>;
  deployHooks?: DeployHook[];
  now?: () => Date;
}

interface LiveRun {
  agent: string;
  progress: Progress | null;
  log: LogLine[];
  listeners: Set<() => void>;
  done: Promise<unknown>;
}

interface LiveEvaluation {
  record: JobRecord;
  controller: AbortController;
  listeners: Set<() => void>;
  done: Promise<void>;
}

export interface StartedJob {
  /** False when the agent already had such a job running: `job` is that one. */
  started: boolean;
  job: JobView;
}

export class JobManager {
  readonly pipeline: Pipeline;
  private readonly config: Config;
  private readonly store: ObjectStore;
  private readonly now: () => Date;
  private readonly runs = new Map<string, LiveRun>();
  private readonly evaluations = new Map<string, LiveEvaluation>();
  private readonly pending = new Set<Promise<unknown>>();
  private readonly log = childLogger({ component: "jobs" });
  private stopping = false;
  /** Fired by a shutdown: every run of the pipeline stops at a step boundary, resumable. */
  private readonly halt = new AbortController();

  constructor(opts: JobManagerOptions) {
    this.config = opts.config;
    this.store = opts.store;
    this.now = opts.now ?? (() => new Date());
    this.pipeline = createPipeline(opts.config, {
      store: opts.store,
      stages: opts.stages,
      deployHooks: opts.deployHooks,
      now: this.now,
      signal: this.halt.signal,
      onRunStarted: (started, o) => this.trackRun(started, o),
    });
  }

  /** Resumes what the last server left: runs whose process died, and jobs a shutdown interrupted. */
  async start(): Promise<string[]> {
    const resumed: string[] = [];
    if (!this.config.runs.resume_on_start) return resumed;
    for (const s of await this.pipeline.resumeInterrupted()) resumed.push(s.runId);
    for (const agent of Object.keys(this.config.agents)) {
      for (const rec of await this.recentRecords(agent, 50)) {
        if (rec.status !== "interrupted" && rec.status !== "running") continue;
        if (resumed.includes(rec.id) || this.runs.has(rec.id) || this.evaluations.has(rec.id)) continue;
        try {
          if (rec.kind === "evaluation") {
            this.runEvaluation({ ...rec, status: "running", interrupted_at: null, ended_at: null });
            resumed.push(rec.id);
            continue;
          }
          const run = await this.pipeline.getRun(rec.id, agent).catch(() => null);
          // A run still marked running was handled by resumeInterrupted (or runs elsewhere).
          if (!run || run.status === "running" || run.status === "succeeded" || run.status === "failed") {
            if (run && run.status !== "running") await this.finishRunRecord(rec, run);
            continue;
          }
          if (rec.status !== "interrupted") continue;
          const s = await this.pipeline.startRun({
            agent,
            resume: rec.id,
            trigger: { kind: "resume", actor: "startup", reason: "interrupted by a server shutdown" },
          });
          if (s.started) resumed.push(s.runId);
        } catch (err) {
          this.log.error({ err, job: rec.id }, "could not resume an interrupted job");
        }
      }
    }
    if (resumed.length) this.log.info({ jobs: resumed }, "resumed interrupted jobs");
    return resumed;
  }

  /** Stops every job at its next step boundary (checkpoint written) and waits up to graceMs. */
  async shutdown(graceMs: number): Promise<void> {
    this.stopping = true;
    const reason = new ShutdownError("the server is shutting down; the job resumes when it starts again");
    this.halt.abort(reason);
    for (const e of this.evaluations.values()) e.controller.abort(reason);
    const all = Promise.allSettled([
      ...[...this.runs.values()].map((r) => r.done),
      ...[...this.evaluations.values()].map((e) => e.done),
      ...this.pending,
    ]);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      all.then(() => false),
      new Promise<boolean>((r) => {
        timer = setTimeout(() => r(true), graceMs);
      }),
    ]);
    clearTimeout(timer);
    if (timedOut) this.log.warn({ graceMs }, "jobs did not stop within the shutdown grace");
  }

  /** Settles once every job of this process has ended and its record is written. */
  async idle(): Promise<void> {
    while (this.pending.size) await Promise.allSettled([...this.pending]);
  }

  /** Jobs running in this process. */
  active(): { job_id: string; agent: string; kind: "run" | "evaluation" }[] {
    return [
      ...[...this.runs.entries()].map(([id, r]) => ({ job_id: id, agent: r.agent, kind: "run" as const })),
      ...[...this.evaluations.values()].map((e) => ({
        job_id: e.record.id,
        agent: e.record.agent,
        kind: "evaluation" as const,
      })),
    ];
  }

  // ---- starting ------------------------------------------------------------------------------

  /** A collect or training job: a pipeline run. Returns the agent's running run when it has one. */
  async startRun(
    agent: string,
    opts: {
      kind: "collect" | "training";
      stages?: StageName[];
      fromScratch?: boolean;
      datasetId?: string;
      actor: string;
    },
  ): Promise<StartedJob> {
    if (this.stopping)
      throw new WorkError("the server is shutting down; start the job again once it is back");
    const started = await this.pipeline.startRun({
      agent,
      stages: opts.kind === "collect" ? ["collect"] : opts.stages,
      fromScratch: opts.fromScratch,
      datasetId: opts.datasetId,
      trigger: { kind: "mcp", actor: opts.actor, reason: null },
    });
    return { started: started.started, job: await this.view(started.runId, agent) };
  }

  /** An evaluation job; returns the agent's running evaluation when it has one. */
  async startEvaluation(
    agent: string,
    opts: { version: string; against: string | null; datasetId?: string; actor: string },
  ): Promise<StartedJob> {
    if (this.stopping)
      throw new WorkError("the server is shutting down; start the job again once it is back");
    for (const e of this.evaluations.values())
      if (e.record.agent === agent) return { started: false, job: this.evaluationView(e.record) };
    const at = this.now().toISOString();
    const record: JobRecord = {
      schema: 1,
      id: timeId("j", this.now()),
      kind: "evaluation",
      agent,
      status: "running",
      actor: opts.actor,
      created_at: at,
      updated_at: at,
      ended_at: null,
      run_id: null,
      request: { version: opts.version, against: opts.against, dataset_id: opts.datasetId ?? null },
      result: null,
      error: null,
      progress: null,
      log: [],
      interrupted_at: null,
    };
    await this.writeRecord(record);
    this.runEvaluation(record);
    return { started: true, job: this.evaluationView(record) };
  }

  // ---- reading -------------------------------------------------------------------------------

  /**
   * The agent a job belongs to, looked for among `among` only (default every agent): a caller's
   * own agents, so another agent's job answers exactly as an unknown id does.
   */
  async agentOf(jobId: string, among: readonly string[] = Object.keys(this.config.agents)): Promise<string> {
    if (!isJobId(jobId))
      throw new JobNotFoundError(
        `no job "${jobId}": job ids look like r20260101-020000-000-ab12 (runs) or j20260101-020000-000-ab12 (evaluations)`,
      );
    const live = this.runs.get(jobId)?.agent ?? this.evaluations.get(jobId)?.record.agent;
    if (live && among.includes(live)) return live;
    for (const agent of among) {
      if (await this.store.exists(jobKey(agent, jobId))) return agent;
      if (jobId.startsWith("r") && (await this.store.exists(`runs/${agent}/${jobId}/run.json`))) return agent;
    }
    throw new JobNotFoundError(`no job "${jobId}" for any configured agent (jobs_list shows the jobs)`);
  }

  async view(jobId: string, agent?: string): Promise<JobView> {
    const a = agent ?? (await this.agentOf(jobId));
    const live = this.evaluations.get(jobId);
    if (live) return this.evaluationView(live.record);
    const rec = await this.readRecord(a, jobId);
    if (rec?.kind === "evaluation") return this.evaluationView(rec);
    let run: RunRecord;
    try {
      run = await this.pipeline.getRun(jobId, a);
    } catch (err) {
      throw new JobNotFoundError(`no job "${jobId}" for agent ${a}: ${(err as Error).message}`);
    }
    return this.runView(run, rec, await this.runState(run, rec));
  }

  /** The newest jobs of the agents, newest first. */
  async list(
    agents: string[],
    opts: { limit: number; status?: JobState; kind?: JobKind },
  ): Promise<{ jobs: JobSummary[]; truncated: boolean }> {
    const all: JobSummary[] = [];
    const want = opts.limit + 1;
    for (const agent of agents) {
      const records = new Map((await this.recentRecords(agent, 200)).map((r) => [r.id, r]));
      if (opts.kind !== "evaluation") {
        let n = 0;
        const unfiltered = !opts.kind && !opts.status;
        for (const run of await this.pipeline.listRuns(agent, unfiltered ? { limit: want } : {})) {
          const rec = records.get(run.id) ?? null;
          const v = this.runView(run, rec, await this.runState(run, rec));
          if ((opts.kind && v.kind !== opts.kind) || (opts.status && v.status !== opts.status)) continue;
          all.push(summary(v, run.model_version));
          if (++n >= want) break;
        }
      }
      if (!opts.kind || opts.kind === "evaluation") {
        for (const rec of records.values()) {
          if (rec.kind !== "evaluation") continue;
          const v = this.evaluationView(this.evaluations.get(rec.id)?.record ?? rec);
          if (opts.status && v.status !== opts.status) continue;
          all.push(summary(v, null));
        }
      }
    }
    all.sort((a, b) => (a.created_at < b.created_at ? 1 : a.created_at > b.created_at ? -1 : 0));
    return { jobs: all.slice(0, opts.limit), truncated: all.length > opts.limit };
  }

  /** The newest log lines of a job (at most `limit`), oldest first. */
  async logs(
    jobId: string,
    agent: string,
    opts: { limit: number; stage?: string; minLevel?: LogLine["level"] },
  ): Promise<{ lines: LogLine[]; total: number }> {
    let lines: LogLine[];
    const live = this.runs.get(jobId);
    const ev = this.evaluations.get(jobId);
    if (ev) lines = ev.record.log;
    else if (live?.log.length) lines = live.log;
    else {
      const rec = await this.readRecord(agent, jobId);
      if (rec?.kind === "evaluation") lines = rec.log;
      else lines = (await this.pipeline.getRun(jobId, agent)).log;
    }
    const order = ["debug", "info", "warn", "error"];
    const min = order.indexOf(opts.minLevel ?? "debug");
    const kept = lines.filter(
      (l) => order.indexOf(l.level) >= min && (!opts.stage || l.stage === opts.stage),
    );
    return { lines: kept.slice(-opts.limit), total: kept.length };
  }

  /** Asks a running job to stop; false when it was not running. */
  async cancel(jobId: string, agent: string): Promise<boolean> {
    const ev = this.evaluations.get(jobId);
    if (ev) {
      ev.controller.abort(new CancelledError("cancelled on request"));
      return true;
    }
    const rec = await this.readRecord(agent, jobId);
    if (rec?.kind === "evaluation") return false;
    if (rec?.status === "interrupted") {
      // Nothing runs it now: cancelling means it is not resumed.
      await this.writeRecord({ ...rec, status: "cancelled", interrupted_at: null, updated_at: this.iso() });
      return true;
    }
    return this.pipeline.cancel(jobId, agent);
  }

  /**
   * Waits until the job ends, up to timeoutMs, calling onUpdate as it progresses. Returns the
   * job as it stands then.
   */
  async follow(
    jobId: string,
    agent: string,
    opts: { timeoutMs: number; signal?: AbortSignal; onUpdate?: (v: JobView) => void },
  ): Promise<JobView> {
    const deadline = Date.now() + opts.timeoutMs;
    let view = await this.view(jobId, agent);
    opts.onUpdate?.(view);
    while (view.status === "running" && Date.now() < deadline && !opts.signal?.aborted) {
      const listeners = this.runs.get(jobId)?.listeners ?? this.evaluations.get(jobId)?.listeners;
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          listeners?.delete(wake);
          opts.signal?.removeEventListener("abort", wake);
          resolve();
        };
        // In this process an event wakes us; a run elsewhere is polled.
        const timer = setTimeout(wake, Math.max(0, Math.min(listeners ? 5000 : 1000, deadline - Date.now())));
        listeners?.add(wake);
        opts.signal?.addEventListener("abort", wake, { once: true });
      });
      view = await this.view(jobId, agent);
      opts.onUpdate?.(view);
    }
    return view;
  }

  // ---- internals -----------------------------------------------------------------------------

  private iso(): string {
    return this.now().toISOString();
  }

  /** Every run this process starts (tools, scheduler, resume) is followed and gets a job record. */
  private trackRun(started: StartedRun, opts: StartRunOptions): void {
    const live: LiveRun = {
      agent: started.agent,
      progress: null,
      log: [],
      listeners: new Set(),
      done: started.done,
    };
    this.runs.set(started.runId, live);
    const notify = () => {
      for (const fn of [...live.listeners]) fn();
    };
    const unsubscribe = this.pipeline.subscribe(started.runId, (e: RunEvent) => {
      if (e.type === "progress") live.progress = e.progress;
      else if (e.type === "log") {
        live.log.push(e.line);
        if (live.log.length > LOG_LINES_KEPT) live.log.splice(0, live.log.length - LOG_LINES_KEPT);
      } else if (e.type === "stage" && e.status !== "running") live.progress = null;
      if (e.type !== "log") notify();
    });
    const work = (async () => {
      // A resume names no stages: the run record says which were asked for.
      const before = opts.stages
        ? null
        : await this.pipeline.getRun(started.runId, started.agent).catch(() => null);
      const stages = opts.stages ??
        before?.stages.filter((s) => s.requested).map((s) => s.name) ?? [...STAGES];
      const kind = stages.length === 1 && stages[0] === "collect" ? "collect" : "training";
      await this.writeRunJob(started.runId, started.agent, kind, opts.trigger?.actor ?? "pipeline", {
        stages,
        from_scratch: Boolean(opts.fromScratch),
        dataset_id: opts.datasetId ?? null,
      });
      const run = await started.done;
      unsubscribe();
      const rec = await this.readRecord(started.agent, started.runId);
      if (rec) await this.finishRunRecord(rec, run);
    })()
      .catch((err) => this.log.error({ err, job: started.runId }, "could not record a job"))
      .finally(() => {
        this.runs.delete(started.runId);
        notify();
      });
    this.track(work);
  }

  private async writeRunJob(
    id: string,
    agent: string,
    kind: "collect" | "training",
    actor: string,
    request: Record<string, unknown>,
  ): Promise<void> {
    const existing = await this.readRecord(agent, id).catch(() => null);
    const at = this.iso();
    await this.writeRecord({
      schema: 1,
      id,
      kind,
      agent,
      status: "running",
      // A resumed run keeps who started it and what they asked.
      actor: existing?.actor ?? actor,
      created_at: existing?.created_at ?? at,
      updated_at: at,
      ended_at: null,
      run_id: id,
      request: existing?.request ?? request,
      result: null,
      error: null,
      progress: null,
      log: [],
      interrupted_at: null,
    });
  }

  private async finishRunRecord(rec: JobRecord, run: RunRecord): Promise<void> {
    const interrupted = run.status === "cancelled" && this.pipeline.stopping;
    await this.writeRecord({
      ...rec,
      status: interrupted ? "interrupted" : run.status === "running" ? "running" : run.status,
      interrupted_at: interrupted ? this.iso() : null,
      ended_at: run.ended_at,
      updated_at: this.iso(),
      error: interrupted ? null : run.error,
      result: runResult(run),
    });
  }

  private runEvaluation(record: JobRecord): void {
    const controller = new AbortController();
    const listeners = new Set<() => void>();
    const notify = () => {
      for (const fn of [...listeners]) fn();
    };
    const logLine = (level: LogLine["level"], msg: string) => {
      record.log.push({ at: this.iso(), level, stage: "evaluate", msg });
      if (record.log.length > LOG_LINES_KEPT) record.log.splice(0, record.log.length - LOG_LINES_KEPT);
    };
    let lastWrite = 0;
    const req = record.request as { version: string; against: string | null; dataset_id: string | null };
    const done = (async () => {
      logLine(
        "info",
        `evaluating ${req.version} of ${record.agent}${req.against ? ` against ${req.against}` : ""}`,
      );
      try {
        const { result, key } = await evaluateVersion({
          config: this.config,
          store: this.store,
          registry: this.pipeline.registry,
          agent: record.agent,
          version: req.version,
          against: req.against,
          datasetId: req.dataset_id ?? undefined,
          signal: controller.signal,
          onProgress: (p) => {
            record.progress = {
              stage: "evaluate",
              message: p.message,
              step: p.done,
              total: p.total,
              eta_s: null,
              metrics: {},
              at: this.iso(),
            };
            notify();
            if (Date.now() - lastWrite > PROGRESS_WRITE_MS) {
              lastWrite = Date.now();
              void this.writeRecord(record).catch(() => undefined);
            }
          },
        });
        for (const r of result.gate.reasons) logLine(result.gate.passed ? "info" : "warn", r);
        record.status = "succeeded";
        record.result = {
          version: result.candidate.version,
          against: result.champion?.version ?? null,
          dataset_id: result.dataset_id,
          examples: result.examples,
          stored_at: key,
          gate: { passed: result.gate.passed, reasons: result.gate.reasons },
          tasks: Object.fromEntries(
            Object.values(result.tasks).map((t) => [
              t.task,
              {
                metric: t.primary,
                examples: t.examples,
                score: t.candidate.score,
                against: t.champion?.score ?? null,
                best_baseline: t.best_baseline
                  ? { name: t.best_baseline, score: t.baselines[t.best_baseline].score }
                  : null,
              },
            ]),
          ),
        };
      } catch (err) {
        const reason = controller.signal.reason;
        if (reason instanceof ShutdownError) {
          record.status = "interrupted";
          record.interrupted_at = this.iso();
          logLine("warn", "interrupted by a server shutdown; the next server runs it again");
        } else if (controller.signal.aborted) {
          record.status = "cancelled";
          record.error = "cancelled";
          logLine("warn", "cancelled on request");
        } else {
          record.status = "failed";
          record.error = (err as Error).message ?? String(err);
          logLine("error", `evaluation failed: ${record.error}`);
        }
      }
      record.ended_at = record.status === "interrupted" ? null : this.iso();
      record.progress = null;
      record.updated_at = this.iso();
      await this.writeRecord(record).catch((err) =>
        this.log.error({ err, job: record.id }, "could not write the evaluation job"),
      );
    })().finally(() => {
      this.evaluations.delete(record.id);
      notify();
    });
    this.evaluations.set(record.id, { record, controller, listeners, done });
    this.track(done);
  }

  private track(p: Promise<unknown>): void {
    this.pending.add(p);
    p.finally(() => this.pending.delete(p)).catch(() => undefined);
  }

  private async runState(run: RunRecord, rec: JobRecord | null): Promise<JobState> {
    if (run.status === "cancelled" && rec?.status === "interrupted") return "interrupted";
    if (run.status !== "running") return run.status;
    if (this.runs.has(run.id)) return "running";
    // Running elsewhere (another process, on any host, holds the agent's run lease), or it died.
    const owner = await peekRunLease(this.store, run.agent);
    return owner?.holder === run.id ? "running" : "interrupted";
  }

  private runView(run: RunRecord, rec: JobRecord | null, status: JobState): JobView {
    const live = this.runs.get(run.id);
    const requested = run.stages.filter((s) => s.requested);
    const current = requested.find((s) => s.status === "running") ?? null;
    // Progress left over from a stage that has ended says nothing about the current one.
    const latest = status === "running" ? (live?.progress ?? run.progress) : null;
    const progress = latest && latest.stage === current?.name ? latest : null;
    const finished = requested.filter((s) => s.status !== "pending" && s.status !== "running").length;
    const stageFraction =
      progress && progress.step !== null && progress.total ? Math.min(1, progress.step / progress.total) : 0;
    const kind: JobKind =
      rec?.kind ?? (requested.length === 1 && requested[0].name === "collect" ? "collect" : "training");
    const result = runResult(run);
    return {
      job_id: run.id,
      kind,
      agent: run.agent,
      status,
      actor: rec?.actor ?? run.trigger.actor,
      created_at: run.created_at,
      updated_at: run.updated_at,
      ended_at: run.ended_at,
      stage: current?.name ?? progress?.stage ?? null,
      step: progress?.step ?? null,
      total_steps: progress?.total ?? null,
      eta_s: progress?.eta_s === null || progress?.eta_s === undefined ? null : Math.round(progress.eta_s),
      fraction:
        status === "succeeded"
          ? 1
          : requested.length
            ? Math.round(((finished + stageFraction) / requested.length) * 1000) / 1000
            : null,
      message: progress?.message ?? null,
      metrics: progress?.metrics ?? {},
      stages: requested.map((s) => ({
        name: s.name,
        status: s.status,
        attempts: s.attempts.length,
        error: s.error,
        started_at: s.started_at,
        ended_at: s.ended_at,
      })),
      result,
      error: status === "interrupted" ? null : run.error,
      next: nextHint(kind, status, result),
    };
  }

  private evaluationView(rec: JobRecord): JobView {
    const p = rec.progress;
    return {
      job_id: rec.id,
      kind: "evaluation",
      agent: rec.agent,
      status: rec.status,
      actor: rec.actor,
      created_at: rec.created_at,
      updated_at: rec.updated_at,
      ended_at: rec.ended_at,
      stage: rec.status === "running" ? "evaluate" : null,
      step: p?.step ?? null,
      total_steps: p?.total ?? null,
      eta_s: null,
      fraction: rec.status === "succeeded" ? 1 : p?.step !== null && p?.total ? p.step! / p.total : null,
      message: p?.message ?? null,
      metrics: {},
      stages: [],
      result: rec.result,
      error: rec.error,
      next: nextHint("evaluation", rec.status, rec.result),
    };
  }

  private async readRecord(agent: string, id: string): Promise<JobRecord | null> {
    let body: Buffer;
    try {
      body = await this.store.get(jobKey(agent, id));
    } catch (err) {
      if (err instanceof NotFoundError) return null;
      throw err;
    }
    const r = JobRecord.safeParse(JSON.parse(body.toString("utf8")));
    if (!r.success) {
      this.log.warn({ key: jobKey(agent, id) }, "ignoring a job record that does not validate");
      return null;
    }
    return r.data;
  }

  private async writeRecord(rec: JobRecord): Promise<void> {
    await this.store.put(jobKey(rec.agent, rec.id), `${JSON.stringify(JobRecord.parse(rec), null, 2)}\n`, {
      contentType: "application/json",
    });
  }

  /** The newest job records of an agent (ids sort by time within a prefix). */
  private async recentRecords(agent: string, n: number): Promise<JobRecord[]> {
    const ids = (await this.store.list(`jobs/${agent}`))
      .map((o) => /^jobs\/[^/]+\/([^/]+)\.json$/.exec(o.key)?.[1])
      .filter((id): id is string => Boolean(id && isJobId(id)))
      .sort((a, b) => (a.slice(1) < b.slice(1) ? 1 : -1))
      .slice(0, n);
    const out: JobRecord[] = [];
    for (const id of ids) {
      const r = await this.readRecord(agent, id);
      if (r) out.push(r);
    }
    return out;
  }
}

function summary(v: JobView, modelVersion: string | null): JobSummary {
  return {
    job_id: v.job_id,
    kind: v.kind,
    agent: v.agent,
    status: v.status,
    stage: v.stage,
    actor: v.actor,
    created_at: v.created_at,
    ended_at: v.ended_at,
    error: v.error,
    model_version: modelVersion,
  };
}

/** The outputs of a run that a caller acts on. */
function runResult(run: RunRecord): Record<string, unknown> | null {
  const result: Record<string, unknown> = {};
  const c = stageOutput(run, "collect");
  if (c && "records" in c) result.collect = { records: c.records, errors: c.errors, sources: c.sources };
  const b = stageOutput(run, "build");
  if (b && "dataset_id" in b) result.dataset = { id: b.dataset_id, examples: b.examples, reused: b.reused };
  const t = stageOutput(run, "train");
  if (t && "steps" in t)
    result.training = {
      steps: t.steps,
      best_step: t.best_step,
      best_score: t.best_score,
      stopped: t.stopped,
      fine_tuned_from: t.parent_version ?? null,
    };
  const e = stageOutput(run, "evaluate");
  if (e && "gate" in e) result.gate = e.gate;
  if (e && "scores" in e) result.scores = e.scores;
  const d = stageOutput(run, "deploy");
  if (d && "version" in d)
    result.deploy = {
      version: d.version,
      promoted_to: d.promoted_to ?? null,
      previous_champion: d.previous_champion ?? null,
    };
  if (run.model_version) result.model_version = run.model_version;
  return Object.keys(result).length ? result : null;
}

function nextHint(kind: JobKind, status: JobState, result: Record<string, unknown> | null): string {
  switch (status) {
    case "running":
      return "Call job_status again (wait_s up to 25 waits for it), job_logs for its log, job_cancel to stop it.";
    case "interrupted":
      return "A server shutdown (or crash) stopped this job at a checkpoint; the server resumes it when it starts, and job_status follows it from there. job_cancel drops it.";
    case "cancelled":
      return kind === "evaluation"
        ? "Cancelled. model_evaluate starts another."
        : "Cancelled; training_start (or data_collect) starts a new run; a new training resumes nothing.";
    case "failed":
      return "Read job_logs (min_level: warn) for the cause; fix it (sources_check, data_status) and start the job again.";
    case "succeeded":
      break;
  }
  if (kind === "collect")
    return "Collected. data_status shows what has accumulated; training_start trains on it.";
  if (kind === "evaluation") {
    const gate = result?.gate as { passed?: boolean } | undefined;
    return gate?.passed
      ? "The version passed the gate. model_compare shows it beside the champion; model_promote makes it champion."
      : "The version failed the gate (reasons in result.gate). model_promote needs force to override that; think twice.";
  }
  const deploy = result?.deploy as { version?: string; promoted_to?: string | null } | undefined;
  if (!deploy?.version)
    return "Done. data_status or jobs_list shows what it produced; training_start with all stages registers a model.";
  return deploy.promoted_to
    ? `Version ${deploy.version} is now ${deploy.promoted_to}. model_compare against the previous champion, model_predict to try it, model_rollback if it misbehaves.`
    : `Version ${deploy.version} is registered but not promoted (gate failed: see result.gate). model_compare shows why; model_promote with force overrides the gate.`;
}

/** Rejects job ids of the wrong shape before they reach the store. */
export function checkJobId(id: string): string {
  if (!isJobId(id)) throw new UsageError(`"${id}" is not a job id (e.g. r20260101-020000-000-ab12)`);
  return id;
}
