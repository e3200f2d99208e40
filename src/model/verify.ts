// Parity check against a reference fixture (ref_trm.py --make-fixture): load the weights and
// input.* tensors, recompute every expected.* tensor, and report the max abs / rel error of each.
import * as tf from "@tensorflow/tfjs-core";
import { type Batch, evaluateBatch } from "./act.js";
import type { TRMConfig } from "./config.js";
import { actLoss } from "./loss.js";
import { Rng } from "./rng.js";
import {
  readSafetensors,
  type SafetensorsContents,
  SafetensorsError,
  toFloat32,
  toInt32,
} from "./safetensors.js";
import { TRM, toTorchLayout, weightSpecs } from "./trm.js";

/** Relative tolerance: step-1 outputs, the loss and gradients; the N_sup-step logits drift more. */
export const TOLERANCE_STEP1 = 1e-4;
export const TOLERANCE_STEPN = 1e-3;

export interface TensorCheck {
  name: string;
  shape: number[];
  maxAbs: number;
  /** max|got - expected| / max|expected| over the tensor. */
  maxRel: number;
  tolerance: number;
  ok: boolean;
  /** Why the tensor could not be compared, when it could not. */
  error?: string;
  /**
   * For a failed N_sup-step tensor: how far float32 rounding alone moves it (the same run with every
   * weight nudged by one ulp). Above the tolerance, the fixture cannot be matched by any float32
   * implementation that does not repeat the reference's exact operation order.
   */
  sensitivity?: number;
}

export interface VerifyReport {
  file: string;
  backend: string;
  config: TRMConfig;
  checks: TensorCheck[];
  ok: boolean;
}

export function compare(
  name: string,
  got: Float32Array,
  expected: Float32Array,
  shape: number[],
  tolerance: number,
): TensorCheck {
  if (got.length !== expected.length)
    return {
      name,
      shape,
      maxAbs: Infinity,
      maxRel: Infinity,
      tolerance,
      ok: false,
      error: `computed ${got.length} values, expected ${expected.length}`,
    };
  let maxAbs = 0;
  let maxExp = 0;
  for (let i = 0; i < got.length; i++) {
    const d = Math.abs(got[i]! - expected[i]!);
    // NaN anywhere must fail, so compare with !(d <= maxAbs).
    if (!(d <= maxAbs)) maxAbs = Number.isNaN(d) ? Infinity : d;
    maxExp = Math.max(maxExp, Math.abs(expected[i]!));
  }
  const maxRel = maxExp > 0 ? maxAbs / maxExp : maxAbs === 0 ? 0 : Infinity;
  return { name, shape, maxAbs, maxRel, tolerance, ok: maxRel <= tolerance };
}

export async function verifyFile(path: string): Promise<VerifyReport> {
  return verifyContents(await readSafetensors(path), path);
}

export function verifyContents(file: SafetensorsContents, source: string): VerifyReport {
  const model = TRM.fromSafetensors(file, source);
  try {
    return run(model, file, source);
  } finally {
    model.dispose();
  }
}

function run(model: TRM, file: SafetensorsContents, source: string): VerifyReport {
  const cfg = model.cfg;
  const need = (name: string) => {
    const t = file.tensors.get(name);
    if (!t) throw new SafetensorsError(`${source}: fixture has no ${name}`);
    return t;
  };
  const tokensT = need("input.tokens");
  const B = tokensT.shape[0] ?? 0;
  if (tokensT.shape.length !== 2 || tokensT.shape[1] !== cfg.seq_len || B < 1)
    throw new SafetensorsError(
      `${source}: input.tokens has shape [${tokensT.shape}], expected [B, ${cfg.seq_len}]`,
    );
  const tokens = toInt32(tokensT, "input.tokens");
  const puzzleIds = toInt32(need("input.puzzle_identifiers"), "input.puzzle_identifiers");
  if (puzzleIds.length !== B)
    throw new SafetensorsError(`${source}: input.puzzle_identifiers must hold ${B} ids`);
  const labelsT = file.tensors.get("input.labels");
  const labels = labelsT ? toInt32(labelsT, "input.labels") : undefined;
  if (labels && labels.length !== B * cfg.seq_len)
    throw new SafetensorsError(`${source}: input.labels must be [${B}, ${cfg.seq_len}]`);

  const expected = [...file.tensors.keys()].filter((n) => n.startsWith("expected.")).sort();
  const w = model.weights;
  const computed = new Map<string, Float32Array>();

  // Step 1 from a fresh state, no gradient.
  const batch = { tokens, puzzleIds, labels };
  const tok = tf.tensor2d(tokens, [B, cfg.seq_len], "int32");
  const init = model.initState(B);
  const rows = model.puzzleRows(puzzleIds);
  try {
    const s1 = model.step(w, init.zH, init.zL, tok, rows);
    computed.set("expected.logits_step1", Float32Array.from(s1.logits.dataSync()));
    computed.set("expected.q_halt_step1", Float32Array.from(s1.qHalt.dataSync()));
    computed.set("expected.q_continue_step1", Float32Array.from(s1.qContinue.dataSync()));
    computed.set("expected.zH_step1", Float32Array.from(s1.zH.dataSync()));
    if (labels) {
      const l = actLoss(cfg, s1, labels);
      computed.set("expected.loss_step1", Float32Array.from(l.loss.dataSync()));
      tf.dispose([l.loss, l.lmLoss, l.qHaltLoss]);
    }
    tf.dispose([s1.zH, s1.zL, s1.logits, s1.qHalt, s1.qContinue]);

    if (expected.includes("expected.logits_stepN"))
      computed.set("expected.logits_stepN", evaluateBatch(model, w, batch).logits);

    // Gradients of the summed step-1 loss, with the training-time split (T-1 recursions outside the tape).
    if (labels && expected.some((n) => n.startsWith("expected.grad."))) {
      const g = model.gradStep(w, init.zH, init.zL, tok, rows, (out) => ({
        loss: actLoss(cfg, out, labels).loss,
      }));
      for (const spec of weightSpecs(cfg))
        computed.set(`expected.grad.${spec.name}`, toTorchLayout(spec, g.grads.get(spec.name)!));
      if (g.puzzleRowGrads)
        computed.set("expected.grad.puzzle_rows", Float32Array.from(g.puzzleRowGrads.dataSync()));
      tf.dispose([g.zH, g.zL, g.logits, g.qHalt, g.qContinue, g.loss, ...g.grads.values()]);
      if (g.puzzleRowGrads) g.puzzleRowGrads.dispose();
    }
  } finally {
    tf.dispose([tok, init.zH, init.zL]);
    if (rows) rows.dispose();
  }

  const checks: TensorCheck[] = [];
  for (const name of expected) {
    const t = file.tensors.get(name)!;
    const tol = name === "expected.logits_stepN" ? TOLERANCE_STEPN : TOLERANCE_STEP1;
    const got = computed.get(name);
    if (!got) {
      const why =
        name.startsWith("expected.grad.") || name === "expected.loss_step1"
          ? labels
            ? "no such weight in this config"
            : "fixture has no input.labels"
          : "unknown expected tensor";
      checks.push({
        name,
        shape: t.shape,
        maxAbs: Infinity,
        maxRel: Infinity,
        tolerance: tol,
        ok: false,
        error: why,
      });
      continue;
    }
    const check = compare(name, got, toFloat32(t, name), t.shape, tol);
    if (!check.ok && name === "expected.logits_stepN")
      check.sensitivity = stepNSensitivity(model, batch, got);
    checks.push(check);
  }
  if (checks.length === 0)
    throw new SafetensorsError(`${source}: fixture has no expected.* tensors to check`);
  return { file: source, backend: tf.getBackend(), config: cfg, checks, ok: checks.every((c) => c.ok) };
}

/** Relative change of the N_sup-step logits when every weight moves by about one float32 ulp. */
function stepNSensitivity(model: TRM, batch: Batch, base: Float32Array): number {
  const rng = new Rng(0);
  const nudged = new Map<string, tf.Tensor>();
  for (const [name, v] of model.weights) {
    const data = Float32Array.from(v.dataSync() as Float32Array);
    for (let i = 0; i < data.length; i++) data[i] = data[i]! * (1 + rng.int(-1, 2) * 2 ** -23);
    nudged.set(name, tf.tensor(data, v.shape, "float32"));
  }
  try {
    const got = evaluateBatch(model, nudged, batch).logits;
    let maxAbs = 0;
    let maxRef = 0;
    for (let i = 0; i < base.length; i++) {
      maxAbs = Math.max(maxAbs, Math.abs(got[i]! - base[i]!));
      maxRef = Math.max(maxRef, Math.abs(base[i]!));
    }
    return maxRef > 0 ? maxAbs / maxRef : maxAbs;
  } finally {
    tf.dispose([...nudged.values()]);
  }
}
