// The stage contract: what the orchestrator (run.ts) hands a stage, and what each stage hands
// back. A leaf: it imports no stage and not the orchestrator, so stages, runners and every reader
// of a run (jobs, CLI, report, demo) depend on this file and never on each other.
//
// Facts travel one way: a stage returns its output, the orchestrator checks it against the
// stage's schema, stores it in stages[i].output and copies the run-level facts (runFacts) into
// the record. Readers get an output back through stageOutput(), typed, never by a cast.
import * as z from "zod";
import type { Config } from "../config/index.js";
import { MATMUL_PRECISIONS } from "../config/schema.js";
import { WorkError } from "../errors.js";
import { NotFoundError, type ObjectStore } from "../store/index.js";
import { stageResultKey as layoutStageResultKey } from "../store/layout.js";
import type { ModelRegistry } from "./deploy/registry.js";
import { LogLine, Progress, type RunRecord, type StageName, StageRecord } from "./record.js";

export * from "./record.js";

/** Live progress is written to the store at most this often; events are forwarded always. */
export const PROGRESS_WRITE_MS = 2000;

/** What a stage sees. */
export interface StageContext {
  runId: string;
  agent: string;
  stage: StageName;
  attempt: number;
  config: Config;
  store: ObjectStore;
  registry: ModelRegistry;
  signal: AbortSignal;
  fromScratch: boolean;
  /**
   * The record as it stands: outputs of earlier stages, and the run's dataset id, decided by the
   * orchestrator before a stage that needs one runs (decideDataset in run.ts).
   */
  record: Readonly<RunRecord>;
  now(): Date;
  log(level: LogLine["level"], msg: string): void;
  /** Live progress; persisted to run.json at most every few seconds, forwarded as an event always. */
  progress(p: Omit<Progress, "stage" | "at">, detail?: unknown): void;
  /**
   * For a stage that computes synchronously for seconds at a time (training steps, evaluation
   * batches), between them: lets this process's own I/O in flight finish (the run lease's renewal,
   * the run record's progress write), which a blocked event loop advances only one callback per turn.
   */
  pause(): Promise<void>;
}

/** A measured value: NaN or Infinity in memory, null once it has been through run.json. */
const Measure = z.custom<number>((v) => typeof v === "number").nullable();

/** A stage that did its main work while an optional part failed says so in its output. */
const Partial = { status: z.literal("partial").optional(), partial_reason: z.string().optional() };

export const CollectOutput = z.looseObject({
  collection_report: z.string(),
  records: z.number(),
  segments: z.number(),
  errors: z.number(),
  sources: z.record(z.string(), z.string()),
  ...Partial,
});
export const BuildOutput = z.looseObject({
  dataset_id: z.string(),
  reused: z.boolean(),
  examples: z.object({ train: z.number(), val: z.number() }),
  vocab_size: z.number(),
  grew_from_champion: z.boolean(),
  quality_passed: z.boolean(),
});
export const TrainOutput = z.looseObject({
  dataset_id: z.string(),
  /** The champion the candidate was fine-tuned from. */
  parent_version: z.string().nullable(),
  best_dir: z.string().nullable(),
  best_step: z.number(),
  best_score: Measure,
  steps: z.number(),
  stopped: z.string(),
  resumed_from_step: z.number().nullable(),
  params: z.number(),
  samples_per_s: Measure,
  backend: z.string(),
  /** The precision of training's matrix products; absent in runs from before it was recorded. */
  matmul: z.enum(MATMUL_PRECISIONS).optional(),
  model_config: z.unknown(),
  note: z.string().optional(),
});
export const Gate = z.object({ passed: z.boolean(), reasons: z.array(z.string()) });
/** A difference to another predictor on the same examples, with its paired bootstrap interval. */
export const DiffInterval = z.object({
  against: z.string(),
  diff: z.number(),
  low: z.number(),
  high: z.number(),
});
/** One task of an evaluation, as a job's result shows it. */
export const EvaluatedTask = z.object({
  metric: z.string(),
  examples: z.number(),
  score: Measure,
  /** The other version's score on the same examples. */
  against: Measure,
  best_baseline: z.object({ name: z.string(), score: Measure }).nullable(),
  /** Paired bootstrap 95% intervals of the difference (positive: this version is better). */
  intervals: z.object({ baseline: DiffInterval.nullable(), champion: DiffInterval.nullable() }).optional(),
});
export const EvaluateOutput = z.looseObject({
  /** The store key of evaluation.json. */
  evaluation: z.string(),
  gate: Gate,
  scores: z.record(z.string(), Measure),
  /** The version scored beside it (a run's: the champion). */
  champion: z.string().nullable(),
  /** The registered version an evaluation run scored; null for a run's own candidate. */
  version: z.string().nullable().optional(),
  dataset_id: z.string().optional(),
  examples: z.number().optional(),
  tasks: z.record(z.string(), EvaluatedTask).optional(),
});
export const DeployHookResult = z.object({
  name: z.string(),
  status: z.enum(["ok", "partial", "failed", "skipped"]),
  reason: z.string().nullable(),
  detail: z.unknown(),
});
export const DeployOutput = z.looseObject({
  version: z.string(),
  gate_passed: z.boolean(),
  promoted_to: z.string().nullable(),
  previous_champion: z.string().nullable(),
  hooks: z.array(DeployHookResult),
  ...Partial,
});

export const STAGE_OUTPUTS = {
  collect: CollectOutput,
  build: BuildOutput,
  train: TrainOutput,
  evaluate: EvaluateOutput,
  deploy: DeployOutput,
} as const satisfies Record<StageName, z.ZodType>;

export type StageOutput<S extends StageName> = z.infer<(typeof STAGE_OUTPUTS)[S]>;
export type CollectOutput = StageOutput<"collect">;
export type BuildOutput = StageOutput<"build">;
export type TrainOutput = StageOutput<"train">;
export type EvaluateOutput = StageOutput<"evaluate">;
export type DeployOutput = StageOutput<"deploy">;

/**
 * A stage returns what it produced; it lands in stages[i].output. Stages that tests or other
 * runners inject may return any object: only the real stages' outputs are read back, through
 * stageOutput(), which skips an output that does not fit its schema.
 */
export type StageFn = (ctx: StageContext) => Promise<Record<string, unknown> | void>;
export type StageFns = Record<StageName, StageFn>;

/**
 * A stage's output read back from a record, typed. Every field may be missing (records written
 * by older versions, stages that tests inject); a field that is there has its schema's type.
 * Null when the stage produced nothing, or something of another shape.
 */
export function stageOutput<S extends StageName>(
  run: Readonly<RunRecord>,
  stage: S,
): Partial<StageOutput<S>> | null {
  const s = run.stages.find((x) => x.name === stage && x.requested);
  if (!s || Object.keys(s.output).length === 0) return null;
  const r = STAGE_OUTPUTS[stage].partial().safeParse(s.output);
  return r.success ? (r.data as Partial<StageOutput<S>>) : null;
}

/** The run-level facts a stage's output settles: the only way they reach the record. */
export function runFacts(
  stage: StageName,
  output: Record<string, unknown>,
): Partial<Pick<RunRecord, "dataset_id" | "parent_version" | "model_version">> {
  if (stage === "build" && typeof output.dataset_id === "string") return { dataset_id: output.dataset_id };
  if (stage === "train" && typeof output.parent_version === "string")
    return { parent_version: output.parent_version };
  if (stage === "deploy" && typeof output.version === "string") return { model_version: output.version };
  return {};
}

/** Stages that work on the run's dataset: the orchestrator decides it before they run. */
export const USES_DATASET: readonly StageName[] = ["train", "evaluate", "deploy"];

// ---- worker mode: a stage run by another process (a Kubernetes Job's pod) --------------------

/** What a worker-mode process reports about a stage it ran, beside run.json. */
export const StageResult = z.looseObject({
  stage: StageRecord,
  progress: Progress.nullable(),
  log: z.array(LogLine).optional(),
  pid: z.number().optional(),
  host: z.string().optional(),
  updated_at: z.string(),
});
export type StageResult = z.infer<typeof StageResult>;

export function stageResultKey(agent: string, runId: string, stage: StageName): string {
  return layoutStageResultKey(agent, runId, stage);
}

/** The result a worker-mode process wrote for a stage of a run, or null when none did. */
export async function readStageResult(
  store: ObjectStore,
  agent: string,
  runId: string,
  stage: StageName,
): Promise<StageResult | null> {
  let text: string;
  try {
    text = (await store.get(stageResultKey(agent, runId, stage))).toString("utf8");
  } catch (err) {
    if (err instanceof NotFoundError) return null;
    throw err;
  }
  const r = StageResult.safeParse(JSON.parse(text));
  if (!r.success)
    throw new WorkError(
      `the worker's ${stage} stage result for run ${runId} is not valid: ${r.error.issues[0]?.message}`,
    );
  return r.data;
}
