// The training loop. One step = one supervision step of one batch through the deep-supervision
// carry (slots whose sample halted take the next examples; the rest keep thinking), one AdamW
// step, one EMA update. Every `log_interval` steps a metrics.jsonl line and a progress event;
// every `eval_interval` steps validation with the EMA weights, early stopping with a patience,
// and the best model kept; every `checkpoint_interval` steps the whole training state
// (weights, Adam moments, EMA, step, RNG, carry, data order) is checkpointed, so a killed run
// resumes where it was and ends with the same weights as one that never stopped.
import type { MatmulPrecision, TrainSection } from "../config/schema.js";
import { setMatmulPrecision } from "../model/backend.js";
import type { TRMConfig } from "../model/config.js";
import { Rng } from "../model/rng.js";
import { decodeSafetensors } from "../model/safetensors.js";
import { Trainer } from "../model/trainer.js";
import { TRM } from "../model/trm.js";
import type { ObjectStore } from "../store/index.js";
import { metricsKey } from "../store/layout.js";
import { nextTurn } from "../util/turn.js";
import { CancelledError } from "./common/retry.js";
import {
  type DataOrder,
  type EarlyStop,
  latestCheckpoint,
  listCheckpoints,
  pruneCheckpoints,
  readCheckpointFile,
  saveCheckpoint,
} from "./train/checkpoint.js";

/** What the loop needs of a dataset split (the dataset reader's DatasetSplit is one). */
export interface TrainSplit {
  readonly size: number;
  /** Task of each example. */
  readonly tasks: readonly string[];
  batch(indices: ArrayLike<number>): { inputs: Int32Array; labels: Int32Array; puzzleIds: Int32Array };
}

/** Scores predictions of validation examples (by index) with the tasks' own metrics. */
export type ValScorer = (
  indices: number[],
  predictions: Int32Array[],
) => { score: number; tasks: Record<string, number> };

export interface TrainInput {
  settings: TrainSection;
  /** The architecture, with the dataset's vocabulary, sequence length and task count. */
  model: TRMConfig;
  train: TrainSplit;
  val: TrainSplit;
  /** Default: token accuracy on the supervised positions, per task. */
  scoreVal?: ValScorer;
  /** Sample j's answer tokens from the batch's output (default: the arg-max), as evaluation answers. */
  answerVal?: (
    valIndex: number,
    inputs: Int32Array,
    out: { predictions: Int32Array; logits: Float32Array },
    j: number,
  ) => Int32Array;
  /** Fine-tune from these weights (the champion's), grown to the dataset's vocabulary. */
  init?: { weights: Uint8Array; version: string } | null;
  store: ObjectStore;
  /** runs/<agent>/<run-id>: checkpoints/ and metrics.jsonl go under it. */
  prefix: string;
  signal?: AbortSignal;
  /** Called between steps and validation batches (StageContext.pause); a turn of the event loop by default. */
  pause?: () => Promise<void>;
  onEvent?: (e: TrainEvent) => void;
  /** ms clock for throughput and ETA. */
  clock?: () => number;
}

export interface TrainLogLine {
  kind: "train";
  step: number;
  at: string;
  loss: number;
  lm_loss: number;
  q_halt_loss: number;
  token_accuracy: number;
  exact_accuracy: number;
  q_halt_accuracy: number;
  lr: number;
  samples_per_s: number;
  /** Mean supervision steps of the samples that halted in the interval. */
  halt_steps: number | null;
  /** Token and exact accuracy per task over the interval's training slots. */
  tasks: Record<string, { token_accuracy: number; exact_accuracy: number }>;
}

export interface ValLogLine {
  kind: "val";
  step: number;
  at: string;
  score: number;
  /** The score per task: each task's primary metric (token accuracy with the default scorer). */
  tasks: Record<string, number>;
  /** Token and exact accuracy per task on the same examples. */
  accuracy: Record<string, { token_accuracy: number; exact_accuracy: number }>;
  examples: number;
  best: boolean;
  /** Histogram of supervision steps used with early halting (index i = i+1 steps). */
  halt_histogram: number[];
}

export type MetricsLine = TrainLogLine | ValLogLine;

export type TrainEvent =
  | {
      kind: "start";
      step: number;
      max_steps: number;
      resumed_from: number | null;
      fine_tune_from: string | null;
      params: number;
      train_examples: number;
      val_examples: number;
      matmul: MatmulPrecision;
    }
  | ({ kind: "step"; max_steps: number; eta_s: number | null } & Omit<TrainLogLine, "kind" | "at">)
  | {
      kind: "val";
      step: number;
      score: number;
      tasks: Record<string, number>;
      best_step: number;
      best_score: number | null;
      improved: boolean;
      patience_left: number;
    }
  | { kind: "checkpoint"; step: number; dir: string; seconds: number }
  | {
      kind: "end";
      step: number;
      best_step: number;
      best_score: number | null;
      stopped: "max_steps" | "early_stop";
    };

export interface TrainResult {
  steps: number;
  max_steps: number;
  stopped: "max_steps" | "early_stop";
  best_step: number;
  best_score: number | null;
  /** Store prefix of the best model (model.safetensors = EMA weights, raw.safetensors = live weights). */
  best_dir: string;
  resumed_from_step: number | null;
  fine_tuned_from: string | null;
  params: number;
  samples_per_s: number;
  /** The precision training's products ran in (train.matmul, or float32 where bf16 cannot run). */
  matmul: MatmulPrecision;
}

export async function train(input: TrainInput): Promise<TrainResult> {
  const s = input.settings;
  const { store, prefix } = input;
  const clock = input.clock ?? (() => performance.now());
  const emit = (e: TrainEvent) => input.onEvent?.(e);
  const B = s.batch_size;
  if (input.train.size === 0) throw new Error("the training split is empty");

  // --- state: resume from the last checkpoint, or start (fresh or from the champion) ---
  let trainer: Trainer;
  let order: DataOrder = { epoch: 0, cursor: 0 };
  let early: EarlyStop = { best_step: 0, best_score: null, evals_since_best: 0 };
  let resumedFrom: number | null = null;
  let fineTunedFrom = input.init?.version ?? null;
  const last = await latestCheckpoint(store, prefix, "state");
  if (last) {
    const { trainer: t, extra } = Trainer.fromState(
      await readCheckpointFile(store, last, "state.safetensors"),
      last.dir,
    );
    trainer = t;
    order = last.manifest.data;
    early = last.manifest.early_stop;
    resumedFrom = trainer.step;
    fineTunedFrom = extra.fine_tuned_from || null;
    // A best model saved after this checkpoint by the process that died is redone from here.
    for (const b of await listCheckpoints(store, prefix, "best"))
      if (b.manifest.step > trainer.step) await pruneCheckpoints(store, prefix, "best", 0, b.manifest.step);
  } else if (input.init) {
    const parent = TRM.fromSafetensors(
      decodeSafetensors(input.init.weights, `champion ${input.init.version}`),
    );
    if (parent.cfg.seq_len !== input.model.seq_len || parent.cfg.hidden_size !== input.model.hidden_size) {
      parent.dispose();
      throw new Error(
        `cannot fine-tune ${input.init.version}: its shape (seq_len ${parent.cfg.seq_len}, hidden ${parent.cfg.hidden_size}) differs from this run's (${input.model.seq_len}, ${input.model.hidden_size})`,
      );
    }
    trainer = Trainer.fromModel(parent, optionsOf(s, true), s.seed);
    trainer.growVocab(input.model.vocab_size);
    trainer.growPuzzleIds(input.model.num_puzzle_identifiers);
  } else {
    trainer = Trainer.create(input.model, optionsOf(s, false), s.seed);
  }
  // The precision is per JS thread, and other work (another agent's run, an evaluation) runs on
  // this thread while the loop awaits the store: so it is on only around the synchronous model calls.
  const matmul = setMatmulPrecision(s.matmul);
  setMatmulPrecision("float32");
  const pause = input.pause ?? nextTurn;
  const inPrecision = <T>(fn: () => T): T => {
    setMatmulPrecision(matmul);
    try {
      return fn();
    } finally {
      setMatmulPrecision("float32");
    }
  };
  // Freed however training ends (a cancel, an error): a server trains many times in one process.
  try {
    const metrics = await readMetrics(store, prefix, trainer.step);
    const valIdx = validationSample(input.val, s.eval_examples);
    emit({
      kind: "start",
      step: trainer.step,
      max_steps: s.max_steps,
      resumed_from: resumedFrom,
      fine_tune_from: fineTunedFrom,
      params: trainer.model.parameterCount(),
      train_examples: input.train.size,
      val_examples: valIdx.length,
      matmul,
    });

    const checkpoint = async () => {
      const t0 = clock();
      const extra = { fine_tuned_from: fineTunedFrom ?? "" };
      const ck = await saveCheckpoint(
        store,
        prefix,
        { kind: "state", step: trainer.step, data: order, early_stop: early, score: null },
        [{ name: "state.safetensors", data: trainer.exportState(extra) }],
      );
      await writeMetrics(store, prefix, metrics);
      await pruneCheckpoints(store, prefix, "state", s.keep_checkpoints);
      emit({ kind: "checkpoint", step: trainer.step, dir: ck.dir, seconds: (clock() - t0) / 1000 });
    };

    // --- the loop ---
    let stopped: TrainResult["stopped"] = early.evals_since_best >= s.patience ? "early_stop" : "max_steps";
    let acc = newAccumulator();
    // Task ids are the TRM puzzle identifiers; training slots carry only the id.
    const taskOfId = new Map<number, string>();
    let intervalStart = clock();
    const loopStart = clock();
    const stepsAtStart = trainer.step;
    const pool = epochPool(input.train.tasks, s.task_weights);
    while (trainer.step < s.max_steps && stopped === "max_steps") {
      // Between steps: in a process that also holds the run's lease (a CLI run), its due renewal lands here.
      await pause();
      if (input.signal?.aborted) {
        await checkpoint(); // a cancelled run can be resumed from here
        throw new CancelledError("training cancelled");
      }
      const indices = nextBatch(order, pool.length, B, s.seed).map((k) => pool[k]!);
      const batch = input.train.batch(indices);
      for (let j = 0; j < indices.length; j++)
        taskOfId.set(batch.puzzleIds[j]!, input.train.tasks[indices[j]!]!);
      const m = inPrecision(() =>
        trainer.trainStep({ tokens: batch.inputs, labels: batch.labels, puzzleIds: batch.puzzleIds }),
      );
      accumulate(acc, m, taskOfId);
      const step = trainer.step;

      if (step % s.log_interval === 0 || step === s.max_steps) {
        const now = clock();
        const line: TrainLogLine = {
          kind: "train",
          step,
          at: new Date().toISOString(),
          ...means(acc),
          lr: m.lr,
          samples_per_s: (acc.n * B) / Math.max(1e-9, (now - intervalStart) / 1000),
        };
        metrics.push(line);
        const stepsPerS = (step - stepsAtStart) / Math.max(1e-9, (now - loopStart) / 1000);
        emit({
          ...line,
          kind: "step",
          max_steps: s.max_steps,
          eta_s: stepsPerS > 0 ? (s.max_steps - step) / stepsPerS : null,
        });
        await writeMetrics(store, prefix, metrics);
        acc = newAccumulator();
        intervalStart = clock();
      }

      if (step % s.eval_interval === 0 || step === s.max_steps) {
        const v = await validate(
          trainer,
          input.val,
          valIdx,
          B,
          { inPrecision, pause },
          input.scoreVal,
          input.answerVal,
        );
        const improved = early.best_score === null || v.score > early.best_score;
        if (improved) {
          early = { best_step: step, best_score: v.score, evals_since_best: 0 };
          await saveCheckpoint(
            store,
            prefix,
            { kind: "best", step, data: order, early_stop: early, score: v.score },
            [
              { name: "model.safetensors", data: trainer.exportModel({ ema: true }) },
              { name: "raw.safetensors", data: trainer.exportModel({ ema: false }) },
            ],
          );
          await pruneCheckpoints(store, prefix, "best", 1);
        } else {
          early = { ...early, evals_since_best: early.evals_since_best + 1 };
        }
        metrics.push({ kind: "val", step, at: new Date().toISOString(), ...v, best: improved });
        emit({
          kind: "val",
          step,
          score: v.score,
          tasks: v.tasks,
          best_step: early.best_step,
          best_score: early.best_score,
          improved,
          patience_left: s.patience - early.evals_since_best,
        });
        if (early.evals_since_best >= s.patience) {
          stopped = "early_stop";
          await checkpoint();
          break;
        }
      }

      if (step % s.checkpoint_interval === 0 || step === s.max_steps) await checkpoint();
    }

    const best = (await listCheckpoints(store, prefix, "best")).at(-1);
    if (!best) throw new Error("training ended without a validated model (is the validation split empty?)");
    emit({
      kind: "end",
      step: trainer.step,
      best_step: early.best_step,
      best_score: early.best_score,
      stopped,
    });
    const result: TrainResult = {
      steps: trainer.step,
      max_steps: s.max_steps,
      stopped,
      best_step: early.best_step,
      best_score: early.best_score,
      best_dir: best.dir,
      resumed_from_step: resumedFrom,
      fine_tuned_from: fineTunedFrom,
      params: trainer.model.parameterCount(),
      samples_per_s: ((trainer.step - stepsAtStart) * B) / Math.max(1e-9, (clock() - loopStart) / 1000),
      matmul,
    };
    return result;
  } finally {
    trainer.dispose();
  }
}

function optionsOf(s: TrainSection, fineTune: boolean) {
  return {
    lr: fineTune ? s.lr * s.fine_tune_lr_scale : s.lr,
    warmup_steps: Math.min(s.warmup_steps, Math.max(0, s.max_steps - 1)),
    total_steps: s.max_steps,
    lr_min_ratio: s.lr_min_ratio,
    weight_decay: s.weight_decay,
    betas: [s.beta1, s.beta2] as [number, number],
    puzzle_emb_lr: s.task_emb_lr,
    puzzle_emb_weight_decay: s.task_emb_weight_decay,
    ema_decay: s.ema_decay,
    head_init: s.head_init,
  };
}

/**
 * The next B example indices. Examples are visited in a fresh permutation each epoch, drawn
 * from the seed and the epoch number only, so (epoch, cursor) is the whole data-order state.
 */
export function nextBatch(order: DataOrder, n: number, B: number, seed: number): number[] {
  const out: number[] = [];
  let perm = epochPermutation(n, seed, order.epoch);
  while (out.length < B) {
    if (order.cursor >= n) {
      order.epoch++;
      order.cursor = 0;
      perm = epochPermutation(n, seed, order.epoch);
    }
    out.push(perm[order.cursor++]);
  }
  return out;
}

/**
 * What one epoch visits: each training example as many times as its task's weight (1 where the
 * config names none), so a task that learns slowly can get more of the steps.
 */
export function epochPool(tasks: readonly string[], weights: Readonly<Record<string, number>>): Int32Array {
  const repeats = tasks.map((t) => weights[t] ?? 1);
  const pool = new Int32Array(repeats.reduce((a, b) => a + b, 0));
  let k = 0;
  tasks.forEach((_, i) => {
    for (let r = 0; r < repeats[i]!; r++) pool[k++] = i;
  });
  return pool;
}

const permCache = new Map<string, Int32Array>();
function epochPermutation(n: number, seed: number, epoch: number): Int32Array {
  const key = `${n}:${seed}:${epoch}`;
  let p = permCache.get(key);
  if (!p) {
    p = Int32Array.from({ length: n }, (_, i) => i);
    new Rng(seed * 1_000_003 + epoch + 1).shuffle(p);
    permCache.clear();
    permCache.set(key, p);
  }
  return p;
}

/** A fixed validation sample: up to `max` examples, spread evenly over each task's examples. */
export function validationSample(val: TrainSplit, max: number): number[] {
  const byTask = new Map<string, number[]>();
  val.tasks.forEach((t, i) => {
    if (!byTask.has(t)) byTask.set(t, []);
    byTask.get(t)!.push(i);
  });
  const per = Math.max(1, Math.floor(max / Math.max(1, byTask.size)));
  const out: number[] = [];
  for (const idx of byTask.values()) {
    const take = Math.min(per, idx.length);
    for (let k = 0; k < take; k++) out.push(idx[Math.floor((k * idx.length) / take)]);
  }
  return out.sort((a, b) => a - b);
}

/**
 * Predicts the validation sample with the EMA weights and early halting, as serving does: in
 * batches, each in the run's matmul precision, pausing between them.
 */
async function validate(
  trainer: Trainer,
  val: TrainSplit,
  idx: number[],
  B: number,
  { inPrecision, pause }: { inPrecision: <T>(fn: () => T) => T; pause: () => Promise<void> },
  scoreVal?: ValScorer,
  answer?: TrainInput["answerVal"],
): Promise<Omit<ValLogLine, "kind" | "step" | "at" | "best">> {
  const predictions: Int32Array[] = [];
  const labels: Int32Array[] = [];
  const hist = new Array(trainer.cfg.halt_max_steps).fill(0);
  const L = trainer.cfg.seq_len;
  for (let i = 0; i < idx.length; i += B) {
    await pause();
    const chunk = idx.slice(i, i + B);
    const b = val.batch(chunk);
    const p = inPrecision(() => trainer.predict({ tokens: b.inputs, puzzleIds: b.puzzleIds }));
    for (let j = 0; j < chunk.length; j++) {
      predictions.push(
        answer
          ? answer(chunk[j], b.inputs.subarray(j * L, (j + 1) * L), p, j)
          : p.predictions.slice(j * L, (j + 1) * L),
      );
      labels.push(b.labels.slice(j * L, (j + 1) * L));
      hist[p.steps[j] - 1]++;
    }
  }
  const accuracy = accuracyByTask(
    idx.map((i) => val.tasks[i]),
    predictions,
    labels,
  );
  if (idx.length === 0) return { score: 0, tasks: {}, accuracy, examples: 0, halt_histogram: hist };
  const scored = scoreVal
    ? scoreVal(idx, predictions)
    : {
        tasks: Object.fromEntries(Object.entries(accuracy).map(([t, a]) => [t, a.token_accuracy])),
        score: mean(Object.values(accuracy).map((a) => a.token_accuracy)),
      };
  return { ...scored, accuracy, examples: idx.length, halt_histogram: hist };
}

/** Token accuracy (share of supervised positions right) and exact accuracy (all right), per task. */
function accuracyByTask(tasks: string[], predictions: Int32Array[], labels: Int32Array[]) {
  const sum = new Map<string, { n: number; tok: number; exact: number }>();
  predictions.forEach((p, k) => {
    let valid = 0;
    let right = 0;
    for (let i = 0; i < p.length; i++) {
      if (labels[k][i] < 0) continue;
      valid++;
      if (p[i] === labels[k][i]) right++;
    }
    const e = sum.get(tasks[k]) ?? { n: 0, tok: 0, exact: 0 };
    e.n++;
    e.tok += valid ? right / valid : 0;
    e.exact += right === valid ? 1 : 0;
    sum.set(tasks[k], e);
  });
  const out: Record<string, { token_accuracy: number; exact_accuracy: number }> = {};
  for (const [t, e] of sum) out[t] = { token_accuracy: e.tok / e.n, exact_accuracy: e.exact / e.n };
  return out;
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);

interface Accumulator {
  n: number;
  loss: number;
  lm: number;
  qh: number;
  tok: number;
  exact: number;
  qacc: number;
  haltSteps: number;
  halted: number;
  byTask: Map<string, { n: number; tok: number; exact: number }>;
}

function newAccumulator(): Accumulator {
  return {
    n: 0,
    loss: 0,
    lm: 0,
    qh: 0,
    tok: 0,
    exact: 0,
    qacc: 0,
    haltSteps: 0,
    halted: 0,
    byTask: new Map(),
  };
}

function accumulate(
  a: Accumulator,
  m: ReturnType<Trainer["trainStep"]>,
  taskOfId: Map<number, string>,
): void {
  const { puzzleIds, valid, correct, exact } = m.slots;
  for (let b = 0; b < puzzleIds.length; b++) {
    const task = taskOfId.get(puzzleIds[b]!) ?? `task_${puzzleIds[b]}`;
    let t = a.byTask.get(task);
    if (!t) {
      t = { n: 0, tok: 0, exact: 0 };
      a.byTask.set(task, t);
    }
    t.n++;
    t.tok += correct[b]! / Math.max(1, valid[b]!);
    t.exact += exact[b]!;
  }
  a.n++;
  a.loss += m.loss;
  a.lm += m.lmLoss;
  a.qh += m.qHaltLoss;
  a.tok += m.tokenAccuracy;
  a.exact += m.exactAccuracy;
  a.qacc += m.qHaltAccuracy;
  if (m.haltSteps !== null) {
    a.haltSteps += m.haltSteps * m.halted;
    a.halted += m.halted;
  }
}

function means(a: Accumulator) {
  const n = Math.max(1, a.n);
  return {
    loss: a.loss / n,
    lm_loss: a.lm / n,
    q_halt_loss: a.qh / n,
    token_accuracy: a.tok / n,
    exact_accuracy: a.exact / n,
    q_halt_accuracy: a.qacc / n,
    halt_steps: a.halted ? a.haltSteps / a.halted : null,
    tasks: Object.fromEntries(
      [...a.byTask]
        .sort(([x], [y]) => (x < y ? -1 : 1))
        .map(([task, t]) => [task, { token_accuracy: t.tok / t.n, exact_accuracy: t.exact / t.n }]),
    ),
  };
}

/** metrics.jsonl lines up to `step` (lines past a resumed checkpoint are dropped: they are redone). */
async function readMetrics(store: ObjectStore, prefix: string, step: number): Promise<MetricsLine[]> {
  try {
    const text = (await store.get(metricsKey(prefix))).toString("utf8");
    return text
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as MetricsLine)
      .filter((l) => l.step <= step);
  } catch {
    return [];
  }
}

async function writeMetrics(store: ObjectStore, prefix: string, lines: MetricsLine[]): Promise<void> {
  await store.put(
    metricsKey(prefix),
    lines.map((l) => JSON.stringify(l)).join("\n") + (lines.length ? "\n" : ""),
    {
      contentType: "application/x-ndjson",
    },
  );
}

/** Reads a run's metrics.jsonl (for reports); an absent file is no lines. */
export async function readRunMetrics(store: ObjectStore, prefix: string): Promise<MetricsLine[]> {
  return readMetrics(store, prefix, Number.POSITIVE_INFINITY);
}
