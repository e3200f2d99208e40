// THE crash test: `trm-forge run` is killed with SIGKILL in the middle of training, started
// again, and must (1) finish the same run, (2) repeat at most one checkpoint interval of steps,
// and (3) end with the same weights as a run that was never interrupted (same seed, same data).
// It drives the built CLI (npm test builds it first) on a tiny model, so it stays quick.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { writeRawHomelab } from "../../src/bench/homelab-raw.js";
import { parseConfig } from "../../src/config/index.js";
import { describeBackends } from "../../src/model/backend.js";
import { decodeSafetensors, toFloat32 } from "../../src/model/safetensors.js";
import { buildDataset } from "../../src/pipeline/dataset/index.js";
import type { RunRecord } from "../../src/pipeline/run.js";
import { FsStore } from "../../src/store/index.js";

const CLI = resolve("dist/cli.js");
const INTERVAL = 10;
const MAX_STEPS = 60;

const CONFIG = `
data_dir: data
log_level: warn
agents:
  sre: {}
model:
  preset: demo
  hidden_size: 16
  num_heads: 2
  H_cycles: 1
  L_cycles: 1
  halt_max_steps: 2
  puzzle_emb_len: 2
dataset:
  window: 4d
  seq_len: 64
  tasks:
    code_infill: { enabled: false }
    metric_forecast: { enabled: false }
    log_triage: { max_examples: 120, min_examples: 1 }
    trace_outcome: { max_examples: 120, min_examples: 1 }
train:
  seed: 7
  max_steps: ${MAX_STEPS}
  batch_size: 8
  eval_interval: 20
  checkpoint_interval: ${INTERVAL}
  keep_checkpoints: 2
  log_interval: 5
  eval_examples: 16
  warmup_steps: 5
  lr: 0.001
  ema_decay: 0.9
# The test compares the final training states of two finished runs; gc would drop them.
retention:
  auto: false
`;

interface Child {
  proc: ChildProcess;
  stdout: () => string;
  /** Training steps reported on stderr so far. */
  steps: number[];
  runId: () => string | null;
  exit: Promise<number | null>;
}

function cli(dir: string, args: string[]): Child {
  const proc = spawn(process.execPath, [CLI, "-c", join(dir, "trm-forge.yaml"), ...args], {
    cwd: dir,
    env: { ...process.env, TRM_FORGE_LOG_LEVEL: "warn" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  let runId: string | null = null;
  const steps: number[] = [];
  proc.stdout!.on("data", (d) => {
    out += d;
  });
  proc.stderr!.on("data", (d) => {
    err += d;
    const lines = err.split("\n");
    err = lines.pop()!;
    for (const line of lines) {
      if (!line.startsWith("{")) continue;
      const e = JSON.parse(line) as {
        type?: string;
        run?: string;
        runId?: string;
        stage?: string;
        step?: number;
        loss?: number;
      };
      runId ??= e.run ?? e.runId ?? null;
      if (e.type === "progress" && e.stage === "train" && typeof e.step === "number" && e.loss !== undefined)
        steps.push(e.step);
    }
  });
  const exit = new Promise<number | null>((res) => proc.on("exit", (code) => res(code)));
  return { proc, stdout: () => out, steps, runId: () => runId, exit };
}

function stateCheckpoints(dir: string, runId: string): number[] {
  const base = join(dir, "data", "store", "runs", "sre", runId, "checkpoints");
  if (!existsSync(base)) return [];
  return readdirSync(base)
    .filter((d) => d.startsWith("step-") && existsSync(join(base, d, "manifest.json")))
    .map((d) => Number(d.slice(5)));
}

function finalState(dir: string, runId: string) {
  const file = join(
    dir,
    "data",
    "store",
    "runs",
    "sre",
    runId,
    "checkpoints",
    `step-${String(MAX_STEPS).padStart(8, "0")}`,
    "state.safetensors",
  );
  return decodeSafetensors(readFileSync(file), file);
}

function metricSteps(dir: string, runId: string): number[] {
  const text = readFileSync(join(dir, "data", "store", "runs", "sre", runId, "metrics.jsonl"), "utf8");
  return text
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { kind: string; step: number })
    .filter((l) => l.kind === "train")
    .map((l) => l.step);
}

describe("a run killed with SIGKILL in the middle of training", () => {
  const dir = mkdtempSync(join(tmpdir(), "trm-kill-"));

  beforeAll(async () => {
    if (!existsSync(CLI))
      throw new Error("build first: npx tsc -p tsconfig.json (npm test does it in pretest)");
    // Both processes must compute with the same kernels: pin the backend this machine has.
    const backend = (await describeBackends("auto")).backend ?? "cpu";
    const text = CONFIG.replace("  preset: demo\n", `  preset: demo\n  backend: ${backend}\n`);
    writeFileSync(join(dir, "trm-forge.yaml"), text);
    const config = parseConfig(parseYaml(text));
    expect(config.model.backend).toBe(backend);
    const store = new FsStore(join(dir, "data", "store"));
    await writeRawHomelab({
      store,
      agent: "sre",
      days: 4,
      files: 10,
      logLines: 600,
      traces: 300,
      series: 6,
      end: Date.parse("2026-11-29T00:00:00Z"),
    });
    await buildDataset({ store, agent: "sre", config: config.dataset });
  });

  it("resumes from its last checkpoint and ends with the weights of an uninterrupted run", {
    timeout: 600_000,
  }, async () => {
    // 1. The reference: the same training, never interrupted.
    const ref = cli(dir, ["run", "--agent", "sre", "--stages", "train", "--json"]);
    expect(await ref.exit).toBe(0);
    const refRecord = JSON.parse(ref.stdout()) as RunRecord;
    expect(refRecord.status).toBe("succeeded");

    // 2. The same training, killed once its first checkpoint is written.
    const victim = cli(dir, ["run", "--agent", "sre", "--stages", "train", "--json"]);
    let runId: string | null = null;
    for (let i = 0; i < 6000; i++) {
      runId = victim.runId();
      if (runId && stateCheckpoints(dir, runId).length > 0) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(runId).not.toBeNull();
    victim.proc.kill("SIGKILL");
    expect(await victim.exit).toBeNull();
    const checkpointsAtKill = stateCheckpoints(dir, runId!);
    const lastCheckpoint = Math.max(...checkpointsAtKill);
    expect(lastCheckpoint).toBeLessThan(MAX_STEPS);
    const onDisk = JSON.parse(
      readFileSync(join(dir, "data", "store", "runs", "sre", runId!, "run.json"), "utf8"),
    ) as RunRecord;
    expect(onDisk.status).toBe("running");
    const reachedBeforeKill = Math.max(lastCheckpoint, ...victim.steps, ...metricSteps(dir, runId!));

    // 3. Start it again: the interrupted run is found and continued.
    const again = cli(dir, ["run", "--agent", "sre", "--stages", "train", "--json"]);
    expect(await again.exit).toBe(0);
    const rec = JSON.parse(again.stdout()) as RunRecord;
    expect(rec.id).toBe(runId);
    expect(rec.status).toBe("succeeded");
    expect(rec.resumes).toHaveLength(1);
    expect(rec.resumes[0].from_stage).toBe("train");
    const train = rec.stages.find((s) => s.name === "train")!;
    expect(train.attempts.map((a) => a.status)).toEqual(["interrupted", "succeeded"]);

    // Both processes computed with the same kernels (float results depend on the backend).
    expect(train.output.backend).toBe(refRecord.stages.find((s) => s.name === "train")!.output.backend);

    // At most one checkpoint interval of steps is done twice.
    expect(train.output.resumed_from_step).toBe(lastCheckpoint);
    expect(reachedBeforeKill - lastCheckpoint).toBeLessThanOrEqual(INTERVAL);
    expect(again.steps[0]).toBeGreaterThan(lastCheckpoint);
    expect(again.steps[0] - lastCheckpoint).toBeLessThanOrEqual(INTERVAL);

    // The resumed run logs each step once, exactly as the reference did.
    expect(metricSteps(dir, runId!)).toEqual(metricSteps(dir, refRecord.id));

    // Same weights, optimiser moments and EMA as the uninterrupted run, to float tolerance.
    const a = finalState(dir, refRecord.id);
    const b = finalState(dir, runId!);
    expect([...b.tensors.keys()].sort()).toEqual([...a.tensors.keys()].sort());
    expect(JSON.parse(b.metadata.train_state).step).toBe(MAX_STEPS);
    let compared = 0;
    for (const [name, t] of a.tensors) {
      if (t.dtype !== "F32") continue;
      const x = toFloat32(t, name);
      const y = toFloat32(b.tensors.get(name)!, name);
      expect(y.length).toBe(x.length);
      for (let i = 0; i < x.length; i++) {
        if (Math.abs(x[i] - y[i]) > 1e-6 + 1e-5 * Math.abs(x[i]))
          throw new Error(`${name}[${i}] differs: ${x[i]} (uninterrupted) vs ${y[i]} (resumed)`);
      }
      compared++;
    }
    expect(compared).toBeGreaterThan(10);
    expect(
      a.tensors.has("ema.lm_head.weight") || [...a.tensors.keys()].some((k) => k.startsWith("ema.")),
    ).toBe(true);
  });
});
