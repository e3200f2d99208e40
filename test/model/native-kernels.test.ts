// Every native kernel against the composite implementation on the plain cpu backend: forward
// values and gradients, on random shapes including odd sizes. Skips, saying why, without the addon.
import { readFile } from "node:fs/promises";
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import { beforeAll, describe, expect, it } from "vitest";
import { loadNative } from "../../src/model/native/index.js";
import { NATIVE_BACKEND, registerNativeBackend } from "../../src/model/native/kernels.js";
import * as ops from "../../src/model/ops.js";

const native = loadNative();

/** A deterministic pseudo-random Float32Array in [lo, hi). */
function rand(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = lo + ((s >>> 0) / 4294967296) * (hi - lo);
  }
  return out;
}

function size(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** max|got - want| / max|want| over the tensor. */
function relErr(got: Float32Array, want: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < want.length; i++) {
    num = Math.max(num, Math.abs(got[i] - want[i]));
    den = Math.max(den, Math.abs(want[i]));
  }
  return den === 0 ? num : num / den;
}

interface Outcome {
  value: Float32Array;
  grads: Float32Array[];
  shape: number[];
}

/**
 * Runs f on `backend` with inputs built from `data`; returns f's value and the gradients of
 * sum(f(...) * w) for a fixed random w (so every output element carries weight) with respect to
 * the first `differentiate` inputs (the rest are constants, like RoPE tables).
 */
async function runOn(
  backend: string,
  data: Array<{ values: Float32Array; shape: number[] }>,
  f: (...xs: tf.Tensor[]) => tf.Tensor,
  differentiate: number,
): Promise<Outcome> {
  await tf.setBackend(backend);
  const xs = data.map((d) => tf.tensor(d.values, d.shape, "float32"));
  const y = f(...xs);
  const w = tf.tensor(rand(y.size, 99), y.shape, "float32");
  const consts = xs.slice(differentiate);
  const g = tf.grads((...args: tf.Tensor[]) => tf.sum(tf.mul(f(...args, ...consts), w)));
  const grads = g(xs.slice(0, differentiate));
  const out: Outcome = {
    value: y.dataSync() as Float32Array,
    grads: grads.map((t) => t.dataSync() as Float32Array),
    shape: y.shape,
  };
  tf.dispose([...xs, y, w, ...grads]);
  return out;
}

async function expectSame(
  data: Array<{ values: Float32Array; shape: number[] }>,
  f: (...xs: tf.Tensor[]) => tf.Tensor,
  differentiate = data.length,
  tol = 1e-5,
) {
  const want = await runOn("cpu", data, f, differentiate);
  const got = await runOn(NATIVE_BACKEND, data, f, differentiate);
  expect(got.shape).toEqual(want.shape);
  expect(relErr(got.value, want.value)).toBeLessThan(tol);
  expect(got.grads.length).toBe(want.grads.length);
  want.grads.forEach((gw, i) => {
    expect(relErr(got.grads[i], gw), `gradient of input ${i}`).toBeLessThan(tol);
  });
}

function input(shape: number[], seed: number, lo = -1, hi = 1) {
  return { values: rand(size(shape), seed, lo, hi), shape };
}

if (!native.ok) {
  describe("native kernels", () => {
    it(`needs the native addon (CI builds it): ${native.reason}`, (ctx) => {
      if (process.env.CI === "true") throw new Error(`the native addon must build in CI: ${native.reason}`);
      ctx.skip();
    });
  });
} else {
  describe("native kernels match the composite cpu implementation", () => {
    beforeAll(() => registerNativeBackend(native.addon));

    it("run on the CPU's best instruction set, or the one TRM_FORGE_NATIVE_ISA caps it at", async () => {
      const flags = (await readFile("/proc/cpuinfo", "utf8").catch(() => "")).match(/^flags\s*:(.*)$/m)?.[1];
      if (!flags) return; // not Linux: nothing to compare with
      const has = (f: string) => flags.split(" ").includes(f);
      const best = has("avx512f") ? 2 : has("avx2") && has("fma") ? 1 : 0;
      const cap = { base: 0, avx2: 1 }[process.env.TRM_FORGE_NATIVE_ISA ?? ""] ?? 2;
      expect(native.addon.info().isa).toBe(["base", "avx2", "avx512"][Math.min(best, cap)]);
    });

    const matmulCases: Array<[number[], number[], boolean, boolean]> = [
      [[5, 7], [7, 3], false, false],
      [[7, 5], [7, 3], true, false],
      [[5, 7], [3, 7], false, true],
      [[7, 5], [3, 7], true, true],
      [[3, 5, 7], [7, 9], false, false], // batch x shared weight: one collapsed gemm
      [[3, 7, 5], [7, 9], true, false],
      [[5, 7], [3, 7, 9], false, false], // broadcast on the left
      [[2, 3, 5, 7], [2, 3, 4, 7], false, true],
      [[2, 3, 7, 5], [2, 3, 7, 4], true, false],
      [[1, 1], [1, 1], false, false],
      [[33, 129], [129, 65], false, false],
    ];
    for (const [sa, sb, ta, tb] of matmulCases) {
      it(`matMul [${sa}] x [${sb}] transposeA=${ta} transposeB=${tb}`, async () => {
        await expectSame([input(sa, 1), input(sb, 2)], (a, b) => tf.matMul(a, b, ta, tb));
      });
    }

    for (const [sx, sw] of [
      [
        [5, 7],
        [7, 3],
      ],
      [
        [3, 5, 7],
        [7, 9],
      ],
      [
        [2, 3, 1, 7],
        [7, 1],
      ],
    ] as Array<[number[], number[]]>) {
      it(`linear [${sx}] x [${sw}] (any rank, no reshapes)`, async () => {
        await expectSame([input(sx, 21), input(sw, 22)], (x, w) => ops.linear(x, w as tf.Tensor2D));
      });
    }

    it("a residual block differentiates right while consumed gradients are freed early", async () => {
      // h feeds both the residual add and the linear: its gradient is accumulated from two
      // places, and x + y hands one gradient to both of its inputs.
      await expectSame(
        [input([2, 5, 8], 23), input([8, 8], 24), input([8, 16], 25), input([8, 8], 26)],
        (h, w, gu, down) => {
          const a = ops.rmsNorm(
            tf.add(
              h,
              ops.linear(
                ops.attention(ops.linear(h, tf.concat([w, w, w], 1) as tf.Tensor2D) as tf.Tensor3D, 2, null),
                w as tf.Tensor2D,
              ),
            ),
            1e-5,
          );
          return ops.rmsNorm(
            tf.add(a, ops.linear(ops.siluGateMul(ops.linear(a, gu as tf.Tensor2D)), down as tf.Tensor2D)),
            1e-5,
          );
        },
      );
    });

    it("a caller's dy survives the backward pass", async () => {
      await tf.setBackend(NATIVE_BACKEND);
      const x = tf.tensor(rand(12, 27), [3, 4]);
      const dy = tf.tensor(rand(12, 28), [3, 4]);
      const [dx] = tf.grads((t: tf.Tensor) => ops.rmsNorm(t, 1e-5))([x], dy);
      expect(dy.isDisposed).toBe(false);
      expect(dy.dataSync().length).toBe(12);
      tf.dispose([x, dy, dx!]);
    });

    it("fused matMul with a bias vector", async () => {
      await expectSame([input([6, 5], 3), input([5, 4], 4), input([4], 5)], (a, b, bias) =>
        tf.fused.matMul({ a: a as tf.Tensor2D, b: b as tf.Tensor2D, bias }),
      );
    });

    const binaryCases: Array<[number[], number[]]> = [
      [
        [3, 5, 7],
        [3, 5, 7],
      ],
      [[3, 5, 7], [7]], // a bias row
      [[3, 5, 7], []], // a scalar
      [
        [3, 1, 1],
        [3, 5, 7],
      ], // a per-sample mask
      [
        [3, 5, 1],
        [1, 5, 7],
      ], // both sides broadcast
      [[1], [1]],
    ];
    for (const [sa, sb] of binaryCases) {
      for (const [name, f] of [
        ["add", tf.add],
        ["sub", tf.sub],
        ["mul", tf.mul],
        ["div", tf.div],
      ] as const) {
        it(`${name} [${sa}] by [${sb}]`, async () => {
          // Divisors stay away from zero.
          await expectSame([input(sa, 6), input(sb, 7, 0.5, 2)], (a, b) => f(a, b));
        });
      }
    }

    it("sqrt and square", async () => {
      await expectSame([input([3, 5, 7], 44, 0.1, 4)], (x) => tf.sqrt(x));
      await expectSame([input([700, 300], 45)], (x) => tf.square(x));
    });

    it("slice: strided boxes copied, contiguous ones left to the cpu kernel", async () => {
      await expectSame([input([4, 9, 6], 14)], (x) => tf.slice(x, [1, 3, 0], [2, -1, -1]));
      await expectSame([input([4, 9, 6], 14)], (x) => tf.slice(x, [0, 2, 1], [-1, 5, 3]));
      await expectSame([input([4, 9, 6], 14)], (x) => tf.slice(x, [2, 0, 0], [1, 9, 6]));
    });

    it("transpose of 2-, 3- and 4-d tensors", async () => {
      await expectSame([input([5, 7], 15)], (x) => tf.transpose(x));
      await expectSame([input([3, 9, 6], 15)], (x) => tf.transpose(x, [0, 2, 1]));
      await expectSame([input([2, 3, 5, 4], 15)], (x) => tf.transpose(x, [0, 2, 1, 3]));
      await expectSame([input([2, 3, 5, 4], 15)], (x) => tf.transpose(x, [3, 1, 0, 2]));
    });

    it("tile and pad", async () => {
      await expectSame([input([1, 1, 6], 16)], (x) => tf.tile(x, [3, 5, 1]));
      await expectSame([input([2, 3], 16)], (x) => tf.tile(x, [2, 3]));
      await expectSame([input([2, 3, 5], 17)], (x) =>
        tf.pad(x, [
          [0, 0],
          [2, 1],
          [0, 3],
        ]),
      );
      await expectSame([input([2, 3], 17)], (x) =>
        tf.pad(
          x,
          [
            [1, 1],
            [1, 0],
          ],
          2.5,
        ),
      );
    });

    it("gather along axis 0 and axis 1, and int32/bool tensors through the copy kernels", async () => {
      for (const backend of ["cpu", NATIVE_BACKEND]) {
        await tf.setBackend(backend);
        const table = tf.tensor(rand(7 * 4, 18), [7, 4]);
        const ids = tf.tensor2d([3, 0, 6, 3, 1, 2], [2, 3], "int32");
        const rows = tf.gather(table, ids);
        const cols = tf.gather(table, tf.tensor1d([3, 1], "int32"), 1);
        const ints = tf.transpose(tf.reshape(tf.range(0, 24, 1, "int32"), [2, 3, 4]), [2, 0, 1]);
        const bools = tf.slice(tf.greater(tf.tensor(rand(24, 19), [4, 6]), 0), [1, 2], [2, 3]);
        const got = [rows, cols, ints, bools].map((t) => ({
          shape: t.shape,
          dtype: t.dtype,
          v: Array.from(t.dataSync()),
        }));
        (globalThis as Record<string, unknown>)[`gather-${backend}`] = got;
        tf.dispose([table, ids, rows, cols, ints, bools]);
      }
      const g = globalThis as Record<string, unknown>;
      expect(g[`gather-${NATIVE_BACKEND}`]).toEqual(g["gather-cpu"]);
      await tf.setBackend(NATIVE_BACKEND);
      expect(() => tf.gather(tf.ones([3, 2]), tf.tensor1d([5], "int32")).dataSync()).toThrow(/index 5/);
    });

    // (A single-element row is left out: its gradient is eps-sized and all rounding.)
    for (const shape of [
      [3, 5, 7],
      [2, 97, 64],
      [1, 3],
      [4, 129],
    ]) {
      it(`rmsNorm over the last axis of [${shape}]`, async () => {
        await expectSame([input(shape, 8, -3, 3)], (x) => ops.rmsNorm(x, 1e-5));
      });
    }

    for (const shape of [
      [3, 5, 7],
      [2, 97, 64],
    ]) {
      it(`addRmsNorm (the fused residual) over [${shape}], both inputs differentiated`, async () => {
        await expectSame([input(shape, 40, -3, 3), input(shape, 41, -3, 3)], (a, b) =>
          ops.addRmsNorm(a, b, 1e-5),
        );
      });
    }

    it("addRmsNorm with a broadcast second input falls back to add + rmsNorm", async () => {
      await expectSame([input([3, 5, 7], 42), input([7], 43)], (a, b) => ops.addRmsNorm(a, b, 1e-5));
    });

    for (const shape of [
      [3, 5, 2 * 7],
      [2, 9, 2 * 384],
      [1, 2],
    ]) {
      it(`siluGateMul on [${shape}]`, async () => {
        await expectSame([input(shape, 9, -4, 4)], (x) => ops.siluGateMul(x));
      });
    }

    const attnCases: Array<[number, number, number, number, boolean]> = [
      [2, 7, 3, 6, true],
      [2, 7, 3, 6, false],
      [1, 1, 1, 2, true],
      [3, 13, 4, 8, true],
      [2, 9, 2, 5, false], // odd head size works without RoPE
      [2, 33, 8, 16, true],
      // Head sizes of 16k run attn.inc's products on AVX-512 blocks, other multiples of 8 on AVX2
      // ones: rows padded past S, 1-4 row tails, vector tails (24 on AVX2: 2 + 1 vectors; 48 on
      // AVX-512: 3), and S a multiple of both widths (no padding, no softmax tail).
      [2, 21, 2, 32, true],
      [2, 19, 2, 24, true],
      [2, 32, 2, 48, true],
      [1, 35, 2, 64, false],
      [2, 18, 1, 80, true],
    ];
    for (const [B, S, H, hd, useRope] of attnCases) {
      it(`attention B=${B} S=${S} heads=${H} hd=${hd} rope=${useRope}`, async () => {
        const half = hd / 2;
        const cos = new Float32Array(S * hd);
        const sin = new Float32Array(S * hd);
        for (let s = 0; s < S; s++) {
          for (let j = 0; j < hd; j++) {
            const ang = s * 10000 ** (-(2 * (j % half)) / hd);
            cos[s * hd + j] = Math.cos(ang);
            sin[s * hd + j] = Math.sin(ang);
          }
        }
        const data = [input([B, S, 3 * H * hd], 10, -2, 2)];
        if (useRope) data.push({ values: cos, shape: [S, hd] }, { values: sin, shape: [S, hd] });
        await expectSame(
          data,
          (qkv, c, s) =>
            ops.attention(
              qkv as tf.Tensor3D,
              H,
              useRope ? { cos: c as tf.Tensor2D, sin: s as tf.Tensor2D } : null,
            ),
          1,
        );
      });
    }

    for (const shape of [
      [2, 9, 11],
      [3, 260],
      [1, 1],
    ]) {
      it(`logStablemax over the last axis of [${shape}]`, async () => {
        await expectSame([input(shape, 11, -6, 6)], (x) => ops.logStablemax(x));
      });
    }

    it("shapes large enough to split across the kernel threads", async () => {
      expect(native.addon.info().kernelThreads).toBeGreaterThanOrEqual(1);
      await expectSame([input([600, 512], 30), input([600, 512], 31, 0.5, 2)], (a, b) => tf.div(a, b));
      await expectSame([input([1100, 512], 32), input([512], 33)], (a, b) => tf.mul(a, b));
      await expectSame([input([64, 97, 64], 34)], (x) => tf.transpose(x, [0, 2, 1]));
      await expectSame([input([1100, 512], 35, -3, 3)], (x) => ops.rmsNorm(x, 1e-5));
      await expectSame([input([600, 512], 36, -4, 4)], (x) => ops.siluGateMul(x));
      await expectSame([input([2600, 11], 37, -6, 6)], (x) => ops.logStablemax(x));
    });

    it("the fused ops run the native kernels on the native backend and not on cpu", async () => {
      await tf.setBackend(NATIVE_BACKEND);
      expect(tf.getKernel(ops.FusedKernel.Attention, NATIVE_BACKEND)).toBeDefined();
      expect(tf.getKernel(ops.FusedKernel.Attention, "cpu")).toBeUndefined();
      // A composite rmsNorm would leave its intermediates on the tape; the kernel is one node.
      const x = tf.ones([2, 3]);
      const kernels: string[] = [];
      const prof = await tf.profile(() => ops.rmsNorm(x, 1e-5));
      for (const k of prof.kernels) kernels.push(k.name);
      expect(kernels).toEqual([ops.FusedKernel.RmsNorm]);
      tf.dispose([x, prof.result as tf.Tensor]);
    });

    it("leaves no tensors behind over repeated forward and backward passes", async () => {
      await tf.setBackend(NATIVE_BACKEND);
      const qkv = tf.tensor(rand(2 * 9 * 24, 12), [2, 9, 24]);
      const w = tf.tensor(rand(8 * 16, 13), [8, 16]);
      const step = () =>
        tf.tidy(() => {
          const g = tf.grads((q: tf.Tensor, ww: tf.Tensor) => {
            const a = ops.attention(q as tf.Tensor3D, 2, null);
            const h = ops.rmsNorm(tf.add(a, a), 1e-5);
            const up = ops.linear(h, ww as tf.Tensor2D);
            return tf.sum(ops.logStablemax(ops.siluGateMul(up)));
          });
          return g([qkv, w]);
        });
      tf.dispose(step());
      const before = tf.memory().numTensors;
      for (let i = 0; i < 20; i++) tf.dispose(step());
      expect(tf.memory().numTensors).toBe(before);
      tf.dispose([qkv, w]);
    });

    it("the addon rejects buffers too small for the shapes it is given", () => {
      const a = native.addon;
      expect(() =>
        a.rmsNorm(new Float32Array(5), null, new Float32Array(6), new Float32Array(2), 2, 3, 1e-5),
      ).toThrow(/needs 6/);
      expect(() =>
        a.rmsNorm(new Float32Array(6), null, new Float32Array(6), new Float32Array(1), 2, 3, 1e-5),
      ).toThrow(/r: buffer holds 1/);
      expect(() =>
        a.gemm(
          false,
          false,
          2,
          2,
          2,
          1,
          new Float32Array(4),
          2,
          0,
          new Float32Array(3),
          2,
          0,
          0,
          new Float32Array(4),
          2,
          0,
          1,
        ),
      ).toThrow(/B: buffer holds 3/);
      expect(() => a.attention(new Float32Array(10), new Float32Array(10), 1, 2, 1, 2, null, null)).toThrow(
        RangeError,
      );
      expect(() =>
        a.binary(
          0,
          [1, 2] as unknown as Float32Array,
          [1],
          new Float32Array(2),
          [1],
          new Float32Array(2),
          [2],
        ),
      ).toThrow(/Float32Array/);
      expect(() =>
        a.stridedCopy(new Float32Array(4), 0, new Float32Array(4), 0, [2, 3], [3, 1], [3, 1]),
      ).toThrow(/past the end/);
      expect(() => a.stridedCopy(new Float32Array(4), 0, new Uint8Array(4), 0, [4], [1], [1])).toThrow(
        /element size/,
      );
    });
  });
}
