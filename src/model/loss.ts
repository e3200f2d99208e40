// The deep-supervision loss of one step, as the reference's act_loss:
//   lm     = sum_b mean_{valid t} CE(logits[b,t], label[b,t])     (stablemax by default, or softmax)
//   q_halt = sum_b BCE(q_halt[b], all valid tokens of b right)
//   loss   = lm + 0.5 * q_halt
// Summed over the batch; the trainer divides by the batch size. Labels equal to -100 are ignored.
import * as tf from "@tensorflow/tfjs-core";
import type { TRMConfig } from "./config.js";
import { logStablemax } from "./ops.js";
import { type HeadOutputs, oneHotF32 } from "./trm.js";

export const IGNORE_LABEL = -100;

export interface LossResult {
  /** lm + 0.5 * q_halt, summed over the batch (differentiable). */
  loss: tf.Scalar;
  lmLoss: tf.Scalar;
  qHaltLoss: tf.Scalar;
  /** Per sample: the arg-max answer is right on every supervised position. */
  exact: Uint8Array;
  /** Per sample: supervised positions, and how many of them the arg-max gets right. */
  valid: Int32Array;
  correct: Int32Array;
  /** Per position arg-max [B * L]. */
  predictions: Int32Array;
}

/** Labels -> the per-sample bookkeeping the loss needs: mask weights and safe class ids. */
function labelTables(labels: Int32Array, B: number, L: number, V: number) {
  const valid = new Int32Array(B);
  const mask = new Float32Array(B * L);
  const safe = new Int32Array(B * L);
  for (let b = 0; b < B; b++)
    for (let t = 0; t < L; t++) {
      const i = b * L + t;
      const y = labels[i]!;
      if (y === IGNORE_LABEL) continue;
      if (!(y >= 0 && y < V))
        throw new RangeError(`label ${y} at sample ${b}, position ${t} is outside [0, ${V})`);
      mask[i] = 1;
      safe[i] = y;
      valid[b]!++;
    }
  const div = new Float32Array(B);
  for (let b = 0; b < B; b++) div[b] = Math.max(1, valid[b]!);
  return { valid, mask, safe, div };
}

/**
 * The loss for one step's outputs against labels [B * L]. The "exact" target of the halting BCE is
 * read from the arg-max outside the graph, so no gradient flows through it (as under no_grad).
 */
export function actLoss(cfg: TRMConfig, out: HeadOutputs, labels: Int32Array): LossResult {
  const [B, L, V] = out.logits.shape;
  if (labels.length !== B * L) throw new RangeError(`labels hold ${labels.length} values, expected ${B * L}`);
  const { valid, mask, safe, div } = labelTables(labels, B, L, V);

  const predictions = tf.tidy(() => tf.argMax(out.logits, -1).dataSync() as Int32Array);
  const correct = new Int32Array(B);
  const exact = new Uint8Array(B);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < L; t++) {
      const i = b * L + t;
      if (mask[i] && predictions[i] === safe[i]) correct[b]!++;
    }
    exact[b] = correct[b] === valid[b] ? 1 : 0;
  }

  return tf.tidy(() => {
    const logp = cfg.loss_type === "stablemax" ? logStablemax(out.logits) : tf.logSoftmax(out.logits);
    const onehot = oneHotF32(tf.tensor2d(safe, [B, L], "int32"), V);
    const tokenLoss = tf.neg(tf.sum(tf.mul(logp, onehot), -1)); // [B, L]
    const perToken = tf.div(tf.mul(tokenLoss, tf.tensor2d(mask, [B, L])), tf.tensor2d(div, [B, 1]));
    const lmLoss = tf.sum(perToken) as tf.Scalar;
    const qHaltLoss = bceWithLogitsSum(out.qHalt, tf.tensor1d(Float32Array.from(exact), "float32"));
    const loss = tf.add(lmLoss, tf.mul(qHaltLoss, 0.5)) as tf.Scalar;
    return { loss, lmLoss, qHaltLoss, exact, valid, correct, predictions };
  });
}

/** sum(max(x, 0) - x * t + log(1 + exp(-|x|))), the stable form of BCE with logits. */
export function bceWithLogitsSum(x: tf.Tensor, target: tf.Tensor): tf.Scalar {
  return tf.tidy(
    () =>
      tf.sum(tf.add(tf.sub(tf.relu(x), tf.mul(x, target)), tf.log1p(tf.exp(tf.neg(tf.abs(x)))))) as tf.Scalar,
  );
}
