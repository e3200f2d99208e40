// The "native" backend: the tfjs CPU backend with its hot kernels replaced by the addon's.
// It is registered under its own name so plain "cpu" stays available in the same process
// (the tests compare the two). Every kernel not overridden here is the CPU backend's own.
import type { MathBackendCPU } from "@tensorflow/tfjs-backend-cpu";
import * as tf from "@tensorflow/tfjs-core";
import { FusedKernel } from "../ops.js";
import type { NativeAddon } from "./index.js";
import { PooledCpuBackend } from "./pool.js";

export const NATIVE_BACKEND = "native";

type Info = tf.TensorInfo;
interface Args {
  inputs: Record<string, Info | undefined>;
  attrs?: Record<string, unknown>;
  backend: MathBackendCPU;
}

/**
 * The values of a float32 tensor as a Float32Array. The cpu backend's Cast from bool or int32
 * shares the source's Uint8Array/Int32Array under the new dtype, so those get converted.
 */
function f32(backend: MathBackendCPU, t: Info): Float32Array {
  const v = backend.data.get(t.dataId).values;
  return v instanceof Float32Array ? v : Float32Array.from(v as ArrayLike<number>);
}

function size(shape: number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Row-major strides of a contiguous array of this shape. */
function stridesOf(shape: number[]): number[] {
  const st = new Array<number>(shape.length);
  let s = 1;
  for (let k = shape.length - 1; k >= 0; k--) {
    st[k] = s;
    s *= shape[k]!;
  }
  return st;
}

/** Strides that read an operand of `shape` broadcast to `out` (0 along broadcast axes). */
function broadcastStrides(shape: number[], out: number[]): number[] {
  const st = stridesOf(shape);
  const lead = out.length - shape.length;
  return out.map((d, k) => (k < lead || (shape[k - lead] === 1 && d !== 1) ? 0 : st[k - lead]!));
}

type Values = Float32Array | Int32Array | Uint8Array;

/** n float32s for a kernel's output, from the pool when the backend has one: NOT zeroed. */
function floats(backend: MathBackendCPU, n: number): Float32Array {
  return backend instanceof PooledCpuBackend ? backend.takeFloat32(n) : new Float32Array(n);
}

/** An output array of the dtype's element type (float32 from the pool, NOT zeroed), or null for dtypes the addon does not copy. */
function alloc(backend: MathBackendCPU, dtype: string, n: number): Values | null {
  if (dtype === "float32") return floats(backend, n);
  if (dtype === "int32") return new Int32Array(n);
  if (dtype === "bool") return new Uint8Array(n);
  return null;
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
  const binaryOps: Array<[string, number]> = [
    [tf.Add, 0],
    [tf.Sub, 1],
    [tf.Multiply, 2],
    [tf.RealDiv, 3],
  ];

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
    const out = floats(backend, batch * M * N);
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

  /** x [..., in] @ w [in, out] -> [..., out]: one gemm over all leading axes. */
  const linear = (args: Args) => {
    const { x, w } = args.inputs as { x: Info; w: Info };
    const inDim = x.shape[x.shape.length - 1]!;
    const [wIn, outDim] = w.shape as [number, number];
    if (w.shape.length !== 2 || inDim !== wIn) {
      throw new Error(`linear: x [${x.shape}] does not match w [${w.shape}]`);
    }
    const rows = size(x.shape) / Math.max(1, inDim);
    const out = floats(args.backend, rows * outDim);
    addon.gemm(
      false,
      false,
      rows,
      outDim,
      inDim,
      1,
      f32(args.backend, x),
      inDim,
      0,
      f32(args.backend, w),
      outDim,
      0,
      0,
      out,
      outDim,
      0,
      1,
    );
    return args.backend.makeTensorInfo([...x.shape.slice(0, -1), outDim], "float32", out);
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

  /** Float32 add/sub/mul/div with any broadcasting; other dtypes go to the cpu kernel. */
  const binary = (name: string, op: number) => {
    const cpu = cpuKernel(name);
    return (args: Args) => {
      const { a, b } = args.inputs as { a: Info; b: Info };
      if (a.dtype !== "float32" || b.dtype !== "float32") return cpu(args as never);
      const outShape = tf.backend_util.assertAndGetBroadcastShape(a.shape, b.shape);
      const shape = outShape.length ? outShape : [1];
      const out = floats(args.backend, size(outShape));
      addon.binary(
        op,
        f32(args.backend, a),
        broadcastStrides(a.shape, shape),
        f32(args.backend, b),
        broadcastStrides(b.shape, shape),
        out,
        shape,
      );
      return args.backend.makeTensorInfo(outShape, "float32", out);
    };
  };

  /** Values in the element type of the tensor's dtype (see f32 for why they may differ). */
  /** Float32 sqrt and square (the optimiser's); other dtypes go to the cpu kernel. */
  const unary = (name: string, op: number) => {
    const cpu = cpuKernel(name);
    return (args: Args) => {
      const x = args.inputs.x!;
      if (x.dtype !== "float32") return cpu(args as never);
      const out = floats(args.backend, size(x.shape));
      addon.unary(op, f32(args.backend, x), out, out.length);
      return args.backend.makeTensorInfo(x.shape, "float32", out);
    };
  };

  const values = (backend: MathBackendCPU, t: Info): Values => {
    const v = backend.data.get(t.dataId).values as Values;
    if (t.dtype === "float32") return f32(backend, t);
    if (t.dtype === "int32" && !(v instanceof Int32Array)) return Int32Array.from(v);
    return v;
  };

  const cpuSlice = cpuKernel(tf.Slice);
  const slice = (args: Args) => {
    const x = args.inputs.x!;
    const { begin, size: sz } = args.attrs as { begin: number[]; size: number[] };
    const [b, s] = tf.slice_util.parseSliceParams(x as tf.TensorInfo as tf.Tensor, begin, sz);
    // A contiguous slice is a zero-copy view in the cpu kernel already.
    if (!["float32", "int32", "bool"].includes(x.dtype) || tf.slice_util.isSliceContinous(x.shape, b, s)) {
      return cpuSlice(args as never);
    }
    const out = alloc(args.backend, x.dtype, size(s))!;
    tf.slice_util.assertParamsValid(x as tf.TensorInfo as tf.Tensor, b, s);
    const xs = stridesOf(x.shape);
    const offset = b.reduce((o, v, k) => o + v * xs[k]!, 0);
    addon.stridedCopy(values(args.backend, x), offset, out, 0, s, xs, stridesOf(s));
    return args.backend.makeTensorInfo(s, x.dtype, out);
  };

  const cpuTranspose = cpuKernel(tf.Transpose);
  const transpose = (args: Args) => {
    const x = args.inputs.x!;
    const { perm } = args.attrs as { perm: number[] };
    const shape = perm.map((p) => x.shape[p]!);
    const out = alloc(args.backend, x.dtype, size(shape));
    if (!out) return cpuTranspose(args as never);
    const xs = stridesOf(x.shape);
    addon.stridedCopy(
      values(args.backend, x),
      0,
      out,
      0,
      shape,
      perm.map((p) => xs[p]!),
      stridesOf(shape),
    );
    return args.backend.makeTensorInfo(shape, x.dtype, out);
  };

  const cpuTile = cpuKernel(tf.Tile);
  const tile = (args: Args) => {
    const x = args.inputs.x!;
    const { reps } = args.attrs as { reps: number[] };
    const shape = x.shape.map((d, i) => d * reps[i]!);
    const out = alloc(args.backend, x.dtype, size(shape));
    if (!out || reps.length !== x.shape.length) return cpuTile(args as never);
    // Axis i of the output is (copy r, position d) = r * d_i + d: a [reps_i, d_i] pair of axes.
    const xs = stridesOf(x.shape);
    const os = stridesOf(shape);
    const box = x.shape.flatMap((d, i) => [reps[i]!, d]);
    const src = x.shape.flatMap((_, i) => [0, xs[i]!]);
    const dst = x.shape.flatMap((d, i) => [d * os[i]!, os[i]!]);
    addon.stridedCopy(values(args.backend, x), 0, out, 0, box, src, dst);
    return args.backend.makeTensorInfo(shape, x.dtype, out);
  };

  const cpuPad = cpuKernel(tf.PadV2);
  const pad = (args: Args) => {
    const x = args.inputs.x!;
    const { paddings, constantValue } = args.attrs as {
      paddings: Array<[number, number]>;
      constantValue: number;
    };
    const shape = x.shape.map((d, i) => paddings[i]![0] + d + paddings[i]![1]);
    const out = alloc(args.backend, x.dtype, size(shape));
    if (!out) return cpuPad(args as never);
    out.fill(constantValue);
    const os = stridesOf(shape);
    const offset = paddings.reduce((o, p, k) => o + p[0] * os[k]!, 0);
    addon.stridedCopy(values(args.backend, x), 0, out, offset, x.shape, stridesOf(x.shape), os);
    return args.backend.makeTensorInfo(shape, x.dtype, out);
  };

  const cpuGather = cpuKernel(tf.GatherV2);
  const gather = (args: Args) => {
    const { x, indices } = args.inputs as { x: Info; indices: Info };
    const { axis, batchDims } = args.attrs as { axis: number; batchDims: number };
    const ax = tf.util.parseAxisParam(axis, x.shape)[0]!;
    const m = size(indices.shape);
    const shape = [...x.shape.slice(0, ax), ...indices.shape, ...x.shape.slice(ax + 1)];
    if (!["float32", "int32", "bool"].includes(x.dtype) || batchDims || indices.dtype !== "int32") {
      return cpuGather(args as never);
    }
    const out = alloc(args.backend, x.dtype, size(shape))!;
    const outer = size(x.shape.slice(0, ax));
    const n = x.shape[ax]!;
    const inner = size(x.shape.slice(ax + 1));
    const idx = values(args.backend, indices) as Int32Array;
    const src = values(args.backend, x);
    for (let j = 0; j < m; j++) {
      const i = idx[j]!;
      if (!(i >= 0 && i < n)) throw new Error(`GatherV2: index ${i} is not in [0, ${n - 1}]`);
      addon.stridedCopy(src, i * inner, out, j * inner, [outer, inner], [n * inner, 1], [m * inner, 1]);
    }
    return args.backend.makeTensorInfo(shape, x.dtype, out);
  };

  /** A kernel over the last axis: rows x n, float32 out of the same shape as `like`. */
  const lastAxis = (x: Info) => {
    const n = x.shape[x.shape.length - 1] ?? 1;
    return { n, rows: n === 0 ? 0 : size(x.shape) / n };
  };

  /** [y, r]: the normalised rows and each row's scale (kept for backward instead of the input). */
  const rmsNorm = ({ inputs, attrs, backend }: Args) => {
    const a = inputs.x ?? inputs.a!;
    const b = inputs.b;
    if (b && !tf.util.arraysEqual(a.shape, b.shape)) {
      throw new Error(`addRmsNorm: shapes [${a.shape}] and [${b.shape}] differ`);
    }
    const { rows, n } = lastAxis(a);
    const y = floats(backend, rows * n);
    const r = floats(backend, rows);
    const eps = (attrs as { eps: number }).eps;
    addon.rmsNorm(f32(backend, a), b ? f32(backend, b) : null, y, r, rows, n, eps);
    return [backend.makeTensorInfo(a.shape, "float32", y), backend.makeTensorInfo([rows], "float32", r)];
  };

  const rmsNormGrad = ({ inputs, backend }: Args) => {
    const y = inputs.y!;
    const { rows, n } = lastAxis(y);
    const out = floats(backend, rows * n);
    addon.rmsNormGrad(f32(backend, inputs.dy!), f32(backend, y), f32(backend, inputs.r!), out, rows, n);
    return backend.makeTensorInfo(y.shape, "float32", out);
  };

  const siluGateMul = ({ inputs, backend }: Args) => {
    const gu = inputs.gateUp!;
    const { rows, n } = lastAxis(gu);
    if (n % 2) throw new Error(`siluGateMul: the last axis (${n}) must be even: gate | up`);
    const out = floats(backend, (rows * n) / 2);
    addon.siluGateMul(f32(backend, gu), out, rows, n / 2);
    return backend.makeTensorInfo([...gu.shape.slice(0, -1), n / 2], "float32", out);
  };

  const siluGateMulGrad = ({ inputs, backend }: Args) => {
    const gu = inputs.gateUp!;
    const { rows, n } = lastAxis(gu);
    const out = floats(backend, rows * n);
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
    const out = floats(backend, B * S * D);
    const c = cos ? f32(backend, cos) : null;
    const s = sin ? f32(backend, sin) : null;
    addon.attention(f32(backend, qkv!), out, B, S, H, hd, c, s);
    return backend.makeTensorInfo([B, S, D], "float32", out);
  };

  const attentionGrad = ({ inputs, attrs, backend }: Args) => {
    const { dy, qkv, cos, sin } = inputs;
    const H = (attrs as { numHeads: number }).numHeads;
    const { B, S, hd } = attentionDims(qkv!, H, cos, sin);
    const out = floats(backend, size(qkv!.shape));
    const c = cos ? f32(backend, cos) : null;
    const s = sin ? f32(backend, sin) : null;
    addon.attentionGrad(f32(backend, dy!), f32(backend, qkv!), out, B, S, H, hd, c, s);
    return backend.makeTensorInfo(qkv!.shape, "float32", out);
  };

  const logStablemax = ({ inputs, backend }: Args) => {
    const x = inputs.x!;
    const { rows, n } = lastAxis(x);
    const out = floats(backend, rows * n);
    addon.logStablemax(f32(backend, x), out, rows, n);
    return backend.makeTensorInfo(x.shape, "float32", out);
  };

  const logStablemaxGrad = ({ inputs, backend }: Args) => {
    const x = inputs.x!;
    const { rows, n } = lastAxis(x);
    const out = floats(backend, rows * n);
    addon.logStablemaxGrad(f32(backend, inputs.dy!), f32(backend, x), out, rows, n);
    return backend.makeTensorInfo(x.shape, "float32", out);
  };

  const table: Array<[string, (args: Args) => Info | Info[]]> = [
    [tf.BatchMatMul, batchMatMul],
    [tf._FusedMatMul, fusedMatMul],
    ...binaryOps.map(([name, op]): [string, (args: Args) => Info | Info[]] => [name, binary(name, op)]),
    [tf.Sqrt, unary(tf.Sqrt, 0)],
    [tf.Square, unary(tf.Square, 1)],
    [tf.Slice, slice],
    [tf.Transpose, transpose],
    [tf.Tile, tile],
    [tf.PadV2, pad],
    [tf.GatherV2, gather],
    [FusedKernel.RmsNorm, rmsNorm],
    [FusedKernel.RmsNormGrad, rmsNormGrad],
    [FusedKernel.AddRmsNorm, rmsNorm],
    [FusedKernel.SiluGateMul, siluGateMul],
    [FusedKernel.SiluGateMulGrad, siluGateMulGrad],
    [FusedKernel.Attention, attention],
    [FusedKernel.AttentionRope, attention],
    [FusedKernel.AttentionGrad, attentionGrad],
    [FusedKernel.LogStablemax, logStablemax],
    [FusedKernel.LogStablemaxGrad, logStablemaxGrad],
    [FusedKernel.Linear, linear],
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
  tf.registerBackend(NATIVE_BACKEND, () => new PooledCpuBackend(), 0);
}
