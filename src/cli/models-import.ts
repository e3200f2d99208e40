// `trm-forge models import`: weights trained elsewhere into the registry, through the evaluation
// and the gate (src/pipeline/import). Its own file beside models.ts, in the same `models` group.
import type { Command } from "commander";
import { UsageError } from "../errors.js";
import { IMPORT_FORMATS, type ImportFormat, importModel } from "../pipeline/import/index.js";
import { pct } from "../util/format.js";
import { action, emit } from "./common.js";
import { actor, agentOf, cliContext } from "./context.js";

export function registerModelsImportCommand(program: Command): void {
  const models =
    program.commands.find((c) => c.name() === "models") ??
    program.command("models").description("Model versions, aliases and comparisons");
  models
    .command("import")
    .description(
      "Register weights trained elsewhere (PyTorch, the official TinyRecursiveModels repo): checked against the dataset, " +
        "evaluated on its validation split beside the baselines and the champion; the gate decides promotion",
    )
    .requiredOption("--agent <name>", "the agent")
    .argument("<path>", "a .safetensors file, or a folder holding model.safetensors")
    .option("--format <format>", `tensor names: ${IMPORT_FORMATS.join(" or ")} (default: detected)`)
    .option("--dataset <id>", "the dataset the weights were trained on (default: the newest)")
    .option("--json", "print JSON")
    .action(
      action(
        async (
          path: string,
          opts: { agent: string; format?: string; dataset?: string; json?: boolean },
          cmd: Command,
        ) => {
          const { config, store, registry } = cliContext(cmd);
          const agent = agentOf(config, opts.agent);
          if (opts.format !== undefined && !IMPORT_FORMATS.includes(opts.format as ImportFormat))
            throw new UsageError(`--format must be one of ${IMPORT_FORMATS.join(", ")}`);
          const r = await importModel({
            config,
            store,
            registry,
            agent,
            path,
            format: opts.format as ImportFormat | undefined,
            datasetId: opts.dataset,
            actor: actor(),
          });
          emit(opts.json, r, () =>
            [
              `${agent} ${r.version}: imported ${r.origin.file} (${r.origin.format}, sha256 ${r.origin.sha256.slice(0, 12)}…), evaluated on ${r.dataset_id}`,
              ...Object.entries(r.scores).map(([t, x]) => `  ${t} ${pct(x)}`),
              `gate ${r.gate.passed ? "passed" : "FAILED"}:`,
              ...r.gate.reasons.map((x) => `  - ${x}`),
              r.promoted_to
                ? `promoted to ${r.promoted_to}`
                : `not promoted (champion stays ${r.champion_before ?? "unset"}); models promote --force overrides the gate`,
            ].join("\n"),
          );
        },
      ),
    );
}
