// Backend selection: the order, what the report says about each backend not in use, explicit
// choices, and that the native backend leaves plain cpu usable beside it.
import * as tf from "@tensorflow/tfjs-core";
import { afterEach, describe, expect, it } from "vitest";
import { describeBackends, initBackend } from "../../src/model/backend.js";
import { loadNative } from "../../src/model/native/index.js";

const native = loadNative();

afterEach(() => {
  delete process.env.TRM_FORGE_SKIP_NATIVE;
});

describe("backend selection", () => {
  it("auto: tensorflow is reported missing, then native (or wasm without the addon) wins", async () => {
    const report = await initBackend("auto");
    const [first, ...rest] = report.candidates;
    expect(first!.name).toBe("tensorflow");
    // tfjs-node(-gpu) are optional dependencies that do not install here.
    expect(first!.status).toBe("not-installed");
    expect(first!.reason).toMatch(
      /@tensorflow\/tfjs-node-gpu not installed; @tensorflow\/tfjs-node not installed/,
    );
    if (native.ok) {
      expect(report.backend).toBe("native");
      expect(rest.map((c) => [c.name, c.status])).toEqual([["native", "in-use"]]);
      expect(report.native.loaded).toBe(true);
      expect(report.native.info!.blasThreads).toBeGreaterThan(0);
    } else {
      expect(report.backend).toBe("wasm");
      expect(rest[0]).toMatchObject({ name: "native", status: "not-built" });
      expect(rest[0]!.reason).toBe(native.reason);
    }
    expect(tf.getBackend()).toBe(report.backend);
  });

  it("without native kernels auto falls through to wasm and says why", async () => {
    process.env.TRM_FORGE_SKIP_NATIVE = "1";
    const report = await initBackend("auto");
    expect(report.backend).toBe("wasm");
    expect(report.candidates.map((c) => c.name)).toEqual(["tensorflow", "native", "wasm"]);
    expect(report.candidates[1]).toMatchObject({
      status: "not-built",
      reason: expect.stringMatching(/TRM_FORGE_SKIP_NATIVE/),
    });
    expect(tf.getBackend()).toBe("wasm");
    // The wasm backend computes.
    const y = tf.matMul(tf.tensor2d([1, 2, 3, 4], [2, 2]), tf.tensor2d([1, 0, 0, 1], [2, 2]));
    expect(Array.from(y.dataSync())).toEqual([1, 2, 3, 4]);
    y.dispose();
  });

  it("an explicit choice marks the earlier backends as not selected", async () => {
    const report = await initBackend("cpu");
    expect(report.backend).toBe("cpu");
    expect(report.candidates).toEqual([
      { name: "tensorflow", status: "not-selected", reason: 'model.backend is "cpu"' },
      { name: "native", status: "not-selected", reason: 'model.backend is "cpu"' },
      { name: "wasm", status: "not-selected", reason: 'model.backend is "cpu"' },
      { name: "cpu", status: "in-use" },
    ]);
    expect(tf.getBackend()).toBe("cpu");
  });

  it("an explicit backend that cannot start is an error naming the reason, not a silent fallback", async () => {
    await expect(initBackend("tensorflow")).rejects.toThrow(/tfjs-node not installed/);
    process.env.TRM_FORGE_SKIP_NATIVE = "1";
    await expect(initBackend("native")).rejects.toThrow(/TRM_FORGE_SKIP_NATIVE/);
  });

  it("describeBackends reports without switching the active backend", async () => {
    await initBackend("cpu");
    const report = await describeBackends("auto");
    expect(tf.getBackend()).toBe("cpu");
    expect(report.backend).toBe(native.ok ? "native" : "wasm");
    expect(report.candidates.at(-1)!.status).toBe("available");
  });

  it.skipIf(!native.ok)("the native backend keeps plain cpu usable in the same process", async () => {
    await initBackend("native");
    const a = tf.tensor2d([1, 2, 3, 4, 5, 6], [2, 3]);
    const viaNative = tf.matMul(a, a, false, true).dataSync();
    await tf.setBackend("cpu");
    const viaCpu = tf.matMul(a, a, false, true).dataSync();
    expect(Array.from(viaNative)).toEqual(Array.from(viaCpu));
    expect(tf.getKernel("BatchMatMul", "native")!.kernelFunc).not.toBe(
      tf.getKernel("BatchMatMul", "cpu")!.kernelFunc,
    );
    a.dispose();
  });
});
