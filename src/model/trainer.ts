// The TRM as a trainable library object: a model plus its optimiser, EMA copy, RNG and the
// deep-supervision carry. One trainStep = one supervision step for every slot + one optimiser step,
// exactly as the reference's train_step. The whole state exports to one safetensors file and a
// resumed trainer continues bit for bit.
import * as tf from "@tensorflow/tfjs-core";
import * as z from "zod";
import {
  accuracy,
  type Batch,
  batchSize,
  type Carry,
  type EvalMetrics,
  type EvalResult,
  emptyCarry,
  evaluateBatch,
  type Prediction,
  predictBatch,
  refill,
  trainingHalt,
} from "./act.js";
import { type TRMConfig, totalLen } from "./config.js";
import { actLoss, type LossResult } from "./loss.js";
import { Adam, adoptVariable, Ema, lrAt, signSgdRows } from "./optim.js";
import { Rng, type RngState } from "./rng.js";
import {
  decodeSafetensors,
  encodeSafetensors,
  SafetensorsError,
  type TensorToWrite,
  toFloat32,
  toInt32,
} from "./safetensors.js";
import {
  configFromMetadata,
  fromTorchLayout,
  type GradStepResult,
  TRM,
  toTorchLayout,
  type Weights,
  weightSpecs,
} from "./trm.js";

export const TrainOptionsSchema = z
  .object({
    /** Peak learning rate of the weights. */
    lr: z.number().positive().default(1e-4),
    /** Linear warm-up steps, then constant (lr_min_ratio 1) or cosine down to lr_min_ratio * lr. */
    warmup_steps: z.number().int().min(0).default(2000),
    total_steps: z.number().int().min(1).default(100_000),
    lr_min_ratio: z.number().min(0).max(1).default(1),
    weight_decay: z.number().min(0).default(1.0),
    betas: z.tuple([z.number().min(0).lt(1), z.number().min(0).lt(1)]).default([0.9, 0.95]),
    eps: z.number().positive().default(1e-8),
    optimizer: z.enum(["adamw", "adam-atan2"]).default("adamw"),
    /** Sign-SGD on the task-embedding rows (same warm-up schedule). */
    puzzle_emb_lr: z.number().min(0).default(1e-4),
    puzzle_emb_weight_decay: z.number().min(0).default(1.0),
    /** EMA of the weights for evaluation and export; null disables it. */
    ema_decay: z.number().min(0).lt(1).nullable().default(0.999),
    /** lm_head's init: the reference's, or from the token embeddings (see TRM.startHeadFromEmbeddings). */
    head_init: z.enum(["reference", "embeddings"]).default("reference"),
  })
  .strict();
export type TrainOptions = z.output<typeof TrainOptionsSchema>;
export type TrainOptionsInput = z.input<typeof TrainOptionsSchema>;

/** An evaluation's metrics (act.ts), here over all slots of this step. */
export interface TrainMetrics extends EvalMetrics {
  /** Optimiser steps taken so far (this one included). */
  step: number;
  lr: number;
  /** Slots whose sample halted after this step. */
  halted: number;
  /** Over the samples that halted now (the repo's logged metrics); null when none did. */
  haltedExactAccuracy: number | null;
  /** Mean supervision steps used by the samples that halted now; null when none did. */
  haltSteps: number | null;
  /** Per slot, for accuracy by task: the sample's task id, supervised and correct tokens, exactness. */
  slots: { puzzleIds: Int32Array; valid: Int32Array; correct: Int32Array; exact: Uint8Array };
}

const STATE_FORMAT = "trm-forge-train-v1";

/**
 * head_init "embeddings" scale (the only value measured): the reference's lm_head columns and
 * the embedding rows both have norm ~1, so this starts the head at twice its usual scale.
 */
const HEAD_FROM_EMBEDDINGS_SCALE = 2;

export class Trainer {
  readonly model: TRM;
  readonly options: TrainOptions;
  readonly adam: Adam;
  readonly ema: Ema | null;
  /** Halting exploration and growth draw from it; its state is saved with the trainer. */
  readonly rng: Rng;
  /** Optimiser steps taken. */
  step = 0;
  carry: Carry | null = null;

  private constructor(model: TRM, options: TrainOptions, rng: Rng, ema: Ema | null) {
    this.model = model;
    this.options = options;
    this.rng = rng;
    this.adam = new Adam({
      kind: options.optimizer,
      betas: options.betas,
      eps: options.eps,
      weightDecay: options.weight_decay,
    });
    this.ema = ema;
  }

  /** A fresh model and optimiser; the seed fixes the init and every later random draw. */
  static create(cfg: TRMConfig, options: TrainOptionsInput, seed: number): Trainer {
    const opts = TrainOptionsSchema.parse(options);
    const rng = new Rng(seed);
    const model = TRM.init(cfg, rng);
    if (opts.head_init === "embeddings") model.startHeadFromEmbeddings(HEAD_FROM_EMBEDDINGS_SCALE);
    const ema = opts.ema_decay === null ? null : new Ema(opts.ema_decay, model.weights);
    return new Trainer(model, opts, rng, ema);
  }

  /** Starts training from existing weights (fine-tuning); the optimiser and EMA start fresh. */
  static fromModel(model: TRM, options: TrainOptionsInput, seed: number): Trainer {
    const opts = TrainOptionsSchema.parse(options);
    const ema = opts.ema_decay === null ? null : new Ema(opts.ema_decay, model.weights);
    return new Trainer(model, opts, new Rng(seed), ema);
  }

  get cfg(): TRMConfig {
    return this.model.cfg;
  }

  /** The weights used for evaluation and export: the EMA copy when there is one. */
  get evalWeights(): Weights {
    return this.ema ? this.ema.shadow : this.model.weights;
  }

  /** One supervision step for every slot, one optimiser step, one EMA update, then halting. */
  trainStep(batch: Batch): TrainMetrics {
    const cfg = this.cfg;
    const model = this.model;
    const B = batchSize(cfg, batch, true);
    const L = cfg.seq_len;
    const carry = refill(model, this.carry ?? emptyCarry(model, B), batch);
    this.carry = carry;
    const tokens = tf.tensor2d(carry.tokens, [B, L], "int32");
    const rows = model.puzzleRows(carry.puzzleIds);
    let parts!: LossResult;
    let r: GradStepResult | null = null;
    try {
      r = model.gradStep(model.weights, carry.zH, carry.zL, tokens, rows, (out) => {
        parts = actLoss(cfg, out, carry.labels);
        return { loss: parts.loss, keep: { lm: parts.lmLoss, qh: parts.qHaltLoss } };
      });
      const step = this.step + 1;
      const lr = lrAt(
        step,
        this.options.lr,
        this.options.warmup_steps,
        this.options.total_steps,
        this.options.lr_min_ratio,
      );
      // The reference backpropagates loss / B.
      const grads = new Map<string, tf.Tensor>();
      for (const [n, g] of r.grads) grads.set(n, tf.div(g, B));
      this.adam.step(model.weights, grads, lr);
      tf.dispose([...grads.values()]);
      if (r.puzzleRowGrads) {
        const g = r.puzzleRowGrads.dataSync() as Float32Array;
        const scaled = g.map((v) => v / B);
        const plr = lrAt(
          step,
          this.options.puzzle_emb_lr,
          this.options.warmup_steps,
          this.options.total_steps,
          this.options.lr_min_ratio,
        );
        signSgdRows(
          model.puzzleEmb,
          cfg.puzzle_emb_ndim,
          carry.puzzleIds,
          scaled,
          plr,
          this.options.puzzle_emb_weight_decay,
        );
      }
      this.ema?.update(model.weights);
      this.step = step;

      const qHalt = r.qHalt.dataSync() as Float32Array;
      const steps = carry.steps.map((s) => s + 1);
      const halted = trainingHalt(cfg, steps, qHalt, this.rng);
      this.carry = { ...carry, zH: r.zH, zL: r.zL, steps, halted };
      tf.dispose([carry.zH, carry.zL]);

      let nHalted = 0;
      let exactHalted = 0;
      let stepsHalted = 0;
      for (let b = 0; b < B; b++)
        if (halted[b]) {
          nHalted++;
          exactHalted += parts.exact[b]!;
          stepsHalted += steps[b]!;
        }
      const acc = accuracy(parts.valid, parts.correct, parts.exact, qHalt);
      return {
        step,
        lr,
        loss: r.loss.dataSync()[0]! / B,
        lmLoss: r.kept.lm!.dataSync()[0]! / B,
        qHaltLoss: r.kept.qh!.dataSync()[0]! / B,
        ...acc,
        halted: nHalted,
        haltedExactAccuracy: nHalted ? exactHalted / nHalted : null,
        haltSteps: nHalted ? stepsHalted / nHalted : null,
        slots: {
          puzzleIds: carry.puzzleIds.slice(),
          valid: parts.valid,
          correct: parts.correct,
          exact: parts.exact,
        },
      };
    } finally {
      tf.dispose(tokens);
      if (rows) rows.dispose();
      if (r) {
        // zH/zL of the result now belong to the carry.
        tf.dispose([r.loss, r.logits, r.qHalt, r.qContinue, ...Object.values(r.kept), ...r.grads.values()]);
        if (r.puzzleRowGrads) r.puzzleRowGrads.dispose();
      }
    }
  }

  /** The evaluation protocol (N_sup steps, no early halting) with the EMA weights. */
  evaluate(batch: Batch, opts: { steps?: number } = {}): EvalResult {
    return evaluateBatch(this.model, this.evalWeights, batch, opts);
  }

  /** Serving-style prediction with early halting, with the EMA weights. */
  predict(batch: Batch, opts: { maxSteps?: number } = {}): Prediction {
    return predictBatch(this.model, this.evalWeights, batch, opts);
  }

  /** A model file for serving: the EMA weights (or live ones), buffers and config, reference layout. */
  exportModel(opts: { ema?: boolean } = {}): Uint8Array {
    const w = opts.ema === false ? this.model.weights : this.evalWeights;
    return encodeSafetensors(this.model.exportTensors(w), this.model.metadata());
  }

  /** Grows the vocabulary; see TRM.growVocab. Optimiser moments of new rows start at zero. */
  growVocab(newV: number): void {
    const oldV = this.cfg.vocab_size;
    const names = this.model.growVocab(newV, this.rng);
    if (!names.length) return;
    const add = newV - oldV;
    this.adam.resize("embed_tokens.weight", (t) => tf.concat([t, tf.zeros([add, t.shape[1]!])], 0));
    this.adam.resize("lm_head.weight", (t) => tf.concat([t, tf.zeros([t.shape[0]!, add])], 1));
    if (this.ema) {
      // New rows of the shadow start at the new weights, as a fresh EMA would; old rows keep their average.
      const emb = this.model.weights.get("embed_tokens.weight")!;
      const head = this.model.weights.get("lm_head.weight")!;
      const sEmb = tf.tidy(() =>
        tf.concat([this.ema!.shadow.get("embed_tokens.weight")!, tf.slice(emb, [oldV, 0], [add, -1])], 0),
      );
      const sHead = tf.tidy(() =>
        tf.concat([this.ema!.shadow.get("lm_head.weight")!, tf.slice(head, [0, oldV], [-1, add])], 1),
      );
      this.ema.set("embed_tokens.weight", sEmb);
      this.ema.set("lm_head.weight", sHead);
      tf.dispose([sEmb, sHead]);
    }
  }

  /** Grows the task table; new rows are zero. */
  growPuzzleIds(newN: number): void {
    this.model.growPuzzleIds(newN);
  }

  /**
   * The full training state as one safetensors file: weights and buffers (reference names and
   * layout), Adam moments (optim.m.* / optim.v.*), EMA (ema.*), the carry (carry.*), and in the
   * metadata the config, options, step and RNG state. `extra` lets a caller store its own strings.
   */
  exportState(extra: Record<string, string> = {}): Uint8Array {
    const specs = weightSpecs(this.cfg);
    const tensors = this.model.exportTensors();
    const put = (prefix: string, map: ReadonlyMap<string, tf.Tensor>) => {
      for (const spec of specs) {
        const t = map.get(spec.name);
        if (t) tensors.set(prefix + spec.name, { shape: spec.torchShape, data: toTorchLayout(spec, t) });
      }
    };
    put("optim.m.", this.adam.m);
    put("optim.v.", this.adam.v);
    if (this.ema) put("ema.", this.ema.shadow);
    if (this.carry) {
      const c = this.carry;
      const B = c.steps.length;
      const L = this.cfg.seq_len;
      const S = totalLen(this.cfg);
      const D = this.cfg.hidden_size;
      const add = (name: string, shape: number[], data: TensorToWrite["data"]) =>
        tensors.set(name, { shape, data });
      add("carry.zH", [B, S, D], Float32Array.from(c.zH.dataSync()));
      add("carry.zL", [B, S, D], Float32Array.from(c.zL.dataSync()));
      add("carry.steps", [B], c.steps);
      add("carry.halted", [B], c.halted);
      add("carry.tokens", [B, L], c.tokens);
      add("carry.labels", [B, L], c.labels);
      add("carry.puzzle_identifiers", [B], c.puzzleIds);
    }
    const meta: Record<string, string> = {
      ...Object.fromEntries(Object.entries(extra).map(([k, v]) => [`extra.${k}`, v])),
      ...this.model.metadata(),
      format: STATE_FORMAT,
      train_options: JSON.stringify(this.options),
      train_state: JSON.stringify({ step: this.step, adam_t: this.adam.t, rng: this.rng.state() }),
    };
    return encodeSafetensors(tensors, meta);
  }

  /** Restores a trainer from exportState's bytes; `extra` gives back the caller's strings. */
  static fromState(
    bytes: Uint8Array,
    source = "training state",
  ): { trainer: Trainer; extra: Record<string, string> } {
    const file = decodeSafetensors(bytes, source);
    if (file.metadata.format !== STATE_FORMAT)
      throw new SafetensorsError(
        `${source}: not a training state (format "${file.metadata.format ?? "none"}")`,
      );
    const cfg = configFromMetadata(file.metadata, source);
    const options = parseJsonMeta(file.metadata, "train_options", TrainOptionsSchema, source);
    const st = parseJsonMeta(file.metadata, "train_state", TrainStateSchema, source);
    const model = TRM.fromSafetensors(file, source, cfg);
    const specs = weightSpecs(cfg);
    const load = (prefix: string, required: boolean): Map<string, tf.Tensor> | null => {
      const out = new Map<string, tf.Tensor>();
      for (const spec of specs) {
        const t = file.tensors.get(prefix + spec.name);
        if (!t) {
          if (required) throw new SafetensorsError(`${source}: missing ${prefix}${spec.name}`);
          return null;
        }
        if (t.shape.join() !== spec.torchShape.join())
          throw new SafetensorsError(
            `${source}: ${prefix}${spec.name} has shape [${t.shape}], expected [${spec.torchShape}]`,
          );
        out.set(spec.name, fromTorchLayout(spec, toFloat32(t, prefix + spec.name)));
      }
      return out;
    };
    const m = st.adam_t > 0 ? load("optim.m.", true) : null;
    const v = st.adam_t > 0 ? load("optim.v.", true) : null;
    const shadow = options.ema_decay === null ? null : load("ema.", true);
    const ema = shadow ? new Ema(options.ema_decay!, shadow) : null;
    if (shadow) tf.dispose([...shadow.values()]);
    const trainer = new Trainer(model, options, new Rng(st.rng as RngState), ema);
    trainer.step = st.step;
    trainer.adam.t = st.adam_t;
    for (const [table, src] of [
      [trainer.adam.m, m],
      [trainer.adam.v, v],
    ] as const)
      if (src)
        for (const [n, t] of src) {
          table.set(n, adoptVariable(t, false));
        }
    if (file.tensors.has("carry.steps")) trainer.carry = loadCarry(file, cfg, source);
    const extra: Record<string, string> = {};
    for (const [k, val] of Object.entries(file.metadata)) if (k.startsWith("extra.")) extra[k.slice(6)] = val;
    return { trainer, extra };
  }

  dispose(): void {
    this.model.dispose();
    this.adam.dispose();
    this.ema?.dispose();
    if (this.carry) tf.dispose([this.carry.zH, this.carry.zL]);
    this.carry = null;
  }
}

const TrainStateSchema = z.object({
  step: z.number().int().min(0),
  adam_t: z.number().int().min(0),
  rng: z.tuple([z.number().int(), z.number().int(), z.number().int(), z.number().int()]),
});

function parseJsonMeta<T extends z.ZodType>(
  meta: Record<string, string>,
  key: string,
  schema: T,
  source: string,
): z.output<T> {
  const raw = meta[key];
  if (raw === undefined) throw new SafetensorsError(`${source}: metadata has no ${key}`);
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    throw new SafetensorsError(`${source}: metadata ${key} is not JSON`);
  }
  const r = schema.safeParse(json);
  if (!r.success) throw new SafetensorsError(`${source}: metadata ${key}: ${r.error.issues[0]!.message}`);
  return r.data;
}

function loadCarry(file: ReturnType<typeof decodeSafetensors>, cfg: TRMConfig, source: string): Carry {
  const get = (name: string) => {
    const t = file.tensors.get(name);
    if (!t) throw new SafetensorsError(`${source}: missing ${name}`);
    return t;
  };
  const steps = toInt32(get("carry.steps"), "carry.steps");
  const B = steps.length;
  const L = cfg.seq_len;
  const S = totalLen(cfg);
  const D = cfg.hidden_size;
  const expect = (name: string, shape: number[]) => {
    const t = get(name);
    if (t.shape.join() !== shape.join())
      throw new SafetensorsError(`${source}: ${name} has shape [${t.shape}], expected [${shape}]`);
    return t;
  };
  const zH = toFloat32(expect("carry.zH", [B, S, D]), "carry.zH");
  const zL = toFloat32(expect("carry.zL", [B, S, D]), "carry.zL");
  const halted = toInt32(expect("carry.halted", [B]), "carry.halted");
  return {
    zH: tf.tensor3d(zH, [B, S, D], "float32"),
    zL: tf.tensor3d(zL, [B, S, D], "float32"),
    steps,
    halted: Uint8Array.from(halted, (h) => (h ? 1 : 0)),
    tokens: toInt32(expect("carry.tokens", [B, L]), "carry.tokens"),
    labels: toInt32(expect("carry.labels", [B, L]), "carry.labels"),
    puzzleIds: toInt32(expect("carry.puzzle_identifiers", [B]), "carry.puzzle_identifiers"),
  };
}
