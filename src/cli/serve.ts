// `trm-forge predict`: ask the agent's champion a question from the shell.
// `trm-forge deploy`: publish a version to Ollama / vLLM now (what the deploy stage does each run).
// `trm-forge models compare`: champion against challenger, on validation and on live shadow traffic.
import { readFileSync } from "node:fs";
import type { Command } from "commander";
import { UsageError } from "../errors.js";
import { ModelRegistry } from "../pipeline/deploy/registry.js";
import { DEPLOY_TARGETS, type DeployTarget, deployTargets } from "../pipeline/deploy/targets.js";
import { ModelServer, type PredictResult, readShadowReport, type ShadowReport } from "../serve/index.js";
import { openStore } from "../store/index.js";
import { action, emit, loadCliConfig } from "./common.js";

/** --input: JSON (a task's query), @file, or plain text for the tasks that read one text. */
export function parseInputOption(value: string): unknown {
  const text = value.startsWith("@") ? readFileSync(value.slice(1), "utf8") : value;
  const t = text.trim();
  if (t.startsWith("{")) {
    try {
      return JSON.parse(t);
    } catch (err) {
      throw new UsageError(`--input looks like JSON but does not parse: ${(err as Error).message}`);
    }
  }
  return text.replace(/\r?\n$/, "");
}

function pct(x: number): string {
  return `${(100 * x).toFixed(1)}%`;
}

function answerText(r: PredictResult): string {
  const lines = [
    `${r.agent} ${r.task} (model ${r.version}, ${r.steps}/${r.max_steps} steps, ${r.latency_ms} ms)`,
  ];
  const walk = (v: unknown, name: string) => {
    if (v && typeof v === "object" && !Array.isArray(v)) {
      const o = v as Record<string, unknown>;
      if ("value" in o && "confidence" in o) {
        lines.push(`  ${name}: ${JSON.stringify(o.value)} (confidence ${pct(Number(o.confidence))})`);
        return;
      }
      for (const [k, x] of Object.entries(o)) walk(x, name ? `${name}.${k}` : k);
    } else if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) walk(v[i], `${name}[${i}]`);
    } else lines.push(`  ${name}: ${JSON.stringify(v)}`);
  };
  walk(r.answer, "");
  lines.push(`  overall: weakest label ${pct(r.confidence)}, halting head ${pct(r.halt_confidence)}`);
  return lines.join("\n");
}

function compareText(
  agent: string,
  scores: {
    champion: [string, Record<string, number>] | null;
    challenger: [string, Record<string, number>] | null;
  },
  shadow: ShadowReport | null,
): string {
  const lines: string[] = [];
  if (!scores.champion && !scores.challenger) return `${agent} has no champion or challenger`;
  lines.push(
    `${agent}: champion ${scores.champion?.[0] ?? "-"}, challenger ${scores.challenger?.[0] ?? "-"}`,
  );
  const tasks = new Set([
    ...Object.keys(scores.champion?.[1] ?? {}),
    ...Object.keys(scores.challenger?.[1] ?? {}),
  ]);
  if (tasks.size) {
    lines.push("validation (primary metric):");
    for (const t of [...tasks].sort()) {
      const a = scores.champion?.[1][t];
      const b = scores.challenger?.[1][t];
      lines.push(`  ${t}: champion ${a?.toFixed(3) ?? "-"}, challenger ${b?.toFixed(3) ?? "-"}`);
    }
  }
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

export function registerServeCommands(program: Command): void {
  program
    .command("predict")
    .description("Ask an agent's champion model: encode, recursion with early halting, decode")
    .requiredOption("--agent <name>", "agent whose champion answers")
    .requiredOption("--task <task>", "code_infill | log_triage | metric_forecast | trace_outcome")
    .requiredOption(
      "--input <query>",
      'the query: JSON (e.g. {"line": "..."}), @file, or plain text for log_triage and trace_outcome ("a:op -> b:op")',
    )
    .option("--json", "print the answer as JSON")
    .action(
      action(async (opts: { agent: string; task: string; input: string; json?: boolean }, cmd: Command) => {
        const { config } = loadCliConfig(cmd);
        const store = openStore(config);
        const server = new ModelServer({
          config,
          store,
          registry: new ModelRegistry(store, { dataDir: config.data_dir }),
          agents: [opts.agent],
        });
        await server.start();
        try {
          const st = server.status()[0];
          if (!st.champion)
            throw new UsageError(
              `agent ${opts.agent} has no champion to answer${st.last_failure ? ` (loading ${st.last_failure.to} failed: ${st.last_failure.error})` : ""}`,
            );
          const r = await server.predict(opts.agent, opts.task, parseInputOption(opts.input));
          emit(opts.json, r, () => answerText(r));
        } finally {
          await server.stop();
        }
      }),
    );

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

  const models =
    program.commands.find((c) => c.name() === "models") ??
    program.command("models").description("Model versions, aliases and comparisons");
  models
    .command("compare")
    .description(
      "Champion against challenger: validation scores and live shadow agreement, confidence, latency",
    )
    .requiredOption("--agent <name>", "agent")
    .option("--json", "print the comparison as JSON")
    .action(
      action(async (opts: { agent: string; json?: boolean }, cmd: Command) => {
        const { config } = loadCliConfig(cmd);
        const store = openStore(config);
        const registry = new ModelRegistry(store, { dataDir: config.data_dir });
        const index = await registry.read(opts.agent);
        const scoresOf = (v: string | null): [string, Record<string, number>] | null => {
          const e = v ? index.versions.find((x) => x.version === v) : undefined;
          return e ? [e.version, e.scores] : null;
        };
        const scores = {
          champion: scoresOf(index.aliases.champion),
          challenger: scoresOf(index.aliases.challenger),
        };
        const shadow = await readShadowReport(store, opts.agent);
        emit(
          opts.json,
          {
            agent: opts.agent,
            champion: scores.champion ? { version: scores.champion[0], scores: scores.champion[1] } : null,
            challenger: scores.challenger
              ? { version: scores.challenger[0], scores: scores.challenger[1] }
              : null,
            shadow,
          },
          () => compareText(opts.agent, scores, shadow),
        );
      }),
    );
}
