// The four training tasks behind one interface, and the scoring that evaluation uses for the
// model and the baselines alike.
import { outputProbs } from "../../model/act.js";
import type { TRMConfig } from "../../model/config.js";
import { argmaxTokens } from "./common.js";
import { type ModelMemory, recall } from "./memory.js";
import { getTask } from "./modules.js";
import type { Example, TaskName, TaskScore } from "./types.js";
import type { Vocab } from "./vocab.js";

export { getTask, TASKS } from "./modules.js";

/**
 * One sample's answer tokens from the model's output (logits of the batch, the sample's at
 * `offset`): recalled against the version's memory where it has one for the task, then the task's
 * own decision where it has one, as serving answers, else the arg-max.
 */
export function answerTokens(
  task: string,
  cfg: Pick<TRMConfig, "seq_len" | "vocab_size" | "loss_type">,
  inputs: Int32Array,
  out: { predictions: Int32Array; logits: Float32Array },
  j: number,
  vocab: Vocab,
  memory: ModelMemory | null = null,
): Int32Array {
  const L = cfg.seq_len;
  const t = getTask(task);
  const offset = j * L * cfg.vocab_size;
  if (t.choose) {
    const probs = outputProbs(cfg, out.logits, offset, vocab.size);
    recall(memory, t, inputs, probs, vocab);
    return t.choose(inputs, probs, vocab);
  }
  const tokens = out.predictions.slice(j * L, (j + 1) * L);
  if (!t.memoryKey || !memory?.tasks.has(task)) return tokens;
  // Only the slot rows change: normalise those alone.
  const rows = Math.max(...t.slots.map((s) => s.position)) + 1;
  const probs = outputProbs({ ...cfg, seq_len: rows }, out.logits, offset, vocab.size);
  if (!recall(memory, t, inputs, probs, vocab)) return tokens;
  for (const s of t.slots)
    tokens[s.position] = argmaxTokens(probs.subarray(s.position * vocab.size), 1, vocab.size)[0];
  return tokens;
}

/** Scores predictions (argmax token ids per position) of one task's examples. */
export function scoreTask(
  task: TaskName,
  examples: readonly Example[],
  predictions: readonly Int32Array[],
  vocab: Vocab,
): TaskScore {
  return getTask(task).score(examples, predictions, vocab);
}

/** Whether score a is better than score b on the task's primary metric. */
export function beats(a: TaskScore, b: TaskScore): boolean {
  const dir = getTask(a.task).metrics[a.primary];
  const x = a.metrics[a.primary];
  const y = b.metrics[b.primary];
  return dir === "lower" ? x < y : x > y;
}

export interface BaselineScores {
  scores: Record<string, TaskScore>;
  /** Each baseline's answers, per example (for paired comparisons on the same examples). */
  predictions: Record<string, Int32Array[]>;
  /** The baseline the model has to beat: the best on the primary metric. */
  best: string;
}

/** Fits the task's baselines on train and scores each on `examples` with scoreTask. */
export function scoreBaselines(
  task: TaskName,
  train: readonly Example[],
  examples: readonly Example[],
  vocab: Vocab,
): BaselineScores {
  const t = getTask(task);
  const scores: Record<string, TaskScore> = {};
  const predictions: Record<string, Int32Array[]> = {};
  let best = "";
  for (const b of t.baselines(train, vocab)) {
    predictions[b.name] = examples.map((ex) => b.predict(ex));
    scores[b.name] = t.score(examples, predictions[b.name], vocab);
    if (!best || beats(scores[b.name], scores[best])) best = b.name;
  }
  return { scores, predictions, best };
}

export {
  type BuildExamplesOptions,
  type BuiltExamples,
  buildExamples,
  DEFAULT_SERVICE_LABELS,
} from "./build-examples.js";
export {
  type CodeInfillAnswer,
  type CodeInfillQuery,
  chooseMask,
  codeInfill,
  codeWindows,
  labelSpans,
} from "./code-infill.js";
export { allowedIds, readAt, tokensToText } from "./common.js";
export { LEVELS, type Level, logLevel, normaliseLogLine } from "./log-normalize.js";
export {
  type LogFacts,
  type LogTriageAnswer,
  type LogTriageQuery,
  logFacts,
  logTriage,
  nsToMs,
} from "./log-triage.js";
export {
  asMemory,
  buildMemory,
  MEMORY_ARTIFACT,
  MemoryError,
  type MemoryFile,
  type ModelMemory,
  parseMemory,
  recall,
  serializeMemory,
} from "./memory.js";
export {
  fromBin,
  identityText,
  LAG_DAYS,
  lagsFor,
  type MetricForecastAnswer,
  type MetricForecastQuery,
  metricForecast,
  robustScale,
  toBin,
} from "./metric-forecast.js";
export {
  analyseTrace,
  LATENCY_BUCKETS,
  type LatencyBucket,
  latencyBucket,
  latencyDrivers,
  normalisePath,
  pathText,
  type TraceFacts,
  type TraceOutcomeAnswer,
  type TraceOutcomeQuery,
  traceOutcome,
  tracePath,
} from "./trace-outcome.js";
export {
  type Answer,
  type Baseline,
  type BuildContext,
  type Draft,
  type DraftSink,
  type Encoded,
  type Example,
  type LabelSlot,
  type ModelOutput,
  NUM_PUZZLE_IDENTIFIERS,
  PUZZLE_IDENTIFIER_NAMES,
  PUZZLE_IDS,
  type Readout,
  type RecordRef,
  TASK_NAMES,
  TaskInputError,
  type TaskModule,
  type TaskName,
  type TaskScore,
} from "./types.js";
export {
  BIN_BASE,
  BYTE_BASE,
  EncodingSpec,
  FIXED_CLASSES,
  IGNORE,
  MASK,
  PAD,
  SEP,
  SPECIALS,
  UNK,
  Vocab,
  VocabError,
  VocabFile,
  type VocabGrowth,
  vocabGrowth,
} from "./vocab.js";
