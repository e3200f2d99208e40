import { readFileSync } from "node:fs";
import type { Command } from "commander";
import { UsageError } from "../errors.js";
import { ModelRegistry } from "../pipeline/deploy/registry.js";
import { ModelServer, type PredictResult } from "../serve/index.js";
import { openStore } from "../store/index.js";
import { pct } from "../util/format.js";
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
  if (r.seen_in_training !== undefined)
    lines.push(
      r.seen_in_training
        ? `  this input was seen ${r.seen_in_training} time(s) in training; those outcomes weigh in`
        : "  this input was not seen in training: the model generalises",
    );
  return lines.join("\n");
}

export function registerPredictCommand(program: Command): void {
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
}
