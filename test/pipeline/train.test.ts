// The training loop on a tiny model and a small synthetic task: logging, validation, early
// stopping, checkpoints, cancellation and resume, fine-tuning with a grown vocabulary.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs-core";
import { beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config/index.js";
import { activeBackend, initBackend } from "../../src/model/backend.js";
import { resolveModelConfig } from "../../src/model/config.js";
import { loadNative } from "../../src/model/native/index.js";
import { decodeSafetensors, toFloat32 } from "../../src/model/safetensors.js";
import { CancelledError } from "../../src/pipeline/run.js";
import { listCheckpoints, readCheckpointFile } from "../../src/pipeline/train/checkpoint.js";
import {
  epochPool,
  nextBatch,
  readRunMetrics,
  type TrainEvent,
  type TrainInput,
  type TrainSplit,
  train,
  validationSample,
} from "../../src/pipeline/train.js";
import { FsStore, type ObjectStore } from "../../src/store/index.js";
import { tinyModel } from "../helpers/tiny-config.js";

const S = 16;

/** Label at odd positions = the input token shifted by one (mod 8): learnable, not trivial. */
function split(n: number, seed: number, tasks = ["a", "b"]): TrainSplit {
  const inputs = new Int32Array(n * S);
  const labels = new Int32Array(n * S);
  const task: string[] = [];
  let x = seed;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < S; j++) {
      x = (x * 1103515245 + 12345) & 0x7fffffff;
      const t = 4 + (x % 8);
      inputs[i * S + j] = t;
      labels[i * S + j] = j % 2 ? 4 + ((t - 4 + 1) % 8) : -100;
    }
    task.push(tasks[i % tasks.length]);
  }
  return {
    size: n,
    tasks: task,
    batch(idx) {
      const B = idx.length;
      const a = new Int32Array(B * S);
      const l = new Int32Array(B * S);
      const p = new Int32Array(B);
      for (let b = 0; b < B; b++) {
        a.set(inputs.subarray(idx[b] * S, (idx[b] + 1) * S), b * S);
        l.set(labels.subarray(idx[b] * S, (idx[b] + 1) * S), b * S);
        p[b] = task[idx[b]] === "a" ? 1 : 2;
      }
      return { inputs: a, labels: l, puzzleIds: p };
    },
  };
}

const settings = (extra: Record<string, unknown> = {}) =>
  parseConfig({
    train: {
      seed: 3,
      max_steps: 24,
      batch_size: 8,
      log_interval: 4,
      eval_interval: 8,
      checkpoint_interval: 6,
      keep_checkpoints: 2,
      eval_examples: 16,
      warmup_steps: 2,
      lr: 0.003,
      ema_decay: 0.8,
      ...extra,
    },
  }).train;

const model = (vocab = 12) =>
  resolveModelConfig(tinyModel(), { vocab_size: vocab, seq_len: S, num_puzzle_identifiers: 3 });

function input(extra: Partial<TrainInput> = {}): TrainInput & { events: TrainEvent[] } {
  const events: TrainEvent[] = [];
  return {
    settings: settings(),
    model: model(),
    train: split(64, 1),
    val: split(24, 2),
    store: new FsStore(mkdtempSync(join(tmpdir(), "trm-train-"))),
    prefix: "runs/a/r1",
    onEvent: (e) => events.push(e),
    events,
    ...extra,
  };
}

async function finalTensors(store: ObjectStore, prefix: string) {
  const ck = (await listCheckpoints(store, prefix, "state")).at(-1)!;
  return decodeSafetensors(await readCheckpointFile(store, ck, "state.safetensors"));
}

beforeAll(async () => {
  await initBackend("auto");
});

describe("the data order", () => {
  it("visits every example once per epoch, in an order fixed by the seed and the epoch", () => {
    const o = { epoch: 0, cursor: 0 };
    const first = [...nextBatch(o, 10, 4, 1), ...nextBatch(o, 10, 4, 1), ...nextBatch(o, 10, 4, 1)];
    expect(new Set(first.slice(0, 10)).size).toBe(10);
    expect(o).toEqual({ epoch: 1, cursor: 2 });
    const again = { epoch: 0, cursor: 0 };
    expect([
      ...nextBatch(again, 10, 4, 1),
      ...nextBatch(again, 10, 4, 1),
      ...nextBatch(again, 10, 4, 1),
    ]).toEqual(first);
    // Resuming from a saved position continues the same sequence.
    expect(nextBatch({ epoch: 0, cursor: 8 }, 10, 4, 1)).toEqual(first.slice(8));
    expect(nextBatch({ epoch: 0, cursor: 0 }, 10, 4, 2)).not.toEqual(first.slice(0, 4));
  });

  it("visits an example of a weighted task as many times per epoch as its weight", () => {
    expect(Array.from(epochPool(["a", "b", "a", "c"], { b: 3, c: 2 }))).toEqual([0, 1, 1, 1, 2, 3, 3]);
    expect(Array.from(epochPool(["a", "b"], {}))).toEqual([0, 1]);
  });

  it("validates on a fixed sample spread over the tasks", () => {
    const v = split(40, 5, ["a", "b", "c", "c"]);
    const idx = validationSample(v, 12);
    expect(idx).toHaveLength(12);
    expect(idx.map((i) => v.tasks[i]).filter((t) => t === "a")).toHaveLength(4);
    expect(validationSample(v, 12)).toEqual(idx);
  });
});

describe("train", () => {
  it("logs, validates, checkpoints at its intervals and keeps the best model", async () => {
    const inp = input();
    const res = await train(inp);
    expect(res).toMatchObject({
      steps: 24,
      max_steps: 24,
      stopped: "max_steps",
      resumed_from_step: null,
      fine_tuned_from: null,
    });
    const lines = await readRunMetrics(inp.store, inp.prefix);
    expect(lines.filter((l) => l.kind === "train").map((l) => l.step)).toEqual([4, 8, 12, 16, 20, 24]);
    expect(lines.filter((l) => l.kind === "val").map((l) => l.step)).toEqual([8, 16, 24]);
    const line = lines.find((l) => l.kind === "train")!;
    expect(Object.keys(line).sort()).toEqual(
      [
        "at",
        "exact_accuracy",
        "halt_steps",
        "kind",
        "lm_loss",
        "loss",
        "lr",
        "q_halt_accuracy",
        "q_halt_loss",
        "samples_per_s",
        "step",
        "tasks",
        "token_accuracy",
      ].sort(),
    );
    // Training accuracy per task too: every slot is counted under its own task.
    if (line.kind !== "train") throw new Error("no train line");
    expect(Object.keys(line.tasks).sort()).toEqual(["a", "b"]);
    for (const t of Object.values(line.tasks)) {
      expect(t.token_accuracy).toBeGreaterThanOrEqual(0);
      expect(t.token_accuracy).toBeLessThanOrEqual(1);
      expect(t.exact_accuracy).toBeLessThanOrEqual(t.token_accuracy);
    }
    const val = lines.find((l) => l.kind === "val")!;
    expect(val.kind === "val" && Object.keys(val.tasks).sort()).toEqual(["a", "b"]);
    expect(val.kind === "val" && val.halt_histogram.reduce((a, b) => a + b, 0)).toBe(16);
    // Token and exact accuracy per task; with the default scorer the score is the token accuracy.
    if (val.kind !== "val") throw new Error("no val line");
    expect(Object.keys(val.accuracy).sort()).toEqual(["a", "b"]);
    for (const t of ["a", "b"]) {
      expect(val.tasks[t]).toBe(val.accuracy[t].token_accuracy);
      expect(val.accuracy[t].exact_accuracy).toBeLessThanOrEqual(val.accuracy[t].token_accuracy);
    }
    // Checkpoints every 6 steps, the newest two kept; the best model beside them.
    expect((await listCheckpoints(inp.store, inp.prefix, "state")).map((c) => c.manifest.step)).toEqual([
      18, 24,
    ]);
    const best = await listCheckpoints(inp.store, inp.prefix, "best");
    expect(best).toHaveLength(1);
    expect(best[0].manifest.step).toBe(res.best_step);
    expect(best[0].manifest.files.map((f) => f.name)).toEqual(["model.safetensors", "raw.safetensors"]);
    const bestScore = Math.max(
      ...lines.filter((l) => l.kind === "val").map((l) => (l.kind === "val" ? l.score : 0)),
    );
    expect(res.best_score).toBe(bestScore);
    expect(inp.events.filter((e) => e.kind === "step").map((e) => e.step)).toEqual([4, 8, 12, 16, 20, 24]);
    const step = inp.events.find((e) => e.kind === "step")!;
    expect(step.kind === "step" && step.eta_s).toBeGreaterThan(0);
    // The learning-rate schedule: warm-up to lr, then cosine down to lr * lr_min_ratio at the last step.
    const lrs = lines.filter((l) => l.kind === "train").map((l) => (l.kind === "train" ? l.lr : 0));
    expect(lrs[0]).toBeLessThanOrEqual(0.003);
    for (let i = 1; i < lrs.length; i++) expect(lrs[i]).toBeLessThan(lrs[i - 1]);
    expect(lrs.at(-1)!).toBeCloseTo(0.0003, 6);
  });

  it("runs its products in bf16 when train.matmul asks and the CPU can, only inside its model calls", async () => {
    const native = loadNative();
    const can = activeBackend() === "native" && native.ok && native.addon.info().bf16;
    const inp = input({ settings: settings({ matmul: "bf16", max_steps: 8 }) });
    // Observed, not replaced: each product records whether the thread was in bf16 when it ran.
    const inGemm: boolean[] = [];
    const betweenCalls: boolean[] = [];
    const gemm = native.ok ? native.addon.gemm : null;
    if (native.ok)
      native.addon.gemm = (...args: Parameters<typeof native.addon.gemm>) => {
        inGemm.push(native.addon.info().matmulBf16);
        return gemm!(...args);
      };
    inp.onEvent = (e) => {
      inp.events.push(e);
      if (native.ok) betweenCalls.push(native.addon.info().matmulBf16);
    };
    try {
      const res = await train(inp);
      expect(res.matmul).toBe(can ? "bf16" : "float32");
      expect(inp.events.find((e) => e.kind === "start")).toMatchObject({ matmul: res.matmul });
    } finally {
      if (native.ok) native.addon.gemm = gemm!;
    }
    if (native.ok && activeBackend() === "native") {
      expect(new Set(inGemm)).toEqual(new Set([can]));
      // Other work on this thread (another run awaiting the store, say) sees float32.
      expect(new Set(betweenCalls)).toEqual(new Set([false]));
      expect(native.addon.info().matmulBf16).toBe(false);
    }
    expect((await train(input())).matmul).toBe("float32");
  });

  it("stops early when validation stops improving, keeping the best checkpoint", async () => {
    let calls = 0;
    const inp = input({
      settings: settings({ patience: 2, max_steps: 64 }),
      // A score that only gets worse after the first validation.
      scoreVal: () => ({ score: 1 / ++calls, tasks: { a: 1 / calls } }),
    });
    const res = await train(inp);
    expect(res.stopped).toBe("early_stop");
    expect(res.steps).toBe(24);
    expect(res.best_step).toBe(8);
    expect((await listCheckpoints(inp.store, inp.prefix, "best")).map((c) => c.manifest.step)).toEqual([8]);
    expect(
      inp.events.filter((e) => e.kind === "val").map((e) => (e.kind === "val" ? e.patience_left : -1)),
    ).toEqual([2, 1, 0]);
  });

  it("stops at a step boundary when cancelled, with a checkpoint, and resumes to the same weights", async () => {
    const ref = input();
    await train(ref);
    const tensorsBefore = tf.memory().numTensors;
    const ac = new AbortController();
    const inp = input({ signal: ac.signal });
    inp.onEvent = (e) => {
      if (e.kind === "step" && e.step === 8) ac.abort();
    };
    await expect(train(inp)).rejects.toBeInstanceOf(CancelledError);
    expect((await listCheckpoints(inp.store, inp.prefix, "state")).at(-1)!.manifest.step).toBe(8);
    // A cancelled training frees its tensors too.
    expect(tf.memory().numTensors).toBe(tensorsBefore);
    const res = await train({ ...inp, signal: undefined, onEvent: undefined });
    expect(tf.memory().numTensors).toBe(tensorsBefore);
    expect(res.resumed_from_step).toBe(8);
    expect(res.steps).toBe(24);
    const a = await finalTensors(ref.store, ref.prefix);
    const b = await finalTensors(inp.store, inp.prefix);
    for (const [name, t] of a.tensors) {
      if (t.dtype !== "F32") continue;
      expect(Array.from(toFloat32(b.tensors.get(name)!, name))).toEqual(Array.from(toFloat32(t, name)));
    }
  });

  it("fine-tunes from a parent's weights, growing the vocabulary", async () => {
    const parent = input();
    const p = await train(parent);
    const best = (await listCheckpoints(parent.store, parent.prefix, "best"))[0];
    const weights = await readCheckpointFile(parent.store, best, "raw.safetensors");
    expect(p.best_dir).toBe(best.dir);
    const child = input({
      model: model(14),
      init: { weights, version: "v-parent" },
      settings: settings({ max_steps: 8 }),
    });
    const res = await train(child);
    expect(res.fine_tuned_from).toBe("v-parent");
    const file = decodeSafetensors(
      await readCheckpointFile(
        child.store,
        (await listCheckpoints(child.store, child.prefix, "best"))[0],
        "model.safetensors",
      ),
    );
    expect(JSON.parse(file.metadata.trm_config).vocab_size).toBe(14);
    // A parent of another shape cannot be fine-tuned: the error says why.
    const wrong = input({ model: { ...model(), hidden_size: 32 }, init: { weights, version: "v-parent" } });
    await expect(train(wrong)).rejects.toThrow(/cannot fine-tune v-parent/);
  });
});
