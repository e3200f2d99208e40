import { execFile } from "node:child_process";
import { chmodSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { CUDA_CACHE_MAX_BYTES, probeGpus } from "../../src/model/gpu.js";

const FIXTURES = fileURLToPath(new URL("../fixtures/nvidia-smi/", import.meta.url));
const CLI = fileURLToPath(new URL("../../dist/cli.js", import.meta.url));

// A stand-in nvidia-smi: it answers each argument list with the section of a recorded fixture
// ("=== <args> [(exit N)]"), an unknown one as nvidia-smi does (exit 2), or hangs / floods on request.
const STAND_IN = `
const { readFileSync } = require("node:fs");
const mode = process.env.FAKE_SMI_MODE;
if (mode === "hang") setInterval(() => {}, 1000);
else if (mode === "flood") { process.stdout.write("x".repeat(4 * 1024 * 1024)); }
else {
  const want = process.argv.slice(2).join(" ");
  const sections = readFileSync(process.env.FAKE_SMI_FIXTURE, "utf8").split(/^===/m).slice(1);
  const hit = sections.map((s) => {
    const nl = s.indexOf("\\n");
    const m = /^\\s*(.*?)\\s*(?:\\(exit (\\d+)\\))?$/.exec(s.slice(0, nl));
    return { args: m[1], exit: Number(m[2] ?? 0), body: s.slice(nl + 1) };
  }).find((s) => s.args === want);
  if (!hit) { process.stdout.write("Invalid combination of input arguments. Please run 'nvidia-smi -h' for help.\\n"); process.exit(2); }
  process.stdout.write(hit.body);
  process.exitCode = hit.exit;
}
`;

/** A PATH holding the stand-in (and node, which runs it) and nothing else. */
function fakeSmiPath(): string {
  const dir = mkdtempSync(join(tmpdir(), "trm-smi-"));
  const file = join(dir, "nvidia-smi");
  writeFileSync(file, `#!${process.execPath}\n${STAND_IN}`);
  chmodSync(file, 0o755);
  return [dir, dirname(process.execPath)].join(delimiter);
}

function envFor(fixture: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return { PATH: fakeSmiPath(), FAKE_SMI_FIXTURE: join(FIXTURES, fixture), ...extra };
}

describe("doctor: GPUs through nvidia-smi", () => {
  it("a Turing card (7.5) runs tfjs-node-gpu's own kernels, with no start-up compile", async () => {
    const r = await probeGpus({ env: envFor("rtx-2080-super.txt") });
    expect(r).toMatchObject({ nvidia_smi: "ok", driver_version: "595.71.05", cuda_version: "13.2" });
    expect(r.gpus).toHaveLength(1);
    expect(r.gpus[0]).toMatchObject({
      index: 0,
      name: "NVIDIA GeForce RTX 2080 SUPER",
      compute_capability: "7.5",
      driver_version: "595.71.05",
      tfjs_node_gpu: { usable: "yes", kernels: "sass" },
    });
    expect(r.gpus[0].tfjs_node_gpu.startup).toMatch(/^none/);
  });

  it("an L40S (8.9) and an RTX 4090 (8.9) run only after the driver JIT-compiles PTX, and say what that costs", async () => {
    for (const [fixture, name, driver, cuda] of [
      ["l40s.txt", "NVIDIA L40S", "595.80", "13.2"],
      ["rtx-4090.txt", "NVIDIA GeForce RTX 4090", "580.95.05", "13.0"],
    ]) {
      const r = await probeGpus({ env: envFor(fixture) });
      expect(r, fixture).toMatchObject({ nvidia_smi: "ok", driver_version: driver, cuda_version: cuda });
      const g = r.gpus[0];
      expect(g).toMatchObject({ name, compute_capability: "8.9" });
      expect(g.tfjs_node_gpu).toMatchObject({ usable: "yes", kernels: "ptx-jit" });
      expect(g.tfjs_node_gpu.startup).toContain("sm_89");
      expect(g.tfjs_node_gpu.startup).toContain("could take 30 minutes or longer");
      // No cache settings: the default path and the default 256 MiB, which the report says to raise.
      expect(r.jit_cache).toEqual({ path: null, max_size: null, disabled: false });
      expect(g.tfjs_node_gpu.startup).toContain("~/.nv/ComputeCache");
      expect(g.tfjs_node_gpu.startup).toContain("the default 256 MiB, which may not hold");
    }
  });

  it("reads the cache settings the gpu Job sets, and a disabled cache", async () => {
    const set = await probeGpus({
      env: envFor("l40s.txt", {
        CUDA_CACHE_PATH: "/cuda-cache",
        CUDA_CACHE_MAXSIZE: String(CUDA_CACHE_MAX_BYTES),
      }),
    });
    expect(set.jit_cache).toEqual({ path: "/cuda-cache", max_size: CUDA_CACHE_MAX_BYTES, disabled: false });
    expect(set.gpus[0].tfjs_node_gpu.startup).toContain("reuse the compute cache at /cuda-cache");
    expect(set.gpus[0].tfjs_node_gpu.startup).not.toContain("may not hold");
    const off = await probeGpus({ env: envFor("l40s.txt", { CUDA_CACHE_DISABLE: "1" }) });
    expect(off.gpus[0].tfjs_node_gpu.startup).toContain("every start pays it again");
  });

  it("reads R610's renamed header (KMD Version, CUDA UMD Version)", async () => {
    const r = await probeGpus({ env: envFor("r610-rtx-2080-super.txt") });
    expect(r).toMatchObject({ nvidia_smi: "ok", driver_version: "610.57.04", cuda_version: "13.3" });
  });

  it("a driver without the compute_cap field: asks again without it, and says the verdict is unknown", async () => {
    const r = await probeGpus({ env: envFor("old-driver-a10g.txt") });
    expect(r).toMatchObject({ nvidia_smi: "ok", driver_version: "470.256.02", cuda_version: "11.4" });
    expect(r.gpus[0]).toMatchObject({
      name: "NVIDIA A10G",
      compute_capability: null,
      tfjs_node_gpu: { usable: "unknown" },
    });
  });

  it("no nvidia-smi, a driver that is not loaded, a hung or flooding nvidia-smi: a clear error, bounded", async () => {
    const absent = await probeGpus({ env: { PATH: mkdtempSync(join(tmpdir(), "trm-nosmi-")) } });
    expect(absent).toMatchObject({ nvidia_smi: "absent", error: "nvidia-smi is not on PATH", gpus: [] });

    const down = await probeGpus({ env: envFor("driver-down.txt") });
    expect(down.nvidia_smi).toBe("failed");
    expect(down.error).toContain("exited with 9");
    expect(down.error).toContain("couldn't communicate with the NVIDIA driver");

    const started = Date.now();
    const hung = await probeGpus({ env: envFor("l40s.txt", { FAKE_SMI_MODE: "hang" }), timeoutMs: 500 });
    expect(hung).toMatchObject({ nvidia_smi: "failed", gpus: [] });
    expect(hung.error).toContain("did not answer within 500 ms");
    expect(Date.now() - started).toBeLessThan(10_000);

    const flood = await probeGpus({
      env: envFor("l40s.txt", { FAKE_SMI_MODE: "flood" }),
      maxBytes: 64 * 1024,
    });
    expect(flood).toMatchObject({ nvidia_smi: "failed", gpus: [] });
    expect(flood.error).toContain(`printed more than ${64 * 1024} bytes`);
  });

  it("verdicts by compute capability and driver, from the CUDA 11.2 and libtensorflow 2.9.1 limits", async () => {
    const { tfjsGpuVerdict } = await import("../../src/model/gpu.js");
    const cache = { path: null, max_size: null, disabled: false };
    expect(tfjsGpuVerdict("3.0", "535.1", cache).usable).toBe("no");
    expect(tfjsGpuVerdict("3.5", "535.1", cache)).toMatchObject({ usable: "yes", kernels: "sass" });
    expect(tfjsGpuVerdict("8.0", "535.1", cache)).toMatchObject({ usable: "yes", kernels: "ptx-jit" });
    expect(tfjsGpuVerdict("9.0", "535.1", cache).startup).toContain("sm_90");
    expect(tfjsGpuVerdict("12.0", "575.64.03", cache).startup).toContain("sm_120");
    // Machine code runs from 450.80.02 (minor version compatibility); PTX needs 460.27.03.
    expect(tfjsGpuVerdict("7.5", "450.80.02", cache).usable).toBe("yes");
    expect(tfjsGpuVerdict("7.5", "440.33.01", cache).usable).toBe("no");
    expect(tfjsGpuVerdict("8.6", "455.45.01", cache)).toMatchObject({ usable: "no", kernels: "ptx-jit" });
    expect(tfjsGpuVerdict("8.6", "460.27.03", cache).usable).toBe("yes");
  });

  it("trm-forge doctor prints the GPU report, as text and as JSON", async () => {
    const run = promisify(execFile);
    const env = { ...envFor("l40s.txt"), HOME: mkdtempSync(join(tmpdir(), "trm-home-")) };
    const cwd = mkdtempSync(join(tmpdir(), "trm-doctor-"));
    const json = JSON.parse((await run(process.execPath, [CLI, "doctor", "--json"], { env, cwd })).stdout);
    expect(json.gpu).toMatchObject({
      nvidia_smi: "ok",
      cuda_version: "13.2",
      gpus: [{ name: "NVIDIA L40S", compute_capability: "8.9", tfjs_node_gpu: { kernels: "ptx-jit" } }],
    });
    const text = (await run(process.execPath, [CLI, "doctor"], { env, cwd })).stdout;
    expect(text).toContain("gpu         driver 595.80, CUDA 13.2");
    expect(text).toContain("NVIDIA L40S, compute capability 8.9");
    expect(text).toContain("tfjs-node-gpu 4.22: yes:");
    expect(text).toContain("runner: external with PyTorch");
    // The native kernels' instruction set, the BLAS's core and whether bf16 products can run here.
    const info = json.backend.native.info;
    if (info)
      expect(text).toContain(
        `  cpu       kernels ${info.isa}, BLAS core ${info.blasCore}; bf16 products ${info.bf16 ? "available" : "not available"}`,
      );

    const none = { PATH: dirname(process.execPath), HOME: env.HOME };
    const noGpu = JSON.parse(
      (await run(process.execPath, [CLI, "doctor", "--json"], { env: none, cwd })).stdout,
    );
    expect(noGpu.gpu).toMatchObject({ nvidia_smi: "absent", gpus: [] });
  });
});
