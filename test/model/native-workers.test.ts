// The native addon in worker threads: the server runs inference in one while its main thread (or
// another worker) may use the kernels too. Two workers load the addon at once and run attention
// (which narrows the process-wide BLAS thread count while it runs) and gemm concurrently, while
// the main thread runs gemm; their results equal a lone worker's (attention to the bit, gemm to
// float precision), and the BLAS thread count is what it was before.
import { Worker } from "node:worker_threads";
import { describe, expect, it } from "vitest";
import { addonPath, loadNative } from "../../src/model/native/index.js";

const native = loadNative();

// Plain JS for the workers (they run outside vitest's transform): the same deterministic inputs,
// `rounds` of attention and gemm, and a checksum of every output.
const WORKER = `
const { parentPort, workerData } = require("node:worker_threads");
const addon = require(workerData.addonPath);
function rand(n, seed) {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) { s ^= s << 13; s ^= s >>> 17; s ^= s << 5; out[i] = (s >>> 0) / 4294967296 - 0.5; }
  return out;
}
const { B, S, H, hd, M, rounds } = workerData;
const qkv = rand(B * S * 3 * H * hd, 7);
const out = new Float32Array(B * S * H * hd);
const A = rand(M * M, 11), Bm = rand(M * M, 13), C = new Float32Array(M * M);
const sums = [];
for (let r = 0; r < rounds; r++) {
  addon.attention(qkv, out, B, S, H, hd, null, null);
  addon.gemm(false, false, M, M, M, 1, A, M, 0, Bm, M, 0, 0, C, M, 0, 1);
  sums.push([out.reduce((a, b) => a + b, 0), C.reduce((a, b) => a + b, 0)]);
}
parentPort.postMessage({ sums, info: addon.info() });
`;

const shape = { B: 4, S: 32, H: 4, hd: 16, M: 96, rounds: 40 };

function runWorker(): Promise<{ sums: number[][]; info: { blasThreads: number } }> {
  return new Promise((resolve, reject) => {
    const w = new Worker(WORKER, { eval: true, workerData: { addonPath, ...shape } });
    w.once("message", resolve);
    w.once("error", reject);
    w.once("exit", (code) => code !== 0 && reject(new Error(`worker exited with ${code}`)));
  });
}

describe.skipIf(!native.ok)("the native addon in worker threads", () => {
  it("loads in two workers at once and computes what the main thread computes", async () => {
    if (!native.ok) return;
    const addon = native.addon;
    // Attention spreads over threads (and narrows the BLAS to one) only with more than one.
    addon.setThreads(2, 2, 2);
    const before = addon.info().blasThreads;

    const one = await runWorker();
    const want = one.sums[0];
    expect(one.sums.every((s) => s[0] === want[0] && s[1] === want[1])).toBe(true);

    // Two workers and the main thread in the kernels at the same time.
    const both = Promise.all([runWorker(), runWorker()]);
    const big = new Float32Array(256 * 256).fill(0.5);
    const C = new Float32Array(256 * 256);
    for (let i = 0; i < 20; i++)
      addon.gemm(false, false, 256, 256, 256, 1, big, 256, 0, big, 256, 0, 0, C, 256, 0, 1);
    const results = await both;
    // Attention is this addon's own code: the same bits. The gemm is the BLAS's, which may split
    // its work otherwise while another thread's attention has narrowed it to one thread (OpenBLAS's
    // Zen kernels then round differently, ~1e-8 relative), so it is held to float precision.
    for (const r of results)
      for (const [attn, gemm] of r.sums) {
        expect(attn).toBe(want[0]);
        expect(Math.abs(gemm - want[1])).toBeLessThan(1e-6 * Math.abs(want[1]));
      }
    expect(C[0]).toBeCloseTo(64, 3);
    expect(addon.info().blasThreads).toBe(before);
    for (const r of results) expect(r.info.blasThreads).toBe(before);
  });
});
