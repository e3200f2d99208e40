// Runs the pipeline for one agent: collect -> build -> train -> evaluate -> deploy. The same
// Pipeline backs the CLI (`trm-forge run`), the scheduler and the MCP tools.
//
// - One run per agent at a time, across processes and hosts: a lease in the store
//   (locks/<agent>/run.json, common/lease.ts). A second trigger gets the running run's id back
//   instead of a new run; a run whose lease is lost (its process stalled past the expiry and
//   another took over) stops.
// - The run record (runs/<agent>/<run-id>/run.json) is rewritten atomically on every change.
// - Resume: a run that was interrupted (its process died) continues from its first unfinished
//   stage; the train stage continues from its last checkpoint.
// - Cancel: an AbortSignal (or `cancel(runId)`, also from another host) stops the run at the
//   next step boundary and marks it cancelled.
// - Retries: a stage that fails for a transient reason is retried with exponential backoff;
//   every attempt is kept in the record.
import { agentName, type Config } from "../config/index.js";
import { UsageError, WorkError } from "../errors.js";
import { childLogger } from "../log.js";
import { runLastSuccess, runsTotal } from "../metrics.js";
import type { ObjectStore } from "../store/index.js";
import { within } from "../util/turn.js";
import { timeId } from "./common/ids.js";
import {
  clearCancel,
  type LeaseResult,
  peekRunLease,
  requestCancel,
  runLeaseKey,
  tryRunLease,
} from "./common/lease.js";
import { currentOwner } from "./common/lock.js";
import { CancelledError, isCancel, isSuspend, SuspendSignal, sleep } from "./common/retry.js";
import {
  isTerminal,
  listRunIds,
  RunNotFoundError,
  type RunRecord,
  type RunStatus,
  readRun,
  runKey,
  type StageFns,
  type StageName,
  writeRun,
} from "./contract.js";
import { latestDatasetId } from "./dataset/index.js";
import { ModelRegistry } from "./deploy/registry.js";
import { newRecord, normaliseStages, prepareResume, prepareWorker } from "./run/prepare.js";
import { RecordWriter } from "./run/record-writer.js";
import { runStage, type StageEnv } from "./run/stage-attempts.js";
import type { PipelineOptions, RunEvent, StartedRun, StartRunOptions } from "./run/types.js";

export { CancelledError, isTransient, TransientError } from "./common/retry.js";
export type {
  Attempt,
  Progress,
  RunRecord,
  RunStatus,
  StageContext,
  StageFn,
  StageFns,
  StageRecord,
  StageStatus,
  Trigger,
} from "./contract.js";
export { STAGES, type StageName } from "./contract.js";
export { normaliseStages } from "./run/prepare.js";
export type { PipelineOptions, RunEvent, StartedRun, StartRunOptions } from "./run/types.js";

interface ActiveRun {
  agent: string;
  controller: AbortController;
  done: Promise<RunRecord>;
  listeners: Set<(e: RunEvent) => void>;
}

export class Pipeline {
  readonly config: Config;
  readonly store: ObjectStore;
  readonly registry: ModelRegistry;
  private readonly stages: StageFns;
  private readonly now: () => Date;
  private readonly stageEnv: StageEnv;
  private readonly active = new Map<string, ActiveRun>();

  constructor(private readonly opts: PipelineOptions) {
    this.config = opts.config;
    this.store = opts.store;
    this.stages = opts.stages;
    this.now = opts.now ?? (() => new Date());
    this.registry = new ModelRegistry(opts.store, { dataDir: opts.config.data_dir, now: this.now });
    this.stageEnv = {
      stages: this.stages,
      config: opts.config,
      store: opts.store,
      registry: this.registry,
      now: this.now,
      sleep: opts.sleep ?? sleep,
      decideDataset: (record) => this.decideDataset(record),
    };
  }

  /**
   * Starts a run (or resumes one) and returns at once with its id; `done` settles when it ends.
   * When the agent already has a running run, returns that run's id with started: false.
   */
  async startRun(opts: StartRunOptions): Promise<StartedRun> {
    if (this.opts.signal?.aborted)
      throw new WorkError("the server is shutting down; start the job again once it is back");
    const started = await this.start({
      ...opts,
      signal: this.opts.signal
        ? AbortSignal.any([opts.signal, this.opts.signal].filter((x) => !!x))
        : opts.signal,
    });
    if (started.started) this.opts.onRunStarted?.(started, opts);
    return started;
  }

  /** Whether the pipeline's own signal (a shutdown) has stopped it. */
  get stopping(): boolean {
    return Boolean(this.opts.signal?.aborted);
  }

  private async start(opts: StartRunOptions): Promise<StartedRun> {
    const agent = this.checkAgent(opts.agent);
    const requested = normaliseStages(opts.stages);
    const runId = opts.resume ?? timeId("r", this.now());
    const workerOf = opts.resume && opts.stages?.length ? await this.workerLease(agent, runId) : null;
    const lock = workerOf ?? (await this.takeRunLease(agent, runId));
    if (!lock.acquired) {
      const holder = lock.owner?.holder;
      if (!holder)
        throw new WorkError(
          `agent ${agent} is locked by an unknown owner (${runLeaseKey(agent)} in the store)`,
        );
      const mine = this.active.get(holder);
      if (mine && opts.onEvent) mine.listeners.add(opts.onEvent);
      const done = mine ? mine.done : this.waitForRun(holder, agent);
      done.catch(() => undefined); // the caller may not wait for it
      return { runId: holder, agent, started: false, done };
    }
    let record: RunRecord;
    let worker: StageName[] | null = null;
    try {
      if (opts.resume && opts.stages?.length) {
        record = await prepareWorker(this.store, agent, opts.resume, requested);
        worker = requested;
      } else {
        record = opts.resume
          ? await prepareResume(this.store, this.now, agent, opts.resume, opts.trigger)
          : newRecord(this.config, this.now, agent, runId, requested, opts);
        if (isTerminal(record.status)) {
          await lock.release();
          return { runId, agent, started: false, done: Promise.resolve(record) };
        }
        await writeRun(this.store, record);
      }
    } catch (err) {
      await lock.release();
      throw err;
    }
    const controller = new AbortController();
    const listeners = new Set<(e: RunEvent) => void>();
    if (opts.onEvent) listeners.add(opts.onEvent);
    const signal = AbortSignal.any([
      controller.signal,
      lock.lost,
      lock.cancelled,
      ...(opts.signal ? [opts.signal] : []),
    ]);
    const done = this.execute(record, signal, listeners, worker, lock).finally(async () => {
      this.active.delete(runId);
      // A worker leaves the marker to its parent, which holds the lease and answers it.
      if (!workerOf) await clearCancel(this.store, agent, runId).catch(() => undefined);
      await lock.release();
    });
    this.active.set(runId, { agent, controller, done, listeners });
    return { runId, agent, started: true, done };
  }

  /**
   * A worker (a Job running some stages of a run) never takes the agent's lease: the server that
   * orchestrates the run holds it, or will when it comes back and re-attaches to the Job. The
   * worker stops if another run takes the lease (its own run was superseded).
   */
  private async workerLease(agent: string, runId: string): Promise<LeaseResult> {
    const owner = await peekRunLease(this.store, agent);
    if (owner && owner.holder !== runId)
      throw new WorkError(
        `run ${owner.holder} of agent ${agent} holds the agent's lease; run ${runId} is not running`,
      );
    const lost = new AbortController();
    const watch = setInterval(() => {
      peekRunLease(this.store, agent).then(
        (o) => {
          if (o && o.holder !== runId)
            lost.abort(new SuspendSignal(`run ${o.holder} took the agent's lease`));
        },
        () => undefined, // a store hiccup is not a lost lease; the next look decides
      );
    }, this.config.runs.lease / 3);
    watch.unref();
    return {
      acquired: true,
      owner: owner ?? currentOwner(`worker of run ${runId}`, runId),
      lost: lost.signal,
      cancelled: new AbortController().signal,
      renew: async () => !lost.signal.aborted,
      settled: async () => undefined,
      release: async () => clearInterval(watch),
    };
  }

  /**
   * Takes the agent's run lease. A holder whose run has already ended is only finishing up (its
   * gc, its release): it is waited for, up to twice the lease's life, rather than handed back as
   * the agent's running run.
   */
  private async takeRunLease(agent: string, runId: string): Promise<LeaseResult> {
    const ttl = this.config.runs.lease;
    const deadline = Date.now() + 2 * ttl;
    for (;;) {
      const lock = await tryRunLease(this.store, agent, runId, ttl, {
        cancelPollMs: this.opts.cancelPollMs ?? 1000,
      });
      const holder = lock.acquired ? null : lock.owner?.holder;
      if (!holder || Date.now() >= deadline) return lock;
      const held = await readRun(this.store, agent, holder).catch(() => null);
      if (!held || !isTerminal(held.status)) return lock;
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** A run's record. Without an agent, every configured agent is searched. */
  async getRun(runId: string, agent?: string): Promise<RunRecord> {
    if (agent) return readRun(this.store, this.checkAgent(agent), runId);
    const active = this.active.get(runId);
    if (active) return readRun(this.store, active.agent, runId);
    for (const a of Object.keys(this.config.agents)) {
      if (await this.store.exists(runKey(a, runId))) return readRun(this.store, a, runId);
    }
    throw new WorkError(`no run "${runId}" for any configured agent`);
  }

  /** An agent's runs, newest first. */
  async listRuns(agent: string, opts: { limit?: number; status?: RunStatus } = {}): Promise<RunRecord[]> {
    const out: RunRecord[] = [];
    for (const id of await listRunIds(this.store, this.checkAgent(agent))) {
      const r = await readRun(this.store, agent, id);
      if (opts.status && r.status !== opts.status) continue;
      out.push(r);
      if (opts.limit && out.length >= opts.limit) break;
    }
    return out;
  }

  /** Ids of runs executing in this process. */
  activeRuns(): { runId: string; agent: string }[] {
    return [...this.active.entries()].map(([runId, a]) => ({ runId, agent: a.agent }));
  }

  /** Adds a listener to a run executing in this process; returns false when it runs elsewhere. */
  subscribe(runId: string, fn: (e: RunEvent) => void): () => void {
    const a = this.active.get(runId);
    if (!a) return () => {};
    a.listeners.add(fn);
    return () => a.listeners.delete(fn);
  }

  /**
   * Asks a running run to stop at its next step boundary. In this process it aborts at once;
   * a run in another process, on any host, sees the request (a marker in the store beside its
   * lease) within a second or so. Returns false when the run is not running.
   */
  async cancel(runId: string, agent?: string): Promise<boolean> {
    const a = this.active.get(runId);
    if (a) {
      a.controller.abort(new CancelledError("cancelled on request"));
      return true;
    }
    const record = await this.getRun(runId, agent);
    if (isTerminal(record.status)) return false;
    await requestCancel(this.store, record.agent, runId, this.now());
    return true;
  }

  /**
   * For a graceful shutdown (SIGTERM): every run of this process stops at its next step boundary
   * (training writes a checkpoint first) and stays "running", so the next start resumes it.
   * Resolves when they have all stopped.
   */
  async suspendAll(): Promise<RunRecord[]> {
    const runs = [...this.active.values()];
    for (const a of runs) a.controller.abort(new SuspendSignal("shutdown"));
    return Promise.all(runs.map((a) => a.done));
  }

  /** Settles with the final record; polls the store for a run in another process. */
  async waitForRun(runId: string, agent: string, pollMs = 1000): Promise<RunRecord> {
    const a = this.active.get(runId);
    if (a) return a.done;
    for (;;) {
      let r: RunRecord | null = null;
      try {
        r = await readRun(this.store, agent, runId);
      } catch (err) {
        // The holder takes the lock a moment before it writes the record.
        if (!(err instanceof RunNotFoundError)) throw err;
      }
      if (r && isTerminal(r.status)) return r;
      if ((await peekRunLease(this.store, agent))?.holder !== runId) {
        // Nobody runs it any more: its process died. Report it as it stands.
        if (!r) throw new RunNotFoundError(`agent ${agent} has no run "${runId}"`);
        return r;
      }
      await new Promise((res) => setTimeout(res, pollMs));
    }
  }

  /**
   * Resumes runs whose process died mid-run (status still "running", agent lock free). Called
   * at start-up by the server and the scheduler. Returns the runs it resumed.
   */
  async resumeInterrupted(
    opts: { onEvent?: (e: RunEvent) => void; agents?: string[] } = {},
  ): Promise<StartedRun[]> {
    const out: StartedRun[] = [];
    for (const agent of opts.agents ?? Object.keys(this.config.agents)) {
      const running = await this.listRuns(agent, { status: "running" });
      if (running.length === 0) continue;
      if (await peekRunLease(this.store, agent)) continue;
      // Only the newest can be continued; an older one still marked running was abandoned.
      for (const old of running.slice(1)) {
        old.status = "failed";
        old.error = "abandoned: a newer run of this agent started after it was interrupted";
        old.ended_at = this.now().toISOString();
        old.updated_at = old.ended_at;
        await writeRun(this.store, old);
      }
      const started = await this.startRun({
        agent,
        resume: running[0].id,
        onEvent: opts.onEvent,
        trigger: { kind: "resume", actor: "startup", reason: "interrupted run resumed at start-up" },
      });
      if (started.started) out.push(started);
    }
    return out;
  }

  /**
   * The run's dataset, decided once, before the first stage that works on one: the dataset build
   * made (already in the record), else the one the caller named, else the agent's newest.
   */
  private async decideDataset(record: RunRecord): Promise<string | null> {
    return record.options.dataset_id ?? (await latestDatasetId(this.store, record.agent));
  }

  private checkAgent(agent: string): string {
    const name = agentName.safeParse(agent);
    if (!name.success) throw new UsageError(`bad agent name "${agent}": ${name.error.issues[0]?.message}`);
    if (!Object.hasOwn(this.config.agents, agent)) {
      const known = Object.keys(this.config.agents);
      throw new UsageError(
        `unknown agent "${agent}"${known.length ? ` (configured: ${known.join(", ")})` : " (no agents are configured)"}`,
      );
    }
    return agent;
  }

  /** Runs the pending stages in order; always settles with the final record (never rejects). */
  private async execute(
    record: RunRecord,
    signal: AbortSignal,
    listeners: Set<(e: RunEvent) => void>,
    worker: StageName[] | null,
    lease: Pick<Extract<LeaseResult, { acquired: true }>, "renew" | "settled">,
  ): Promise<RunRecord> {
    const log = childLogger({ agent: record.agent, run: record.id });
    const emit = (e: RunEvent) => {
      for (const fn of listeners) {
        try {
          fn(e);
        } catch (err) {
          log.warn({ err }, "run event listener failed");
        }
      }
    };
    const writer = new RecordWriter(this.store, record, () => this.now(), worker);
    emit({
      type: "run",
      runId: record.id,
      agent: record.agent,
      status: "running",
      error: null,
      at: this.now().toISOString(),
    });
    try {
      for (const stage of record.stages) {
        if (stage.status !== "pending") continue;
        if (signal.aborted) {
          if (!isSuspend(signal)) stage.status = "cancelled";
          throw new CancelledError("cancelled");
        }
        await runStage(this.stageEnv, record, stage, signal, writer, emit, log, lease.settled);
      }
      record.status = "succeeded";
    } catch (err) {
      if (isSuspend(signal)) {
        // Shutdown: the run stays "running" with its stage pending, and resumes at the next start.
        record.status = "running";
      } else if (isCancel(err, signal)) {
        record.status = "cancelled";
        record.error = "cancelled";
      } else {
        record.status = "failed";
        record.error = (err as Error).message ?? String(err);
      }
      if (record.status === "cancelled")
        for (const s of record.stages) if (s.status === "pending") s.status = "cancelled";
    }
    const suspended = record.status === "running";
    if (!suspended) record.ended_at = this.now().toISOString();
    record.progress = null;
    try {
      await writer.flush(true);
    } catch (err) {
      log.error({ err }, "could not write the final run record");
    }
    if (worker || suspended) {
      if (suspended) log.info("run suspended for shutdown; it resumes at the next start");
      emit({
        type: "run",
        runId: record.id,
        agent: record.agent,
        status: record.status,
        error: suspended ? "suspended" : record.error,
        at: this.now().toISOString(),
      });
      return record;
    }
    runsTotal.inc({ agent: record.agent, result: record.status });
    if (record.status === "succeeded")
      runLastSuccess.set({ agent: record.agent }, Date.parse(record.ended_at!) / 1000);
    log.info({ status: record.status, error: record.error }, "run ended");
    if (this.opts.onRunEnd) {
      try {
        // The last stage may have held the event loop past the lease's renewals (a long synchronous
        // step in this process): renew before the hook's gc checks that this run holds it.
        await within(
          lease.renew().catch(() => false),
          this.config.runs.lease,
          false,
        );
        await this.opts.onRunEnd(record, this);
      } catch (err) {
        log.warn({ err }, "run-end hook failed (report)");
      }
    }
    emit({
      type: "run",
      runId: record.id,
      agent: record.agent,
      status: record.status,
      error: record.error,
      at: record.ended_at!,
    });
    return record;
  }
}
