import { initBackend } from "../../model/backend.js";
import { NotFoundError, type ObjectStore } from "../../store/index.js";
import type { EvaluateOutput, StageContext } from "../contract.js";
import { runDataset } from "../dataset/stage.js";
import {
  type EvaluationResult,
  evaluateModels,
  type ModelUnderTest,
  publishValidationScores,
} from "../evaluate.js";
import { runPrefix } from "../record.js";
import { trainedModel } from "../train/stage.js";

/** The label a run's candidate has in its evaluation and on the validation score gauge. */
const CANDIDATE = "candidate";

export function evaluationRunKey(agent: string, runId: string): string {
  return `${runPrefix(agent, runId)}/evaluation.json`;
}

export async function evaluateStage(ctx: StageContext): Promise<EvaluateOutput> {
  await initBackend(ctx.config.model.backend);
  const ds = await runDataset(ctx);
  const cand = await trainedModel(ctx);
  const index = await ctx.registry.read(ctx.agent);
  let champion: ModelUnderTest | null = null;
  if (index.aliases.champion)
    champion = {
      label: index.aliases.champion,
      version: index.aliases.champion,
      weights: await ctx.registry.readArtifact(ctx.agent, index.aliases.champion, "model.safetensors"),
    };
  const result = await evaluateModels({
    agent: ctx.agent,
    config: ctx.config,
    dataset: ds,
    candidate: { label: CANDIDATE, version: null, weights: cand.model },
    champion,
    runId: ctx.runId,
    signal: ctx.signal,
    onProgress: (p) =>
      ctx.progress({ message: p.message, step: p.done, total: p.total, eta_s: null, metrics: {} }),
    now: ctx.now,
  });
  const key = evaluationRunKey(ctx.agent, ctx.runId);
  await ctx.store.put(key, `${JSON.stringify(result, null, 2)}\n`, { contentType: "application/json" });
  for (const r of result.gate.reasons) ctx.log(result.gate.passed ? "info" : "warn", r);
  return {
    evaluation: key,
    gate: { passed: result.gate.passed, reasons: result.gate.reasons },
    scores: Object.fromEntries(Object.entries(result.tasks).map(([t, e]) => [t, e.candidate.score])),
    champion: result.champion?.version ?? null,
  };
}

/**
 * What evaluateStage leaves in its process besides its output (the validation score gauge), made
 * again from that output by a server whose evaluate stage ran in a child process.
 */
export function adoptEvaluateOutput(agent: string, output: EvaluateOutput): void {
  publishValidationScores(agent, CANDIDATE, output.scores);
}

/** The evaluation a run stored, or null when it has none. */
export async function readEvaluation(store: ObjectStore, key: string): Promise<EvaluationResult | null> {
  try {
    return JSON.parse((await store.get(key)).toString("utf8")) as EvaluationResult;
  } catch (err) {
    if (err instanceof NotFoundError) return null;
    throw err;
  }
}
