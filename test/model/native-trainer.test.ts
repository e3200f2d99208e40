// The real model on the native backend: the same training trajectory as plain cpu, and no tensor
// leaks over 100 training steps (the buffer pool and the early-freeing gradients included).
import * as tf from "@tensorflow/tfjs-core";
import { describe, expect, it, vi } from "vitest";
import type { Batch } from "../../src/model/act.js";
import { initBackend } from "../../src/model/backend.js";
import { parseTRMConfig, type TRMConfigInput } from "../../src/model/config.js";
import { loadNative } from "../../src/model/native/index.js";
import { Rng } from "../../src/model/rng.js";
import { Trainer } from "../../src/model/trainer.js";

vi.setConfig({ testTimeout: 600_000 });

const native = loadNative();

const SMALL: TRMConfigInput = {
  vocab_size: 9,
  seq_len: 7,
  hidden_size: 32,
  num_heads: 4,
  num_layers: 2,
  H_cycles: 2,
  L_cycles: 2,
  halt_max_steps: 4,
  puzzle_emb_len: 2,
  puzzle_emb_ndim: 32,
  num_puzzle_identifiers: 3,
};

function batch(rng: Rng, B: number): Batch {
  const L = 7;
  const tokens = new Int32Array(B * L).map(() => rng.int(1, 9));
  const labels = tokens.map((t, i) => (i % L === L - 1 ? -100 : 9 - t));
  const puzzleIds = new Int32Array(B).map(() => rng.int(0, 3));
  return { tokens, labels, puzzleIds };
}

async function trajectory(backend: "cpu" | "native", steps: number) {
  await initBackend(backend);
  const t = Trainer.create(parseTRMConfig(SMALL), { lr: 3e-3, warmup_steps: 2, weight_decay: 0.1 }, 5);
  const rng = new Rng(6);
  const losses: number[] = [];
  for (let i = 0; i < steps; i++) losses.push(t.trainStep(batch(rng, 6)).loss);
  const w = Float32Array.from(t.model.weights.get("layers.0.mlp.gate_up.weight")!.dataSync());
  t.model.dispose();
  t.adam.dispose();
  t.ema?.dispose();
  if (t.carry) tf.dispose([t.carry.zH, t.carry.zL]);
  return { losses, w };
}

describe.skipIf(!native.ok)(
  `the trainer on native kernels${native.ok ? "" : ` (skipped: ${!native.ok && native.reason})`}`,
  () => {
    it("follows the cpu backend's training trajectory", async () => {
      const cpu = await trajectory("cpu", 6);
      const nat = await trajectory("native", 6);
      for (const [i, l] of cpu.losses.entries())
        expect(Math.abs(nat.losses[i]! - l) / Math.abs(l)).toBeLessThan(1e-4);
      let num = 0;
      let den = 0;
      for (const [i, v] of cpu.w.entries()) {
        num = Math.max(num, Math.abs(nat.w[i]! - v));
        den = Math.max(den, Math.abs(v));
      }
      expect(num / den).toBeLessThan(1e-4);
    });

    it("tf.memory().numTensors is stable over 100 training steps (plus evaluation and prediction)", async () => {
      await initBackend("native");
      const t = Trainer.create(parseTRMConfig(SMALL), { lr: 3e-3, warmup_steps: 2 }, 7);
      const rng = new Rng(8);
      for (let i = 0; i < 3; i++) t.trainStep(batch(rng, 4));
      const settled = tf.memory().numTensors;
      for (let i = 0; i < 100; i++) t.trainStep(batch(rng, 4));
      t.evaluate(batch(rng, 3));
      t.predict(batch(rng, 5));
      expect(tf.memory().numTensors).toBe(settled);
    });
  },
);
