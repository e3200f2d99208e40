// The in-process schedule (croner): per agent a daily `collect` and a monthly `train` (the whole
// pipeline). Every job is named, protected against overruns and has a catch handler (an async
// throw in a croner job without one takes the process down). Trainings are staggered: the n-th
// agent's train pattern starts n·stagger later, and a queue lets only one training run at a time.
//
// Catch-up: an in-process cron misses what was due while the process was down. At start, each
// job's last due time is compared with the one recorded in runs/<agent>/schedule.json; a job
// that was missed runs once, with the reason recorded. A missed collection can only fetch what
// the sources still hold: the reason says what fell out of their retention.
//
// With scan.schedule, a collection that succeeded is followed by an anomaly scan of the agent
// (the server passes the scan in: it needs the served champion). A scan failure is logged only:
// the collection's result stands.
import { Cron } from "croner";
import * as z from "zod";
import type { Config } from "../config/index.js";
import { childLogger } from "../log.js";
import { NotFoundError, type ObjectStore } from "../store/index.js";
import { scheduleStateKey } from "../store/layout.js";
import { simulatedClock } from "../util/clock.js";
import { formatDuration } from "../util/duration.js";
import { backoffMs, isTransient, sleep } from "./common/retry.js";
import type { Pipeline, StageName } from "./run.js";

export const JOBS = ["collect", "train"] as const;
export type JobName = (typeof JOBS)[number];

export interface PlannedJob {
  agent: string;
  job: JobName;
  /** croner job name: "trm-forge:<agent>:<job>". */
  name: string;
  pattern: string;
  timezone: string;
  /** Minutes the pattern was moved to stagger trainings (0 for collections). */
  staggered_by_min: number;
}

/** Tries of a scheduled run's start, 2 s apart and doubling, when it fails transiently. */
const START_ATTEMPTS = 4;
/** How many of the agent's other runs a due training waits out before it is skipped. */
const BUSY_WAITS = 3;
const START_RETRY_MS = 2_000;

const JobState = z
  .object({
    /** The due time the last firing was for (ISO). */
    last_due: z.string().nullable(),
    last_fired_at: z.string().nullable(),
    last_run_id: z.string().nullable(),
    last_result: z.string().nullable(),
    /** Why it fired: "scheduled", or the catch-up reason. */
    last_reason: z.string().nullable(),
  })
  .strict();
export type JobState = z.infer<typeof JobState>;

export const ScheduleState = z
  .object({
    agent: z.string(),
    /** When the scheduler last started for this agent (catch-up needs a previous start to compare with). */
    started_at: z.string().nullable(),
    jobs: z.object({ collect: JobState, train: JobState }).strict(),
  })
  .strict();
export type ScheduleState = z.infer<typeof ScheduleState>;

export interface JobStatus extends PlannedJob {
  next_run: string | null;
  last: JobState;
  running: boolean;
}

export interface CatchUp {
  agent: string;
  job: JobName;
  due: string;
  missed: number;
  reason: string;
  run_id: string | null;
}

export { scheduleStateKey };

const emptyJob = (): JobState => ({
  last_due: null,
  last_fired_at: null,
  last_run_id: null,
  last_result: null,
  last_reason: null,
});

/** The jobs the config asks for, with the train patterns staggered per agent (config order). */
export function planJobs(config: Config): PlannedJob[] {
  const out: PlannedJob[] = [];
  const stagger = Math.round(config.schedule.stagger / 60_000);
  Object.keys(config.agents).forEach((agent, i) => {
    const own = config.schedule.agents[agent] ?? {};
    const timezone = own.timezone ?? config.schedule.timezone;
    for (const job of JOBS) {
      const explicit = own[job];
      if (explicit === null) continue;
      let pattern = explicit ?? config.schedule[job];
      let shifted = 0;
      if (job === "train" && explicit === undefined && i > 0 && stagger > 0) {
        const moved = shiftPattern(pattern, i * stagger);
        if (moved) {
          pattern = moved;
          shifted = i * stagger;
        }
      }
      out.push({
        agent,
        job,
        name: `trm-forge:${agent}:${job}`,
        pattern,
        timezone,
        staggered_by_min: shifted,
      });
    }
  });
  return out;
}

/**
 * Moves a pattern with a single minute and hour ("0 2 1 * *") later by `minutes`, within the
 * same day. Returns null when it cannot (wildcards, lists, or past midnight): then only the
 * training queue keeps two trainings apart.
 */
export function shiftPattern(pattern: string, minutes: number): string | null {
  const parts = pattern.trim().split(/\s+/);
  const off = parts.length === 6 ? 1 : 0;
  if (parts.length !== 5 && parts.length !== 6) return null;
  const m = parts[off];
  const h = parts[off + 1];
  if (!/^\d+$/.test(m) || !/^\d+$/.test(h)) return null;
  const total = Number(h) * 60 + Number(m) + minutes;
  if (total >= 24 * 60) return null;
  parts[off] = String(total % 60);
  parts[off + 1] = String(Math.floor(total / 60));
  return parts.join(" ");
}

export interface SchedulerOptions {
  config: Config;
  pipeline: Pipeline;
  /** Default: the pipeline's store. */
  store?: ObjectStore;
  now?: () => Date;
  /** Scans the agent's window ending at `end` and stores the result (scan.schedule). */
  scan?: (agent: string, end: Date) => Promise<void>;
}

export class Scheduler {
  private readonly config: Config;
  private readonly store: ObjectStore;
  private readonly now: () => Date;
  private readonly crons = new Map<string, Cron>();
  private readonly jobs: PlannedJob[];
  private trainQueue: Promise<unknown> = Promise.resolve();
  private trainsQueued = 0;
  private readonly inFlight = new Set<Promise<unknown>>();
  private readonly log = childLogger({ component: "schedule" });
  /** Runs resumed by start() (interrupted by a crash or a shutdown). */
  resumed: string[] = [];

  constructor(private readonly opts: SchedulerOptions) {
    this.config = opts.config;
    this.store = opts.store ?? opts.pipeline.store;
    this.now = opts.now ?? (() => new Date());
    this.jobs = planJobs(opts.config);
  }

  /**
   * Resumes runs a previous process left unfinished (runs.resume_on_start), starts the croner
   * jobs, then catches up on what was missed while the process was down. Returns the catch-up
   * runs it started (they run in the background); `resumed` holds the resumed runs' ids.
   */
  async start(): Promise<CatchUp[]> {
    if (this.config.runs.resume_on_start)
      this.resumed = (await this.opts.pipeline.resumeInterrupted()).map((r) => r.runId);
    if (!this.config.schedule.enabled) return [];
    for (const j of this.jobs) {
      const cron = new Cron(
        j.pattern,
        {
          name: j.name,
          timezone: j.timezone,
          // On the soak's simulated clock, advance() fires the jobs instead of croner's timers.
          paused: simulatedClock(),
          protect: (job) =>
            this.log.warn({ job: job.name }, "previous run still busy; this firing is skipped"),
          catch: (err, job) => this.log.error({ err, job: job.name }, "scheduled job failed"),
        },
        async (self) => {
          const due = self.previousRuns(1, new Date(this.now().getTime() + 1000))[0] ?? this.now();
          await this.fire(j, due, "scheduled").done;
        },
      );
      this.crons.set(j.name, cron);
    }
    return this.config.schedule.catch_up ? this.catchUp() : [];
  }

  /** Stops the croner jobs; runs already started keep going (the pipeline owns them). */
  stop(): void {
    for (const c of this.crons.values()) c.stop();
    this.crons.clear();
  }

  /** Waits for every firing started so far (tests, shutdown). */
  async settle(): Promise<void> {
    while (this.inFlight.size) await Promise.allSettled([...this.inFlight]);
  }

  /**
   * Simulated clock only (the soak): fires, in time order, every job due up to `until`, each with
   * the clock set to its due time, and waits for it; then sets the clock to `until`.
   */
  async advance(until: Date, setClock: (at: number) => void): Promise<void> {
    await this.settle();
    let from = this.now();
    for (;;) {
      const dues = this.jobs.map((j) => ({
        j,
        at: new Cron(j.pattern, { timezone: j.timezone, paused: true }).nextRun(from),
      }));
      const first = Math.min(...dues.map((d) => d.at?.getTime() ?? Number.POSITIVE_INFINITY));
      if (first > until.getTime()) break;
      setClock(first);
      for (const d of dues) if (d.at?.getTime() === first) this.fire(d.j, d.at, "scheduled");
      await this.settle();
      from = new Date(first);
    }
    if (until.getTime() > this.now().getTime()) setClock(until.getTime());
  }

  /** Next and last run of every job. */
  async status(): Promise<JobStatus[]> {
    return scheduleStatus(this.config, this.store, this.now(), this.crons);
  }

  /** Compares each job's last due time with the recorded one, and runs a missed job once. */
  async catchUp(): Promise<CatchUp[]> {
    const now = this.now();
    const out: CatchUp[] = [];
    for (const agent of Object.keys(this.config.agents)) {
      const state = await readScheduleState(this.store, agent);
      const mine: CatchUp[] = [];
      state.started_at = now.toISOString();
      for (const j of this.jobs.filter((x) => x.agent === agent)) {
        const probe = new Cron(j.pattern, { timezone: j.timezone, paused: true });
        const due = probe.previousRuns(1, now)[0] ?? null;
        const last = state.jobs[j.job].last_due ? new Date(state.jobs[j.job].last_due!) : null;
        if (!due) continue;
        if (!last) {
          // Never scheduled before: nothing was missed; count from here.
          state.jobs[j.job].last_due = due.toISOString();
          continue;
        }
        if (due.getTime() <= last.getTime()) continue;
        const missed = countBetween(probe, last, now);
        const reason = this.catchUpReason(j, due, missed, last, now);
        mine.push({ agent, job: j.job, due: due.toISOString(), missed, reason, run_id: null });
      }
      // One run per agent: a training catch-up collects first anyway, so it absorbs the collection's.
      const train = mine.find((c) => c.job === "train");
      const col = mine.find((c) => c.job === "collect");
      if (train && col) {
        train.reason += `; its collect stage also catches up: ${col.reason.replace(/^catch-up: /, "")}`;
        state.jobs.collect = {
          ...state.jobs.collect,
          last_due: col.due,
          last_reason: "caught up by the training run",
        };
        mine.splice(mine.indexOf(col), 1);
      }
      await writeScheduleState(this.store, state);
      out.push(...mine);
    }
    for (const c of out) {
      const j = this.jobs.find((x) => x.agent === c.agent && x.job === c.job)!;
      c.run_id = await this.fire(j, new Date(c.due), c.reason, "catch-up").runId;
    }
    return out;
  }

  private catchUpReason(j: PlannedJob, due: Date, missed: number, last: Date | null, now: Date): string {
    const since = last ? ` since ${last.toISOString()}` : "";
    if (j.job === "train")
      return `catch-up: the training due ${due.toISOString()} was missed while trm-forge was down (${missed} missed${since})`;
    const lost: string[] = [];
    if (last) {
      for (const [source, keep] of Object.entries(this.config.schedule.retention)) {
        const horizon = now.getTime() - keep;
        if (last.getTime() < horizon)
          lost.push(`${source} before ${new Date(horizon).toISOString()} (kept ${formatDuration(keep)})`);
      }
    }
    return `catch-up: ${missed} collection${missed === 1 ? "" : "s"} missed${since}; collecting once what the sources still hold${lost.length ? `; lost to retention: ${lost.join(", ")}` : ""}`;
  }

  /**
   * Starts the job's run and records it. Resolves with the run id once the run started, and
   * `done` when it ended. Trainings wait for each other in a queue, so two never run at once
   * even when one overruns its stagger; a queued training's id is null until it starts.
   */
  private fire(
    j: PlannedJob,
    due: Date,
    reason: string,
    kind: "schedule" | "catch-up" = "schedule",
  ): { runId: Promise<string | null>; done: Promise<void> } {
    const stages: StageName[] | undefined = j.job === "collect" ? ["collect"] : undefined;
    let gotId!: (id: string | null) => void;
    const runId = new Promise<string | null>((r) => {
      gotId = r;
    });
    const go = async (): Promise<void> => {
      try {
        const start = () =>
          this.startWithRetry(j, () =>
            this.opts.pipeline.startRun({
              agent: j.agent,
              stages,
              trigger: { kind, actor: "schedule", reason: `${j.job} ${due.toISOString()}: ${reason}` },
            }),
          );
        let started = await start();
        // A training that finds the agent's collection running (a staggered training falls on the
        // daily collect's hour) waits for it to end instead of for next month. A training running
        // already (asked for by hand, or resumed) stands for this one.
        const training = (id: string) =>
          this.opts.pipeline.getRun(id, j.agent).then(
            (r) => r.stages.some((s) => s.name === "train" && s.requested),
            () => false,
          );
        for (let wait = 1; j.job === "train" && !started.started && wait <= BUSY_WAITS; wait++) {
          if (await training(started.runId)) break;
          // Not known until it starts: a catch-up at server start must not wait for it.
          gotId(null);
          this.log.info(
            { job: j.name, running: started.runId },
            "agent busy; the training waits for its run",
          );
          await started.done.catch(() => null);
          // Its lock is released a moment after its record ends.
          await sleep(backoffMs(wait, START_RETRY_MS, 60_000));
          started = await start();
        }
        gotId(started.runId);
        await this.record(
          j,
          due,
          reason,
          started.runId,
          started.started ? "running" : "skipped: another run was in progress",
        );
        const r = await started.done;
        await this.record(
          j,
          due,
          reason,
          started.runId,
          started.started ? r.status : `skipped: ${r.id} was running`,
        );
        if (j.job === "collect" && started.started && r.status === "succeeded") await this.scanAfter(j);
      } catch (err) {
        gotId(null);
        this.log.error({ err, job: j.name }, "scheduled run could not start");
        await this.record(j, due, reason, null, `error: ${(err as Error).message}`).catch(() => undefined);
      }
    };
    let done: Promise<void>;
    if (j.job === "train") {
      const wasIdle = this.trainsQueued === 0;
      this.trainsQueued++;
      done = this.trainQueue
        .catch(() => undefined)
        .then(go)
        .finally(() => {
          this.trainsQueued--;
        });
      this.trainQueue = done;
      if (!wasIdle) gotId(null);
    } else done = go();
    this.track(done);
    return { runId, done };
  }

  /**
   * A start that failed transiently (a store write refused for a moment) is tried again a few
   * times: a monthly training that fails to start would otherwise wait a month.
   */
  private async startWithRetry<T>(j: PlannedJob, start: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await start();
      } catch (err) {
        if (attempt >= START_ATTEMPTS || !isTransient(err)) throw err;
        const wait = backoffMs(attempt, START_RETRY_MS, 60_000);
        this.log.warn(
          { err, job: j.name, attempt, wait_ms: wait },
          "scheduled run could not start; retrying",
        );
        await sleep(wait);
      }
    }
  }

  private async scanAfter(j: PlannedJob): Promise<void> {
    if (!this.config.scan.schedule || !this.opts.scan) return;
    try {
      await this.opts.scan(j.agent, this.now());
    } catch (err) {
      this.log.warn(
        { err, job: j.name, agent: j.agent },
        "scheduled anomaly scan failed; the collection stands",
      );
    }
  }

  private track(p: Promise<unknown>): void {
    this.inFlight.add(p);
    p.finally(() => this.inFlight.delete(p)).catch(() => undefined);
  }

  private async record(
    j: PlannedJob,
    due: Date,
    reason: string,
    runId: string | null,
    result: string,
  ): Promise<void> {
    const state = await readScheduleState(this.store, j.agent);
    state.jobs[j.job] = {
      last_due: due.toISOString(),
      last_fired_at:
        state.jobs[j.job].last_run_id === runId ? state.jobs[j.job].last_fired_at : this.now().toISOString(),
      last_run_id: runId,
      last_result: result,
      last_reason: reason,
    };
    await writeScheduleState(this.store, state);
  }
}

function countBetween(cron: Cron, after: Date, until: Date): number {
  let n = 0;
  for (const d of cron.nextRuns(1000, after)) {
    if (d.getTime() > until.getTime()) break;
    n++;
  }
  return n;
}

export async function readScheduleState(store: ObjectStore, agent: string): Promise<ScheduleState> {
  try {
    const r = ScheduleState.safeParse(
      JSON.parse((await store.get(scheduleStateKey(agent))).toString("utf8")),
    );
    if (r.success) return r.data;
  } catch (err) {
    if (!(err instanceof NotFoundError) && !(err instanceof SyntaxError)) throw err;
  }
  return { agent, started_at: null, jobs: { collect: emptyJob(), train: emptyJob() } };
}

async function writeScheduleState(store: ObjectStore, state: ScheduleState): Promise<void> {
  await store.put(scheduleStateKey(state.agent), `${JSON.stringify(ScheduleState.parse(state), null, 2)}\n`, {
    contentType: "application/json",
  });
}

/** What `trm-forge schedule` and the schedule_status tool show; works without a running scheduler. */
export async function scheduleStatus(
  config: Config,
  store: ObjectStore,
  now: Date = new Date(),
  running: Map<string, Cron> = new Map(),
): Promise<JobStatus[]> {
  const out: JobStatus[] = [];
  for (const j of planJobs(config)) {
    const probe = new Cron(j.pattern, { timezone: j.timezone, paused: true });
    const state = await readScheduleState(store, j.agent);
    out.push({
      ...j,
      next_run: config.schedule.enabled ? (probe.nextRun(now)?.toISOString() ?? null) : null,
      last: state.jobs[j.job],
      running: running.get(j.name)?.isBusy() ?? false,
    });
  }
  return out;
}
