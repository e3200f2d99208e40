// Evaluating a registered version (model_evaluate, `trm-forge evaluate`): a run with the evaluate
// stage alone (options.evaluate), so it has the run's lease, record, log, cancel and resume, runs
// where the runner puts the evaluate stage (a server's child process), and stores its evaluation
// where every evaluation is: the run's evaluation.json.
import { WorkError } from "../../errors.js";
import type { ModelRegistry } from "../deploy/registry.js";
import type { EvaluationResult } from "../evaluate.js";
import type { Pipeline, Trigger } from "../run.js";
import { evaluationRunKey, readEvaluation } from "./stage.js";

/** What an evaluation run scores, resolved once so that a resume scores the same versions. */
export interface EvaluationTarget {
  version: string;
  /** null: baselines only (none asked, no champion, or the champion is the version itself). */
  against: string | null;
}

/** `against`: a version or alias, "champion" (the default), or "none"/null for baselines only. */
export async function evaluationTarget(
  registry: ModelRegistry,
  agent: string,
  version: string,
  against: string | null = "champion",
): Promise<EvaluationTarget> {
  const v = await registry.resolve(agent, version);
  let a: string | null = null;
  if (against && against !== "none") {
    if (against === "champion") a = (await registry.read(agent)).aliases.champion;
    else a = await registry.resolve(agent, against);
  }
  return { version: v, against: a === v ? null : a };
}

/** Runs an evaluation and waits for it; a failed or refused run is an error. */
export async function evaluateVersion(
  pipeline: Pipeline,
  opts: { agent: string; target: EvaluationTarget; datasetId?: string; trigger?: Partial<Trigger> },
): Promise<{ result: EvaluationResult; key: string; runId: string }> {
  const started = await pipeline.startRun({
    agent: opts.agent,
    stages: ["evaluate"],
    evaluate: opts.target,
    datasetId: opts.datasetId,
    trigger: opts.trigger,
  });
  if (!started.started)
    throw new WorkError(
      `agent ${opts.agent} has run ${started.runId} running; evaluate again once it has ended`,
    );
  const run = await started.done;
  if (run.status !== "succeeded")
    throw new WorkError(`evaluation run ${run.id} ${run.status}: ${run.error ?? "no reason given"}`);
  const key = evaluationRunKey(opts.agent, run.id);
  const result = await readEvaluation(pipeline.store, key);
  if (!result) throw new WorkError(`evaluation run ${run.id} succeeded but left no ${key}`);
  return { result, key, runId: run.id };
}
