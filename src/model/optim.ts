// Optimisers of the TRM: AdamW (torch.optim.AdamW semantics) or Adam-atan2 for the weights,
// sign-SGD for the task-embedding rows, an EMA copy of the weights, and the LR schedule.
import * as tf from "@tensorflow/tfjs-core";

/** A variable made from a tensor the caller gives up (tf.variable keeps its own reference to the data). */
export function adoptVariable(t: tf.Tensor, trainable = true): tf.Variable {
  const v = tf.variable(t, trainable);
  t.dispose();
  return v;
}

export interface AdamConfig {
  kind: "adamw" | "adam-atan2";
  betas: [number, number];
  /** AdamW only; Adam-atan2 has no epsilon. */
  eps: number;
  weightDecay: number;
}

/** Linear warm-up to `base` over `warmup` steps, then cosine down to min_ratio * base (1.0 = constant). */
export function lrAt(step: number, base: number, warmup: number, total: number, minRatio = 1): number {
  if (step < warmup) return (base * step) / Math.max(1, warmup);
  const progress = (step - warmup) / Math.max(1, total - warmup);
  return base * (minRatio + Math.max(0, (1 - minRatio) * 0.5 * (1 + Math.cos(Math.PI * progress))));
}

/**
 * Adam with decoupled weight decay. Per step t (1-based):
 *   p *= 1 - lr*wd;  m = lerp(m, g, 1-b1);  v = b2*v + (1-b2)*g^2
 *   adamw:      p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
 *   adam-atan2: p -= lr/(1-b1^t) * atan2(m, sqrt(v)/sqrt(1-b2^t))
 */
export class Adam {
  readonly cfg: AdamConfig;
  /** Steps taken (t of the bias correction). */
  t = 0;
  readonly m = new Map<string, tf.Variable>();
  readonly v = new Map<string, tf.Variable>();

  constructor(cfg: AdamConfig) {
    this.cfg = cfg;
  }

  step(params: ReadonlyMap<string, tf.Variable>, grads: ReadonlyMap<string, tf.Tensor>, lr: number): void {
    this.t += 1;
    const [b1, b2] = this.cfg.betas;
    const bc1 = 1 - b1 ** this.t;
    const bc2Sqrt = Math.sqrt(1 - b2 ** this.t);
    const decay = 1 - lr * this.cfg.weightDecay;
    for (const [name, p] of params) {
      const g = grads.get(name);
      if (!g) throw new Error(`no gradient for ${name}`);
      let m = this.m.get(name);
      let v = this.v.get(name);
      if (!m || !v) {
        m = adoptVariable(tf.zerosLike(p), false);
        v = adoptVariable(tf.zerosLike(p), false);
        this.m.set(name, m);
        this.v.set(name, v);
      }
      const mm = m;
      const vv = v;
      tf.tidy(() => {
        const m2 = tf.add(mm, tf.mul(tf.sub(g, mm), 1 - b1));
        const v2 = tf.add(tf.mul(vv, b2), tf.mul(tf.square(g), 1 - b2));
        const denom = tf.div(tf.sqrt(v2), bc2Sqrt);
        const dir = this.cfg.kind === "adamw" ? tf.div(m2, tf.add(denom, this.cfg.eps)) : tf.atan2(m2, denom);
        const decayed = decay === 1 ? p : tf.mul(p, decay);
        p.assign(tf.sub(decayed, tf.mul(dir, lr / bc1)));
        mm.assign(m2);
        vv.assign(v2);
      });
    }
  }

  /** Replaces a moment pair after a weight changed shape (new entries are zero). */
  resize(name: string, grow: (t: tf.Tensor) => tf.Tensor): void {
    for (const table of [this.m, this.v]) {
      const old = table.get(name);
      if (!old) continue;
      const next = tf.tidy(() => grow(old));
      old.dispose();
      table.set(name, adoptVariable(next, false));
    }
  }

  dispose(): void {
    for (const t of [...this.m.values(), ...this.v.values()]) t.dispose();
    this.m.clear();
    this.v.clear();
  }
}

/** Exponential moving average of the weights: shadow = decay * shadow + (1 - decay) * param. */
export class Ema {
  readonly decay: number;
  readonly shadow = new Map<string, tf.Variable>();

  constructor(decay: number, params: ReadonlyMap<string, tf.Tensor>) {
    this.decay = decay;
    for (const [name, p] of params) this.shadow.set(name, adoptVariable(tf.clone(p), false));
  }

  update(params: ReadonlyMap<string, tf.Tensor>): void {
    for (const [name, p] of params) {
      const s = this.shadow.get(name)!;
      tf.tidy(() => s.assign(tf.add(tf.mul(s, this.decay), tf.mul(p, 1 - this.decay))));
    }
  }

  /** Sets one shadow (e.g. after vocabulary growth). */
  set(name: string, value: tf.Tensor): void {
    this.shadow.get(name)?.dispose();
    this.shadow.set(name, adoptVariable(tf.clone(value), false));
  }

  dispose(): void {
    for (const t of this.shadow.values()) t.dispose();
    this.shadow.clear();
  }
}

/**
 * Sign-SGD with decoupled weight decay on the task-embedding rows a batch touched (the repo's
 * CastedSparseEmbeddingSignSGD): gradients of duplicate ids are summed first, then
 * row = row * (1 - lr*wd) - lr * sign(grad).
 */
export function signSgdRows(
  table: Float32Array,
  ndim: number,
  ids: Int32Array,
  rowGrads: Float32Array,
  lr: number,
  weightDecay: number,
): void {
  const summed = new Map<number, Float32Array>();
  for (let b = 0; b < ids.length; b++) {
    const id = ids[b]!;
    let acc = summed.get(id);
    if (!acc) {
      acc = new Float32Array(ndim);
      summed.set(id, acc);
    }
    for (let j = 0; j < ndim; j++) acc[j] = acc[j]! + rowGrads[b * ndim + j]!;
  }
  const f = Math.fround;
  const decay = f(1 - lr * weightDecay);
  for (const [id, g] of summed) {
    const off = id * ndim;
    for (let j = 0; j < ndim; j++) table[off + j] = f(f(table[off + j]! * decay) - f(lr * Math.sign(g[j]!)));
  }
}
