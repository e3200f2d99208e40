// The composition root: the one place that puts the real stages, the runner's replacements and
// the run-end report together into a Pipeline. The CLI, the server, the scheduler, the demo and
// a Kubernetes Job's worker all build their pipeline here.
import type { Config } from "../config/index.js";
import { type ObjectStore, openStore } from "../store/index.js";
import { collectStage } from "./collect/stage.js";
import type { StageFns, StageOutput } from "./contract.js";
import { buildStage } from "./dataset/stage.js";
import { type DeployHook, defaultDeployHooks, deployStage } from "./deploy/stage.js";
import { evaluateStage } from "./evaluate/stage.js";
import { writeRunReport } from "./report.js";
import { gcAfterRun } from "./retention/gc.js";
import { Pipeline, type PipelineOptions } from "./run.js";
import { runnerStages } from "./runner/train-stage.js";
import { trainStage } from "./train/stage.js";

export interface StageOptions {
  /** Default: defaultDeployHooks(). */
  deployHooks?: DeployHook[];
}

/** The five real stages; each returns its stage's output as the contract types it. */
export function realStages(opts: StageOptions = {}): StageFns {
  const hooks = opts.deployHooks ?? defaultDeployHooks();
  const stages: { [S in keyof StageFns]: (...a: Parameters<StageFns[S]>) => Promise<StageOutput<S>> } = {
    collect: collectStage,
    build: buildStage,
    train: trainStage,
    evaluate: evaluateStage,
    deploy: (ctx) => deployStage(ctx, hooks),
  };
  return stages;
}

export interface CreatePipelineOptions {
  /** Default: openStore(config). */
  store?: ObjectStore;
  /** What deploy does besides the registry; default defaultDeployHooks() (knowledge.md, Ollama, vLLM). */
  deployHooks?: DeployHook[];
  /** Replaces stages (e.g. the Kubernetes train stage, or tests' own). */
  stages?: Partial<StageFns>;
  now?: () => Date;
  /** Write report.html when a run ends (default true). */
  report?: boolean;
  /** Stops every run of this pipeline (a server shutdown); see PipelineOptions.signal. */
  signal?: PipelineOptions["signal"];
  /** Called for every run this pipeline starts (the server's jobs follow them). */
  onRunStarted?: PipelineOptions["onRunStarted"];
}

/** The pipeline with the real stages, the store from the config, and report.html at the end. */
export function createPipeline(config: Config, opts: CreatePipelineOptions = {}): Pipeline {
  return new Pipeline({
    config,
    store: opts.store ?? openStore(config),
    // runner: kubernetes moves the train stage into a Job on the GPU pool; explicit stages win over both.
    stages: { ...realStages({ deployHooks: opts.deployHooks }), ...runnerStages(config), ...opts.stages },
    now: opts.now,
    signal: opts.signal,
    onRunStarted: opts.onRunStarted,
    onRunEnd: async (record, p) => {
      try {
        if (opts.report !== false) await writeRunReport(p.store, record);
      } finally {
        // Still under the run's lock; never throws (a failure is logged and recorded in gc.json).
        await gcAfterRun({
          store: p.store,
          registry: p.registry,
          config,
          agent: record.agent,
          now: opts.now?.(),
          actor: `run:${record.id}`,
          runId: record.id,
        });
      }
    },
  });
}
