// A small trained champion for the scan tests: the real pipeline collects a few simulated days,
// builds, trains a tiny TRM briefly and registers it (with its knowledge card); the version is
// made champion whatever the gate said, since the tests judge the scan, not the model.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Config, parseConfig } from "../../../src/config/index.js";
import { writeSegment } from "../../../src/pipeline/collect/raw-store.js";
import type { LogEntryRecord } from "../../../src/pipeline/collect/records.js";
import { createPipeline } from "../../../src/pipeline/create.js";
import type { Pipeline } from "../../../src/pipeline/run.js";
import { agentConfigFor, createSimulator, type Simulator } from "../../../src/simulator/index.js";

export const AGENT = "sre";
export const HOUR = 3_600_000;

export interface TrainedEnv {
  sim: Simulator;
  config: Config;
  pipeline: Pipeline;
  version: string;
}

export async function trainedChampion(): Promise<TrainedEnv> {
  // The collector reads up to now: the simulated days end now.
  const sim = await createSimulator({ seed: 7, days: 3, logsPerDay: 1500, tracesPerDay: 300 });
  const dir = mkdtempSync(join(tmpdir(), "trm-scan-"));
  const few = { max_examples: 600, min_examples: 1 };
  const config = parseConfig({
    data_dir: join(dir, "data"),
    log_level: "silent",
    store: { kind: "fs" },
    agents: { [AGENT]: agentConfigFor(sim.url, { lookback: "3d" }) },
    model: {
      preset: "demo",
      hidden_size: 32,
      num_heads: 2,
      H_cycles: 1,
      L_cycles: 1,
      halt_max_steps: 1,
      puzzle_emb_len: 2,
      loss_type: "softmax",
    },
    dataset: {
      window: "3d",
      seq_len: 64,
      tasks: {
        code_infill: { enabled: false },
        log_triage: few,
        metric_forecast: { ...few, points: 8, step: "15m", stride: 2 },
        trace_outcome: few,
      },
    },
    train: {
      max_steps: 100,
      batch_size: 16,
      eval_interval: 100,
      checkpoint_interval: 100,
      log_interval: 20,
      eval_examples: 32,
      warmup_steps: 5,
      lr: 0.003,
      ema_decay: 0.8,
    },
    gate: { min_examples: 5 },
    serve: { max_wait_ms: 1 },
    retention: { auto: false },
  });
  const pipeline = createPipeline(config);
  const run = await (await pipeline.startRun({ agent: AGENT, trigger: { kind: "cli", actor: "test" } })).done;
  if (run.status !== "succeeded" || !run.model_version)
    throw new Error(`the training run ended ${run.status}: ${run.error}`);
  const index = await pipeline.registry.read(AGENT);
  if (index.aliases.champion !== run.model_version)
    await pipeline.registry.promote(AGENT, run.model_version, {
      actor: "test",
      reason: "scan tests",
      force: true,
    });
  return { sim, config, pipeline, version: run.model_version };
}

/** A normal hour: no staged incident within an hour of it, inside the collected window. */
export function quietHour(sim: Simulator, usable: (end: number) => boolean = () => true): number {
  const incidents = sim.groundTruth.incidents;
  const last = Math.floor(sim.world.end / HOUR) * HOUR - HOUR;
  for (let end = last; end > last - 2 * 86_400_000; end -= HOUR) {
    const start = end - HOUR;
    if (incidents.every((i) => i.end_ms < start - HOUR || i.start_ms > end + HOUR) && usable(end)) return end;
  }
  throw new Error("no quiet hour in the window");
}

/** Writes error lines of a template nobody has seen, as the service's own stream, inside the hour. */
export async function plantNovelErrors(
  env: TrainedEnv,
  like: LogEntryRecord,
  from: number,
  n: number,
  everyMs = 20_000,
): Promise<string> {
  const line = "ERROR flux capacitor desynchronised: quorum lost on shard 7, refusing writes";
  const records: LogEntryRecord[] = [];
  for (let i = 0; i < n; i++) {
    const ns = BigInt(from + i * everyMs) * 1_000_000n;
    records.push({
      ...like,
      labels: { ...like.labels, detected_level: "error" },
      ts_ns: ns.toString(),
      line: line.replace("7", String(7 + i)),
    });
  }
  const day = new Date(from).toISOString().slice(0, 10);
  await writeSegment(env.pipeline.store, AGENT, "loki", day, "zz-planted", records);
  return line;
}
