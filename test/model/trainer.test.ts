// The TRM as a library: deep-supervision carry and halting, training state round trips, growth,
// evaluation and serving-style prediction, and no tensor leaks. A tiny config keeps it fast.
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import {
  type Batch,
  emptyCarry,
  evaluateBatch,
  predictBatch,
  refill,
  trainingHalt,
} from "../../src/model/act.js";
import { parseTRMConfig, type TRMConfigInput } from "../../src/model/config.js";
import { Rng } from "../../src/model/rng.js";
import { decodeSafetensors } from "../../src/model/safetensors.js";
import { Trainer, type TrainOptionsInput } from "../../src/model/trainer.js";
import { TRM } from "../../src/model/trm.js";

// The 100-step memory test alone is ~20 s on an idle 2-core box; CI shares those cores.
vi.setConfig({ testTimeout: 600_000 });

const TINY: TRMConfigInput = {
  vocab_size: 7,
  seq_len: 5,
  hidden_size: 16,
  num_heads: 2,
  num_layers: 2,
  H_cycles: 2,
  L_cycles: 1,
  halt_max_steps: 3,
  puzzle_emb_len: 2,
  puzzle_emb_ndim: 16,
  num_puzzle_identifiers: 3,
};
const OPTS: TrainOptionsInput = {
  lr: 3e-3,
  warmup_steps: 3,
  weight_decay: 0.1,
  puzzle_emb_lr: 1e-2,
  puzzle_emb_weight_decay: 0.1,
  ema_decay: 0.9,
};

/** A deterministic batch: copy the input, as labels, with one position ignored. */
function makeBatch(rng: Rng, B: number, L = 5, V = 7, ids = 3): Batch {
  const tokens = new Int32Array(B * L);
  const labels = new Int32Array(B * L);
  const puzzleIds = new Int32Array(B);
  for (let b = 0; b < B; b++) {
    puzzleIds[b] = rng.int(0, ids);
    for (let t = 0; t < L; t++) {
      tokens[b * L + t] = rng.int(1, V);
      labels[b * L + t] = t === L - 1 ? -100 : tokens[b * L + t]!;
    }
  }
  return { tokens, labels, puzzleIds };
}

function weightsOf(t: Trainer): Map<string, Float32Array> {
  return new Map([...t.model.weights].map(([n, v]) => [n, Float32Array.from(v.dataSync())]));
}

const live: Trainer[] = [];
function track(t: Trainer): Trainer {
  live.push(t);
  return t;
}

beforeAll(async () => {
  await tf.setBackend("cpu");
});
afterEach(() => {
  for (const t of live.splice(0)) t.dispose();
});

describe("deep-supervision carry", () => {
  it("refills halted slots with the new batch's sample and a fresh state; other slots keep theirs", () => {
    const cfg = parseTRMConfig(TINY);
    const m = TRM.init(cfg, 1);
    const rng = new Rng(2);
    const b1 = makeBatch(rng, 3);
    const b2 = makeBatch(rng, 3);
    let carry = refill(m, emptyCarry(m, 3), b1);
    expect(Array.from(carry.tokens)).toEqual(Array.from(b1.tokens));
    // Give the state some history, then halt slot 1 only.
    const stepped = m.step(
      m.weights,
      carry.zH,
      carry.zL,
      tf.tensor2d(carry.tokens, [3, 5], "int32"),
      m.puzzleRows(carry.puzzleIds),
    );
    const before = stepped.zH.arraySync() as number[][][];
    carry = {
      ...carry,
      zH: stepped.zH,
      zL: stepped.zL,
      steps: Int32Array.from([2, 1, 2]),
      halted: Uint8Array.from([0, 1, 0]),
    };
    const next = refill(m, carry, b2);
    expect(Array.from(next.steps)).toEqual([2, 0, 2]);
    expect(Array.from(next.tokens.subarray(0, 5))).toEqual(Array.from(b1.tokens.subarray(0, 5)));
    expect(Array.from(next.tokens.subarray(5, 10))).toEqual(Array.from(b2.tokens.subarray(5, 10)));
    expect(next.puzzleIds[1]).toBe(b2.puzzleIds[1]);
    const after = next.zH.arraySync() as number[][][];
    const h0 = Array.from(m.hInit.dataSync());
    expect(after[0]).toEqual(before[0]);
    expect(after[2]).toEqual(before[2]);
    for (const row of after[1]!) expect(row.map(Math.fround)).toEqual(h0);
    tf.dispose([next.zH, next.zL, stepped.logits, stepped.qHalt, stepped.qContinue]);
    m.dispose();
  });

  it("training halts at N_sup or on q_halt > 0, and exploration enforces a minimum of U{2..N_sup} steps", () => {
    const cfg = parseTRMConfig({ ...TINY, halt_max_steps: 5, halt_exploration_prob: 0 });
    const q = Float32Array.from([-1, 0.5, -1, 0.5]);
    expect(Array.from(trainingHalt(cfg, Int32Array.from([1, 1, 5, 3]), q, new Rng(0)))).toEqual([0, 1, 1, 1]);
    // Always exploring: a confident sample still runs at least 2 steps; N_sup always halts.
    const explore = parseTRMConfig({ ...TINY, halt_max_steps: 5, halt_exploration_prob: 1 });
    const rng = new Rng(3);
    for (let i = 0; i < 50; i++) {
      const h = trainingHalt(explore, Int32Array.from([1, 5, 2]), Float32Array.from([3, -3, 3]), rng);
      expect(h[0]).toBe(0);
      expect(h[1]).toBe(1);
    }
    // With p = 0.5 some confident samples at step 2 are held back, some are not.
    const half = parseTRMConfig({ ...TINY, halt_max_steps: 5, halt_exploration_prob: 0.5 });
    let held = 0;
    for (let i = 0; i < 400; i++)
      held += trainingHalt(half, Int32Array.from([2]), Float32Array.from([1]), rng)[0] ? 0 : 1;
    // Held back iff exploring (p = 0.5) and min_steps in {3, 4, 5} (3/4): expect 0.375 * 400 = 150.
    expect(held).toBeGreaterThan(110);
    expect(held).toBeLessThan(190);
  });

  it("trainStep runs one supervision step per slot and reports halting", () => {
    const t = track(Trainer.create(parseTRMConfig({ ...TINY, halt_exploration_prob: 0 }), OPTS, 5));
    const rng = new Rng(9);
    const seen: number[] = [];
    for (let i = 0; i < 6; i++) {
      const m = t.trainStep(makeBatch(rng, 4));
      expect(m.step).toBe(i + 1);
      expect(Number.isFinite(m.loss)).toBe(true);
      expect(m.loss).toBeCloseTo(m.lmLoss + 0.5 * m.qHaltLoss, 5);
      seen.push(m.halted);
      if (m.halted) expect(m.haltSteps).toBeGreaterThanOrEqual(1);
    }
    // q_head starts at -5, so at first nothing halts before N_sup = 3: steps 3 and 6 halt all four.
    expect(seen).toEqual([0, 0, 4, 0, 0, 4]);
    expect(Array.from(t.carry!.steps)).toEqual([3, 3, 3, 3]);
  });

  it("sign-SGD moves only the task rows in the batch", () => {
    const t = track(Trainer.create(parseTRMConfig(TINY), OPTS, 5));
    const b = makeBatch(new Rng(1), 4);
    b.puzzleIds.fill(2);
    t.trainStep(b);
    const nd = 16;
    expect(t.model.puzzleEmb.subarray(0, 2 * nd).every((v) => v === 0)).toBe(true);
    expect(t.model.puzzleEmb.subarray(2 * nd).some((v) => v !== 0)).toBe(true);
  });
});

describe("head_init", () => {
  it("embeddings: lm_head starts as twice the transposed token embeddings, then trains apart", () => {
    const cfg = parseTRMConfig(TINY);
    const head = (t: Trainer) => t.model.weights.get("lm_head.weight")!.dataSync() as Float32Array; // [D, V]
    const emb = (t: Trainer) => t.model.weights.get("embed_tokens.weight")!.dataSync() as Float32Array; // [V, D]
    const D = cfg.hidden_size;
    const V = cfg.vocab_size;
    const t = track(Trainer.create(cfg, { ...OPTS, head_init: "embeddings" }, 11));
    const e = emb(t);
    const h = head(t);
    for (let v = 0; v < V; v++)
      for (let d = 0; d < D; d++) expect(h[d * V + v]).toBeCloseTo(2 * e[v * D + d], 6);
    // The same seed draws the same embeddings; the reference init leaves the head its own draw.
    const ref = track(Trainer.create(cfg, { ...OPTS, head_init: "reference" }, 11));
    expect(Array.from(emb(ref))).toEqual(Array.from(e));
    expect(head(ref)[0]).not.toBeCloseTo(2 * emb(ref)[0], 6);
    // An init, not a tie: a step moves the two apart.
    t.trainStep(makeBatch(new Rng(2), 4));
    const h2 = head(t);
    const e2 = emb(t);
    let apart = 0;
    for (let v = 0; v < V; v++)
      for (let d = 0; d < D; d++) apart += Math.abs(h2[d * V + v] - 2 * e2[v * D + d]);
    expect(apart).toBeGreaterThan(1e-4);
  });
});

describe("memory", () => {
  it("tf.memory().numTensors is stable over 100 training steps (plus evaluation and prediction)", () => {
    const t = track(Trainer.create(parseTRMConfig(TINY), OPTS, 7));
    const rng = new Rng(4);
    for (let i = 0; i < 3; i++) t.trainStep(makeBatch(rng, 4));
    const settled = tf.memory().numTensors;
    for (let i = 0; i < 100; i++) t.trainStep(makeBatch(rng, 4));
    t.evaluate(makeBatch(rng, 3));
    t.predict(makeBatch(rng, 5));
    expect(tf.memory().numTensors).toBe(settled);
  });
});

describe("training state", () => {
  it("a trainer restored from its exported state continues bit for bit (weights, moments, EMA, carry, RNG)", () => {
    const cfg = parseTRMConfig(TINY);
    const a = track(Trainer.create(cfg, OPTS, 11));
    const data = new Rng(12);
    const batches = Array.from({ length: 10 }, () => makeBatch(data, 4));
    for (const b of batches.slice(0, 5)) a.trainStep(b);
    const state = a.exportState({ data_cursor: "5" });
    const { trainer: b, extra } = Trainer.fromState(state);
    track(b);
    expect(extra).toEqual({ data_cursor: "5" });
    expect(b.step).toBe(5);
    const ma = batches.slice(5).map((x) => a.trainStep(x));
    const mb = batches.slice(5).map((x) => b.trainStep(x));
    expect(mb).toEqual(ma);
    const wa = weightsOf(a);
    for (const [n, w] of weightsOf(b)) expect(w, n).toEqual(wa.get(n));
    expect(b.model.puzzleEmb).toEqual(a.model.puzzleEmb);
    expect(b.rng.state()).toEqual(a.rng.state());
    expect(b.exportState()).toEqual(a.exportState());
  });

  it("refuses a model file or a tampered state", () => {
    const a = track(Trainer.create(parseTRMConfig(TINY), OPTS, 11));
    expect(() => Trainer.fromState(a.exportModel())).toThrow(/not a training state \(format "trm-ref-v1"\)/);
    a.trainStep(makeBatch(new Rng(1), 2));
    const f = decodeSafetensors(a.exportState());
    expect(f.tensors.has("optim.m.lm_head.weight")).toBe(true);
    expect(f.tensors.has("ema.lm_head.weight")).toBe(true);
    expect(f.tensors.has("carry.zH")).toBe(true);
  });
});

describe("evaluation and prediction", () => {
  it("evaluation runs exactly N_sup steps from a fresh state with the EMA weights", () => {
    const t = track(Trainer.create(parseTRMConfig(TINY), OPTS, 3));
    const rng = new Rng(5);
    for (let i = 0; i < 4; i++) t.trainStep(makeBatch(rng, 4));
    const b = makeBatch(rng, 3);
    const ev = t.evaluate(b);
    // By hand: N_sup steps of the EMA weights.
    const m = t.model;
    let { zH, zL } = m.initState(3);
    const tokens = tf.tensor2d(b.tokens, [3, 5], "int32");
    const rows = m.puzzleRows(b.puzzleIds);
    let logits: tf.Tensor | null = null;
    for (let s = 0; s < m.cfg.halt_max_steps; s++) {
      const o = m.step(t.ema!.shadow, zH, zL, tokens, rows);
      tf.dispose([zH, zL, o.qHalt, o.qContinue]);
      logits?.dispose();
      ({ zH, zL, logits } = o);
    }
    expect(ev.logits).toEqual(logits!.dataSync());
    tf.dispose([zH, zL, tokens, rows!, logits!]);
    expect(ev.metrics!.exactAccuracy).toBeGreaterThanOrEqual(0);
    // The live weights give another answer than the EMA weights.
    expect(evaluateBatch(m, m.weights, b).logits).not.toEqual(ev.logits);
  });

  it("prediction stops each sample once q_halt > 0 and reports the steps it used", () => {
    const cfg = parseTRMConfig({ ...TINY, halt_max_steps: 6 });
    const m = TRM.init(cfg, 8);
    const b = makeBatch(new Rng(6), 4);
    // Halting head: q_halt = w . y[0] + bias, with a bias per sample impossible -> use the weight.
    const never = predictBatch(m, m.weights, b);
    expect(Array.from(never.steps)).toEqual([6, 6, 6, 6]); // bias -5: never confident
    const full = evaluateBatch(m, m.weights, b, { steps: 6 });
    expect(never.predictions).toEqual(full.predictions);
    expect(never.logits).toEqual(full.logits);
    const capped = predictBatch(m, m.weights, b, { maxSteps: 2 });
    expect(Array.from(capped.steps)).toEqual([2, 2, 2, 2]);
    expect(capped.logits).toEqual(evaluateBatch(m, m.weights, b, { steps: 2 }).logits);

    // Make q_halt positive for exactly the samples whose y[0] has a positive first coordinate after step 1.
    m.weights.get("q_head.bias")!.assign(tf.tensor1d([0, 0]));
    const qw = new Float32Array(16 * 2);
    qw[0] = 1; // q_halt = y[0][0]
    m.weights.get("q_head.weight")!.assign(tf.tensor2d(qw, [16, 2]));
    const mixed = predictBatch(m, m.weights, b);
    for (let s = 1; s <= 6; s++) {
      const ev = evaluateBatch(m, m.weights, b, { steps: s });
      for (let i = 0; i < 4; i++) {
        if (mixed.steps[i] === s) {
          expect(ev.qHalt[i]! > 0 || s === 6).toBe(true);
          expect(Array.from(mixed.predictions.subarray(i * 5, i * 5 + 5))).toEqual(
            Array.from(ev.predictions.subarray(i * 5, i * 5 + 5)),
          );
          expect(mixed.qHalt[i]).toBe(ev.qHalt[i]);
        } else if (mixed.steps[i]! > s) expect(ev.qHalt[i]!).toBeLessThanOrEqual(0);
      }
    }
    m.dispose();
  });

  it("an exported model (EMA weights) predicts what the trainer evaluates", () => {
    const t = track(Trainer.create(parseTRMConfig(TINY), OPTS, 3));
    const rng = new Rng(5);
    for (let i = 0; i < 3; i++) t.trainStep(makeBatch(rng, 4));
    const served = TRM.fromSafetensors(decodeSafetensors(t.exportModel()));
    const b = makeBatch(rng, 3);
    expect(evaluateBatch(served, served.weights, b).logits).toEqual(t.evaluate(b).logits);
    served.dispose();
  });

  it("bad input is a clear error, not garbage", () => {
    const t = track(Trainer.create(parseTRMConfig(TINY), OPTS, 3));
    const b = makeBatch(new Rng(1), 2);
    b.tokens[3] = 7;
    expect(() => t.predict(b)).toThrow(/token 7 at index 3 is outside the vocabulary \[0, 7\)/);
    const c = makeBatch(new Rng(1), 2);
    c.puzzleIds[1] = 3;
    expect(() => t.evaluate(c)).toThrow(/puzzle identifier 3 is outside \[0, 3\)/);
    const d = makeBatch(new Rng(1), 2);
    d.labels![0] = 9;
    expect(() => t.trainStep(d)).toThrow(/label 9 at sample 0, position 0 is outside \[0, 7\)/);
    expect(() => t.trainStep({ ...d, labels: undefined })).toThrow(/no labels/);
  });
});

describe("growth", () => {
  it("growVocab keeps old rows bit-identical, draws new ones like a fresh model, and training goes on", () => {
    const t = track(Trainer.create(parseTRMConfig(TINY), OPTS, 21));
    const rng = new Rng(2);
    for (let i = 0; i < 3; i++) t.trainStep(makeBatch(rng, 4));
    const emb = t.model.weights.get("embed_tokens.weight")!.arraySync() as number[][];
    const head = t.model.weights.get("lm_head.weight")!.arraySync() as number[][]; // [D, V]
    const emaEmb = t.ema!.shadow.get("embed_tokens.weight")!.arraySync() as number[][];
    t.growVocab(40);
    expect(t.cfg.vocab_size).toBe(40);
    const emb2 = t.model.weights.get("embed_tokens.weight")!.arraySync() as number[][];
    const head2 = t.model.weights.get("lm_head.weight")!.arraySync() as number[][];
    expect(emb2.slice(0, 7)).toEqual(emb);
    expect(head2.map((r) => r.slice(0, 7))).toEqual(head);
    expect((t.ema!.shadow.get("embed_tokens.weight")!.arraySync() as number[][]).slice(0, 7)).toEqual(emaEmb);
    // New rows: truncated normal with std 1/sqrt(D) = 0.25, within +-2 std.
    const fresh = emb2.slice(7).flat();
    const std = Math.sqrt(fresh.reduce((a, v) => a + v * v, 0) / fresh.length);
    expect(std).toBeGreaterThan(0.2);
    expect(std).toBeLessThan(0.3);
    expect(Math.max(...fresh.map(Math.abs))).toBeLessThanOrEqual((2 * 0.25) / 0.8796 + 1e-6);
    // Moments of the new rows start at zero; the old rows keep theirs.
    const m = t.adam.m.get("embed_tokens.weight")!.arraySync() as number[][];
    expect(
      m
        .slice(7)
        .flat()
        .every((v) => v === 0),
    ).toBe(true);
    expect(
      m
        .slice(0, 7)
        .flat()
        .some((v) => v !== 0),
    ).toBe(true);
    // Training and state round trips work with the new tokens.
    const b = makeBatch(rng, 4, 5, 40);
    expect(Number.isFinite(t.trainStep(b).loss)).toBe(true);
    const { trainer } = Trainer.fromState(t.exportState());
    track(trainer);
    expect(trainer.cfg.vocab_size).toBe(40);
    expect(() => t.growVocab(10)).toThrow(/can only grow/);
  });

  it("growPuzzleIds keeps old rows and adds zero rows", () => {
    const t = track(Trainer.create(parseTRMConfig(TINY), OPTS, 21));
    t.trainStep(makeBatch(new Rng(2), 4));
    const old = Float32Array.from(t.model.puzzleEmb);
    t.growPuzzleIds(5);
    expect(t.cfg.num_puzzle_identifiers).toBe(5);
    expect(t.model.puzzleEmb.subarray(0, old.length)).toEqual(old);
    expect(t.model.puzzleEmb.subarray(old.length).every((v) => v === 0)).toBe(true);
    expect(Number.isFinite(t.trainStep(makeBatch(new Rng(3), 4, 5, 7, 5)).loss)).toBe(true);
  });
});
