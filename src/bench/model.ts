// The model benchmark: training and inference throughput of the real TRM on the brief's two
// configs, batch 32, side by side with the PyTorch reference when asked (--with-reference).
//
//   training sample  = one example through one supervision step, with backward and the optimiser step
//   inference sample = one example through one supervision step
//
// Each config runs in a child process of its own, so its peak RSS is its own. Options:
//   --config a|b|demo|small|7m (repeatable; default a and b; demo, small and 7m are the presets)
//   --iters N (timed steps, default 3)  --warmup N (default 1)
//   --backend auto|native|wasm|cpu|tensorflow  --profile (time per kernel)  --with-reference
//   --reference PATH (ref_trm.py; default ../shared/reference/ref_trm.py beside the package)
//   --rounds N (default 1): ours and the reference alternate N times per config, so both see the
//     same load; the ratio reported is the median of the rounds' ratios
//   --matmul float32|bf16 (default float32): bf16 runs our products in bfloat16 (train.matmul), on
//     CPUs with AVX-512 BF16; the reference stays float32
//   --json (accepted; the bench always prints JSON)
// With the native backend, sgemm_peak is the BLAS's rate on one large square product at the
// same threads, measured in each round, so a config's GFLOP/s can be read as a share of it; with
// --matmul bf16, bf16_peak is our bf16 product's rate on the same shape.
import { spawnSync } from "node:child_process";
import { existsSync, realpathSync } from "node:fs";
import { loadavg } from "node:os";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as tf from "@tensorflow/tfjs-core";
import { MATMUL_PRECISIONS, type MatmulPrecision } from "../config/schema.js";
import { UsageError } from "../errors.js";
import { type BackendPreference, initBackend, setMatmulPrecision } from "../model/backend.js";
import { flopsPerSample, parseTRMConfig, resolveModelConfig, type TRMConfigInput } from "../model/config.js";
import { loadNative } from "../model/native/index.js";
import { Trainer } from "../model/trainer.js";
import { NUM_PUZZLE_IDENTIFIERS } from "../pipeline/tasks/types.js";
import { KernelProfiler } from "./profile.js";

const BATCH = 32;

/** The brief's configs (prefix 16, puzzle embedding = hidden size, RoPE, stablemax, as the reference's defaults). */
export const CONFIGS: Record<string, { cfg: TRMConfigInput; refFlags?: string[] }> = {
  a: {
    cfg: {
      hidden_size: 512,
      num_heads: 8,
      num_layers: 2,
      seq_len: 81,
      vocab_size: 11,
      H_cycles: 3,
      L_cycles: 6,
      puzzle_emb_len: 16,
    },
    refFlags: [
      "--hidden",
      "512",
      "--heads",
      "8",
      "--layers",
      "2",
      "--seq-len",
      "81",
      "--vocab",
      "11",
      "--H",
      "3",
      "--L",
      "6",
    ],
  },
  b: {
    cfg: {
      hidden_size: 128,
      num_heads: 4,
      num_layers: 2,
      seq_len: 64,
      vocab_size: 260,
      H_cycles: 3,
      L_cycles: 6,
      puzzle_emb_len: 16,
    },
    refFlags: [
      "--hidden",
      "128",
      "--heads",
      "4",
      "--layers",
      "2",
      "--seq-len",
      "64",
      "--vocab",
      "260",
      "--H",
      "3",
      "--L",
      "6",
    ],
  },
};

// The presets as a pipeline trains them: dataset.seq_len's default 128, train.batch_size's 32 and
// a vocabulary of about 400 tokens (4 specials, 256 bytes, 64 bins, the classes and services), so
// ms_per_step is the time of one training step.
for (const preset of ["demo", "small", "7m"] as const)
  CONFIGS[preset] = {
    cfg: resolveModelConfig(
      { preset },
      { vocab_size: 400, seq_len: 128, num_puzzle_identifiers: NUM_PUZZLE_IDENTIFIERS },
    ),
  };

interface Options {
  configs: string[];
  iters: number;
  warmup: number;
  backend: BackendPreference;
  profile: boolean;
  withReference: boolean;
  reference: string;
  rounds: number;
  matmul: MatmulPrecision;
}

const root = fileURLToPath(new URL("../../", import.meta.url));

function parseOptions(args: string[]): Options {
  const o: Options = {
    configs: [],
    iters: 3,
    warmup: 1,
    backend: "auto",
    profile: false,
    withReference: false,
    reference: resolve(root, "..", "shared", "reference", "ref_trm.py"),
    rounds: 1,
    matmul: "float32",
  };
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const [key, inline] = a.includes("=")
      ? [a.slice(0, a.indexOf("=")), a.slice(a.indexOf("=") + 1)]
      : [a, undefined];
    const value = () => {
      const v = inline ?? args[++i];
      if (v === undefined) throw new UsageError(`${key} needs a value`);
      return v;
    };
    const int = () => {
      const n = Number(value());
      if (!Number.isInteger(n) || n < 0) throw new UsageError(`${key} wants a non-negative integer`);
      return n;
    };
    if (key === "--config") o.configs.push(value());
    else if (key === "--iters") o.iters = Math.max(1, int());
    else if (key === "--warmup") o.warmup = int();
    else if (key === "--backend") o.backend = value() as BackendPreference;
    else if (key === "--profile") o.profile = true;
    else if (key === "--with-reference") o.withReference = true;
    else if (key === "--reference") o.reference = resolve(value());
    else if (key === "--rounds") o.rounds = Math.max(1, int());
    else if (key === "--matmul") o.matmul = value() as MatmulPrecision;
    else if (key !== "--child" && key !== "--json") throw new UsageError(`unknown model bench option ${a}`);
  }
  if (!o.configs.length) o.configs = ["a", "b"];
  for (const c of o.configs)
    if (!CONFIGS[c]) throw new UsageError(`unknown config "${c}" (have ${Object.keys(CONFIGS).join(", ")})`);
  if (!["auto", "tensorflow", "native", "wasm", "cpu"].includes(o.backend))
    throw new UsageError(`--backend must be auto, tensorflow, native, wasm or cpu`);
  if (!MATMUL_PRECISIONS.includes(o.matmul)) throw new UsageError(`--matmul must be float32 or bf16`);
  return o;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Random tokens and labels in [1, V) as the reference's random_batch; task id 0. */
function randomBatch(V: number, L: number, seed: number) {
  let s = seed >>> 0 || 1;
  const next = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return s >>> 0;
  };
  const tokens = new Int32Array(BATCH * L).map(() => 1 + (next() % (V - 1)));
  const labels = new Int32Array(BATCH * L).map(() => 1 + (next() % (V - 1)));
  return { tokens, labels, puzzleIds: new Int32Array(BATCH) };
}

const r = (x: number, d = 2) => Math.round(x * 10 ** d) / 10 ** d;

/**
 * The product's rate on a 2048-cube at the current threads, in the given precision (float32 is the
 * BLAS's sgemm): the ceiling the model's matmul-bound configs are read against. Best of 5 (the
 * least disturbed by other work) and median. Leaves this thread's products in float32.
 */
function gemmPeak(
  precision: MatmulPrecision,
): { n: number; best_gflops_per_s: number; median_gflops_per_s: number } | null {
  const native = loadNative();
  if (!native.ok || setMatmulPrecision(precision) !== precision) return null;
  const n = 2048;
  const a = new Float32Array(n * n).map((_, i) => ((i * 7919) % 1000) / 1000 - 0.5);
  const b = a.slice().reverse();
  const c = new Float32Array(n * n);
  const gemm = () => native.addon.gemm(false, false, n, n, n, 1, a, n, 0, b, n, 0, 0, c, n, 0, 1);
  gemm();
  const times: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    gemm();
    times.push(performance.now() - t0);
  }
  setMatmulPrecision("float32");
  const gflops = (ms: number) => r((2 * n ** 3) / (ms * 1e6), 1);
  return { n, best_gflops_per_s: gflops(Math.min(...times)), median_gflops_per_s: gflops(median(times)) };
}

/** One config, in this process: what the child prints. */
async function measure(name: string, o: Options) {
  const report = await initBackend(o.backend);
  const matmul = setMatmulPrecision(o.matmul);
  if (matmul !== o.matmul)
    throw new UsageError(`--matmul ${o.matmul} needs the native backend and AVX-512 BF16`);
  const cfg = parseTRMConfig(CONFIGS[name]!.cfg, `bench config ${name}`);
  const flops = flopsPerSample(cfg);
  const trainer = Trainer.create(cfg, { warmup_steps: 0 }, 0);
  const batch = randomBatch(cfg.vocab_size, cfg.seq_len, 1);
  const profiler = o.profile ? new KernelProfiler(tf.getBackend()) : null;

  for (let i = 0; i < o.warmup; i++) trainer.trainStep(batch);
  const tensorsAfterWarmup = tf.memory().numTensors;
  const trainTimes: number[] = [];
  const cpu0 = process.cpuUsage();
  profiler?.start();
  for (let i = 0; i < o.iters; i++) {
    const t0 = performance.now();
    trainer.trainStep(batch);
    trainTimes.push(performance.now() - t0);
  }
  profiler?.stop();
  const cpu = process.cpuUsage(cpu0);
  const tensorsAfter = tf.memory().numTensors;
  const trainProfile = profiler?.report(trainTimes.reduce((a, b) => a + b, 0));

  // Inference: one supervision step, no tape, state carried from step to step.
  const model = trainer.model;
  const tokens = tf.tensor2d(batch.tokens, [BATCH, cfg.seq_len], "int32");
  const rows = model.puzzleRows(batch.puzzleIds);
  let { zH, zL } = model.initState(BATCH);
  const inferTimes: number[] = [];
  const inferProfiler = o.profile ? new KernelProfiler(tf.getBackend()) : null;
  for (let i = 0; i < o.warmup + o.iters; i++) {
    if (i === o.warmup) inferProfiler?.start();
    const t0 = performance.now();
    const out = model.step(model.weights, zH, zL, tokens, rows);
    out.qHalt.dataSync();
    if (i >= o.warmup) inferTimes.push(performance.now() - t0);
    tf.dispose([zH, zL, out.logits, out.qHalt, out.qContinue]);
    zH = out.zH;
    zL = out.zL;
  }
  inferProfiler?.stop();
  tf.dispose([zH, zL, tokens, ...(rows ? [rows] : [])]);

  const trainMs = median(trainTimes);
  const inferMs = median(inferTimes);
  const peak = report.backend === "native" ? gemmPeak("float32") : null;
  const bf16Peak = matmul === "bf16" ? gemmPeak("bf16") : null;
  const native = loadNative();
  const bestTrainGflops = (BATCH * 1000 * flops.train) / Math.min(...trainTimes) / 1e9;
  const trainSps = (BATCH * 1000) / trainMs;
  const inferSps = (BATCH * 1000) / inferMs;
  return {
    config: name,
    shape: cfg,
    backend: report.backend,
    matmul,
    ...(native.ok && report.backend === "native" ? { blas_core: native.addon.info().blasCore } : {}),
    batch: BATCH,
    train: {
      samples_per_s: r(trainSps, 3),
      ms_per_step: r(trainMs, 1),
      // On a shared machine the fastest step is the closest to the unloaded time, and CPU time
      // (all threads) is what other work cannot inflate; with one thread it is the step's time.
      ms_per_step_best: r(Math.min(...trainTimes), 1),
      cpu_ms_per_step: r((cpu.user + cpu.system) / 1000 / o.iters, 1),
      gflops_per_s: r((trainSps * flops.train) / 1e9, 1),
      steps_timed: trainTimes.length,
    },
    infer: {
      samples_per_s: r(inferSps, 3),
      ms_per_step: r(inferMs, 1),
      gflops_per_s: r((inferSps * flops.forward) / 1e9, 1),
      steps_timed: inferTimes.length,
    },
    gflop_per_sample: { train: r(flops.train / 1e9, 3), forward: r(flops.forward / 1e9, 3) },
    ...(peak
      ? {
          sgemm_peak: peak,
          // Fastest training step against the fastest sgemm: both the least disturbed by other work.
          train_pct_of_sgemm_peak: r((100 * bestTrainGflops) / peak.best_gflops_per_s, 1),
        }
      : {}),
    ...(bf16Peak
      ? {
          bf16_peak: bf16Peak,
          train_pct_of_bf16_peak: r((100 * bestTrainGflops) / bf16Peak.best_gflops_per_s, 1),
        }
      : {}),
    peak_rss_mib: Math.round(process.resourceUsage().maxRSS / 1024),
    num_tensors: { after_warmup: tensorsAfterWarmup, after_timed_steps: tensorsAfter },
    ...(trainProfile
      ? {
          profile: {
            train: trainProfile,
            infer: inferProfiler!.report(inferTimes.reduce((a, b) => a + b, 0)),
          },
        }
      : {}),
  };
}

type Measured = Awaited<ReturnType<typeof measure>>;

/** ref_trm.py --bench with the same shapes, batch and 2 threads; its last stdout line is JSON. */
function runReference(name: string, o: Options): Record<string, unknown> {
  const refFlags = CONFIGS[name]!.refFlags;
  if (!refFlags) return { skipped: `the reference has no flags for config ${name}` };
  const python = "/usr/bin/python3";
  if (!existsSync(python)) return { skipped: `${python} not found` };
  if (!existsSync(o.reference)) return { skipped: `reference script not found at ${o.reference}` };
  // The same timed and warm-up steps as ours (the reference's defaults are 5 and 2).
  const args = [
    o.reference,
    "--bench",
    ...refFlags,
    "--batch",
    String(BATCH),
    "--threads",
    "2",
    "--iters",
    String(o.iters),
    "--warmup",
    String(o.warmup),
  ];
  process.stderr.write(`bench model: reference ${name}: ${python} ${args.join(" ")}\n`);
  const res = spawnSync(python, args, { encoding: "utf8", maxBuffer: 16 << 20 });
  if (res.status !== 0) {
    const why = (res.stderr || res.error?.message || "").trim().split("\n").pop();
    return { skipped: `the reference failed (exit ${res.status}): ${why}` };
  }
  const last = res.stdout.trim().split("\n").pop() ?? "";
  try {
    return JSON.parse(last) as Record<string, unknown>;
  } catch {
    return { skipped: `no JSON on the reference's last line: ${last.slice(0, 200)}` };
  }
}

/** One config in a child process of its own (its own peak RSS). */
function runOurs(name: string, o: Options): Measured {
  const self = fileURLToPath(import.meta.url);
  const childArgs = [
    self,
    "--child",
    "--config",
    name,
    "--iters",
    String(o.iters),
    "--warmup",
    String(o.warmup),
    "--backend",
    o.backend,
    "--matmul",
    o.matmul,
    ...(o.profile ? ["--profile"] : []),
  ];
  const res = spawnSync(process.execPath, childArgs, {
    encoding: "utf8",
    maxBuffer: 16 << 20,
    stdio: ["ignore", "pipe", "inherit"],
  });
  if (res.status !== 0) throw new Error(`config ${name} failed (exit ${res.status})`);
  return JSON.parse(res.stdout.trim().split("\n").pop()!) as Measured;
}

/**
 * Runs each config, then the reference beside it, `rounds` times in alternation: on a shared
 * machine the ratio of two runs seconds apart is steadier than either rate.
 */
export async function run(args: string[]): Promise<unknown> {
  const o = parseOptions(args);
  const results: Record<string, unknown> = {};
  const load = { start: loadavg().map((x) => r(x)), end: [] as number[] };
  for (const name of o.configs) {
    const rounds: Array<Record<string, number>> = [];
    let entry: Record<string, unknown> = {};
    for (let round = 0; round < o.rounds; round++) {
      process.stderr.write(
        `bench model: config ${name} (backend ${o.backend}), round ${round + 1}/${o.rounds}\n`,
      );
      const ours = runOurs(name, o);
      if (round === 0) entry = { ...ours };
      const row: Record<string, number> = {
        train_samples_per_s: ours.train.samples_per_s,
        infer_samples_per_s: ours.infer.samples_per_s,
        load_1m: r(loadavg()[0]!),
      };
      if (ours.train_pct_of_sgemm_peak !== undefined)
        row.train_pct_of_sgemm_peak = ours.train_pct_of_sgemm_peak;
      if (o.withReference) {
        const ref = runReference(name, o);
        if (round === 0) entry.reference = ref;
        if (typeof ref.train_samples_per_s === "number" && typeof ref.infer_samples_per_s === "number") {
          row.ref_train_samples_per_s = ref.train_samples_per_s;
          row.ref_infer_samples_per_s = ref.infer_samples_per_s;
          row.train_ratio = r(ours.train.samples_per_s / ref.train_samples_per_s, 3);
          row.infer_ratio = r(ours.infer.samples_per_s / ref.infer_samples_per_s, 3);
        }
      }
      rounds.push(row);
    }
    const ratios = rounds.filter((x) => x.train_ratio !== undefined);
    if (ratios.length) {
      entry.ratio_vs_reference = {
        train: median(ratios.map((x) => x.train_ratio!)),
        infer: median(ratios.map((x) => x.infer_ratio!)),
        ...(ratios.length > 1 ? { of_rounds: ratios.length } : {}),
      };
    }
    if (o.rounds > 1) entry.rounds = rounds;
    results[name] = entry;
  }
  load.end = loadavg().map((x) => r(x));
  return {
    configs: results,
    load_average: load,
    note: "the 1/5/15-minute load average; other work on the machine skews the figures",
  };
}

function invokedDirectly(): boolean {
  try {
    return realpathSync(process.argv[1] ?? "") === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (invokedDirectly() && process.argv.includes("--child")) {
  const o = parseOptions(process.argv.slice(2));
  measure(o.configs[0]!, o).then(
    (m) => process.stdout.write(`${JSON.stringify(m)}\n`),
    (err) => {
      process.stderr.write(
        `bench model: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
      );
      process.exitCode = 1;
    },
  );
}
