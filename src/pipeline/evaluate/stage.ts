import { initBackend } from "../../model/backend.js";
import { NotFoundError, type ObjectStore } from "../../store/index.js";
import { runEvaluationKey } from "../../store/layout.js";
import type { EvaluateOutput, StageContext } from "../contract.js";
import { candidateMemory } from "../dataset/index.js";
import { runDataset } from "../dataset/stage.js";
import type { ModelRegistry } from "../deploy/registry.js";
import { versionMemory } from "../deploy/version-memory.js";
import {
  type EvaluationResult,
  evaluateModels,
  type ModelUnderTest,
  publishValidationScores,
} from "../evaluate.js";
import type { ModelMemory } from "../tasks/index.js";
import { trainedModel } from "../train/stage.js";
import type { PairedInterval } from "./bootstrap.js";

/** The label a run's candidate has in its evaluation and on the validation score gauge. */
const CANDIDATE = "candidate";

export const evaluationRunKey = runEvaluationKey;

/**
 * A training run's evaluate stage scores the run's candidate against the champion. An evaluation
 * run (options.evaluate: model_evaluate, `trm-forge evaluate`) is this stage alone, scoring a
 * registered version against another or none. Either way the evaluation is the run's
 * evaluation.json: every evaluation lives in its run.
 */
export async function evaluateStage(ctx: StageContext): Promise<EvaluateOutput> {
  await initBackend(ctx.config.model.backend);
  const ds = await runDataset(ctx);
  const asked = ctx.record.options.evaluate;
  const { candidate, champion } = asked
    ? await versionsUnderTest(ctx, asked)
    : await candidateUnderTest(ctx, candidateMemory(ds));
  if (asked)
    ctx.log(
      "info",
      `evaluating ${candidate.label} of ${ctx.agent}${champion ? ` against ${champion.label}` : ""} on ${ds.id}`,
    );
  const result = await evaluateModels({
    agent: ctx.agent,
    config: ctx.config,
    dataset: ds,
    candidate,
    champion,
    runId: ctx.runId,
    signal: ctx.signal,
    pause: ctx.pause,
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
    version: result.candidate.version,
    dataset_id: result.dataset_id,
    examples: result.examples,
    ...(result.probe ? { probe: result.probe } : {}),
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
          ...(t.intervals
            ? {
                intervals: { baseline: diffOf(t.intervals.baseline), champion: diffOf(t.intervals.champion) },
              }
            : {}),
        },
      ]),
    ),
  };
}

function diffOf(iv: PairedInterval | null) {
  return iv ? { against: iv.against, diff: iv.diff, low: iv.low, high: iv.high } : null;
}

/** A training run's candidate, and the champion when there is one. */
async function candidateUnderTest(ctx: StageContext, memory: ModelMemory): Promise<Models> {
  const cand = await trainedModel(ctx);
  const championVersion = (await ctx.registry.read(ctx.agent)).aliases.champion;
  return {
    candidate: { label: CANDIDATE, version: null, weights: cand.model, memory },
    champion: championVersion ? await registeredModel(ctx.registry, ctx.agent, championVersion) : null,
  };
}

/** An evaluation run's version, and the one it is scored against (resolved when the run started). */
async function versionsUnderTest(
  ctx: StageContext,
  asked: { version: string; against: string | null },
): Promise<Models> {
  const version = await ctx.registry.resolve(ctx.agent, asked.version);
  const against = asked.against ? await ctx.registry.resolve(ctx.agent, asked.against) : null;
  return {
    candidate: await registeredModel(ctx.registry, ctx.agent, version),
    champion: against && against !== version ? await registeredModel(ctx.registry, ctx.agent, against) : null,
  };
}

interface Models {
  candidate: ModelUnderTest;
  champion: ModelUnderTest | null;
}

/** A registered version as evaluation scores it: its weights and its memory. */
export async function registeredModel(
  registry: ModelRegistry,
  agent: string,
  version: string,
): Promise<ModelUnderTest> {
  const manifest = await registry.getManifest(agent, version);
  return {
    label: version,
    version,
    weights: await registry.readArtifact(agent, version, "model.safetensors", manifest),
    memory: await versionMemory(registry, agent, version, manifest),
  };
}

/**
 * What evaluateStage leaves in its process besides its output (the validation score gauge), made
 * again from that output by a server whose evaluate stage ran in a child process.
 */
export function adoptEvaluateOutput(agent: string, output: EvaluateOutput): void {
  publishValidationScores(agent, output.version ?? CANDIDATE, output.scores);
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
