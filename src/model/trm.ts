// The Tiny Recursive Model ("Less is More: Recursive Reasoning with Tiny Networks") in TensorFlow.js.
//
// Config (src/model/config.ts, field names as in the reference): D = hidden_size, H = num_heads,
// L = seq_len, V = vocab_size, P = puzzle_emb_len, S = L + P positions, T = H_cycles, n = L_cycles.
//
//   x = sqrt(D) * [task prefix (P positions) ; token embeddings]       (+ learned positions)
//   f(state, injection) = num_layers post-norm blocks applied to state + injection
//   one supervision step:  repeat T times { repeat n: z = f(z, y + x);  y = f(y, z) }
//                          only the last of the T recursions is differentiated
//   logits = lm_head(y)[P:],  (q_halt, q_continue) = q_head(y[0])
//
// Weights are tf.Variables under the reference's tensor names, in tfjs layout: a torch Linear
// weight [out, in] is held transposed as [in, out] so that y = x @ W.
import * as tf from "@tensorflow/tfjs-core";
import { ConfigError } from "../errors.js";
import { headDim, parseTRMConfig, swigluWidth, type TRMConfig, totalLen, usesRope } from "./config.js";
import "./gradients.js";
import { addRmsNorm, attention, linear, type RopeTables, siluGateMul } from "./ops.js";
import { adoptVariable } from "./optim.js";
import { Rng } from "./rng.js";
import { type SafetensorsContents, SafetensorsError, type TensorToWrite, toFloat32 } from "./safetensors.js";

/** The reference's literal (not 1/sqrt(2) to more digits), so learned positions match it. */
// biome-ignore lint/suspicious/noApproximativeNumericConstant: the reference's own constant
const LEARNED_POS_SCALE = 0.707106781;

/** A full set of trainable weights by reference name (the live ones, or the EMA copy). */
export type Weights = ReadonlyMap<string, tf.Tensor>;

export interface WeightSpec {
  name: string;
  /** Shape in the reference (torch) layout, as stored in safetensors. */
  torchShape: number[];
  /** Linear weights are held transposed ([in, out]) in tfjs. */
  transposed: boolean;
  /** Standard deviation of the truncated-normal init; 0 = zeros. */
  std: number;
  /** Constant init value (q_head.bias = -5), overriding std. */
  fill?: number;
}

/** Every trainable weight of a config, in a fixed order (which is also the init order). */
export function weightSpecs(c: TRMConfig): WeightSpec[] {
  const D = c.hidden_size;
  const V = c.vocab_size;
  const S = totalLen(c);
  const I = swigluWidth(D, c.expansion);
  const lin = (name: string, out: number, inp: number): WeightSpec => ({
    name,
    torchShape: [out, inp],
    transposed: true,
    std: 1 / Math.sqrt(inp),
  });
  const specs: WeightSpec[] = [
    { name: "embed_tokens.weight", torchShape: [V, D], transposed: false, std: 1 / Math.sqrt(D) },
  ];
  for (let i = 0; i < c.num_layers; i++) {
    if (c.mlp_t) {
      const It = swigluWidth(S, c.expansion);
      specs.push(
        lin(`layers.${i}.mlp_t.gate_up.weight`, 2 * It, S),
        lin(`layers.${i}.mlp_t.down.weight`, S, It),
      );
    } else {
      specs.push(lin(`layers.${i}.attn.qkv.weight`, 3 * D, D), lin(`layers.${i}.attn.o.weight`, D, D));
    }
    specs.push(lin(`layers.${i}.mlp.gate_up.weight`, 2 * I, D), lin(`layers.${i}.mlp.down.weight`, D, I));
  }
  specs.push(lin("lm_head.weight", V, D));
  // The halting head starts at q = -5 (sigmoid ~ 0.007): "don't halt yet".
  specs.push({ name: "q_head.weight", torchShape: [2, D], transposed: true, std: 0 });
  specs.push({ name: "q_head.bias", torchShape: [2], transposed: false, std: 0, fill: -5 });
  if (c.pos_encodings === "learned")
    specs.push({ name: "embed_pos.weight", torchShape: [S, D], transposed: false, std: 1 / Math.sqrt(D) });
  return specs;
}

/** Names of the fixed (untrained or not-by-the-optimiser) tensors a model file also holds. */
export function bufferNames(c: TRMConfig): string[] {
  return ["H_init", "L_init", ...(c.puzzle_emb_ndim > 0 ? ["puzzle_emb.weight"] : [])];
}

/** [rows, cols] row-major -> [cols, rows], in 32x32 tiles so both sides stay in cache. */
export function transpose2d(a: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(a.length);
  const T = 32;
  for (let r0 = 0; r0 < rows; r0 += T) {
    const r1 = Math.min(r0 + T, rows);
    for (let c0 = 0; c0 < cols; c0 += T) {
      const c1 = Math.min(c0 + T, cols);
      for (let r = r0; r < r1; r++) {
        const src = r * cols;
        for (let c = c0; c < c1; c++) out[c * rows + r] = a[src + c]!;
      }
    }
  }
  return out;
}

/** Converts a reference-layout array to the tfjs tensor of a spec (transposing linear weights). */
export function fromTorchLayout(spec: WeightSpec, data: Float32Array): tf.Tensor {
  if (!spec.transposed) return tf.tensor(data, spec.torchShape, "float32");
  const [out, inp] = spec.torchShape as [number, number];
  return tf.tensor2d(transpose2d(data, out, inp), [inp, out], "float32");
}

/** Reads a tfjs weight back into the reference layout. */
export function toTorchLayout(spec: WeightSpec, t: tf.Tensor): Float32Array {
  const data = t.dataSync() as Float32Array;
  if (!spec.transposed) return Float32Array.from(data);
  const [out, inp] = spec.torchShape as [number, number];
  return transpose2d(data, inp, out);
}

/** Outputs of one supervision step. */
export interface StepOutputs {
  /** New answer state y (z_H) and latent z (z_L), [B, S, D]. */
  zH: tf.Tensor3D;
  zL: tf.Tensor3D;
  /** [B, L, V], the prefix positions dropped. */
  logits: tf.Tensor3D;
  /** [B] each. */
  qHalt: tf.Tensor1D;
  qContinue: tf.Tensor1D;
}

export interface HeadOutputs {
  logits: tf.Tensor3D;
  qHalt: tf.Tensor1D;
  qContinue: tf.Tensor1D;
}

/** What the differentiated step gives back (all tensors owned by the caller). */
export interface GradStepResult extends StepOutputs {
  loss: tf.Scalar;
  /** Extra scalars the loss function asked to keep (e.g. its parts). */
  kept: Record<string, tf.Tensor>;
  /** Gradient of the loss for every weight, tfjs layout. */
  grads: Map<string, tf.Tensor>;
  /** Gradient for the gathered task-embedding rows [B, puzzle_emb_ndim], or null without a prefix. */
  puzzleRowGrads: tf.Tensor2D | null;
}

export type LossFn = (out: HeadOutputs) => { loss: tf.Scalar; keep?: Record<string, tf.Tensor> };

/**
 * One-hot rows as float32. Built as int32 and cast: the wasm backend's OneHot kernel writes the
 * integer bit pattern when asked for float32 (tfjs-backend-wasm 4.22).
 */
export function oneHotF32(ids: tf.Tensor, depth: number): tf.Tensor {
  return tf.tidy(() => tf.cast(tf.oneHot(ids, depth), "float32"));
}

/**
 * Embedding lookup whose gradient is a one-hot matmul instead of a scatter: the wasm backend has
 * no UnsortedSegmentSum kernel, and for small vocabularies the matmul is cheap.
 */
function embedLookup(table: tf.Tensor2D, ids: tf.Tensor2D): tf.Tensor3D {
  const [V, D] = table.shape;
  const lookup = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => ({
    value: tf.gather(args[0] as tf.Tensor, ids),
    gradFunc: (dy: tf.Tensor) =>
      tf.matMul(oneHotF32(tf.reshape(ids, [-1]) as tf.Tensor1D, V), tf.reshape(dy, [-1, D]), true, false),
  }));
  return lookup(table) as tf.Tensor3D;
}

export class TRM {
  cfg: TRMConfig;
  /** Trainable weights (tfjs layout). */
  readonly weights: Map<string, tf.Variable>;
  /** Fixed initial states y0 and z0, [D]; saved with the model but never trained. */
  readonly hInit: tf.Tensor1D;
  readonly lInit: tf.Tensor1D;
  /**
   * Task-embedding table [num_puzzle_identifiers, puzzle_emb_ndim], row-major. A buffer, not a
   * parameter: it lives in JS memory and only the rows of a batch are uploaded and updated.
   */
  puzzleEmb: Float32Array;
  private readonly rope: RopeTables | null;

  private constructor(
    cfg: TRMConfig,
    weights: Map<string, tf.Variable>,
    hInit: Float32Array,
    lInit: Float32Array,
    puzzleEmb: Float32Array,
  ) {
    this.cfg = cfg;
    this.weights = weights;
    this.hInit = tf.keep(tf.tensor1d(hInit, "float32"));
    this.lInit = tf.keep(tf.tensor1d(lInit, "float32"));
    this.puzzleEmb = puzzleEmb;
    this.rope = usesRope(cfg) ? ropeTables(cfg) : null;
  }

  /** A fresh model, initialised as the reference does (truncated-normal LeCun, zero task table). */
  static init(cfg: TRMConfig, rng: Rng | number): TRM {
    const r = typeof rng === "number" ? new Rng(rng) : rng;
    const weights = new Map<string, tf.Variable>();
    for (const spec of weightSpecs(cfg)) weights.set(spec.name, adoptVariable(initialValue(spec, r)));
    const D = cfg.hidden_size;
    const hInit = r.truncNormal(D, 1);
    const lInit = r.truncNormal(D, 1);
    return new TRM(
      cfg,
      weights,
      hInit,
      lInit,
      new Float32Array(cfg.num_puzzle_identifiers * cfg.puzzle_emb_ndim),
    );
  }

  /**
   * A model from a safetensors file in the reference's naming scheme. The config comes from the
   * metadata (`trm_config`) unless given. Every weight must be present with the config's shape;
   * input.* / expected.* and training-state tensors are ignored.
   */
  static fromSafetensors(file: SafetensorsContents, source = "model", cfg?: TRMConfig): TRM {
    const c = cfg ?? configFromMetadata(file.metadata, source);
    const specs = weightSpecs(c);
    const D = c.hidden_size;
    const want = new Map<string, number[]>(specs.map((s) => [s.name, s.torchShape]));
    want.set("H_init", [D]);
    want.set("L_init", [D]);
    if (c.puzzle_emb_ndim > 0) want.set("puzzle_emb.weight", [c.num_puzzle_identifiers, c.puzzle_emb_ndim]);
    const missing = [...want.keys()].filter((n) => !file.tensors.has(n));
    if (missing.length)
      throw new SafetensorsError(`${source}: missing tensors for this config: ${missing.join(", ")}`);
    for (const name of file.tensors.keys()) {
      const looksLikeWeight =
        name.startsWith("layers.") ||
        ["embed_pos.weight", "puzzle_emb.weight", "embed_tokens.weight", "lm_head.weight"].includes(name);
      if (looksLikeWeight && !want.has(name))
        throw new SafetensorsError(`${source}: tensor "${name}" does not belong to this config`);
    }
    const data = new Map<string, Float32Array>();
    for (const [name, shape] of want) {
      const t = file.tensors.get(name)!;
      if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i]))
        throw new SafetensorsError(
          `${source}: "${name}" has shape [${t.shape}] but the config needs [${shape}]`,
        );
      const v = toFloat32(t, `${source}: ${name}`);
      if (!v.every(Number.isFinite)) throw new SafetensorsError(`${source}: "${name}" holds NaN or Inf`);
      data.set(name, v);
    }
    const weights = new Map<string, tf.Variable>();
    for (const spec of specs) {
      weights.set(spec.name, adoptVariable(fromTorchLayout(spec, data.get(spec.name)!)));
    }
    return new TRM(
      c,
      weights,
      data.get("H_init")!,
      data.get("L_init")!,
      data.get("puzzle_emb.weight") ?? new Float32Array(0),
    );
  }

  /** Weights (the live ones or a given set, e.g. EMA) plus buffers in the reference layout. */
  exportTensors(weights: Weights = this.weights): Map<string, TensorToWrite> {
    const out = new Map<string, TensorToWrite>();
    for (const spec of weightSpecs(this.cfg))
      out.set(spec.name, { shape: spec.torchShape, data: toTorchLayout(spec, weights.get(spec.name)!) });
    out.set("H_init", { shape: [this.cfg.hidden_size], data: Float32Array.from(this.hInit.dataSync()) });
    out.set("L_init", { shape: [this.cfg.hidden_size], data: Float32Array.from(this.lInit.dataSync()) });
    if (this.cfg.puzzle_emb_ndim > 0)
      out.set("puzzle_emb.weight", {
        shape: [this.cfg.num_puzzle_identifiers, this.cfg.puzzle_emb_ndim],
        data: Float32Array.from(this.puzzleEmb),
      });
    return out;
  }

  /** Metadata that lets the reference (and this port) rebuild the config. */
  metadata(): Record<string, string> {
    return { format: "trm-ref-v1", trm_config: JSON.stringify(this.cfg) };
  }

  /** Number of trainable values, counted from the variables themselves. */
  parameterCount(): number {
    let n = 0;
    for (const v of this.weights.values()) n += v.size;
    return n;
  }

  dispose(): void {
    for (const v of this.weights.values()) v.dispose();
    this.hInit.dispose();
    this.lInit.dispose();
    if (this.rope) tf.dispose([this.rope.cos, this.rope.sin]);
  }

  // ---- inputs and state ----------------------------------------------------------------

  /** Fresh state for B slots: y0 = H_init and z0 = L_init at every position. */
  initState(B: number): { zH: tf.Tensor3D; zL: tf.Tensor3D } {
    const S = totalLen(this.cfg);
    const D = this.cfg.hidden_size;
    return tf.tidy(() => ({
      zH: tf.tile(tf.reshape(this.hInit, [1, 1, D]), [B, S, 1]) as tf.Tensor3D,
      zL: tf.tile(tf.reshape(this.lInit, [1, 1, D]), [B, S, 1]) as tf.Tensor3D,
    }));
  }

  /** The task-embedding rows of a batch, [B, puzzle_emb_ndim], or null when the model has no prefix. */
  puzzleRows(ids: Int32Array): tf.Tensor2D | null {
    const nd = this.cfg.puzzle_emb_ndim;
    if (nd <= 0) return null;
    const rows = new Float32Array(ids.length * nd);
    for (let b = 0; b < ids.length; b++) {
      const id = ids[b]!;
      if (!(id >= 0 && id < this.cfg.num_puzzle_identifiers))
        throw new RangeError(`puzzle identifier ${id} out of range [0, ${this.cfg.num_puzzle_identifiers})`);
      rows.set(this.puzzleEmb.subarray(id * nd, (id + 1) * nd), b * nd);
    }
    return tf.tensor2d(rows, [ids.length, nd], "float32");
  }

  /** x = sqrt(D) * [prefix ; tok_emb] (+ learned positions): [B, S, D]. */
  embed(w: Weights, tokens: tf.Tensor2D, rows: tf.Tensor2D | null): tf.Tensor3D {
    const c = this.cfg;
    const D = c.hidden_size;
    return tf.tidy(() => {
      let e = embedLookup(w.get("embed_tokens.weight") as tf.Tensor2D, tokens);
      if (rows) {
        const B = tokens.shape[0];
        const padded = tf.pad(rows, [
          [0, 0],
          [0, c.puzzle_emb_len * D - c.puzzle_emb_ndim],
        ]);
        e = tf.concat([tf.reshape(padded, [B, c.puzzle_emb_len, D]), e], 1);
      }
      if (c.pos_encodings === "learned") e = tf.mul(tf.add(e, w.get("embed_pos.weight")!), LEARNED_POS_SCALE);
      return tf.mul(e, Math.sqrt(D));
    });
  }

  // ---- the network f ---------------------------------------------------------------------

  /** One post-norm block: h = norm(h + mix(h)); h = norm(h + SwiGLU(h)). */
  private block(w: Weights, i: number, h: tf.Tensor3D): tf.Tensor3D {
    const eps = this.cfg.rms_norm_eps;
    const p = `layers.${i}.`;
    return tf.tidy(() => {
      if (this.cfg.mlp_t) {
        // Token mixing along the sequence: the norm after it runs over the SEQUENCE axis.
        const ht = tf.transpose(h, [0, 2, 1]);
        const mixed = swiglu(ht, w.get(`${p}mlp_t.gate_up.weight`)!, w.get(`${p}mlp_t.down.weight`)!);
        h = tf.transpose(addRmsNorm(ht, mixed, eps), [0, 2, 1]) as tf.Tensor3D;
      } else {
        const qkv = linear(h, w.get(`${p}attn.qkv.weight`) as tf.Tensor2D) as tf.Tensor3D;
        const att = attention(qkv, this.cfg.num_heads, this.rope);
        h = addRmsNorm(h, linear(att, w.get(`${p}attn.o.weight`) as tf.Tensor2D), eps) as tf.Tensor3D;
      }
      const mlp = swiglu(h, w.get(`${p}mlp.gate_up.weight`)!, w.get(`${p}mlp.down.weight`)!);
      return addRmsNorm(h, mlp, eps) as tf.Tensor3D;
    });
  }

  /** f(state, injection): inputs merged by addition, then the same blocks every call. */
  net(w: Weights, state: tf.Tensor3D, injection: tf.Tensor3D): tf.Tensor3D {
    return tf.tidy(() => {
      let h = tf.add(state, injection) as tf.Tensor3D;
      for (let i = 0; i < this.cfg.num_layers; i++) h = this.block(w, i, h);
      return h;
    });
  }

  /** One recursion: n latent updates z = f(z, y + x), then one answer update y = f(y, z). */
  recursion(w: Weights, y: tf.Tensor3D, z: tf.Tensor3D, x: tf.Tensor3D): [tf.Tensor3D, tf.Tensor3D] {
    return tf.tidy(() => {
      const yx = tf.add(y, x) as tf.Tensor3D;
      for (let i = 0; i < this.cfg.L_cycles; i++) z = this.net(w, z, yx);
      y = this.net(w, y, z);
      return [y, z];
    });
  }

  /** lm_head on y without the prefix; q_head on prefix position 0. */
  heads(w: Weights, y: tf.Tensor3D): HeadOutputs {
    const c = this.cfg;
    const [B, , D] = y.shape;
    return tf.tidy(() => {
      const answer = c.puzzle_emb_len > 0 ? tf.slice(y, [0, c.puzzle_emb_len, 0], [-1, c.seq_len, -1]) : y;
      const logits = linear(answer, w.get("lm_head.weight") as tf.Tensor2D) as tf.Tensor3D;
      const first = tf.reshape(tf.slice(y, [0, 0, 0], [-1, 1, -1]), [B, D]);
      const q = tf.add(linear(first, w.get("q_head.weight") as tf.Tensor2D), w.get("q_head.bias")!);
      const [qh, qc] = tf.split(q, 2, 1);
      return {
        logits,
        qHalt: tf.reshape(qh!, [B]) as tf.Tensor1D,
        qContinue: tf.reshape(qc!, [B]) as tf.Tensor1D,
      };
    });
  }

  // ---- one supervision step ------------------------------------------------------------

  /** A supervision step without gradient (evaluation, serving): T recursions, then the heads. */
  step(
    w: Weights,
    zH: tf.Tensor3D,
    zL: tf.Tensor3D,
    tokens: tf.Tensor2D,
    rows: tf.Tensor2D | null,
  ): StepOutputs {
    return tf.tidy(() => {
      const x = this.embed(w, tokens, rows);
      let y = zH;
      let z = zL;
      for (let t = 0; t < this.cfg.H_cycles; t++) [y, z] = this.recursion(w, y, z, x);
      return { zH: y, zL: z, ...this.heads(w, y) };
    });
  }

  /**
   * A supervision step for training. The first T-1 recursions run eagerly before the tape starts
   * (no activations kept, no gradient); the last recursion, the heads and the loss are
   * differentiated with respect to every weight and to the batch's task-embedding rows.
   */
  gradStep(
    w: Weights,
    zH: tf.Tensor3D,
    zL: tf.Tensor3D,
    tokens: tf.Tensor2D,
    rows: tf.Tensor2D | null,
    lossOf: LossFn,
  ): GradStepResult {
    let y = zH;
    let z = zL;
    if (this.cfg.H_cycles > 1)
      [y, z] = tf.tidy(() => {
        const x = this.embed(w, tokens, rows);
        let yy = zH;
        let zz = zL;
        for (let t = 0; t < this.cfg.H_cycles - 1; t++) [yy, zz] = this.recursion(w, yy, zz, x);
        return [yy, zz];
      });
    try {
      const names = [...w.keys()];
      const xs: tf.Tensor[] = names.map((n) => w.get(n)!);
      if (rows) xs.push(rows);
      let out!: StepOutputs;
      let kept: Record<string, tf.Tensor> = {};
      const { value, grads } = tf.valueAndGrads(() => {
        const x = this.embed(w, tokens, rows);
        const [y1, z1] = this.recursion(w, y, z, x);
        const heads = this.heads(w, y1);
        const r = lossOf(heads);
        out = { zH: y1, zL: z1, ...heads };
        for (const t of Object.values(out)) tf.keep(t);
        kept = r.keep ?? {};
        for (const t of Object.values(kept)) tf.keep(t);
        return r.loss;
      })(xs);
      const byName = new Map<string, tf.Tensor>();
      names.forEach((n, i) => {
        byName.set(n, grads[i]!);
      });
      return {
        ...out,
        loss: value as tf.Scalar,
        kept,
        grads: byName,
        puzzleRowGrads: rows ? (grads[names.length] as tf.Tensor2D) : null,
      };
    } finally {
      if (y !== zH) tf.dispose([y, z]);
    }
  }

  // ---- growth (datasets add tokens and tasks) ---------------------------------------------

  /**
   * Grows the vocabulary to newV: old rows of embed_tokens and lm_head stay bit-identical, new
   * ones are drawn as a fresh model would draw them. Returns the names of the weights replaced.
   */
  growVocab(newV: number, rng: Rng): string[] {
    const c = this.cfg;
    const V = c.vocab_size;
    if (!Number.isInteger(newV) || newV < V)
      throw new ConfigError(`vocabulary can only grow: ${V} -> ${newV}`);
    if (newV === V) return [];
    const D = c.hidden_size;
    this.cfg = parseTRMConfig({ ...c, vocab_size: newV });
    const emb = this.weights.get("embed_tokens.weight")!; // [V, D]
    const head = this.weights.get("lm_head.weight")!; // [D, V] (transposed)
    const newEmb = tf.tidy(() =>
      tf.concat([emb, tf.tensor2d(rng.truncNormal((newV - V) * D, 1 / Math.sqrt(D)), [newV - V, D])], 0),
    );
    const newHead = tf.tidy(() =>
      tf.concat([head, tf.tensor2d(rng.truncNormal(D * (newV - V), 1 / Math.sqrt(D)), [D, newV - V])], 1),
    );
    this.replaceWeight("embed_tokens.weight", newEmb);
    this.replaceWeight("lm_head.weight", newHead);
    return ["embed_tokens.weight", "lm_head.weight"];
  }

  /** Grows the task table to newN identifiers; new rows start at zero, as in a fresh model. */
  growPuzzleIds(newN: number): void {
    const c = this.cfg;
    if (!Number.isInteger(newN) || newN < c.num_puzzle_identifiers)
      throw new ConfigError(`puzzle identifiers can only grow: ${c.num_puzzle_identifiers} -> ${newN}`);
    this.cfg = parseTRMConfig({ ...c, num_puzzle_identifiers: newN });
    const table = new Float32Array(newN * c.puzzle_emb_ndim);
    table.set(this.puzzleEmb);
    this.puzzleEmb = table;
  }

  /**
   * Sets lm_head to `scale` times the transposed token embeddings: an init, not a tie (both
   * train apart afterwards), so an answer token's output direction starts as its input one.
   * It does not make an untrained model copy its input (the blocks' random mixing hides it);
   * it is chosen by measurement, see the trainer's head_init.
   */
  startHeadFromEmbeddings(scale: number): void {
    const emb = this.weights.get("embed_tokens.weight")!; // [V, D]
    this.replaceWeight(
      "lm_head.weight",
      tf.tidy(() => tf.mul(tf.transpose(emb), scale)),
    );
  }

  private replaceWeight(name: string, value: tf.Tensor): void {
    this.weights.get(name)!.dispose();
    this.weights.set(name, adoptVariable(value));
  }
}

function swiglu(x: tf.Tensor, gateUp: tf.Tensor, down: tf.Tensor): tf.Tensor {
  return linear(siluGateMul(linear(x, gateUp as tf.Tensor2D)), down as tf.Tensor2D);
}

function initialValue(spec: WeightSpec, rng: Rng): tf.Tensor {
  const n = spec.torchShape.reduce((a, b) => a * b, 1);
  const shape = spec.transposed ? [spec.torchShape[1]!, spec.torchShape[0]!] : spec.torchShape;
  if (spec.fill !== undefined) return tf.fill(shape, spec.fill, "float32");
  if (spec.std === 0) return tf.zeros(shape, "float32");
  // i.i.d. draws, so generating directly in the tfjs layout is the same distribution.
  return tf.tensor(rng.truncNormal(n, spec.std), shape, "float32");
}

/** RoPE tables [S, hd] in the rotate-half layout, computed once per model in float32 like the reference. */
function ropeTables(c: TRMConfig): RopeTables {
  const hd = headDim(c);
  const S = totalLen(c);
  const half = hd / 2;
  const f = Math.fround;
  const inv = new Float32Array(half);
  for (let i = 0; i < half; i++) inv[i] = f(1 / f(c.rope_theta ** f((2 * i) / hd)));
  const cos = new Float32Array(S * hd);
  const sin = new Float32Array(S * hd);
  for (let s = 0; s < S; s++)
    for (let i = 0; i < half; i++) {
      const a = f(s * inv[i]!);
      cos[s * hd + i] = cos[s * hd + i + half] = Math.cos(a);
      sin[s * hd + i] = sin[s * hd + i + half] = Math.sin(a);
    }
  return {
    cos: tf.keep(tf.tensor2d(cos, [S, hd], "float32")),
    sin: tf.keep(tf.tensor2d(sin, [S, hd], "float32")),
  };
}

/** The config stored in a file's metadata (`trm_config`, the reference's JSON). */
export function configFromMetadata(meta: Record<string, string>, source: string): TRMConfig {
  const raw = meta.trm_config;
  if (raw === undefined) throw new SafetensorsError(`${source}: no trm_config in the metadata`);
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    throw new SafetensorsError(`${source}: trm_config in the metadata is not JSON`);
  }
  try {
    return parseTRMConfig(json, `${source}: trm_config`);
  } catch (err) {
    throw new SafetensorsError((err as Error).message);
  }
}
