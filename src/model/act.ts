// Deep supervision with halting, made explicit. A batch of B slots runs one supervision step per
// call; each slot holds one sample and its state (y, z) across calls:
//   - a slot whose sample halted is refilled with the new batch's sample at the same index and a
//     fresh state (H_init, L_init); the other slots keep their sample and state, and the new
//     batch's item at their index is dropped (the reference's carry);
//   - training halts a sample once steps >= N_sup or q_halt > 0, except that with probability
//     halt_exploration_prob it must first reach a random minimum of U{2..N_sup} steps;
//   - evaluation runs every sample for exactly N_sup steps;
//   - serving (predict) stops a sample as soon as q_halt > 0 and reports the steps it used.
import * as tf from "@tensorflow/tfjs-core";
import type { TRMConfig } from "./config.js";
import { actLoss, IGNORE_LABEL } from "./loss.js";
import type { Rng } from "./rng.js";
import type { TRM, Weights } from "./trm.js";

export interface Batch {
  /** Token ids, [size * seq_len] row-major. */
  tokens: Int32Array;
  /** Label ids [size * seq_len], -100 = not supervised. Needed for training and evaluation. */
  labels?: Int32Array;
  /** Task (puzzle) identifiers, [size]. */
  puzzleIds: Int32Array;
}

/** What each slot carries between supervision steps. Tensors are owned by the carry. */
export interface Carry {
  /** Answer state y and latent z, [B, S, D]. */
  zH: tf.Tensor3D;
  zL: tf.Tensor3D;
  /** Supervision steps the slot's current sample has had. */
  steps: Int32Array;
  /** 1 = the slot's sample is done: the next call gives the slot a new sample. */
  halted: Uint8Array;
  tokens: Int32Array;
  labels: Int32Array;
  puzzleIds: Int32Array;
}

/** Checks a batch against the config; returns its size. Out-of-range ids are an error, not garbage. */
export function batchSize(cfg: TRMConfig, batch: Batch, needLabels: boolean): number {
  const B = batch.puzzleIds.length;
  const L = cfg.seq_len;
  if (B === 0) throw new RangeError("empty batch");
  if (batch.tokens.length !== B * L)
    throw new RangeError(`batch has ${batch.tokens.length} tokens, expected ${B} x ${L}`);
  for (let i = 0; i < batch.tokens.length; i++) {
    const t = batch.tokens[i]!;
    if (!(t >= 0 && t < cfg.vocab_size))
      throw new RangeError(`token ${t} at index ${i} is outside the vocabulary [0, ${cfg.vocab_size})`);
  }
  for (const id of batch.puzzleIds)
    if (!(id >= 0 && id < cfg.num_puzzle_identifiers))
      throw new RangeError(`puzzle identifier ${id} is outside [0, ${cfg.num_puzzle_identifiers})`);
  if (needLabels && !batch.labels) throw new RangeError("batch has no labels");
  if (batch.labels) {
    if (batch.labels.length !== B * L)
      throw new RangeError(`batch has ${batch.labels.length} labels, expected ${B} x ${L}`);
    for (let i = 0; i < batch.labels.length; i++) {
      const y = batch.labels[i]!;
      if (y !== IGNORE_LABEL && !(y >= 0 && y < cfg.vocab_size))
        throw new RangeError(
          `label ${y} at sample ${Math.floor(i / L)}, position ${i % L} is outside [0, ${cfg.vocab_size})`,
        );
    }
  }
  return B;
}

/** A carry whose slots are all halted, so the first call fills every slot. */
export function emptyCarry(model: TRM, B: number): Carry {
  const L = model.cfg.seq_len;
  return {
    ...model.initState(B),
    steps: new Int32Array(B),
    halted: new Uint8Array(B).fill(1),
    tokens: new Int32Array(B * L),
    labels: new Int32Array(B * L),
    puzzleIds: new Int32Array(B),
  };
}

/**
 * Gives every halted slot the new batch's sample at its index and a fresh state. Returns a new
 * carry; the old one's tensors are disposed.
 */
export function refill(model: TRM, carry: Carry, batch: Batch): Carry {
  const B = carry.steps.length;
  const L = model.cfg.seq_len;
  if (batch.puzzleIds.length !== B)
    throw new RangeError(`batch of ${batch.puzzleIds.length} does not match the carry's ${B} slots`);
  const next: Carry = {
    zH: carry.zH,
    zL: carry.zL,
    steps: Int32Array.from(carry.steps),
    halted: new Uint8Array(B),
    tokens: Int32Array.from(carry.tokens),
    labels: Int32Array.from(carry.labels),
    puzzleIds: Int32Array.from(carry.puzzleIds),
  };
  for (let b = 0; b < B; b++) {
    if (!carry.halted[b]) continue;
    next.steps[b] = 0;
    next.tokens.set(batch.tokens.subarray(b * L, (b + 1) * L), b * L);
    if (batch.labels) next.labels.set(batch.labels.subarray(b * L, (b + 1) * L), b * L);
    else next.labels.fill(-100, b * L, (b + 1) * L);
    next.puzzleIds[b] = batch.puzzleIds[b]!;
  }
  if (carry.halted.some((h) => h === 1)) {
    const fresh = model.initState(B);
    const mask = tf.tensor3d(carry.halted, [B, 1, 1], "bool");
    next.zH = tf.where(mask, fresh.zH, carry.zH) as tf.Tensor3D;
    next.zL = tf.where(mask, fresh.zL, carry.zL) as tf.Tensor3D;
    tf.dispose([mask, fresh.zH, fresh.zL, carry.zH, carry.zL]);
  }
  return next;
}

/**
 * Training halting after a step (steps already counts it): halt at N_sup or when q_halt > 0; an
 * exploring sample (probability p) must first reach min_steps ~ U{2..N_sup}. The draws are made for
 * every slot in a fixed order, so the RNG stream does not depend on the outcome.
 */
export function trainingHalt(cfg: TRMConfig, steps: Int32Array, qHalt: Float32Array, rng: Rng): Uint8Array {
  const B = steps.length;
  const N = cfg.halt_max_steps;
  const halted = new Uint8Array(B);
  for (let b = 0; b < B; b++) halted[b] = steps[b]! >= N ? 1 : 0;
  if (N <= 1) return halted;
  const explore = new Uint8Array(B);
  for (let b = 0; b < B; b++) explore[b] = rng.uniform() < cfg.halt_exploration_prob ? 1 : 0;
  for (let b = 0; b < B; b++) {
    const minSteps = rng.int(2, N + 1);
    const want = halted[b] === 1 || qHalt[b]! > 0;
    halted[b] = want && steps[b]! >= (explore[b] ? minSteps : 0) ? 1 : 0;
  }
  return halted;
}

export interface EvalMetrics {
  /** Per-sample means of the step loss (lm + 0.5 q_halt), its lm part and its halting part. */
  loss: number;
  lmLoss: number;
  qHaltLoss: number;
  /** Mean over samples of the fraction of supervised positions right. */
  tokenAccuracy: number;
  /** Fraction of samples right on every supervised position. */
  exactAccuracy: number;
  /** Fraction of samples where (q_halt >= 0) agrees with being exactly right. */
  qHaltAccuracy: number;
}

export interface EvalResult {
  /** Arg-max answer after the last step, [B * L]. */
  predictions: Int32Array;
  /** Final logits [B * L * V]. */
  logits: Float32Array;
  /** Final halting logits [B]. */
  qHalt: Float32Array;
  qContinue: Float32Array;
  /** Per sample: right on every supervised position (only with labels). */
  exact?: Uint8Array;
  metrics?: EvalMetrics;
}

/** The evaluation protocol: every sample runs `steps` (default N_sup) supervision steps from a fresh state. */
export function evaluateBatch(
  model: TRM,
  w: Weights,
  batch: Batch,
  opts: { steps?: number } = {},
): EvalResult {
  const cfg = model.cfg;
  const B = batchSize(cfg, batch, false);
  const steps = opts.steps ?? cfg.halt_max_steps;
  if (!Number.isInteger(steps) || steps < 1)
    throw new RangeError(`steps must be a positive integer, got ${steps}`);
  let { zH, zL } = model.initState(B);
  const tokens = tf.tensor2d(batch.tokens, [B, cfg.seq_len], "int32");
  const rows = model.puzzleRows(batch.puzzleIds);
  let last: { logits: tf.Tensor3D; qHalt: tf.Tensor1D; qContinue: tf.Tensor1D } | null = null;
  try {
    for (let s = 0; s < steps; s++) {
      const out = model.step(w, zH, zL, tokens, rows);
      tf.dispose([zH, zL]);
      if (last) tf.dispose([last.logits, last.qHalt, last.qContinue]);
      zH = out.zH;
      zL = out.zL;
      last = out;
    }
    const result: EvalResult = {
      predictions: tf.tidy(() => tf.argMax(last!.logits, -1).dataSync() as Int32Array),
      logits: last!.logits.dataSync() as Float32Array,
      qHalt: last!.qHalt.dataSync() as Float32Array,
      qContinue: last!.qContinue.dataSync() as Float32Array,
    };
    if (batch.labels) {
      const parts = actLoss(cfg, last!, batch.labels);
      const [loss, lm, qh] = [parts.loss, parts.lmLoss, parts.qHaltLoss].map((t) => t.dataSync()[0]!);
      tf.dispose([parts.loss, parts.lmLoss, parts.qHaltLoss]);
      result.exact = parts.exact;
      result.metrics = {
        loss: loss! / B,
        lmLoss: lm! / B,
        qHaltLoss: qh! / B,
        ...accuracy(parts.valid, parts.correct, parts.exact, result.qHalt),
      };
    }
    return result;
  } finally {
    tf.dispose([zH, zL, tokens]);
    if (rows) rows.dispose();
    if (last) tf.dispose([last.logits, last.qHalt, last.qContinue]);
  }
}

/** Token, exact and halting accuracy over samples. */
export function accuracy(
  valid: Int32Array,
  correct: Int32Array,
  exact: Uint8Array,
  qHalt: Float32Array,
): { tokenAccuracy: number; exactAccuracy: number; qHaltAccuracy: number } {
  const B = valid.length;
  let tok = 0;
  let ex = 0;
  let qa = 0;
  for (let b = 0; b < B; b++) {
    tok += correct[b]! / Math.max(1, valid[b]!);
    ex += exact[b]!;
    qa += (qHalt[b]! >= 0 ? 1 : 0) === exact[b] ? 1 : 0;
  }
  return { tokenAccuracy: tok / B, exactAccuracy: ex / B, qHaltAccuracy: qa / B };
}

export interface Prediction {
  /** Arg-max answer of each sample at the step it stopped, [B * L]. */
  predictions: Int32Array;
  /** Logits at that step, [B * L * V]. */
  logits: Float32Array;
  /** q_halt at that step; sigmoid(qHalt) is the model's confidence that the answer is right. */
  qHalt: Float32Array;
  /** Supervision steps each sample used (1..maxSteps). */
  steps: Int32Array;
}

/**
 * Probabilities of one sample [L * Vout] from logits [.., L, V] starting at `offset`, under the
 * normalisation the loss trained with. Vout < V drops the ids past a vocabulary the caller knows
 * (they still count in the normalisation).
 */
export function outputProbs(
  cfg: Pick<TRMConfig, "seq_len" | "vocab_size" | "loss_type">,
  logits: Float32Array,
  offset: number,
  Vout = cfg.vocab_size,
): Float32Array {
  const L = cfg.seq_len;
  const V = cfg.vocab_size;
  const stable = cfg.loss_type === "stablemax";
  const probs = new Float32Array(L * Vout);
  for (let p = 0; p < L; p++) {
    const off = offset + p * V;
    let sum = 0;
    let max = Number.NEGATIVE_INFINITY;
    if (!stable) for (let v = 0; v < V; v++) max = Math.max(max, logits[off + v]);
    for (let v = 0; v < V; v++) {
      const x = logits[off + v];
      // stablemax s(x) = x + 1 for x >= 0, 1 / (1 - x) below: the normalisation the loss trained.
      const s = stable ? (x >= 0 ? x + 1 : 1 / (1 - x)) : Math.exp(x - max);
      sum += s;
      if (v < Vout) probs[p * Vout + v] = s;
    }
    for (let v = 0; v < Vout; v++) probs[p * Vout + v] /= sum;
  }
  return probs;
}

/**
 * Serving: runs supervision steps until each sample's q_halt > 0 (then it stops) or maxSteps
 * (default N_sup). Finished samples leave the batch, so later steps only compute the rest.
 */
export function predictBatch(
  model: TRM,
  w: Weights,
  batch: Batch,
  opts: { maxSteps?: number } = {},
): Prediction {
  const cfg = model.cfg;
  const B = batchSize(cfg, batch, false);
  const L = cfg.seq_len;
  const V = cfg.vocab_size;
  const maxSteps = opts.maxSteps ?? cfg.halt_max_steps;
  if (!Number.isInteger(maxSteps) || maxSteps < 1)
    throw new RangeError(`maxSteps must be a positive integer, got ${maxSteps}`);
  const result: Prediction = {
    predictions: new Int32Array(B * L),
    logits: new Float32Array(B * L * V),
    qHalt: new Float32Array(B),
    steps: new Int32Array(B),
  };
  // active[i] = the batch index of row i of the running state.
  let active = Array.from({ length: B }, (_, i) => i);
  let { zH, zL } = model.initState(B);
  let tokens = tf.tensor2d(batch.tokens, [B, L], "int32");
  let rows = model.puzzleRows(batch.puzzleIds);
  try {
    for (let s = 1; s <= maxSteps && active.length > 0; s++) {
      const out = model.step(w, zH, zL, tokens, rows);
      tf.dispose([zH, zL]);
      zH = out.zH;
      zL = out.zL;
      const q = out.qHalt.dataSync() as Float32Array;
      const lg = out.logits.dataSync() as Float32Array;
      const pred = tf.tidy(() => tf.argMax(out.logits, -1).dataSync() as Int32Array);
      tf.dispose([out.logits, out.qHalt, out.qContinue]);
      const keep: number[] = [];
      active.forEach((b, i) => {
        if (q[i]! > 0 || s === maxSteps) {
          result.steps[b] = s;
          result.qHalt[b] = q[i]!;
          result.predictions.set(pred.subarray(i * L, (i + 1) * L), b * L);
          result.logits.set(lg.subarray(i * L * V, (i + 1) * L * V), b * L * V);
        } else keep.push(i);
      });
      if (keep.length < active.length && keep.length > 0) {
        // Drop finished samples from the running state.
        const idx = tf.tensor1d(keep, "int32");
        const next = tf.tidy(() => [
          tf.gather(zH, idx) as tf.Tensor3D,
          tf.gather(zL, idx) as tf.Tensor3D,
          tf.gather(tokens, idx) as tf.Tensor2D,
        ]);
        const nextRows = rows ? tf.gather(rows, idx) : null;
        tf.dispose([idx, zH, zL, tokens]);
        if (rows) rows.dispose();
        [zH, zL, tokens] = next as [tf.Tensor3D, tf.Tensor3D, tf.Tensor2D];
        rows = nextRows as tf.Tensor2D | null;
      }
      active = keep.map((i) => active[i]!);
    }
    return result;
  } finally {
    tf.dispose([zH, zL, tokens]);
    if (rows) rows.dispose();
  }
}
