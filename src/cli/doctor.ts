// `trm-forge doctor`: what this installation will run on, and why. It starts the configured
// backend for real (a probe that only resolved modules could say "ok" for one that then fails),
// and reports the NVIDIA GPUs nvidia-smi sees with what tfjs-node-gpu can make of each.
import type { Command } from "commander";
import { initBackend } from "../model/backend.js";
import { type GpuReport, probeGpus } from "../model/gpu.js";
import { action, emit, loadCliConfig } from "./common.js";

export interface DoctorReport {
  node: string;
  platform: string;
  config: { path: string | null; searched: string[]; env_overrides: string[] };
  backend: Awaited<ReturnType<typeof initBackend>> | { error: string };
  gpu: GpuReport;
}

export async function doctorReport(cmd: Command): Promise<DoctorReport> {
  const loaded = loadCliConfig(cmd);
  let backend: DoctorReport["backend"];
  try {
    backend = await initBackend(loaded.config.model.backend);
  } catch (err) {
    backend = { error: (err as Error).message };
  }
  return {
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    config: { path: loaded.path, searched: loaded.searched, env_overrides: loaded.envOverrides },
    backend,
    gpu: await probeGpus(),
  };
}

function describe(r: DoctorReport): string {
  const lines: string[] = [];
  lines.push(`node        ${r.node} (${r.platform})`);
  lines.push(
    `config      ${r.config.path ?? `none found (searched ${r.config.searched.join(", ")}); defaults apply`}`,
  );
  if (r.config.env_overrides.length) lines.push(`env         overrides ${r.config.env_overrides.join(", ")}`);
  if ("error" in r.backend) {
    lines.push(`backend     NONE: ${r.backend.error}`);
    lines.push(...describeGpus(r.gpu));
    return lines.join("\n");
  }
  const b = r.backend;
  lines.push(`backend     ${b.backend} (model.backend: ${b.preference})`);
  for (const c of b.candidates) {
    if (c.status === "in-use") continue;
    lines.push(`  ${c.name.padEnd(10)} not in use: ${c.status}${c.reason ? ` (${c.reason})` : ""}`);
  }
  const n = b.native;
  lines.push(`native      ${n.loaded ? "built and loaded" : `not available: ${n.reason}`}`);
  if (n.buildStatus)
    lines.push(
      `  build     ${n.buildStatus.built ? "ok" : "failed"}: ${n.buildStatus.reason}${n.buildStatus.at ? ` (${n.buildStatus.at})` : ""}`,
    );
  if (n.info) {
    const par = ["sequential", "pthreads", "OpenMP"][n.info.blasParallel] ?? String(n.info.blasParallel);
    lines.push(`  blas      ${n.info.blasConfig}`);
    lines.push(
      `  threads   BLAS ${n.info.blasThreads} (${par}, ${n.info.blasProcs} processors), kernels ${n.info.kernelThreads}, attention ${n.info.attentionThreads}`,
    );
    lines.push(
      `  cpu       kernels ${n.info.isa}, BLAS core ${n.info.blasCore}; bf16 products ${n.info.bf16 ? "available (train.matmul: bf16)" : "not available (they need AVX-512 BF16, kernels at avx512 and a GCC 10 or later build)"}`,
    );
  }
  lines.push(...describeGpus(r.gpu));
  return lines.join("\n");
}

function describeGpus(g: GpuReport): string[] {
  if (g.nvidia_smi === "absent") return ["gpu         none (no nvidia-smi on PATH)"];
  if (g.nvidia_smi === "failed") return [`gpu         nvidia-smi failed: ${g.error}`];
  const lines = [
    `gpu         driver ${g.driver_version ?? "?"}, CUDA ${g.cuda_version ?? "?"} (the newest the driver supports)`,
  ];
  for (const d of g.gpus) {
    const v = d.tfjs_node_gpu;
    lines.push(`  ${d.index}         ${d.name}, compute capability ${d.compute_capability ?? "unknown"}`);
    lines.push(`    tfjs-node-gpu 4.22: ${v.usable}: ${v.reason}`);
    if (v.usable === "yes") lines.push(`    start-up  ${v.startup}`);
    if (v.kernels === "ptx-jit" || v.usable === "no")
      lines.push('    or        runner: external with PyTorch (k8s/README.md, "GPU training: two routes")');
  }
  return lines;
}

export function registerDoctor(program: Command): void {
  program
    .command("doctor")
    .description(
      "Show the TensorFlow.js backend in use (and why not the others), native kernels, BLAS, NVIDIA GPUs and the config found",
    )
    .option("--json", "print the report as JSON")
    .action(
      action(async (opts: { json?: boolean }, cmd: Command) => {
        const report = await doctorReport(cmd);
        emit(opts.json, report, () => describe(report));
        return "error" in report.backend ? 1 : 0;
      }),
    );
}
