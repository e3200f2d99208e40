// Two registered versions side by side, task by task: on the same validation examples when one
// evaluation scored both (a training run's, kept in the version's metrics.json, or model_evaluate's,
// under models/<agent>/evaluations/), else from the scores each version was registered with.
import * as z from "zod";
import { NotFoundError, type ObjectStore } from "../../store/index.js";
import type { ModelRegistry, RegistryIndex } from "../deploy/registry.js";
import type { EvaluationResult } from "../evaluate.js";

/** One task's row of a comparison; strict, as the model_compare tool's output schema uses it. */
export const TaskRow = z
  .object({
    task: z.string(),
    metric: z.string().nullable(),
    direction: z.enum(["higher", "lower"]),
    a: z.number().nullable(),
    b: z.number().nullable(),
    delta: z.number().nullable(),
    better: z.enum(["a", "b", "tie"]).nullable(),
    baseline: z.object({ name: z.string(), score: z.number() }).strict().nullable(),
    examples: z.number().int().nullable(),
  })
  .strict();
export type TaskRow = z.infer<typeof TaskRow>;

export interface Comparison {
  basis: "same_examples" | "separate_evaluations";
  /** The dataset whose validation examples scored both (same_examples only). */
  dataset_id: string | null;
  tasks: TaskRow[];
}

/** Compares a with b (b is the newer one a caller asks about: "better: b" means b wins). */
export async function compareVersions(opts: {
  registry: ModelRegistry;
  store: ObjectStore;
  agent: string;
  index: RegistryIndex;
  a: string;
  b: string;
}): Promise<Comparison> {
  const { a, b } = opts;
  const joint = await jointEvaluation(opts.registry, opts.store, opts.agent, a, b);
  let tasks: TaskRow[];
  let basis: Comparison["basis"];
  let datasetId: string | null = null;
  if (joint) {
    basis = "same_examples";
    datasetId = joint.ev.dataset_id;
    tasks = Object.values(joint.ev.tasks).map((t) => {
      const cand = Number.isFinite(t.candidate.score) ? t.candidate.score : null;
      const champ = t.champion && Number.isFinite(t.champion.score) ? t.champion.score : null;
      const [sa, sb] = joint.candidateIs === "b" ? [champ, cand] : [cand, champ];
      const base = t.best_baseline ? t.baselines[t.best_baseline] : null;
      return row(
        t.task,
        t.primary,
        t.direction,
        sa,
        sb,
        base && t.best_baseline ? { name: t.best_baseline, score: base.score } : null,
        t.examples,
      );
    });
  } else {
    basis = "separate_evaluations";
    const ea = opts.index.versions.find((x) => x.version === a)!;
    const eb = opts.index.versions.find((x) => x.version === b)!;
    const names = [...new Set([...Object.keys(ea.scores), ...Object.keys(eb.scores)])].sort();
    tasks = names.map((t) => row(t, null, "higher", ea.scores[t] ?? null, eb.scores[t] ?? null, null, null));
  }
  return { basis, dataset_id: datasetId, tasks };
}

function row(
  task: string,
  metric: string | null,
  direction: "higher" | "lower",
  a: number | null,
  b: number | null,
  baseline: { name: string; score: number } | null,
  examples: number | null,
): TaskRow {
  const delta = a !== null && b !== null ? b - a : null;
  const better =
    delta === null
      ? null
      : Math.abs(delta) < 1e-9
        ? "tie"
        : (direction === "higher") === delta > 0
          ? "b"
          : "a";
  return {
    task,
    metric,
    direction,
    a,
    b,
    delta,
    better,
    baseline: baseline && Number.isFinite(baseline.score) ? baseline : null,
    examples,
  };
}

/** An evaluation that scored a and b on the same examples: a training run's, or model_evaluate's. */
export async function jointEvaluation(
  registry: ModelRegistry,
  store: ObjectStore,
  agent: string,
  a: string,
  b: string,
): Promise<{ ev: EvaluationResult; candidateIs: "a" | "b" } | null> {
  for (const [cand, other, is] of [
    [b, a, "b"],
    [a, b, "a"],
  ] as const) {
    try {
      const m = await registry.getManifest(agent, cand);
      if (!m.artifacts.some((x) => x.name === "metrics.json")) continue;
      const stored = JSON.parse(
        (await registry.readArtifact(agent, cand, "metrics.json", m)).toString("utf8"),
      ) as {
        evaluation?: EvaluationResult | null;
      };
      if (stored.evaluation?.champion?.version === other) return { ev: stored.evaluation, candidateIs: is };
    } catch {
      // An unreadable metrics.json only means this source has nothing to offer.
    }
  }
  // Evaluations made by model_evaluate: models/<agent>/evaluations/<id>-<version>.json, newest last.
  const keys = (await store.list(`models/${agent}/evaluations`))
    .map((o) => o.key)
    .filter((k) => k.endsWith(`-${a}.json`) || k.endsWith(`-${b}.json`))
    .sort()
    .reverse()
    .slice(0, 20);
  for (const key of keys) {
    try {
      const ev = JSON.parse((await store.get(key)).toString("utf8")) as EvaluationResult;
      const cand = ev.candidate?.version;
      const other = ev.champion?.version;
      if (cand === b && other === a) return { ev, candidateIs: "b" };
      if (cand === a && other === b) return { ev, candidateIs: "a" };
    } catch (err) {
      if (!(err instanceof NotFoundError) && !(err instanceof SyntaxError)) throw err;
    }
  }
  return null;
}
