// Two registered versions side by side, task by task: on the same validation examples when one
// evaluation scored both (a run's evaluation.json: the training run of one of them, or an
// evaluation run), else from the scores each version was registered with. Used by the
// model_compare tool and `trm-forge models compare`.
import * as z from "zod";
import { UsageError } from "../../errors.js";
import type { ObjectStore } from "../../store/index.js";
import { runsPrefix } from "../../store/layout.js";
import type { ModelRegistry, RegistryIndex } from "../deploy/registry.js";
import type { EvaluationResult } from "../evaluate.js";
import { evaluationRunKey, readEvaluation } from "./stage.js";

/** How many of the newest evaluations are searched for one of the pair. */
const RECENT_EVALUATIONS = 50;

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
    /** Paired bootstrap 95% interval of delta (b - a), when one evaluation scored both. */
    interval: z.object({ low: z.number(), high: z.number() }).strict().nullable().optional(),
  })
  .strict();
export type TaskRow = z.infer<typeof TaskRow>;

export interface Comparison {
  basis: "same_examples" | "separate_evaluations";
  /** The dataset whose validation examples scored both (same_examples only). */
  dataset_id: string | null;
  tasks: TaskRow[];
}

/**
 * The pair to compare: a defaults to the champion, b to the challenger, else the newest version.
 * Refuses a pair of one version.
 */
export async function comparisonPair(
  registry: ModelRegistry,
  agent: string,
  index: RegistryIndex,
  refs: { a?: string; b?: string },
): Promise<{ a: string; b: string }> {
  const a = await registry.resolve(agent, refs.a ?? "champion");
  const b = refs.b
    ? await registry.resolve(agent, refs.b)
    : (index.aliases.challenger ?? (await registry.resolve(agent, "latest")));
  if (a === b) throw new UsageError(`a and b are both ${a}; name another version as b`);
  return { a, b };
}

/** One line on who wins, and on what basis. */
export function comparisonSummary(c: Comparison, a: string, b: string): string {
  const wins = {
    a: c.tasks.filter((t) => t.better === "a").length,
    b: c.tasks.filter((t) => t.better === "b").length,
  };
  return (
    `${b} is better on ${wins.b} task${wins.b === 1 ? "" : "s"}, ${a} on ${wins.a}` +
    (c.basis === "same_examples"
      ? ` (same ${c.tasks.reduce((n, t) => n + (t.examples ?? 0), 0)} validation examples of ${c.dataset_id})`
      : "; the scores come from separate evaluations on different validation sets, so compare with care (an evaluation of b against a scores both on the same examples)")
  );
}

/** Compares a with b (b is the newer one a caller asks about: "better: b" means b wins). */
export async function compareVersions(opts: {
  store: ObjectStore;
  agent: string;
  index: RegistryIndex;
  a: string;
  b: string;
}): Promise<Comparison> {
  const { a, b } = opts;
  const joint = await jointEvaluation(opts.store, opts.agent, opts.index, a, b);
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
      const r = row(
        t.task,
        t.primary,
        t.direction,
        sa,
        sb,
        base && t.best_baseline ? { name: t.best_baseline, score: base.score } : null,
        t.examples,
      );
      // The stored interval is of (candidate - champion), negated for lower-is-better metrics.
      const iv = t.intervals?.champion;
      if (iv) {
        const flip = (t.direction === "lower") !== (joint.candidateIs === "a");
        r.interval = flip ? { low: -iv.high, high: -iv.low } : { low: iv.low, high: iv.high };
      }
      return r;
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

/**
 * An evaluation that scored a and b on the same examples. Every evaluation is its run's
 * evaluation.json: the run that trained one of them (its evaluate stage scored it against the
 * champion of the day) or an evaluation run (model_evaluate, `trm-forge evaluate`). The runs that
 * made a and b are looked at first, then the newest evaluations.
 */
export async function jointEvaluation(
  store: ObjectStore,
  agent: string,
  index: RegistryIndex,
  a: string,
  b: string,
): Promise<{ ev: EvaluationResult; candidateIs: "a" | "b" } | null> {
  const madeBy = new Map(index.versions.filter((v) => v.run_id).map((v) => [v.run_id!, v.version]));
  const own = [b, a].map((v) => index.versions.find((x) => x.version === v)?.run_id ?? null);
  const newest = (await store.list(runsPrefix(agent)))
    .map((o) => /^runs\/[^/]+\/([^/]+)\/evaluation\.json$/.exec(o.key)?.[1] ?? null)
    .filter((id): id is string => id !== null)
    .sort()
    .reverse()
    .slice(0, RECENT_EVALUATIONS);
  for (const runId of new Set([...own, ...newest])) {
    if (!runId) continue;
    let ev: EvaluationResult | null;
    try {
      ev = await readEvaluation(store, evaluationRunKey(agent, runId));
    } catch (err) {
      // A damaged evaluation only means this run has nothing to offer.
      if (err instanceof SyntaxError) continue;
      throw err;
    }
    // A training run's candidate had no version yet when it was scored: it is the one the run made.
    const cand = ev?.candidate?.version ?? madeBy.get(runId) ?? null;
    const other = ev?.champion?.version ?? null;
    if (!ev || !cand || !other) continue;
    if (cand === b && other === a) return { ev, candidateIs: "b" };
    if (cand === a && other === b) return { ev, candidateIs: "a" };
  }
  return null;
}
