// The train stage for `runner: kubernetes`: a StageFn for the Pipeline that runs training as a
// Job. The Job's pod runs `trm-forge run --agent A --resume <run> --stages train` (worker
// mode): it trains against the same store and writes its stage result to
// runs/<agent>/<run>/stages/train.json, which this stage returns as its own output once the Job
// has completed. Progress comes from that result while it runs, and from progress lines in the log.
import type { Config } from "../../config/schema.js";
import { WorkError } from "../../errors.js";
import { CancelledError, TransientError } from "../common/retry.js";
import { readStageResult, type StageContext, type StageFn, type StageFns } from "../contract.js";
import { externalTrainStage } from "./external.js";
import type { Kube } from "./kube.js";
import { listTrainJobs, runTrainStageInKubernetes } from "./kubernetes.js";
import { parsePodLine, stageProgress } from "./progress-line.js";

export interface KubernetesTrainStageOptions {
  /** Clients to use (tests); default from config.kubernetes. */
  kube?: Kube;
  /** Where POD_NAME/POD_NAMESPACE are read (the server's own pod, for inheritance). */
  env?: NodeJS.ProcessEnv;
}

/** The stages `config.runner` replaces: {} in-process, { train } for kubernetes and external. */
export function runnerStages(config: Config, opts: KubernetesTrainStageOptions = {}): Partial<StageFns> {
  if (config.runner === "external") return { train: externalTrainStage() };
  return config.runner === "kubernetes" ? { train: kubernetesTrainStage(opts) } : {};
}

/**
 * Stopping the stage: an explicit cancel (the signal's reason is a CancelledError, as
 * Pipeline.cancel and the cancel file give) deletes the Job. Any other abort (the server shutting
 * down) leaves the Job running and rethrows the reason, so the run stays resumable and the next
 * server re-attaches to the Job.
 */
export function kubernetesTrainStage(opts: KubernetesTrainStageOptions = {}): StageFn {
  return async (ctx: StageContext) => {
    // A Job that completed while no server watched has left its result: use it, do not train again.
    const before = await readStageResult(ctx.store, ctx.agent, ctx.runId, "train");
    if (before?.stage.status === "succeeded" && (await jobIsDone(ctx, opts))) {
      ctx.log("info", "the training Job completed while the server was away; using its result");
      return before.stage.output;
    }
    const cancel = new AbortController();
    const detach = new AbortController();
    const onAbort = () => {
      if (ctx.signal.reason instanceof CancelledError) cancel.abort(ctx.signal.reason);
      else detach.abort(ctx.signal.reason);
    };
    if (ctx.signal.aborted) onAbort();
    else ctx.signal.addEventListener("abort", onAbort, { once: true });

    let lastProgressAt = "";
    const pollMs = Math.max(1000, ctx.config.kubernetes.poll_interval_s * 1000);
    const poll = setInterval(() => {
      readStageResult(ctx.store, ctx.agent, ctx.runId, "train")
        .then((r) => {
          const p = r?.progress;
          if (!p || p.at === lastProgressAt || (before && r?.updated_at === before.updated_at)) return;
          lastProgressAt = p.at;
          ctx.progress(stageProgress(p));
        })
        .catch(() => undefined);
    }, pollMs);
    poll.unref();

    try {
      const result = await runTrainStageInKubernetes({
        runId: ctx.runId,
        agent: ctx.agent,
        config: ctx.config,
        attempt: ctx.attempt,
        signal: cancel.signal,
        detach: detach.signal,
        kube: opts.kube,
        env: opts.env,
        onLog: (line, meta) => {
          if (meta.source === "runner") return ctx.log("info", line);
          if (parsePodLine(line).kind === "progress") return; // reaches ctx.progress instead
          const { level, msg } = podLog(line);
          ctx.log(level, `[${meta.source}] ${msg}`);
        },
        onProgress: (p) => ctx.progress(stageProgress(p)),
      });
      if (result.status === "cancelled") throw new CancelledError(result.message);
      if (result.status === "detached") throw detach.signal.reason ?? new CancelledError(result.message);
      const after = await readStageResult(ctx.store, ctx.agent, ctx.runId, "train");
      if (result.status === "failed") {
        const why =
          after && after.stage.status === "failed" && after.stage.error ? ` (${after.stage.error})` : "";
        if (result.reason === "APIUnreachable") throw new TransientError(result.message);
        throw new WorkError(`${result.message}${why}`);
      }
      if (after?.stage.status !== "succeeded") {
        throw new WorkError(
          `training Job ${result.jobName} completed but left no successful stage result in the store ` +
            "(is the Job's image the same trm-forge version as the server?)",
        );
      }
      return after.stage.output;
    } finally {
      clearInterval(poll);
      ctx.signal.removeEventListener("abort", onAbort);
    }
  };
}

/** No live Job of the run: a stored success is final (a live one may be a retry still running). */
async function jobIsDone(ctx: StageContext, opts: KubernetesTrainStageOptions): Promise<boolean> {
  const jobs = await listTrainJobs(ctx.config, opts.kube);
  return !jobs.some((j) => j.runId === ctx.runId && j.state === "active");
}

type Level = "debug" | "info" | "warn" | "error";

/** A pod line as a log line: `run` prints JSON log events off a TTY, pino numeric levels; else info. */
function podLog(line: string): { level: Level; msg: string } {
  if (line.startsWith("{")) {
    try {
      const o = JSON.parse(line) as { type?: unknown; level?: unknown; msg?: unknown };
      if (
        o.type === "log" &&
        typeof o.msg === "string" &&
        ["debug", "info", "warn", "error"].includes(o.level as string)
      ) {
        return { level: o.level as Level, msg: o.msg };
      }
      if (typeof o.level === "number") {
        const n = o.level;
        return {
          level: n >= 50 ? "error" : n >= 40 ? "warn" : n >= 30 ? "info" : "debug",
          msg: typeof o.msg === "string" ? o.msg : line,
        };
      }
    } catch {
      // not JSON after all: a plain line
    }
  }
  return { level: "info", msg: line };
}
