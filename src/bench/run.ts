// `npm run bench -- run [--preset small|demo] [--steps N] [--days N] [--keep DIR] [--no-7m]`:
// the whole pipeline for one agent on the simulated homelab (collect over HTTP, build, train,
// evaluate, deploy) with the small config; reports each stage's wall time and peak RSS. Then
// the checkpoint of the 7M config: writing the whole training state (weights, Adam moments,
// EMA, carry, RNG, data order) to the store and reading it back into a trainer, each of which
// has to stay under 2 s.
import { mkdtempSync, rmSync } from "node:fs";
import os, { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseConfig } from "../config/index.js";
import { UsageError } from "../errors.js";
import { activeBackend, initBackend } from "../model/backend.js";
import { resolveModelConfig } from "../model/config.js";
import { Trainer } from "../model/trainer.js";
import { createPipeline } from "../pipeline/create.js";
import type { RunEvent } from "../pipeline/run.js";
import { latestCheckpoint, readCheckpointFile, saveCheckpoint } from "../pipeline/train/checkpoint.js";
import { agentConfigFor, createSimulator } from "../simulator/index.js";
import { FsStore } from "../store/index.js";

interface Args {
  preset: "small" | "demo";
  steps: number;
  days: number;
  keep?: string;
  sevenM: boolean;
}

function parseArgs(args: string[]): Args {
  const a: Args = { preset: "small", steps: 60, days: 6, sevenM: true };
  for (let i = 0; i < args.length; i++) {
    const flag = args[i];
    if (flag === "--no-7m") {
      a.sevenM = false;
      continue;
    }
    const v = args[++i];
    if (flag === "--preset" && (v === "small" || v === "demo")) a.preset = v;
    else if (flag === "--steps") a.steps = Number(v);
    else if (flag === "--days") a.days = Number(v);
    else if (flag === "--keep") a.keep = v;
    else
      throw new UsageError(
        `run bench: unknown option ${flag} (have --preset small|demo, --steps N, --days N, --keep DIR, --no-7m)`,
      );
  }
  if (!(Number.isInteger(a.steps) && a.steps > 0)) throw new UsageError("--steps must be a positive integer");
  if (!(a.days >= 4 && a.days <= 60)) throw new UsageError("--days must be in [4, 60]");
  return a;
}

const mb = (bytes: number) => Math.round((bytes / 1048576) * 10) / 10;

/** Samples RSS often enough to catch each stage's peak. */
function rssMeter() {
  let peak = process.memoryUsage().rss;
  const t = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 25);
  t.unref();
  return {
    take(): number {
      const p = Math.max(peak, process.memoryUsage().rss);
      peak = process.memoryUsage().rss;
      return p;
    },
    stop: () => clearInterval(t),
  };
}

export async function run(argv: string[]): Promise<unknown> {
  const args = parseArgs(argv);
  const sim = await createSimulator({ seed: 11, days: args.days, logsPerDay: 1500, tracesPerDay: 500 });
  let dir: string | undefined;
  try {
    dir = args.keep ? resolve(args.keep) : mkdtempSync(join(tmpdir(), "trm-bench-run-"));
    return await measure(args, dir, sim.url);
  } finally {
    await sim.close();
    // A failed bench leaves no temporary directory behind either; --keep's is the caller's.
    if (dir && !args.keep) rmSync(dir, { recursive: true, force: true });
  }
}

/** One whole run of every stage, each stage's time and peak RSS, then the 7M checkpoint. */
async function measure(args: Args, dir: string, simulatorUrl: string) {
  const agent = agentConfigFor(simulatorUrl, { lookback: `${args.days}d` });
  const repo = fileURLToPath(new URL("../../src/pipeline", import.meta.url));
  const config = parseConfig({
    data_dir: join(dir, "data"),
    log_level: "warn",
    agents: { bench: { ...agent, sources: { ...agent.sources, code: { path: repo } } } },
    model: { preset: args.preset },
    dataset: {
      window: `${args.days}d`,
      seq_len: 64,
      tasks: Object.fromEntries(
        ["code_infill", "log_triage", "metric_forecast", "trace_outcome"].map((t) => [
          t,
          { max_examples: 400, min_examples: 1 },
        ]),
      ),
    },
    train: {
      max_steps: args.steps,
      batch_size: 16,
      eval_interval: Math.max(1, Math.floor(args.steps / 3)),
      checkpoint_interval: Math.max(1, Math.floor(args.steps / 3)),
      log_interval: Math.max(1, Math.floor(args.steps / 10)),
      eval_examples: 64,
      warmup_steps: Math.min(10, args.steps - 1),
      lr: 0.001,
      ema_decay: 0.9,
    },
    gate: { min_examples: 5 },
  });
  const backend = await initBackend(config.model.backend);
  const pipeline = createPipeline(config, { deployHooks: [] });
  const meter = rssMeter();
  const stages: Record<string, { seconds: number; peak_rss_mb: number; attempts: number }> = {};
  let trainEvents = 0;
  process.stderr.write(
    `run bench: ${args.preset} preset, ${args.steps} steps, ${args.days} simulated days, backend ${backend.backend}\n`,
  );
  const onEvent = (e: RunEvent) => {
    if (e.type === "stage" && e.status === "running") meter.take();
    if (e.type === "stage" && e.status !== "running") {
      stages[e.stage] = { seconds: 0, peak_rss_mb: mb(meter.take()), attempts: e.attempt };
      process.stderr.write(`  ${e.stage} ${e.status}\n`);
    }
    if (e.type === "progress" && e.progress.stage === "train") trainEvents++;
  };
  const t0 = performance.now();
  const rec = await (
    await pipeline.startRun({
      agent: "bench",
      onEvent,
      trigger: { kind: "api", actor: "bench", reason: null },
    })
  ).done;
  const total = (performance.now() - t0) / 1000;
  meter.stop();
  for (const s of rec.stages)
    if (stages[s.name] && s.started_at && s.ended_at)
      stages[s.name].seconds = (Date.parse(s.ended_at) - Date.parse(s.started_at)) / 1000;
  const out = (name: string) => rec.stages.find((s) => s.name === name)?.output ?? {};
  const result: Record<string, unknown> = {
    backend: activeBackend(),
    preset: args.preset,
    status: rec.status,
    error: rec.error,
    total_s: Math.round(total * 10) / 10,
    peak_rss_mb: mb(process.resourceUsage().maxRSS * 1024),
    stages,
    collect: { records: out("collect").records, segments: out("collect").segments },
    dataset: out("build").examples,
    train: {
      steps: out("train").steps,
      params: out("train").params,
      samples_per_s: out("train").samples_per_s,
      best_score: out("train").best_score,
      progress_events: trainEvents,
    },
    gate: (out("evaluate").gate as { passed: boolean } | undefined)?.passed ?? null,
    version: rec.model_version,
  };
  if (args.sevenM) result.checkpoint_7m = await checkpoint7m(join(dir, "ckpt"));
  return result;
}

/** Save and load of the 7M config's full training state through the store, each timed. */
async function checkpoint7m(root: string) {
  const cfg = resolveModelConfig(
    { preset: "7m" },
    { vocab_size: 400, seq_len: 64, num_puzzle_identifiers: 5 },
  );
  const trainer = Trainer.create(cfg, { total_steps: 100, warmup_steps: 1 }, 1);
  // One real step (batch 1) so the Adam moments and the carry exist, as in any checkpoint.
  const L = cfg.seq_len;
  trainer.trainStep({
    tokens: Int32Array.from({ length: L }, (_, i) => 4 + (i % 300)),
    labels: Int32Array.from({ length: L }, (_, i) => (i % 2 ? 4 + (i % 300) : -100)),
    puzzleIds: Int32Array.from([1]),
  });
  const store = new FsStore(root);
  const prefix = "runs/bench/r-7m";
  const cpu = (c: NodeJS.CpuUsage) => round((c.user + c.system) / 1e6);
  const cSave = process.cpuUsage();
  const tSave = performance.now();
  const bytes = trainer.exportState({ fine_tuned_from: "" });
  const serialize_s = (performance.now() - tSave) / 1000;
  await saveCheckpoint(
    store,
    prefix,
    {
      kind: "state",
      step: trainer.step,
      data: { epoch: 0, cursor: 1 },
      early_stop: { best_step: 0, best_score: null, evals_since_best: 0 },
      score: null,
    },
    [{ name: "state.safetensors", data: bytes }],
  );
  const save_s = (performance.now() - tSave) / 1000;
  const save_cpu_s = cpu(process.cpuUsage(cSave));
  trainer.dispose();
  const cLoad = process.cpuUsage();
  const tLoad = performance.now();
  const ck = (await latestCheckpoint(store, prefix, "state"))!;
  const { trainer: back } = Trainer.fromState(
    await readCheckpointFile(store, ck, "state.safetensors"),
    ck.dir,
  );
  const load_s = (performance.now() - tLoad) / 1000;
  const load_cpu_s = cpu(process.cpuUsage(cLoad));
  const params = back.model.parameterCount();
  back.dispose();
  return {
    params,
    state_mb: mb(bytes.byteLength),
    serialize_s: round(serialize_s),
    save_s: round(save_s),
    load_s: round(load_s),
    /** CPU seconds: on a busy machine wall time overstates what the work costs. */
    save_cpu_s,
    load_cpu_s,
    load_average: os.loadavg()[0],
    limit_s: 2,
    within_limit: save_s < 2 && load_s < 2,
  };
}

const round = (x: number) => Math.round(x * 1000) / 1000;
