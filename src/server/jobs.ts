// The job manager: what the MCP tools start, list, follow and cancel. Every job is a run of the
// pipeline (a collection, a training, or an evaluation: the evaluate stage alone); this file keeps
// no lifecycle of its own, only a job record per run (who asked, what) and the live progress and
// log of the runs this process executes. Views are computed in job-view.ts.
import type { Config } from "../config/index.js";
import { WorkError } from "../errors.js";
import { childLogger } from "../log.js";
import { peekRunLease } from "../pipeline/common/lease.js";
import { LOG_LINES_KEPT, type LogLine, type Progress, runKey } from "../pipeline/contract.js";
import { createPipeline } from "../pipeline/create.js";
import type { DeployHook } from "../pipeline/deploy/stage.js";
import {
  type Pipeline,
  type RunEvent,
  type RunRecord,
  STAGES,
  type StageFns,
  type StageName,
  type StartedRun,
  type StartRunOptions,
} from "../pipeline/run.js";
import type { ObjectStore } from "../store/index.js";
import { within } from "../util/turn.js";
import {
  isJobId,
  type JobKind,
  JobNotFoundError,
  type JobRecord,
  type JobState,
  type JobSummary,
  type JobView,
  jobKey,
  readJobRecord,
  recentJobRecords,
  ShutdownError,
  writeJobRecord,
} from "./job-records.js";
import { evaluationView, isLegacyEvaluation, runKind, runResult, runView, summary } from "./job-view.js";

export * from "./job-records.js";

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
      for (const rec of await recentJobRecords(this.store, agent, 50)) {
        if (rec.status !== "interrupted" && rec.status !== "running") continue;
        if (resumed.includes(rec.id) || this.runs.has(rec.id)) continue;
        try {
          if (isLegacyEvaluation(rec)) {
            const again = await this.continueLegacyEvaluation(rec);
            if (again) resumed.push(again);
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
    const all = Promise.allSettled([...[...this.runs.values()].map((r) => r.done), ...this.pending]);
    const timedOut = await within(
      all.then(() => false),
      graceMs,
      true,
    );
    if (timedOut) this.log.warn({ graceMs }, "jobs did not stop within the shutdown grace");
  }

  /** Settles once every job of this process has ended and its record is written. */
  async idle(): Promise<void> {
    while (this.pending.size) await Promise.allSettled([...this.pending]);
  }

  /** Jobs running in this process: every one is a run of the pipeline. */
  active(): { job_id: string; agent: string }[] {
    return [...this.runs.entries()].map(([id, r]) => ({ job_id: id, agent: r.agent }));
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

  /**
   * An evaluation job: a run with the evaluate stage alone, scoring `version` (resolved by the
   * caller) on the same examples as `against`. Returns the agent's running run when it has one.
   */
  async startEvaluation(
    agent: string,
    opts: { version: string; against: string | null; datasetId?: string; actor: string },
  ): Promise<StartedJob> {
    if (this.stopping)
      throw new WorkError("the server is shutting down; start the job again once it is back");
    const started = await this.pipeline.startRun({
      agent,
      stages: ["evaluate"],
      evaluate: { version: opts.version, against: opts.against },
      datasetId: opts.datasetId,
      trigger: { kind: "mcp", actor: opts.actor, reason: null },
    });
    return { started: started.started, job: await this.view(started.runId, agent) };
  }

  // ---- reading -------------------------------------------------------------------------------

  /**
   * The agent a job belongs to, looked for among `among` only (default every agent): a caller's
   * own agents, so another agent's job answers exactly as an unknown id does.
   */
  async agentOf(jobId: string, among: readonly string[] = Object.keys(this.config.agents)): Promise<string> {
    if (!isJobId(jobId))
      throw new JobNotFoundError(
        `no job "${jobId}": job ids look like r20260101-020000-000-ab12 (older evaluation jobs: j20260101-020000-000-ab12)`,
      );
    const live = this.runs.get(jobId)?.agent;
    if (live && among.includes(live)) return live;
    for (const agent of among) {
      if (await this.store.exists(jobKey(agent, jobId))) return agent;
      if (jobId.startsWith("r") && (await this.store.exists(runKey(agent, jobId)))) return agent;
    }
    throw new JobNotFoundError(`no job "${jobId}" for any configured agent (jobs_list shows the jobs)`);
  }

  async view(jobId: string, agent?: string): Promise<JobView> {
    const a = agent ?? (await this.agentOf(jobId));
    const rec = await readJobRecord(this.store, a, jobId);
    if (rec && isLegacyEvaluation(rec)) return evaluationView(rec);
    let run: RunRecord;
    try {
      run = await this.pipeline.getRun(jobId, a);
    } catch (err) {
      throw new JobNotFoundError(`no job "${jobId}" for agent ${a}: ${(err as Error).message}`);
    }
    return runView(run, rec, await this.runState(run, rec), this.runs.get(run.id)?.progress);
  }

  /** The newest jobs of the agents, newest first. */
  async list(
    agents: string[],
    opts: { limit: number; status?: JobState; kind?: JobKind },
  ): Promise<{ jobs: JobSummary[]; truncated: boolean }> {
    const all: JobSummary[] = [];
    const want = opts.limit + 1;
    for (const agent of agents) {
      const records = new Map((await recentJobRecords(this.store, agent, 200)).map((r) => [r.id, r]));
      {
        let n = 0;
        const unfiltered = !opts.kind && !opts.status;
        for (const run of await this.pipeline.listRuns(agent, unfiltered ? { limit: want } : {})) {
          const rec = records.get(run.id) ?? null;
          const v = runView(run, rec, await this.runState(run, rec), this.runs.get(run.id)?.progress);
          if ((opts.kind && v.kind !== opts.kind) || (opts.status && v.status !== opts.status)) continue;
          all.push(summary(v, run.model_version));
          if (++n >= want) break;
        }
      }
      if (!opts.kind || opts.kind === "evaluation") {
        for (const rec of records.values()) {
          if (!isLegacyEvaluation(rec)) continue;
          const v = evaluationView(rec);
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
    if (live?.log.length) lines = live.log;
    else {
      const rec = await readJobRecord(this.store, agent, jobId);
      if (rec && isLegacyEvaluation(rec)) lines = rec.log;
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
    const rec = await readJobRecord(this.store, agent, jobId);
    if (rec && isLegacyEvaluation(rec)) return false;
    if (rec?.status === "interrupted") {
      // Nothing runs it now: cancelling means it is not resumed.
      await writeJobRecord(this.store, {
        ...rec,
        status: "cancelled",
        interrupted_at: null,
        updated_at: this.iso(),
      });
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
      const listeners = this.runs.get(jobId)?.listeners;
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
      const evaluate = opts.evaluate ?? before?.options.evaluate;
      const kind = runKind(stages, Boolean(evaluate));
      const dataset_id = opts.datasetId ?? null;
      await this.writeRunJob(
        started.runId,
        started.agent,
        kind,
        opts.trigger?.actor ?? "pipeline",
        evaluate
          ? { version: evaluate.version, against: evaluate.against, dataset_id }
          : { stages, from_scratch: Boolean(opts.fromScratch), dataset_id },
      );
      const run = await started.done;
      unsubscribe();
      const rec = await readJobRecord(this.store, started.agent, started.runId);
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
    kind: JobKind,
    actor: string,
    request: Record<string, unknown>,
  ): Promise<void> {
    const existing = await readJobRecord(this.store, agent, id).catch(() => null);
    const at = this.iso();
    await writeJobRecord(this.store, {
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
    await writeJobRecord(this.store, {
      ...rec,
      status: interrupted ? "interrupted" : run.status === "running" ? "running" : run.status,
      interrupted_at: interrupted ? this.iso() : null,
      ended_at: run.ended_at,
      updated_at: this.iso(),
      error: interrupted ? null : run.error,
      result: runResult(run),
    });
  }

  /**
   * An evaluation job a server before evaluations were runs left running or interrupted (its own
   * record, a `j…` id): it is started again as an evaluation run, and its record says which.
   */
  private async continueLegacyEvaluation(rec: JobRecord): Promise<string | null> {
    const req = rec.request as { version?: unknown; against?: unknown; dataset_id?: unknown };
    let note = "it cannot be started again: its request names no version";
    let runId: string | null = null;
    if (typeof req.version === "string") {
      const s = await this.pipeline.startRun({
        agent: rec.agent,
        stages: ["evaluate"],
        evaluate: { version: req.version, against: typeof req.against === "string" ? req.against : null },
        datasetId: typeof req.dataset_id === "string" ? req.dataset_id : undefined,
        trigger: { kind: "resume", actor: rec.actor, reason: `continues evaluation job ${rec.id}` },
      });
      runId = s.started ? s.runId : null;
      note = s.started
        ? `continued as job ${s.runId}`
        : `not continued: run ${s.runId} of the agent was running; start model_evaluate again`;
    }
    const at = this.iso();
    await writeJobRecord(this.store, {
      ...rec,
      status: "failed",
      error: `interrupted by a server shutdown; ${note}`,
      progress: null,
      interrupted_at: null,
      ended_at: at,
      updated_at: at,
    });
    return runId;
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
}
