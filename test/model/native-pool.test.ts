// The native backend reuses float32 buffers of disposed tensors. Reuse must never change a value
// someone can still see: arrays read out with dataSync, zero-copy views, shared data.
import * as tf from "@tensorflow/tfjs-core";
import { beforeAll, describe, expect, it } from "vitest";
import { releaseBackendMemory } from "../../src/model/backend.js";
import { loadNative } from "../../src/model/native/index.js";
import { NATIVE_BACKEND, registerNativeBackend } from "../../src/model/native/kernels.js";
import { PooledCpuBackend } from "../../src/model/native/pool.js";

const native = loadNative();

function backend(): PooledCpuBackend {
  return tf.backend() as PooledCpuBackend;
}

function bufferOf(t: tf.Tensor): ArrayBufferLike {
  return (backend().data.get(t.dataId).values as Float32Array).buffer;
}

describe.skipIf(!native.ok)(
  `native buffer pool${native.ok ? "" : ` (skipped: ${!native.ok && native.reason})`}`,
  () => {
    beforeAll(async () => {
      if (native.ok) registerNativeBackend(native.addon);
      await tf.setBackend(NATIVE_BACKEND);
    });

    it("reuses the buffer of a disposed kernel output for the next output of that size", () => {
      expect(backend()).toBeInstanceOf(PooledCpuBackend);
      const a = tf.ones([64, 64]);
      const b = tf.add(a, a);
      const buf = bufferOf(b);
      b.dispose();
      expect(backend().pooledBytes).toBeGreaterThanOrEqual(64 * 64 * 4);
      const c = tf.mul(a, 3);
      expect(bufferOf(c)).toBe(buf);
      expect(Array.from(c.dataSync().slice(0, 3))).toEqual([3, 3, 3]);
      tf.dispose([a, c]);
    });

    it("releaseBackendMemory empties the pool", () => {
      const a = tf.ones([64, 64]);
      tf.dispose(tf.add(a, a));
      expect(backend().pooledBytes).toBeGreaterThan(0);
      releaseBackendMemory();
      expect(backend().pooledBytes).toBe(0);
      a.dispose();
    });

    it("an array read out with dataSync keeps its values after its tensor is disposed", () => {
      const a = tf.ones([32, 32]);
      const b = tf.add(a, a);
      const seen = b.dataSync();
      b.dispose();
      const others = Array.from({ length: 4 }, (_, i) => tf.mul(a, i + 10));
      expect(seen.every((v) => v === 2)).toBe(true);
      tf.dispose([a, ...others]);
    });

    it("a zero-copy slice keeps its values after the sliced tensor is disposed", () => {
      const a = tf.ones([8, 16]);
      const b = tf.mul(a, 5);
      const head = tf.slice(b, [0, 0], [2, -1]); // contiguous: a view of b's buffer
      b.dispose();
      const others = Array.from({ length: 4 }, (_, i) => tf.mul(a, i + 100));
      expect(head.dataSync().every((v) => v === 5)).toBe(true);
      tf.dispose([a, head, ...others]);
    });

    it("data shared by a reshape is reused only after both tensors are gone", () => {
      const a = tf.ones([16, 16]);
      const b = tf.add(a, a);
      const flat = tf.reshape(b, [256]);
      b.dispose();
      const others = Array.from({ length: 4 }, () => tf.add(a, a));
      const o3 = tf.mul(a, 7);
      expect(flat.dataSync().every((v) => v === 2)).toBe(true);
      tf.dispose([a, flat, o3, ...others]);
    });

    it("a caller's own array is never recycled", () => {
      const mine = new Float32Array(256).fill(4);
      const t = tf.tensor(mine, [16, 16]);
      t.dispose();
      const a = tf.ones([16, 16]);
      const others = Array.from({ length: 4 }, () => tf.add(a, a));
      expect(mine.every((v) => v === 4)).toBe(true);
      tf.dispose([a, ...others]);
    });

    it("a training-like loop gives the cpu backend's numbers while buffers cycle", async () => {
      const losses = async (name: string) => {
        await tf.setBackend(name);
        const w = tf.variable(
          tf.tensor2d(
            Float32Array.from({ length: 24 * 24 }, (_, i) => Math.sin(i) * 0.1),
            [24, 24],
          ),
        );
        const x = tf.tensor2d(
          Float32Array.from({ length: 8 * 24 }, (_, i) => Math.cos(i)),
          [8, 24],
        );
        const out: number[] = [];
        for (let i = 0; i < 8; i++) {
          const loss = tf.tidy(() => {
            const { value, grads } = tf.variableGrads(
              () => tf.sum(tf.square(tf.matMul(x, w))) as tf.Scalar,
              [w],
            );
            w.assign(tf.sub(w, tf.mul(grads[w.name]!, 0.001)));
            return value;
          });
          out.push(loss.dataSync()[0]!);
          loss.dispose();
        }
        tf.dispose([w, x]);
        return out;
      };
      const want = await losses("cpu");
      const got = await losses(NATIVE_BACKEND);
      for (const [i, v] of got.entries())
        expect(Math.abs(v - want[i]!) / Math.abs(want[i]!)).toBeLessThan(1e-5);
      expect(want.at(-1)!).toBeLessThan(want[0]!);
    });
  },
);
