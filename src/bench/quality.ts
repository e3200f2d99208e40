// `npm run bench -- quality [--json] [--configs LIST] [--steps LIST] [--svg PATH] [--days N]
// [--seed N] [--train-seed N] [--examples N] [--matmul float32|bf16] [--keep DIR] [--from JSON,...]`: what each training budget buys. The
// demo's agent collects the simulator's days once and builds the demo's dataset; then every model config trains from
// scratch to each step count (its own run, so the learning-rate schedule ends where the budget
// does) and the pipeline's own evaluation scores it on the held-out days against the tasks'
// baselines. Records wall time, CPU time and samples/s per run; --svg draws score against CPU
// minutes, one panel per task, one line per config; --from redraws it from earlier outputs
// (runs made in several sittings or processes), training nothing.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { type Config, parseConfig } from "../config/index.js";
import { MATMUL_PRECISIONS, type MatmulPrecision } from "../config/schema.js";
import { DEMO_AGENT, demoConfig, FULL } from "../demo/config.js";
import { UsageError } from "../errors.js";
import { activeBackend, initBackend } from "../model/backend.js";
import { createPipeline } from "../pipeline/create.js";
import { splitCaps } from "../pipeline/dataset/index.js";
import { evaluationRunKey } from "../pipeline/evaluate/stage.js";
import type { EvaluationResult } from "../pipeline/evaluate.js";
import type { RunEvent, StageName } from "../pipeline/run.js";
import { createSimulator } from "../simulator/index.js";
import { FsStore } from "../store/index.js";
import { qualitySvg } from "./quality-svg.js";

/** One model config: a preset and its recursion (T = H_cycles, n = L_cycles, N_sup = halt_max_steps). */
export interface QualityConfig {
  preset: "demo" | "small";
  T: number;
  n: number;
  N_sup: number;
}

interface Args {
  configs: QualityConfig[];
  steps: number[];
  days: number;
  seed: number;
  examples: number;
  /** train.matmul for every run. */
  matmul: MatmulPrecision;
  /** train.seed for every run (initial weights and data order); the homelab's is --seed. */
  trainSeed?: number;
  svg?: string;
  keep?: string;
  /** Earlier outputs of this bench: their runs are merged and charted, nothing is trained. */
  from?: string[];
}

/**
 * Default configs: the demo's own settings, each preset's defaults, and T=1, n=1 controls (one
 * net call per supervision step, one supervision step: no recursion at all).
 */
const DEFAULT_CONFIGS = "demo/1/2/3,demo/2/3/6,demo/1/1/1,small/3/4/8,small/1/1/1";

export function parseConfigs(list: string): QualityConfig[] {
  return list.split(",").map((item) => {
    const [preset, ...nums] = item.trim().split("/");
    const [T, n, N] = nums.map(Number);
    if ((preset !== "demo" && preset !== "small") || nums.length !== 3 || ![T, n, N].every(posInt))
      throw new UsageError(
        `--configs: "${item}" is not preset/T/n/N_sup (e.g. demo/1/2/3; presets demo, small)`,
      );
    return { preset, T, n, N_sup: N };
  });
}

const posInt = (v: number) => Number.isInteger(v) && v > 0;

export function parseArgs(argv: string[]): Args {
  const a: Args = {
    configs: parseConfigs(DEFAULT_CONFIGS),
    steps: [150, 300, 600],
    days: FULL.days,
    seed: FULL.seed,
    examples: FULL.examples,
    matmul: "float32",
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    if (flag === "--json") continue; // the bench always prints JSON
    const v = argv[++i];
    if (v === undefined) throw new UsageError(`quality bench: ${flag} needs a value`);
    if (flag === "--configs") a.configs = parseConfigs(v);
    else if (flag === "--steps") a.steps = v.split(",").map(Number);
    else if (flag === "--days") a.days = Number(v);
    else if (flag === "--seed") a.seed = Number(v);
    else if (flag === "--train-seed") a.trainSeed = Number(v);
    else if (flag === "--examples") a.examples = Number(v);
    else if (flag === "--matmul") a.matmul = v as MatmulPrecision;
    else if (flag === "--svg") a.svg = v;
    else if (flag === "--keep") a.keep = v;
    else if (flag === "--from") a.from = v.split(",");
    else
      throw new UsageError(
        `quality bench: unknown option ${flag} (have --configs preset/T/n/N,..., --steps N,..., --days N, --seed N, --train-seed N, --examples N, --matmul float32|bf16, --svg PATH, --keep DIR, --from JSON,..., --json)`,
      );
  }
  if (!a.steps.length || !a.steps.every(posInt)) throw new UsageError("--steps must be positive integers");
  a.steps.sort((x, y) => x - y);
  if (!(a.days >= 4 && a.days <= 60)) throw new UsageError("--days must be in [4, 60]");
  if (!Number.isInteger(a.seed)) throw new UsageError("--seed must be an integer");
  if (a.trainSeed !== undefined && !(Number.isInteger(a.trainSeed) && a.trainSeed >= 0))
    throw new UsageError("--train-seed must be a non-negative integer");
  if (!posInt(a.examples)) throw new UsageError("--examples must be a positive integer");
  if (!MATMUL_PRECISIONS.includes(a.matmul)) throw new UsageError("--matmul must be float32 or bf16");
  return a;
}

/** One task's result in one run: the model's primary score against its strongest baseline. */
export interface TaskPoint {
  score: number;
  best_baseline: string | null;
  baseline_score: number | null;
  margin: number | null;
  /** The paired bootstrap 95% interval of the margin, when the evaluation has one. */
  interval: [number, number] | null;
}

export interface QualityRun {
  config: QualityConfig;
  steps: number;
  steps_done: number;
  wall_s: number;
  cpu_s: number;
  samples_per_s: number | null;
  params: number | null;
  gate_passed: boolean;
  tasks: Record<string, TaskPoint>;
  /** What it was scored on (absent in outputs before they were recorded): --from may merge collections. */
  dataset?: string;
  /** Held-out examples kept per task, at most. */
  held_out_caps?: Record<string, number>;
  traces_per_day?: number;
  /** The precision training's products ran in (absent before it was recorded: float32). */
  matmul?: MatmulPrecision;
  /** train.seed (absent before it was recorded: the demo's 0). */
  train_seed?: number;
  /** The evaluate stage's wall and CPU seconds (absent before they were recorded). */
  eval_wall_s?: number;
  eval_cpu_s?: number;
  /** Mean supervision steps the evaluation's answers took with early halting (of N_sup). */
  eval_halt_steps?: number;
}

/** What an earlier bench collected into a --keep directory (a marker from before that: unknown). */
async function readCollected(file: string): Promise<Record<string, unknown>> {
  try {
    const v = JSON.parse(await readFile(file, "utf8")) as unknown;
    if (v && typeof v === "object") return v as Record<string, unknown>;
  } catch {}
  return { settings: "unknown (collected by an older bench)" };
}

export const label = (c: QualityConfig, matmul: MatmulPrecision = "float32") =>
  `${c.preset} T=${c.T} n=${c.n} N_sup=${c.N_sup}${matmul === "bf16" ? " bf16" : ""}`;

const round = (v: number, d = 4) => Math.round(v * 10 ** d) / 10 ** d;

/** The margin's paired bootstrap interval, when the evaluation has one (evaluations before them do not). */
function intervalOf(t: EvaluationResult["tasks"][string]): [number, number] | null {
  const iv = (t as { intervals?: { baseline?: { low: number; high: number } | null } }).intervals?.baseline;
  return iv ? [round(iv.low), round(iv.high)] : null;
}

export function taskPoints(ev: EvaluationResult): Record<string, TaskPoint> {
  const out: Record<string, TaskPoint> = {};
  for (const [name, t] of Object.entries(ev.tasks)) {
    const base = t.best_baseline ? t.baselines[t.best_baseline]?.score : undefined;
    const sign = t.direction === "lower" ? -1 : 1;
    out[name] = {
      score: round(t.candidate.score),
      best_baseline: t.best_baseline,
      baseline_score: base === undefined ? null : round(base),
      margin: base === undefined ? null : round(sign * (t.candidate.score - base)),
      interval: intervalOf(t),
    };
  }
  return out;
}

/** The config of one bench run: the demo's, with this model config and step budget. */
export function configFor(
  base: Record<string, unknown>,
  c: QualityConfig,
  steps: number,
  dir: string,
  train: { matmul?: MatmulPrecision; seed?: number } = {},
): Config {
  const raw = structuredClone(base) as Record<string, Record<string, unknown>>;
  raw.model = { ...raw.model, preset: c.preset, H_cycles: c.T, L_cycles: c.n, halt_max_steps: c.N_sup };
  const evalEvery = Math.max(25, Math.round(steps / 4));
  raw.train = {
    ...raw.train,
    max_steps: steps,
    warmup_steps: Math.min(30, Math.round(steps / 10)),
    eval_interval: evalEvery,
    checkpoint_interval: evalEvery,
    ...train,
  };
  return parseConfig(raw, join(dir, "trm-forge.yaml"));
}

/** The runs of earlier `npm run bench -- quality` outputs (each a whole JSON document). */
export async function readRuns(files: readonly string[]): Promise<QualityRun[]> {
  const runs: QualityRun[] = [];
  for (const f of files) {
    const doc = JSON.parse(await readFile(f, "utf8")) as { results?: { quality?: { runs?: QualityRun[] } } };
    const got = doc.results?.quality?.runs;
    if (!Array.isArray(got))
      throw new UsageError(`${f}: not an output of the quality bench (no results.quality.runs)`);
    runs.push(...got);
  }
  return runs;
}

async function drawChart(path: string, runs: readonly QualityRun[]): Promise<void> {
  await mkdir(dirname(resolve(path)), { recursive: true });
  await writeFile(path, qualitySvg(runs.map((x) => ({ ...x, series: label(x.config, x.matmul) }))));
}

export async function run(argv: string[]): Promise<unknown> {
  const args = parseArgs(argv);
  if (args.from) {
    const runs = await readRuns(args.from);
    if (args.svg) await drawChart(args.svg, runs);
    return { merged_from: args.from, runs };
  }
  const dir = args.keep ? resolve(args.keep) : mkdtempSync(join(tmpdir(), "trm-bench-quality-"));
  try {
    return await measure(args, dir);
  } finally {
    // A failed bench leaves no temporary directory behind either; --keep's is the caller's.
    if (!args.keep) rmSync(dir, { recursive: true, force: true });
  }
}

/** Collects (or reuses --keep's collection), builds once, then trains and evaluates each config. */
async function measure(args: Args, dir: string) {
  await mkdir(dir, { recursive: true });
  const tokenFile = join(dir, "bench.token");
  if (!existsSync(tokenFile))
    writeFileSync(tokenFile, "quality-bench-token-0123456789abcdef\n", { mode: 0o600 });
  const log = (s: string) => process.stderr.write(`quality bench: ${s}\n`);
  const collected = join(dir, "collected");
  // The simulated window ends at the start of this minute; --keep reuses what was collected, if
  // it was collected with these settings.
  const earlier = existsSync(collected) ? await readCollected(collected) : null;
  const homelab = { days: args.days, seed: args.seed, traces_per_day: FULL.tracesPerDay };
  if (earlier && !(Object.keys(homelab) as (keyof typeof homelab)[]).every((k) => earlier[k] === homelab[k]))
    throw new UsageError(
      `${dir} holds a collection of ${JSON.stringify(earlier)}, not ${JSON.stringify(homelab)}: use another --keep, the same --days and --seed, or remove ${collected} to collect again`,
    );
  const sim = earlier
    ? null
    : await createSimulator({ seed: args.seed, days: args.days, tracesPerDay: homelab.traces_per_day });
  let simOpen = sim !== null;
  // Closed once the dataset is built (training needs no simulator), or on any failure before.
  const closeSim = async () => {
    if (simOpen) await sim?.close();
    simOpen = false;
  };
  try {
    const valExamples = Math.round((FULL.valExamples * args.examples) / FULL.examples);
    const base = demoConfig({
      dataDir: join(dir, "data"),
      simulatorUrl: sim?.url ?? "http://127.0.0.1:9",
      // The held-out cap scales with --examples at the demo's ratio (2,400 per 3,000).
      settings: {
        ...FULL,
        days: args.days,
        seed: args.seed,
        examples: args.examples,
        valExamples,
      },
      tokenFile,
      serverPort: 8750,
    });
    const store = new FsStore(join(dir, "data", "store"));
    const runTrain = {
      matmul: args.matmul,
      ...(args.trainSeed !== undefined ? { seed: args.trainSeed } : {}),
    };
    const first = configFor(base, args.configs[0], args.steps[0], dir, runTrain);
    // Read off the dataset config the build uses (log_triage keeps its val_fraction share).
    const heldOut = Object.fromEntries(
      Object.entries(first.dataset.tasks).map(([t, c]) => [t, splitCaps(c, first.dataset.val_fraction).val]),
    );
    const backend = await initBackend(first.model.backend);
    const stage = async (
      config: Config,
      stages: StageName[],
      datasetId?: string,
      onEvent?: (e: RunEvent) => void,
    ) => {
      const pipeline = createPipeline(config, { store, report: false, deployHooks: [] });
      const started = await pipeline.startRun({
        agent: DEMO_AGENT,
        stages,
        datasetId,
        fromScratch: true,
        onEvent,
        trigger: { kind: "api", actor: "bench", reason: "quality bench" },
      });
      // Another process (a second bench on the same --keep) holds the agent: its run is not ours.
      if (!started.started)
        throw new Error(
          `run ${started.runId} of ${DEMO_AGENT} holds ${dir}; let it end or use another --keep`,
        );
      const rec = await started.done;
      if (rec.status !== "succeeded") throw new Error(`${stages.join("+")} ${rec.status}: ${rec.error}`);
      return { rec, pipeline };
    };
    let datasetId: string;
    try {
      if (sim) {
        log(`collecting ${args.days} simulated days (seed ${args.seed})`);
        await stage(first, ["collect"]);
        await writeFile(
          collected,
          `${JSON.stringify({ ...homelab, collected_at: new Date().toISOString() })}\n`,
        );
      }
      const built = await stage(first, ["build"]);
      datasetId = built.rec.dataset_id!;
      log(`dataset ${datasetId}, backend ${backend.backend}`);
    } finally {
      await closeSim();
    }
    const runs: QualityRun[] = [];
    for (const c of args.configs) {
      for (const steps of args.steps) {
        const config = configFor(base, c, steps, dir, runTrain);
        // Each stage's own time: both clocks read when it starts and when it ends.
        const clocks: Partial<
          Record<StageName, { t0: number; c0: NodeJS.CpuUsage; wall_s: number; cpu_s: number }>
        > = {};
        const onEvent = (e: RunEvent) => {
          if (e.type !== "stage") return;
          if (e.status === "running") {
            clocks[e.stage] = { t0: performance.now(), c0: process.cpuUsage(), wall_s: 0, cpu_s: 0 };
            return;
          }
          const c = clocks[e.stage];
          if (!c) return;
          const u = process.cpuUsage(c.c0);
          c.wall_s = (performance.now() - c.t0) / 1000;
          c.cpu_s = (u.user + u.system) / 1e6;
        };
        const { rec, pipeline } = await stage(config, ["train", "evaluate"], datasetId, onEvent);
        const ev = JSON.parse(
          (await pipeline.store.get(evaluationRunKey(DEMO_AGENT, rec.id))).toString("utf8"),
        ) as EvaluationResult;
        const out = rec.stages.find((s) => s.name === "train")?.output as
          | { steps?: number; samples_per_s?: number; params?: number; matmul?: MatmulPrecision }
          | undefined;
        const r: QualityRun = {
          config: c,
          steps,
          steps_done: out?.steps ?? steps,
          wall_s: round(clocks.train?.wall_s ?? 0, 1),
          cpu_s: round(clocks.train?.cpu_s ?? 0, 1),
          samples_per_s: typeof out?.samples_per_s === "number" ? round(out.samples_per_s, 1) : null,
          params: out?.params ?? null,
          gate_passed: ev.gate.passed,
          tasks: taskPoints(ev),
          dataset: datasetId,
          held_out_caps: heldOut,
          traces_per_day: homelab.traces_per_day,
          matmul: out?.matmul ?? "float32",
          train_seed: config.train.seed,
          eval_wall_s: round(clocks.evaluate?.wall_s ?? 0, 1),
          eval_cpu_s: round(clocks.evaluate?.cpu_s ?? 0, 1),
          eval_halt_steps: round(ev.halting.candidate.mean, 2),
        };
        runs.push(r);
        log(
          `${label(c, r.matmul)} ${steps} steps: ${r.wall_s} s wall, ${r.cpu_s} s CPU; evaluation ${r.eval_wall_s} s wall, ${r.eval_halt_steps} supervision steps an answer; ${Object.entries(
            r.tasks,
          )
            .map(([t, p]) => `${t} ${p.score} (${p.best_baseline} ${p.baseline_score})`)
            .join(", ")}; gate ${r.gate_passed ? "passed" : "failed"}`,
        );
        // Redrawn after every run: a long bench stopped early still leaves its chart so far.
        if (args.svg) await drawChart(args.svg, runs);
      }
    }
    return {
      backend: activeBackend(),
      dataset: datasetId,
      days: args.days,
      seed: args.seed,
      examples_per_task: args.examples,
      held_out_caps: heldOut,
      traces_per_day: homelab.traces_per_day,
      runs,
    };
  } finally {
    await closeSim();
  }
}
