// The one interface every task implements, and the shapes that pass between the tasks, the
// dataset build, training, evaluation and serving.
import type { RecordOf, SourceName } from "../collect/records.js";
import type { IncidentIndex } from "../incidents.js";
import type { Vocab } from "./vocab.js";

export const TASK_NAMES = ["code_infill", "log_triage", "metric_forecast", "trace_outcome"] as const;
export type TaskName = (typeof TASK_NAMES)[number];

/** TRM puzzle identifier of each task; 0 is the blank identifier, as in the reference datasets. */
export const PUZZLE_IDS: Record<TaskName, number> = {
  code_infill: 1,
  log_triage: 2,
  metric_forecast: 3,
  trace_outcome: 4,
};
export const NUM_PUZZLE_IDENTIFIERS = 5;
export const PUZZLE_IDENTIFIER_NAMES = ["<blank>", ...TASK_NAMES] as const;

/** One fixed-length training or validation example. */
export interface Example {
  task: TaskName;
  /** [seq_len] token ids. */
  inputs: Int32Array;
  /** [seq_len] token ids, IGNORE (-100) where the loss ignores the position. */
  labels: Int32Array;
  /** Event time (ms since the epoch) that placed the example in its split. */
  time: number;
  /** Task numbers that are not tokens: metric_forecast keeps its scale and targets here. */
  aux: Float64Array;
  /** Validation only: the same input is in train (score on the others for "new inputs only"). */
  inputSeenInTrain?: boolean;
}

/** A class label read at one fixed position (log_triage, trace_outcome). */
export interface LabelSlot {
  name: string;
  position: number;
  /** Class namespace in the vocabulary ("service", "level", ...). */
  namespace: string;
}

/** One position the model answers at, and which ids a valid answer may take there. */
export interface Readout {
  position: number;
  kind: "byte" | "bin" | "class";
  /** For kind "class": the namespace. */
  namespace?: string;
  /** The answer's name, e.g. "level" or "t+3". */
  name: string;
}

/** A query encoded for the model, with what decode needs to read the answer back. */
export interface Encoded {
  task: TaskName;
  puzzleId: number;
  inputs: Int32Array;
  readouts: Readout[];
  /** Task data the answer needs (metric_forecast: the series scale). */
  aux: Float64Array;
}

/**
 * What the model produced for one example: argmax token ids per position, or the
 * probabilities [seq_len * vocab_size] (row-major) when per-label confidence is wanted.
 */
export type ModelOutput = { tokens: Int32Array } | { probs: Float32Array };

/** A decoded answer to one question, with the model's confidence in it (0..1). */
export interface Answer<T> {
  value: T | null;
  confidence: number;
}

/** A stand-in predictor: it answers like the model does, with token ids per position. */
export interface Baseline {
  name: string;
  predict(example: Example): Int32Array;
}

/** Where a record came from, for the reasons in the quality report. */
export interface RecordRef {
  segment: string;
  line: number;
}

/** An example before class ids are known: class labels are still names. */
export interface Draft {
  inputs: Int32Array;
  /** Byte or bin labels are final; slot positions are filled from `classes` later. */
  labels: Int32Array;
  /** One class name per slot of the task (null while a later pass still has to decide it). */
  classes: (string | null)[];
  time: number;
  /** The latest time the example's labels look at, when later than `time` (metric_forecast). */
  until?: number;
  aux: Float64Array;
  /** Hash of the inputs: identical inputs in both splits are dropped from train. */
  key: number;
  /** Hash of the source item (sampling priority; stable across processing orders). */
  uid: number;
  /** Split group for tasks split by something else than time (code_infill: the file path). */
  group?: number;
  /** Set by the dataset build once the draft is sampled: inputs then labels, 16 bits each. */
  packed?: Uint16Array;
  /** The service and time whose incident state decides a deferred class (log_triage). */
  incident?: { service: string; time: number };
}

export interface DraftSink {
  example(draft: Draft): void;
  invalid(reason: string, ref?: RecordRef): void;
  skipped(reason: string, n?: number): void;
  /** Something worth knowing that did not stop the example (e.g. orphan spans). */
  note(what: string, n?: number): void;
}

export interface TaskWindow {
  /** [start, end) in ms since the epoch. */
  start: number;
  end: number;
}

export interface BuildContext {
  window: TaskWindow;
  vocabSpec: { seqLen: number; numBins: number };
  seed: number;
  serviceLabels: readonly string[];
  /** The settings of this task from the config's dataset.tasks section. */
  settings: Record<string, unknown>;
}

export interface RecordConsumer<R> {
  add(record: R, ref: RecordRef): void;
  /** Called once after the last record: tasks that assemble records emit here. */
  finish(): void;
}

/** The scores of one task on a set of examples, from identical code for model and baselines. */
export interface TaskScore {
  task: TaskName;
  examples: number;
  /** The metric the gate compares (higher is better). */
  primary: string;
  metrics: Record<string, number>;
}

export interface TaskModule<Q = unknown, A = unknown> {
  readonly name: TaskName;
  readonly source: SourceName;
  readonly puzzleId: number;
  readonly slots: readonly LabelSlot[];
  /** Metric names and whether higher is better. */
  readonly metrics: Readonly<Record<string, "higher" | "lower">>;
  readonly primary: string;
  /** Turns raw records of the task's source into drafts (streaming: one record at a time). */
  builder(ctx: BuildContext, sink: DraftSink): RecordConsumer<RecordOf<SourceName>>;
  /** Fills classes that needed the whole window (log_triage: incident-linked). */
  resolve?(draft: Draft, incidents: IncidentIndex): void;
  /** Encodes a live query exactly as the build encodes a record. Throws TaskInputError. */
  encode(query: Q, vocab: Vocab): Encoded;
  /**
   * The answer tokens from the model's probabilities [seq_len * vocab_size], for a task whose
   * metric is better served by another decision than the arg-max at each position. Evaluation
   * and serving both answer through it.
   */
  choose?(inputs: Int32Array, probs: Float32Array, vocab: Vocab): Int32Array;
  /**
   * The part of an input whose training outcomes a version remembers, per slot (memory.ts):
   * trace_outcome's path signature. Tasks without it answer from the model alone.
   */
  memoryKey?(inputs: Int32Array): string;
  /** Reads the typed answer from the model's output. */
  decode(output: ModelOutput, encoded: Encoded, vocab: Vocab): A;
  /** The baselines to beat, fitted on train. */
  baselines(train: readonly Example[], vocab: Vocab): Baseline[];
  /** Scores predictions (token ids per position) against the examples' labels. */
  score(examples: readonly Example[], predictions: readonly Int32Array[], vocab: Vocab): TaskScore;
  /** The example as a person reads it: input text and labels. */
  describe(example: Example, vocab: Vocab): { input: string; labels: Record<string, string> };
}

/** A live query the task cannot encode (too long, wrong form). */
export class TaskInputError extends Error {
  readonly exitCode = 2;
  override name = "TaskInputError";
}
