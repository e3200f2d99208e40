// The opt-in bf16 products (train.matmul: bf16) against float64 on the same bf16-rounded operands,
// and against the exact product within the stated tolerance: every output within
// (2^-7 + K 2^-22) sum_k |a_ik b_kj| of it (alpha and beta C added). Then the switch's scope (one JS thread) and a short
// training run beside float32. Skips, saying why, where the CPU lacks AVX-512 BF16.
import { spawnSync } from "node:child_process";
import { Worker } from "node:worker_threads";
import * as tf from "@tensorflow/tfjs-core";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { Batch } from "../../src/model/act.js";
import { initBackend, setMatmulPrecision } from "../../src/model/backend.js";
import { parseTRMConfig } from "../../src/model/config.js";
import { addonPath, loadNative } from "../../src/model/native/index.js";
import { Rng } from "../../src/model/rng.js";
import { Trainer } from "../../src/model/trainer.js";

vi.setConfig({ testTimeout: 300_000 });

const native = loadNative();
const why = !native.ok ? native.reason : native.addon.info().bf16 ? null : "this CPU lacks AVX-512 BF16";

/** Rounded to nearest even bfloat16, as the CPU's conversion does (finite values only). */
function bf16(xs: Float32Array): Float32Array {
  const out = xs.slice();
  const u = new Uint32Array(out.buffer);
  for (let i = 0; i < u.length; i++) u[i] = ((u[i]! + 0x7fff + ((u[i]! >>> 16) & 1)) & 0xffff0000) >>> 0;
  return out;
}

function rand(n: number, rng: Rng, scale = 1): Float32Array {
  return Float32Array.from({ length: n }, () => (rng.uniform() * 2 - 1) * scale);
}

interface Case {
  M: number;
  N: number;
  K: number;
  transA: boolean;
  transB: boolean;
  alpha?: number;
  beta?: number;
  ldcPad?: number;
  batch?: number;
}

/**
 * Runs the addon's gemm with bf16 on and checks each output against float64 sums of the rounded
 * operands (only float32 summation between them) and of the exact ones (the stated tolerance).
 */
function check(c: Case, seed: number) {
  const a = native.ok ? native.addon : null!;
  const { M, N, K, transA, transB } = c;
  const alpha = c.alpha ?? 1;
  const beta = c.beta ?? 0;
  const batch = c.batch ?? 1;
  const ldc = N + (c.ldcPad ?? 0);
  const rng = new Rng(seed);
  const A = rand(batch * M * K, rng);
  const B = rand(batch * K * N, rng);
  const C0 = rand(batch * M * ldc, rng);
  // beta 0 must not read C: NaN there would show through
  if (beta === 0) C0.fill(Number.NaN);
  const C = C0.slice();
  const lda = transA ? M : K;
  const ldb = transB ? K : N;
  a.gemm(transA, transB, M, N, K, alpha, A, lda, M * K, B, ldb, K * N, beta, C, ldc, M * ldc, batch);
  const Ar = bf16(A);
  const Br = bf16(B);
  const at = (X: Float32Array, base: number, ld: number, t: boolean, r: number, k: number) =>
    X[base + (t ? k * ld + r : r * ld + k)]!;
  let worstRounded = 0;
  let worstExact = 0;
  for (let b = 0; b < batch; b++)
    for (let i = 0; i < M; i++)
      for (let j = 0; j < N; j++) {
        let rounded = 0;
        let exact = 0;
        let mag = 0;
        for (let k = 0; k < K; k++) {
          const x = at(A, b * M * K, lda, transA, i, k);
          const y = at(B, b * K * N, ldb, !transB, j, k);
          rounded += at(Ar, b * M * K, lda, transA, i, k) * at(Br, b * K * N, ldb, !transB, j, k);
          exact += x * y;
          mag += Math.abs(x * y);
        }
        const prior = beta === 0 ? 0 : beta * C0[b * M * ldc + i * ldc + j]!;
        const got = C[b * M * ldc + i * ldc + j]!;
        const scale = Math.abs(alpha) * mag + Math.abs(prior);
        worstRounded = Math.max(worstRounded, Math.abs(got - (alpha * rounded + prior)) / scale);
        worstExact = Math.max(worstExact, Math.abs(got - (alpha * exact + prior)) / scale);
      }
  // float32 sums of K products: at most about K 2^-24 of sum |ab|; the bound is 2x that
  expect(worstRounded, `${JSON.stringify(c)} against the rounded operands`).toBeLessThan(K * 2 ** -23);
  expect(worstExact, `${JSON.stringify(c)} against the exact product`).toBeLessThan(2 ** -7 + K * 2 ** -22);
  // The bf16 path ran: with float32 operands the rounded sums would be the ones far off.
  expect(worstRounded * 64).toBeLessThan(worstExact);
  // Padding between rows (ldc > N) is left alone.
  for (let b = 0; b < batch; b++)
    for (let i = 0; i < M; i++)
      for (let j = N; j < ldc; j++) {
        const v = C[b * M * ldc + i * ldc + j]!;
        const w = C0[b * M * ldc + i * ldc + j]!;
        expect(Number.isNaN(w) ? Number.isNaN(v) : v === w).toBe(true);
      }
}

describe.skipIf(why !== null)(`bf16 matrix products${why ? ` (skipped: ${why})` : ""}`, () => {
  afterEach(() => {
    if (native.ok) native.addon.setMatmulBf16(false);
  });

  it("match float64 on the rounded operands, and the exact product within the stated tolerance", () => {
    expect(native.ok && native.addon.setMatmulBf16(true)).toBe(true);
    expect(native.ok && native.addon.info().matmulBf16).toBe(true);
    // Every product is at least 2^20 multiply-adds (smaller ones stay float32): edges of the
    // 12 x 32 tile in M and N, odd K, several K blocks of 512, both transposes, alpha and beta,
    // padded rows of C and batches.
    const cases: Case[] = [
      { M: 37, N: 70, K: 513, transA: false, transB: false },
      { M: 13, N: 33, K: 2500, transA: false, transB: true, alpha: 0.5 },
      { M: 101, N: 48, K: 301, transA: true, transB: false, beta: 0.75, ldcPad: 5 },
      { M: 24, N: 64, K: 1031, transA: true, transB: true, alpha: -2, beta: 1 },
      { M: 72, N: 16, K: 1024, transA: false, transB: false, batch: 3, beta: 0.5 },
      { M: 1, N: 1024, K: 1025, transA: false, transB: true, ldcPad: 3 },
      // rows split between the kernel threads
      { M: 450, N: 40, K: 64, transA: false, transB: false },
      { M: 400, N: 48, K: 70, transA: true, transB: false },
    ];
    for (const [i, c] of cases.entries()) check(c, 11 + i);
  });

  it("reach the tolerance's worst case: every operand 1 + 2^-8, a tie that rounds to 1", () => {
    const a = native.ok ? native.addon : null!;
    a.setMatmulBf16(true);
    const n = 128;
    const x = new Float32Array(n * n).fill(1 + 2 ** -8);
    const c = new Float32Array(n * n);
    a.gemm(false, false, n, n, n, 1, x, n, 0, x, n, 0, 0, c, n, 0, 1);
    const exact = n * (1 + 2 ** -8) ** 2;
    expect(c.every((v) => v === n)).toBe(true);
    // off by 2^-7 of sum |ab| to first order: within the bound, and 99% of it
    const bound = (2 ** -7 + n * 2 ** -22) * exact;
    expect(exact - n).toBeLessThan(bound);
    expect(exact - n).toBeGreaterThan(0.98 * bound);
  });

  it("carry NaN and infinity through, and leave small products to float32", () => {
    const a = native.ok ? native.addon : null!;
    a.setMatmulBf16(true);
    const M = 64;
    const N = 64;
    const K = 256;
    const A = new Float32Array(M * K).fill(1);
    const B = new Float32Array(K * N).fill(1);
    A[3 * K + 5] = Number.NaN;
    A[7 * K + 9] = Number.POSITIVE_INFINITY;
    const C = new Float32Array(M * N);
    a.gemm(false, false, M, N, K, 1, A, K, 0, B, N, 0, 0, C, N, 0, 1);
    expect(Number.isNaN(C[3 * N + 10]!)).toBe(true);
    expect(C[7 * N + 10]).toBe(Number.POSITIVE_INFINITY);
    expect(C[0]).toBe(K);
    // 1 + 2^-12 is not a bf16: below 2^20 multiply-adds the product keeps it
    const x = new Float32Array(16 * 16).fill(1 + 2 ** -12);
    const small = new Float32Array(16 * 16);
    a.gemm(false, false, 16, 16, 16, 1, x, 16, 0, x, 16, 0, 0, small, 16, 0, 1);
    expect(small[0]).toBeCloseTo(16 * (1 + 2 ** -12) ** 2, 4);
    expect(small[0]).not.toBe(16);
  });

  it("is set per JS thread: a worker's products stay float32 while the main thread's are bf16", async () => {
    expect(native.ok && native.addon.setMatmulBf16(true)).toBe(true);
    // In a worker: a 128-cube of 1 + 2^-12 (not a bf16) gives 128 (1 + 2^-12)^2 in float32, 128 in bf16.
    const src = `
      const { parentPort } = require("node:worker_threads");
      const a = require(${JSON.stringify(addonPath)});
      const n = 128, x = new Float32Array(n * n).fill(1 + 2 ** -12), c = new Float32Array(n * n);
      a.gemm(false, false, n, n, n, 1, x, n, 0, x, n, 0, 0, c, n, 0, 1);
      parentPort.postMessage({ value: c[0], bf16: a.info().matmulBf16 });`;
    const w = new Worker(src, { eval: true });
    const got = await new Promise<{ value: number; bf16: boolean }>((res, rej) => {
      w.once("message", res);
      w.once("error", rej);
    });
    await w.terminate();
    expect(got.bf16).toBe(false);
    expect(got.value).toBeCloseTo(128 * (1 + 2 ** -12) ** 2, 3);
    const n = 128;
    const x = new Float32Array(n * n).fill(1 + 2 ** -12);
    const c = new Float32Array(n * n);
    native.ok && native.addon.gemm(false, false, n, n, n, 1, x, n, 0, x, n, 0, 0, c, n, 0, 1);
    expect(c[0]).toBe(128);
  });

  it("trains beside float32: the same losses at first, and as far after 40 steps", async () => {
    await initBackend("native");
    // Large enough (576 rows x 64 wide) that the products cross the bf16 threshold.
    const cfg = parseTRMConfig({
      vocab_size: 17,
      seq_len: 16,
      hidden_size: 64,
      num_heads: 4,
      num_layers: 2,
      H_cycles: 1,
      L_cycles: 2,
      halt_max_steps: 2,
      puzzle_emb_len: 2,
      puzzle_emb_ndim: 64,
      num_puzzle_identifiers: 2,
    });
    const batches = (() => {
      const rng = new Rng(3);
      return Array.from({ length: 40 }, (): Batch => {
        const tokens = new Int32Array(32 * 16).map(() => rng.int(1, 17));
        // the label is the token mirrored, which the model starts to learn within a few dozen steps
        const labels = tokens.map((t) => 17 - t);
        return { tokens, labels, puzzleIds: new Int32Array(32) };
      });
    })();
    const run = (precision: "float32" | "bf16") => {
      expect(setMatmulPrecision(precision)).toBe(precision);
      const t = Trainer.create(cfg, { lr: 3e-3, warmup_steps: 2, weight_decay: 0.1 }, 5);
      const losses = batches.map((b) => t.trainStep(b).loss);
      t.model.dispose();
      t.adam.dispose();
      t.ema?.dispose();
      if (t.carry) tf.dispose([t.carry.zH, t.carry.zL]);
      setMatmulPrecision("float32");
      return { losses };
    };
    const f32 = run("float32");
    const b16 = run("bf16");
    // Step by step until the two runs' rounding differences compound (about step 12 here) ...
    for (const [i, l] of f32.losses.slice(0, 10).entries())
      expect(Math.abs(b16.losses[i]! - l) / l, `step ${i}`).toBeLessThan(0.02);
    // ... then over the last 10 steps (here 11% apart, each about 0.6 of the first loss): both
    // learnt, to within 25% of each other. Loose, since by then the runs have parted ways.
    const tail = (xs: number[]) => xs.slice(-10).reduce((a, b) => a + b, 0) / 10;
    expect(tail(b16.losses)).toBeLessThan(0.8 * b16.losses[0]!);
    expect(tail(f32.losses)).toBeLessThan(0.8 * f32.losses[0]!);
    expect(Math.abs(tail(b16.losses) - tail(f32.losses)) / tail(f32.losses)).toBeLessThan(0.25);
    // and bf16 did run: the runs are not the same
    expect(b16.losses.some((l, i) => l !== f32.losses[i])).toBe(true);
  });
});

describe.skipIf(!native.ok)("bf16 where it cannot run", () => {
  it("stays float32 with the kernels capped below AVX-512 (TRM_FORGE_NATIVE_ISA=avx2)", () => {
    const r = spawnSync(
      process.execPath,
      [
        "-e",
        `const a = require(${JSON.stringify(addonPath)}); console.log(JSON.stringify([a.setMatmulBf16(true), a.info().bf16, a.info().matmulBf16]))`,
      ],
      { env: { ...process.env, TRM_FORGE_NATIVE_ISA: "avx2" }, encoding: "utf8" },
    );
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual([false, false, false]);
  });

  it("is float32 on another backend, whatever is asked", async () => {
    await initBackend("cpu");
    expect(setMatmulPrecision("bf16")).toBe("float32");
  });
});
