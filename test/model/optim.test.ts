// The optimisers against trajectories recorded from torch.optim.AdamW and ref_trm.py's Adam-atan2,
// sign-SGD and LR schedule (test/fixtures/model/make_optim.py wrote optim-reference.json).
import { readFileSync } from "node:fs";
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import { beforeAll, describe, expect, it } from "vitest";
import { Adam, adoptVariable, Ema, lrAt, signSgdRows } from "../../src/model/optim.js";

const ref = JSON.parse(
  readFileSync(new URL("../fixtures/model/optim-reference.json", import.meta.url), "utf8"),
) as {
  p0: number[];
  grads: number[][];
  lrs: number[];
  weight_decay: number;
  betas: [number, number];
  eps: number;
  lr_schedule: [number, number][];
  adamw: number[][];
  "adam-atan2": number[][];
  sign_table0: number[];
  sign_ids: number[];
  sign_grads: number[];
  sign_table1: number[];
};

function maxRel(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let d = 0;
  let m = 0;
  for (let i = 0; i < want.length; i++) {
    d = Math.max(d, Math.abs(got[i]! - want[i]!));
    m = Math.max(m, Math.abs(want[i]!));
  }
  return d / m;
}

beforeAll(async () => {
  await tf.setBackend("cpu");
});

describe("Adam with decoupled weight decay", () => {
  for (const kind of ["adamw", "adam-atan2"] as const) {
    it(`${kind} follows the reference trajectory step by step (bias correction, eps, decay, LR changes)`, () => {
      const p = tf.variable(tf.tensor2d(ref.p0, [3, 4]));
      const params = new Map([["w", p]]);
      const opt = new Adam({ kind, betas: ref.betas, eps: ref.eps, weightDecay: ref.weight_decay });
      ref.grads.forEach((g, k) => {
        const grad = tf.tensor2d(g, [3, 4]);
        opt.step(params, new Map([["w", grad]]), ref.lrs[k]!);
        grad.dispose();
        expect(maxRel(p.dataSync(), ref[kind][k]!), `step ${k + 1}`).toBeLessThan(1e-6);
      });
      expect(opt.t).toBe(ref.grads.length);
      opt.dispose();
      p.dispose();
    });
  }

  it("leaves no tensors behind", () => {
    const before = tf.memory().numTensors;
    const p = adoptVariable(tf.ones([5]));
    const opt = new Adam({ kind: "adamw", betas: [0.9, 0.95], eps: 1e-8, weightDecay: 1 });
    for (let i = 0; i < 10; i++) {
      const g = tf.ones([5]);
      opt.step(new Map([["p", p]]), new Map([["p", g]]), 1e-3);
      g.dispose();
    }
    opt.dispose();
    p.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe("learning-rate schedule", () => {
  it("warms up linearly, then follows the cosine to the floor (or stays constant at min ratio 1)", () => {
    for (const [step, lr] of ref.lr_schedule.slice(0, 13))
      expect(lrAt(step, 1e-2, 3, 10, 0.1)).toBeCloseTo(lr, 12);
    for (const [step, lr] of ref.lr_schedule.slice(13))
      expect(lrAt(step, 1e-3, 5, 100, 1)).toBeCloseTo(lr, 12);
    expect(lrAt(0, 1e-3, 5, 100)).toBe(0);
    expect(lrAt(500, 1e-3, 5, 100)).toBe(1e-3);
  });
});

describe("sign-SGD on task-embedding rows", () => {
  it("sums duplicate ids, then row = row * (1 - lr*wd) - lr * sign(grad); untouched rows stay", () => {
    const table = Float32Array.from(ref.sign_table0);
    signSgdRows(table, 3, Int32Array.from(ref.sign_ids), Float32Array.from(ref.sign_grads), 0.05, 0.5);
    expect(maxRel(table, ref.sign_table1)).toBeLessThan(1e-6);
    // Row 1 was not in the batch.
    expect(Array.from(table.subarray(3, 6))).toEqual(
      Array.from(Float32Array.from(ref.sign_table0).subarray(3, 6)),
    );
  });
});

describe("EMA of the weights", () => {
  it("shadow = decay * shadow + (1 - decay) * param, starting at the weights", () => {
    const p = adoptVariable(tf.tensor1d([1, 2]));
    const ema = new Ema(0.9, new Map([["p", p]]));
    p.assign(tf.tensor1d([11, 12]));
    ema.update(new Map([["p", p]]));
    expect(Array.from(ema.shadow.get("p")!.dataSync())).toEqual([2, 3].map(Math.fround));
    ema.dispose();
    p.dispose();
  });
});
