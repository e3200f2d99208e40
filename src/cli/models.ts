import type { Command } from "commander";
import { UsageError } from "../errors.js";
import { createPipeline } from "../pipeline/create.js";
import { ALIASES, type Alias, prunedEntry } from "../pipeline/deploy/registry.js";
import {
  type Comparison,
  compareVersions,
  comparisonPair,
  comparisonSummary,
} from "../pipeline/evaluate/compare.js";
import { readShadowReport, type ShadowReport } from "../serve/index.js";
import { pct } from "../util/format.js";
import { cliFreeText } from "../util/text.js";
import { action, emit, loadCliConfig } from "./common.js";
import { actor, agentOf, cliContext } from "./context.js";

function compareText(
  agent: string,
  pair: { a: string; b: string } | null,
  cmp: Comparison | null,
  shadow: ShadowReport | null,
): string {
  if (!pair || !cmp) return `${agent} has fewer than two model versions: nothing to compare`;
  const lines = [`${agent}: a = ${pair.a}, b = ${pair.b}`];
  if (cmp.tasks.length) {
    lines.push("validation (primary metric):");
    for (const t of cmp.tasks)
      lines.push(
        `  ${t.task}${t.metric ? ` (${t.metric})` : ""}: a ${pct(t.a)}, b ${pct(t.b)}${t.better ? `, better: ${t.better}` : ""}${t.baseline ? `; baseline ${t.baseline.name} ${pct(t.baseline.score)}` : ""}`,
      );
  }
  lines.push(comparisonSummary(cmp, pair.a, pair.b));
  if (!shadow)
    lines.push(
      "live shadow: no record yet (the server shadows a share of predictions once a challenger is set)",
    );
  else {
    lines.push(
      `live shadow since ${shadow.since} (champion ${shadow.champion} vs challenger ${shadow.challenger}${shadow.dropped ? `, ${shadow.dropped} dropped` : ""}):`,
    );
    for (const t of shadow.tasks)
      lines.push(
        `  ${t.task}: ${t.shadowed} shadowed, agreement ${pct(t.agreement)}` +
          ` (${Object.entries(t.label_agreement)
            .map(([k, v]) => `${k} ${pct(v)}`)
            .join(
              ", ",
            )}); confidence ${pct(t.champion.mean_confidence)} vs ${pct(t.challenger.mean_confidence)};` +
          ` p50 latency ${t.champion.p50_latency_ms} vs ${t.challenger.p50_latency_ms} ms` +
          (t.challenger_errors ? `; ${t.challenger_errors} challenger errors` : ""),
      );
  }
  return lines.join("\n");
}

export function registerModelsCommands(program: Command): void {
  const models =
    program.commands.find((c) => c.name() === "models") ??
    program.command("models").description("Model versions, aliases and comparisons");

  models
    .command("list")
    .description("An agent's model versions, newest last, with their gate result and aliases")
    .requiredOption("--agent <name>", "the agent")
    .option("--json", "print JSON")
    .action(
      action(async (opts: { agent: string; json?: boolean }, cmd: Command) => {
        const { config, registry } = cliContext(cmd);
        const agent = agentOf(config, opts.agent);
        const index = await registry.read(agent);
        emit(opts.json, index, () => {
          if (!index.versions.length) return `${agent} has no model versions yet`;
          const alias = (v: string) =>
            ALIASES.filter((a) => index.aliases[a] === v)
              .map((a) => `[${a}]`)
              .join(" ");
          return index.versions
            .map((v) => {
              const gate =
                v.gate_passed === null ? "not evaluated" : v.gate_passed ? "gate passed" : "gate FAILED";
              const scores = Object.entries(v.scores)
                .map(([t, s]) => `${t} ${pct(s)}`)
                .join(", ");
              return `${v.version}  ${gate.padEnd(13)} ${scores}${v.parent_version ? `  (from ${v.parent_version})` : ""} ${alias(v.version)}`.trimEnd();
            })
            .join("\n");
        });
      }),
    );

  models
    .command("show")
    .description("A version's manifest (artifacts with sha256, lineage, gate) and its model card")
    .requiredOption("--agent <name>", "the agent")
    .requiredOption("--version <version>", "a version id, or champion, challenger, latest")
    .option("--json", "print JSON")
    .action(
      action(async (opts: { agent: string; version: string; json?: boolean }, cmd: Command) => {
        const { config, registry } = cliContext(cmd);
        const agent = agentOf(config, opts.agent);
        // A pruned version: its registry entry and why it went, instead of a failure.
        const index = await registry.read(agent);
        const pruned = prunedEntry(index, opts.version);
        if (pruned) {
          const entry = index.versions.find((v) => v.version === opts.version);
          emit(opts.json, { version: entry, pruned }, () =>
            [
              `${agent} ${opts.version}: pruned by retention at ${pruned.at} (${pruned.rule}, by ${pruned.actor})`,
              `its files are deleted; its registry entry stays: created ${entry?.created_at}, run ${entry?.run_id ?? "-"}, gate ${entry?.gate_passed ?? "not evaluated"}`,
            ].join("\n"),
          );
          return;
        }
        const version = await registry.resolve(agent, opts.version);
        const manifest = await registry.getManifest(agent, version);
        const card = manifest.artifacts.some((a) => a.name === "card.md")
          ? (await registry.readArtifact(agent, version, "card.md", manifest)).toString("utf8")
          : null;
        emit(opts.json, { manifest, card }, () =>
          [
            card ?? `${agent} ${version}`,
            "artifacts:",
            ...manifest.artifacts.map(
              (a) => `  ${a.name.padEnd(20)} ${String(a.size).padStart(10)} B  sha256 ${a.sha256}`,
            ),
          ].join("\n"),
        );
      }),
    );

  models
    .command("promote")
    .description(
      "Point an alias (default champion) at a version; a version that failed its gate needs --force",
    )
    .requiredOption("--agent <name>", "the agent")
    .requiredOption("--version <version>", "the version to promote")
    .option("--alias <alias>", `${ALIASES.join(" or ")}`, "champion")
    .option("--force", "promote even though the version failed (or never had) its evaluation gate")
    .option("--reason <text>", "why, for the history", "promoted from the CLI")
    .option("--json", "print JSON")
    .action(
      action(
        async (
          opts: {
            agent: string;
            version: string;
            alias: string;
            force?: boolean;
            reason: string;
            json?: boolean;
          },
          cmd: Command,
        ) => {
          const { config } = loadCliConfig(cmd);
          const agent = agentOf(config, opts.agent);
          if (!ALIASES.includes(opts.alias as Alias))
            throw new UsageError(`--alias must be one of ${ALIASES.join(", ")}`);
          const { registry } = createPipeline(config);
          const moves = await registry.promote(agent, opts.version, {
            alias: opts.alias as Alias,
            actor: actor(),
            reason: cliFreeText(opts.reason, "--reason", 500, 3),
            force: opts.force,
          });
          emit(opts.json, { moves }, () =>
            moves.length
              ? moves
                  .map(
                    (m) =>
                      `${m.alias}: ${m.from ?? "(none)"} -> ${m.to ?? "(none)"}${m.forced ? " (forced past the gate)" : ""}`,
                  )
                  .join("\n")
              : `${opts.alias} already points at ${opts.version}`,
          );
        },
      ),
    );

  models
    .command("rollback")
    .description("Point champion back at the previous champion in the alias history")
    .requiredOption("--agent <name>", "the agent")
    .option("--reason <text>", "why, for the history", "rolled back from the CLI")
    .option("--json", "print JSON")
    .action(
      action(async (opts: { agent: string; reason: string; json?: boolean }, cmd: Command) => {
        const { config, registry } = cliContext(cmd);
        const agent = agentOf(config, opts.agent);
        const m = await registry.rollback(agent, {
          actor: actor(),
          reason: cliFreeText(opts.reason, "--reason", 500, 3),
        });
        emit(opts.json, { move: m }, () => `champion: ${m.from} -> ${m.to}`);
      }),
    );

  models
    .command("compare")
    .description(
      "Two versions side by side (default: champion and challenger), on the same validation examples when one evaluation scored both, and the live shadow record",
    )
    .requiredOption("--agent <name>", "agent")
    .option("--a <version>", "a version id or alias (default: champion)")
    .option("--b <version>", "a version id or alias (default: challenger, else the newest version)")
    .option("--json", "print the comparison as JSON")
    .action(
      action(async (opts: { agent: string; a?: string; b?: string; json?: boolean }, cmd: Command) => {
        const { store, registry } = cliContext(cmd);
        // Not only configured agents: a registry in the store may be compared from anywhere.
        const agent = opts.agent;
        const index = await registry.read(agent);
        // The default pair needs two versions; one named on the command line must exist.
        const pair =
          opts.a || opts.b || index.versions.length >= 2
            ? await comparisonPair(registry, agent, index, { a: opts.a, b: opts.b })
            : null;
        const cmp = pair ? await compareVersions({ store, agent, index, ...pair }) : null;
        const shadow = await readShadowReport(store, agent);
        const side = (v: string | undefined) => {
          const e = v ? index.versions.find((x) => x.version === v) : undefined;
          return e ? { version: e.version, scores: e.scores } : null;
        };
        emit(
          opts.json,
          {
            agent,
            a: side(pair?.a),
            b: side(pair?.b),
            champion: side(index.aliases.champion ?? undefined),
            challenger: side(index.aliases.challenger ?? undefined),
            basis: cmp?.basis ?? null,
            dataset_id: cmp?.dataset_id ?? null,
            tasks: cmp?.tasks ?? [],
            summary: cmp && pair ? comparisonSummary(cmp, pair.a, pair.b) : null,
            shadow,
          },
          () => compareText(agent, pair, cmp, shadow),
        );
      }),
    );
}
