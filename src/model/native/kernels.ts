// The "native" backend: the tfjs CPU backend with its hot kernels replaced by the addon's.
// It is registered under its own name so plain "cpu" stays available in the same process
// (the tests compare the two). Every kernel not overridden here is the CPU backend's own.
import { MathBackendCPU } from "@tensorflow/tfjs-backend-cpu";
import * as tf from "@tensorflow/tfjs-core";
import { FusedKernel } from "../ops.js";
import type { NativeAddon } from "./index.js";

export const NATIVE_BACKEND = "native";

type Info = tf.TensorInfo;
interface Args {
  inputs: Record<string, Info | undefined>;
  attrs?: Record<string, unknown>;
  backend: MathBackendCPU;
}

function f32(backend: MathBackendCPU, t: Info): Float32Array {
  return backend.data.get(t.dataId).values as Float32Array;
}

function size(shape: number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function cpuKernel(name: string): tf.KernelFunc {
  const k = tf.getKernel(name, "cpu");
  if (!k) throw new Error(`the cpu backend has no kernel ${name}`);
  return k.kernelFunc;
}

/** Broadcast batch shape of two matmul operands, or null when the addon cannot express it (one side is not 1). */
function batchShape(a: number[], b: number[]): number[] | null {
  const sa = size(a);
  const sb = size(b);
  if (sa === 1) return b;
  if (sb === 1) return a;
  const n = Math.max(a.length, b.length);
  const pa = [...new Array(n - a.length).fill(1), ...a];
  const pb = [...new Array(n - b.length).fill(1), ...b];
  return pa.every((d, i) => d === pb[i]) ? pa : null;
}

function makeKernels(addon: NativeAddon): tf.KernelConfig[] {
  const cpuBatchMatMul = cpuKernel(tf.BatchMatMul);
  const cpuFusedMatMul = cpuKernel(tf._FusedMatMul);
  const cpuAdd = cpuKernel(tf.Add);

  /** op(a) @ op(b) with batch broadcasting where one side has a single matrix; null when it cannot. */
  function matmul(backend: MathBackendCPU, a: Info, b: Info, transA: boolean, transB: boolean) {
    if (a.dtype !== "float32" || b.dtype !== "float32") return null;
    const ra = a.shape.length;
    const rb = b.shape.length;
    const M = transA ? a.shape[ra - 1] : a.shape[ra - 2];
    const K = transA ? a.shape[ra - 2] : a.shape[ra - 1];
    const Kb = transB ? b.shape[rb - 1] : b.shape[rb - 2];
    const N = transB ? b.shape[rb - 2] : b.shape[rb - 1];
    if (K !== Kb) {
      throw new Error(
        `Error in matMul: inner shapes (${K}) and (${Kb}) of Tensors with shapes ${a.shape} and ${b.shape} and transposeA=${transA} and transposeB=${transB} must match.`,
      );
    }
    const outer = batchShape(a.shape.slice(0, -2), b.shape.slice(0, -2));
    if (!outer) return null;
    const batchA = size(a.shape.slice(0, -2));
    const batchB = size(b.shape.slice(0, -2));
    const batch = size(outer);
    const out = new Float32Array(batch * M * N);
    const av = f32(backend, a);
    const bv = f32(backend, b);
    const lda = transA ? M : K;
    const ldb = transB ? K : N;
    if (batchB === 1 && !transA && batch > 1) {
      // [batch, M, K] @ [K, N] is one [batch*M, K] @ [K, N] product.
      addon.gemm(false, transB, batch * M, N, K, 1, av, lda, 0, bv, ldb, 0, 0, out, N, 0, 1);
    } else {
      const sA = batchA === 1 ? 0 : M * K;
      const sB = batchB === 1 ? 0 : K * N;
      addon.gemm(transA, transB, M, N, K, 1, av, lda, sA, bv, ldb, sB, 0, out, N, M * N, batch);
    }
    return { out, shape: [...outer, M, N] };
  }

  const batchMatMul = (args: Args) => {
    const { a, b } = args.inputs as { a: Info; b: Info };
    const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
    const r = matmul(args.backend, a, b, transposeA, transposeB);
    if (!r) return cpuBatchMatMul(args as never);
    return args.backend.makeTensorInfo(r.shape, "float32", r.out);
  };

  const fusedMatMul = (args: Args) => {
    const { a, b, bias, preluActivationWeights } = args.inputs;
    const { transposeA, transposeB, activation } = args.attrs as {
      transposeA: boolean;
      transposeB: boolean;
      activation?: string;
    };
    const plain = (!activation || activation === "linear") && !preluActivationWeights;
    const r = plain ? matmul(args.backend, a!, b!, transposeA, transposeB) : null;
    const N = r ? r.shape[r.shape.length - 1] : 0;
    if (!r || (bias && (bias.dtype !== "float32" || size(bias.shape) !== N)))
      return cpuFusedMatMul(args as never);
    if (bias) {
      const bv = f32(args.backend, bias);
      const out = r.out;
      for (let i = 0; i < out.length; i += N) for (let j = 0; j < N; j++) out[i + j] += bv[j];
    }
    return args.backend.makeTensorInfo(r.shape, "float32", r.out);
  };

  const add = (args: Args) => {
    const { a, b } = args.inputs as { a: Info; b: Info };
    if (a.dtype !== "float32" || b.dtype !== "float32" || !tf.util.arraysEqual(a.shape, b.shape)) {
      return cpuAdd(args as never);
    }
    const out = new Float32Array(size(a.shape));
    addon.add(f32(args.backend, a), f32(args.backend, b), out, out.length);
    return args.backend.makeTensorInfo(a.shape, "float32", out);
  };

  /** A kernel over the last axis: rows x n, float32 out of the same shape as `like`. */
  const lastAxis = (x: Info) => {
    const n = x.shape[x.shape.length - 1] ?? 1;
    return { n, rows: n === 0 ? 0 : size(x.shape) / n };
  };

  const rmsNorm = ({ inputs, attrs, backend }: Args) => {
    const x = inputs.x!;
    const { rows, n } = lastAxis(x);
    const out = new Float32Array(rows * n);
    addon.rmsNorm(f32(backend, x), out, rows, n, (attrs as { eps: number }).eps);
    return backend.makeTensorInfo(x.shape, "float32", out);
  };

  const rmsNormGrad = ({ inputs, attrs, backend }: Args) => {
    const x = inputs.x!;
    const { rows, n } = lastAxis(x);
    const out = new Float32Array(rows * n);
    addon.rmsNormGrad(
      f32(backend, inputs.dy!),
      f32(backend, x),
      out,
      rows,
      n,
      (attrs as { eps: number }).eps,
    );
    return backend.makeTensorInfo(x.shape, "float32", out);
  };

  const siluGateMul = ({ inputs, backend }: Args) => {
    const gu = inputs.gateUp!;
    const { rows, n } = lastAxis(gu);
    if (n % 2) throw new Error(`siluGateMul: the last axis (${n}) must be even: gate | up`);
    const out = new Float32Array((rows * n) / 2);
    addon.siluGateMul(f32(backend, gu), out, rows, n / 2);
    return backend.makeTensorInfo([...gu.shape.slice(0, -1), n / 2], "float32", out);
  };

  const siluGateMulGrad = ({ inputs, backend }: Args) => {
    const gu = inputs.gateUp!;
    const { rows, n } = lastAxis(gu);
    const out = new Float32Array(rows * n);
    addon.siluGateMulGrad(f32(backend, inputs.dy!), f32(backend, gu), out, rows, n / 2);
    return backend.makeTensorInfo(gu.shape, "float32", out);
  };

  const attentionDims = (qkv: Info, numHeads: number, cos?: Info, sin?: Info) => {
    if (qkv.shape.length !== 3) throw new Error(`attention: qkv must be [B, S, 3D], got [${qkv.shape}]`);
    const [B, S, D3] = qkv.shape;
    const D = D3 / 3;
    const hd = D / numHeads;
    if (!Number.isInteger(D) || !Number.isInteger(hd)) {
      throw new Error(`attention: last axis ${D3} is not 3 x ${numHeads} heads x head size`);
    }
    for (const t of [cos, sin]) {
      if (t && (t.dtype !== "float32" || t.shape.length !== 2 || t.shape[0] !== S || t.shape[1] !== hd)) {
        throw new Error(`attention: RoPE tables must be [${S}, ${hd}] float32, got [${t.shape}]`);
      }
    }
    return { B, S, D, hd };
  };

  const attention = ({ inputs, attrs, backend }: Args) => {
    const { qkv, cos, sin } = inputs;
    const H = (attrs as { numHeads: number }).numHeads;
    const { B, S, D, hd } = attentionDims(qkv!, H, cos, sin);
    const out = new Float32Array(B * S * D);
    const c = cos ? f32(backend, cos) : null;
    const s = sin ? f32(backend, sin) : null;
    addon.attention(f32(backend, qkv!), out, B, S, H, hd, c, s);
    return backend.makeTensorInfo([B, S, D], "float32", out);
  };

  const attentionGrad = ({ inputs, attrs, backend }: Args) => {
    const { dy, qkv, cos, sin } = inputs;
    const H = (attrs as { numHeads: number }).numHeads;
    const { B, S, hd } = attentionDims(qkv!, H, cos, sin);
    const out = new Float32Array(size(qkv!.shape));
    const c = cos ? f32(backend, cos) : null;
    const s = sin ? f32(backend, sin) : null;
    addon.attentionGrad(f32(backend, dy!), f32(backend, qkv!), out, B, S, H, hd, c, s);
    return backend.makeTensorInfo(qkv!.shape, "float32", out);
  };

  const logStablemax = ({ inputs, backend }: Args) => {
    const x = inputs.x!;
    const { rows, n } = lastAxis(x);
    const out = new Float32Array(rows * n);
    addon.logStablemax(f32(backend, x), out, rows, n);
    return backend.makeTensorInfo(x.shape, "float32", out);
  };

  const logStablemaxGrad = ({ inputs, backend }: Args) => {
    const x = inputs.x!;
    const { rows, n } = lastAxis(x);
    const out = new Float32Array(rows * n);
    addon.logStablemaxGrad(f32(backend, inputs.dy!), f32(backend, x), out, rows, n);
    return backend.makeTensorInfo(x.shape, "float32", out);
  };

  const table: Array<[string, (args: Args) => Info | Info[]]> = [
    [tf.BatchMatMul, batchMatMul],
    [tf._FusedMatMul, fusedMatMul],
    [tf.Add, add],
    [FusedKernel.RmsNorm, rmsNorm],
    [FusedKernel.RmsNormGrad, rmsNormGrad],
    [FusedKernel.SiluGateMul, siluGateMul],
    [FusedKernel.SiluGateMulGrad, siluGateMulGrad],
    [FusedKernel.Attention, attention],
    [FusedKernel.AttentionRope, attention],
    [FusedKernel.AttentionGrad, attentionGrad],
    [FusedKernel.LogStablemax, logStablemax],
    [FusedKernel.LogStablemaxGrad, logStablemaxGrad],
  ];
  return table.map(([kernelName, fn]) => ({
    kernelName,
    backendName: NATIVE_BACKEND,
    kernelFunc: fn as unknown as tf.KernelFunc,
  }));
}

/** The kernel names the native backend runs in the addon (the rest are the CPU backend's). */
export let nativeKernelNames: string[] = [];

/** Registers the "native" backend once per process; later calls are no-ops. */
export function registerNativeBackend(addon: NativeAddon): void {
  if (tf.findBackendFactory(NATIVE_BACKEND)) return;
  const overrides = makeKernels(addon);
  nativeKernelNames = overrides.map((k) => k.kernelName);
  const own = new Set(nativeKernelNames);
  for (const k of tf.getKernelsForBackend("cpu")) {
    if (!own.has(k.kernelName)) tf.registerKernel({ ...k, backendName: NATIVE_BACKEND });
  }
  for (const k of overrides) tf.registerKernel(k);
  tf.registerBackend(NATIVE_BACKEND, () => new MathBackendCPU(), 0);
}
