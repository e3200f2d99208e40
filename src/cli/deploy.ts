import type { Command } from "commander";
import { UsageError } from "../errors.js";
import { ModelRegistry } from "../pipeline/deploy/registry.js";
import { DEPLOY_TARGETS, type DeployTarget, deployTargets } from "../pipeline/deploy/targets.js";
import { openStore } from "../store/index.js";
import { action, emit, loadCliConfig } from "./common.js";

export function registerDeployCommand(program: Command): void {
  program
    .command("deploy")
    .description(
      "Publish a model version's knowledge to Ollama or vLLM now (the deploy stage does this every run)",
    )
    .requiredOption("--agent <name>", "agent")
    .requiredOption("--target <target>", DEPLOY_TARGETS.join(" | "))
    .option("--version <version>", "version to publish (default: the champion)")
    .option("--force", "publish even when the target already serves this version")
    .option("--json", "print the outcome as JSON")
    .action(
      action(
        async (
          opts: { agent: string; target: string; version?: string; force?: boolean; json?: boolean },
          cmd: Command,
        ) => {
          if (!(DEPLOY_TARGETS as readonly string[]).includes(opts.target))
            throw new UsageError(
              `--target must be one of ${DEPLOY_TARGETS.join(", ")}, got "${opts.target}"`,
            );
          const { config } = loadCliConfig(cmd);
          const store = openStore(config);
          const registry = new ModelRegistry(store, { dataDir: config.data_dir });
          const out = await deployTargets({
            config,
            store,
            registry,
            agent: opts.agent,
            version: opts.version,
            targets: [opts.target as DeployTarget],
            force: opts.force,
            onProgress: (t, m) => {
              if (!opts.json) process.stderr.write(`${t}: ${m}\n`);
            },
          });
          emit(opts.json, out, () =>
            out.targets
              .map(
                (t) =>
                  `${t.target}: ${t.status}${t.reason ? ` (${t.reason})` : ""} — ${out.agent} ${out.version}`,
              )
              .join("\n"),
          );
          return out.status === "partial" ? 1 : 0;
        },
      ),
    );
}
