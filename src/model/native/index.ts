// Loads the project's N-API addon (built at install by scripts/build-native.mjs) and says why
// when it cannot: the build status file records the install-time reason.
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

/** The addon's functions; see addon.cc for the argument order and the checks each makes. */
export interface NativeAddon {
  gemm(
    transA: boolean,
    transB: boolean,
    M: number,
    N: number,
    K: number,
    alpha: number,
    A: Float32Array,
    lda: number,
    strideA: number,
    B: Float32Array,
    ldb: number,
    strideB: number,
    beta: number,
    C: Float32Array,
    ldc: number,
    strideC: number,
    batch: number,
  ): void;
  /** y = rmsnorm(a (+ b)) over rows of n; r receives each row's scale 1/sqrt(mean(x^2) + eps). */
  rmsNorm(
    a: Float32Array,
    b: Float32Array | null,
    y: Float32Array,
    r: Float32Array,
    rows: number,
    n: number,
    eps: number,
  ): void;
  /** dx from the output y and scales r alone. */
  rmsNormGrad(
    dy: Float32Array,
    y: Float32Array,
    r: Float32Array,
    dx: Float32Array,
    rows: number,
    n: number,
  ): void;
  siluGateMul(gu: Float32Array, y: Float32Array, rows: number, w: number): void;
  siluGateMulGrad(dy: Float32Array, gu: Float32Array, dgu: Float32Array, rows: number, w: number): void;
  attention(
    qkv: Float32Array,
    out: Float32Array,
    B: number,
    S: number,
    H: number,
    hd: number,
    cos: Float32Array | null,
    sin: Float32Array | null,
  ): void;
  attentionGrad(
    dout: Float32Array,
    qkv: Float32Array,
    dqkv: Float32Array,
    B: number,
    S: number,
    H: number,
    hd: number,
    cos: Float32Array | null,
    sin: Float32Array | null,
  ): void;
  logStablemax(x: Float32Array, y: Float32Array, rows: number, n: number): void;
  logStablemaxGrad(dy: Float32Array, x: Float32Array, dx: Float32Array, rows: number, n: number): void;
  /** dst[dstOffset + sum i*dstStrides] = src[srcOffset + sum i*srcStrides] over shape; 1- or 4-byte elements. */
  stridedCopy(
    src: ArrayBufferView,
    srcOffset: number,
    dst: ArrayBufferView,
    dstOffset: number,
    shape: number[],
    srcStrides: number[],
    dstStrides: number[],
  ): void;
  /** y = op(x) elementwise over n: op 0 sqrt, 1 square. */
  unary(op: number, x: Float32Array, y: Float32Array, n: number): void;
  /** out (contiguous, shape) = a op b read through strides (0 = broadcast); op 0 add, 1 sub, 2 mul, 3 div. */
  binary(
    op: number,
    a: Float32Array,
    aStrides: number[],
    b: Float32Array,
    bStrides: number[],
    out: Float32Array,
    shape: number[],
  ): void;
  /**
   * bf16 products (both operands rounded, float32 sums) for this JS thread's gemm calls; returns
   * whether they are on, which needs a CPU with AVX-512 BF16. Attention stays float32.
   */
  setMatmulBf16(on: boolean): boolean;
  /** 0 leaves a setting unchanged. */
  setThreads(kernelThreads: number, blasThreads: number, attentionThreads: number): void;
  info(): NativeInfo;
}

export interface NativeInfo {
  /** openblas_get_config(), e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH ... Haswell MAX_THREADS=64". */
  blasConfig: string;
  blasCore: string;
  blasThreads: number;
  blasProcs: number;
  /** 0 sequential, 1 pthreads, 2 OpenMP. */
  blasParallel: number;
  /** Threads of the elementwise kernels and of attention's (batch, head) loop; both follow the BLAS's. */
  kernelThreads: number;
  attentionThreads: number;
  /** The kernels' instruction set: the CPU's best, or lower under TRM_FORGE_NATIVE_ISA=base|avx2. */
  isa: "avx512" | "avx2" | "base";
  /** The CPU has AVX-512 BF16, so setMatmulBf16(true) takes effect. */
  bf16: boolean;
  /** This JS thread's products run in bf16. */
  matmulBf16: boolean;
}

/** What scripts/build-native.mjs recorded at install. */
export interface BuildStatus {
  built: boolean;
  reason: string;
  at?: string;
}

export type NativeLoad = { ok: true; addon: NativeAddon; path: string } | { ok: false; reason: string };

const root = fileURLToPath(new URL("../../../", import.meta.url));
export const addonPath = `${root}build/Release/trm_native.node`;
export const buildStatusPath = `${root}build/native-status.json`;

export function readBuildStatus(): BuildStatus | null {
  try {
    const raw = JSON.parse(readFileSync(buildStatusPath, "utf8")) as Partial<BuildStatus>;
    if (typeof raw.built !== "boolean") return null;
    return { built: raw.built, reason: String(raw.reason ?? ""), at: raw.at };
  } catch {
    return null;
  }
}

let cached: NativeLoad | undefined;

/**
 * Loads the addon once per process; the failure reason is meant for a person (doctor, tests).
 * TRM_FORGE_SKIP_NATIVE=1 turns the native kernels off at run time as it does at install.
 */
export function loadNative(): NativeLoad {
  if (process.env.TRM_FORGE_SKIP_NATIVE === "1") {
    return { ok: false, reason: "native kernels disabled by TRM_FORGE_SKIP_NATIVE=1" };
  }
  if (cached) return cached;
  if (!existsSync(addonPath)) {
    const status = readBuildStatus();
    const why = status
      ? status.built
        ? "the build reported success but the addon file is missing"
        : status.reason
      : "it was never built (run npm rebuild or node scripts/build-native.mjs)";
    cached = { ok: false, reason: `native addon not built: ${why}` };
    return cached;
  }
  // OpenBLAS reads this once, when the addon loads it. Its idle threads spin for 2^28 cycles
  // before sleeping, so between two sgemm calls they take the cores from the kernels' own threads;
  // 2^4 lets them sleep (README: demo preset on 2 AVX2 cores, +13% training samples/s, -20% CPU).
  // Set on the main thread (a worker's process.env is its own copy) and removed again, so that
  // child processes (an external trainer) get the environment they were given.
  const ours = !process.env.OPENBLAS_THREAD_TIMEOUT;
  if (ours) process.env.OPENBLAS_THREAD_TIMEOUT = "4";
  try {
    const addon = createRequire(import.meta.url)(addonPath) as NativeAddon;
    cached = { ok: true, addon, path: addonPath };
  } catch (err) {
    cached = { ok: false, reason: `native addon failed to load: ${(err as Error).message.split("\n")[0]}` };
  } finally {
    if (ours) delete process.env.OPENBLAS_THREAD_TIMEOUT;
  }
  return cached;
}
