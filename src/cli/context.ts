// What every command works with, made one way: the config (-c), the pipeline built by the
// composition root, and through it the store and the model registry. Plus who is acting.
import { hostname, userInfo } from "node:os";
import type { Command } from "commander";
import type { Config } from "../config/index.js";
import { UsageError } from "../errors.js";
import { createPipeline } from "../pipeline/create.js";
import type { ModelRegistry } from "../pipeline/deploy/registry.js";
import type { Pipeline } from "../pipeline/run.js";
import type { ObjectStore } from "../store/index.js";
import { loadCliConfig } from "./common.js";

export interface CliContext {
  config: Config;
  pipeline: Pipeline;
  store: ObjectStore;
  registry: ModelRegistry;
}

export function cliContext(cmd: Command): CliContext {
  const { config } = loadCliConfig(cmd);
  const pipeline = createPipeline(config);
  return { config, pipeline, store: pipeline.store, registry: pipeline.registry };
}

/** Who acts, for run triggers and the alias history. */
export function actor(): string {
  try {
    return `cli:${userInfo().username}@${hostname()}`;
  } catch {
    return "cli";
  }
}

export function agentOf(config: Config, agent: string): string {
  if (!(agent in config.agents)) {
    const known = Object.keys(config.agents);
    throw new UsageError(
      `unknown agent "${agent}" (${known.length ? `configured: ${known.join(", ")}` : "no agents configured"})`,
    );
  }
  return agent;
}
