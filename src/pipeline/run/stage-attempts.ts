// One stage of a run, attempt by attempt (for the orchestrator, ../run.ts): each attempt is
// recorded before it starts and when it ends; the stage gets its context (log, progress, the
// run's dataset decided first when it works on one); a transient failure is retried with
// exponential backoff, a cancel or a shutdown stops it at once.

import type { Config } from "../../config/index.js";
import { WorkError } from "../../errors.js";
import type { childLogger } from "../../log.js";
import { runStageDuration } from "../../metrics.js";
import type { ObjectStore } from "../../store/index.js";
import { within } from "../../util/turn.js";
import { backoffMs, CancelledError, isCancel, isSuspend, isTransient } from "../common/retry.js";
import {
  LOG_LINES_KEPT,
  type LogLine,
  PROGRESS_WRITE_MS,
  type Progress,
  type RunRecord,
  runFacts,
  type StageContext,
  type StageFns,
  type StageRecord,
  type StageStatus,
  USES_DATASET,
} from "../contract.js";
import type { ModelRegistry } from "../deploy/registry.js";
import type { RecordWriter } from "./record-writer.js";
import type { RunEvent } from "./types.js";

/** How long StageContext.pause waits for this process's writes in flight. */
const PAUSE_WAIT_MS = 5_000;

/** What a stage's attempts need from the pipeline. */
export interface StageEnv {
  stages: StageFns;
  config: Config;
  store: ObjectStore;
  registry: ModelRegistry;
  now: () => Date;
  sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** The run's dataset, for a stage that works on one (Pipeline.decideDataset). */
  decideDataset: (record: RunRecord) => Promise<string | null>;
}

export async function runStage(
  env: StageEnv,
  record: RunRecord,
  stage: StageRecord,
  signal: AbortSignal,
  writer: RecordWriter,
  emit: (e: RunEvent) => void,
  log: ReturnType<typeof childLogger>,
  leaseSettled: () => Promise<void>,
): Promise<void> {
  const fn = env.stages[stage.name];
  const maxAttempts = 1 + env.config.runs.retries;
  const base = env.config.runs.backoff;
  const cap = env.config.runs.backoff_max;
  let lastProgressWrite = 0;
  stage.started_at ??= env.now().toISOString();
  for (let tries = 1; ; tries++) {
    const n = stage.attempts.length + 1;
    const t0 = performance.now();
    stage.status = "running";
    stage.attempts.push({
      n,
      started_at: env.now().toISOString(),
      ended_at: null,
      status: "running",
      error: null,
      transient: null,
      pid: process.pid,
    });
    const attempt = stage.attempts[stage.attempts.length - 1];
    const stageEvent = (status: StageStatus, error: string | null, at: string) =>
      emit({
        type: "stage",
        runId: record.id,
        agent: record.agent,
        stage: stage.name,
        status,
        attempt: n,
        error,
        at,
      });
    const observe = (result: string) =>
      runStageDuration.observe(
        { agent: record.agent, stage: stage.name, result },
        (performance.now() - t0) / 1000,
      );
    await writer.flush(true);
    stageEvent("running", null, attempt.started_at);
    const addLog = (level: LogLine["level"], msg: string) => {
      const line: LogLine = { at: env.now().toISOString(), level, stage: stage.name, msg };
      record.log.push(line);
      if (record.log.length > LOG_LINES_KEPT) record.log.splice(0, record.log.length - LOG_LINES_KEPT);
      log[level]({ stage: stage.name }, msg);
      emit({ type: "log", runId: record.id, agent: record.agent, line });
    };
    let stalled = false;
    const ctx: StageContext = {
      runId: record.id,
      agent: record.agent,
      stage: stage.name,
      attempt: n,
      config: env.config,
      store: env.store,
      registry: env.registry,
      signal,
      fromScratch: record.options.from_scratch,
      record,
      now: env.now,
      log: addLog,
      progress: (p, detail) => {
        const progress: Progress = { ...p, stage: stage.name, at: env.now().toISOString() };
        record.progress = progress;
        emit({ type: "progress", runId: record.id, agent: record.agent, progress, detail });
        const t = Date.now();
        if (t - lastProgressWrite >= PROGRESS_WRITE_MS) {
          lastProgressWrite = t;
          void writer.flush(false);
        }
      },
      pause: async () => {
        // A timer, not setImmediate: from the poll phase an immediate runs before the timers that
        // fell due during the step (a lease renewal). Then their writes finish, waited for a few
        // seconds at most (a store that hangs is for the stage's own writes to meet), and not
        // again while a write that outlasted the wait is still out: one slow pause, not one a step.
        await new Promise<void>((r) => setTimeout(r, 0));
        if (stalled) return;
        const writes = Promise.all([leaseSettled(), writer.settled()]).then(() => true);
        const landed = await within(writes, PAUSE_WAIT_MS, false);
        if (!landed) {
          stalled = true;
          void writes.then(() => {
            stalled = false;
          });
        }
      },
    };
    try {
      if (!record.dataset_id && USES_DATASET.includes(stage.name))
        record.dataset_id = await env.decideDataset(record);
      const output = (await fn(ctx)) ?? {};
      const status = output.status === "partial" ? "partial" : "succeeded";
      stage.output = output;
      stage.status = status;
      stage.error = status === "partial" ? String(output.partial_reason ?? "partly failed") : null;
      attempt.status = "succeeded";
      attempt.ended_at = env.now().toISOString();
      stage.ended_at = attempt.ended_at;
      Object.assign(record, runFacts(stage.name, output));
      observe(status);
      await writer.flush(true);
      stageEvent(status, stage.error, stage.ended_at);
      return;
    } catch (err) {
      if (isSuspend(signal)) {
        attempt.status = "interrupted";
        attempt.ended_at = env.now().toISOString();
        attempt.error = "stopped for a shutdown";
        stage.status = "pending";
        await writer.flush(true);
        throw new CancelledError("suspended");
      }
      const cancelled = isCancel(err, signal) || signal.aborted;
      const message = cancelled ? "cancelled" : ((err as Error).message ?? String(err));
      const transient = !cancelled && isTransient(err);
      attempt.status = cancelled ? "cancelled" : "failed";
      attempt.ended_at = env.now().toISOString();
      attempt.error = message;
      attempt.transient = cancelled ? null : transient;
      observe(cancelled ? "cancelled" : "failed");
      if (!cancelled && transient && tries < maxAttempts) {
        const delay = backoffMs(tries, base, cap);
        addLog(
          "warn",
          `attempt ${n} failed (transient): ${message}; retrying in ${Math.round(delay / 1000)}s`,
        );
        await writer.flush(true);
        emit({
          type: "retry",
          runId: record.id,
          agent: record.agent,
          stage: stage.name,
          attempt: n,
          delay_ms: delay,
          error: message,
          at: attempt.ended_at,
        });
        try {
          await env.sleep(delay, signal);
        } catch (e) {
          stage.status = "cancelled";
          stage.ended_at = env.now().toISOString();
          throw e;
        }
        continue;
      }
      stage.status = cancelled ? "cancelled" : "failed";
      stage.error = message;
      stage.ended_at = attempt.ended_at;
      if (!cancelled) addLog("error", `${stage.name} failed: ${message}`);
      await writer.flush(true);
      stageEvent(stage.status, message, stage.ended_at);
      if (cancelled) throw new CancelledError("cancelled");
      throw new WorkError(`${stage.name}: ${message}`);
    }
  }
}
