// `trm-forge collect` and `trm-forge sources check`: pull what is new from an agent's sources into
// the raw store, and ask each source whether it is reachable, authorised and how far back it goes.
// Exit codes: 0 everything collected (or reachable), 1 some source or query failed, 2 bad usage or config.
import type { Command } from "commander";
import { UsageError } from "../errors.js";
import {
  type CollectionReport,
  checkSources,
  collect,
  formatReport,
  SOURCES,
  type SourceCheck,
  type SourceName,
} from "../pipeline/collect/index.js";
import { action, durationOption, emit, loadCliConfig } from "./common.js";

interface CollectOpts {
  agent: string;
  since?: string;
  source?: string[];
  json?: boolean;
}

/** --source code --source loki, or --source code,loki. */
function parseSources(values: string[] | undefined): SourceName[] | undefined {
  if (!values?.length) return undefined;
  const out: SourceName[] = [];
  for (const v of values
    .flatMap((x) => x.split(","))
    .map((x) => x.trim())
    .filter(Boolean)) {
    if (!SOURCES.includes(v as SourceName))
      throw new UsageError(`--source: "${v}" is not one of ${SOURCES.join(", ")}`);
    out.push(v as SourceName);
  }
  return out;
}

/** The first Ctrl-C stops the collection cleanly (finished segments stay, the report says cancelled); a second one kills. */
function abortOnSignal(): { signal: AbortSignal; done: () => void } {
  const ac = new AbortController();
  const stop = () => {
    process.stderr.write("trm-forge: stopping the collection (again to kill)\n");
    ac.abort();
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  return {
    signal: ac.signal,
    done: () => {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
    },
  };
}

function checkText(checks: SourceCheck[]): string {
  return checks
    .map((c) => {
      if (c.status === "disabled") return `${c.source}: disabled`;
      const facts = Object.entries(c.retention)
        .filter(([, v]) => v !== null)
        .map(([k, v]) => `${k}=${v}`)
        .join(", ");
      const head = `${c.source}: ${c.status}${c.target ? ` (${c.target})` : ""}${c.latency_ms !== null ? ` in ${c.latency_ms} ms` : ""}`;
      return c.status === "ok" ? `${head}${facts ? `; ${facts}` : ""}` : `${head}: ${c.detail}`;
    })
    .join("\n");
}

export function registerCollectCommands(program: Command): void {
  program
    .command("collect")
    .description(
      "Collect what is new from an agent's sources (code, Prometheus, Loki, Tempo) into the raw store, redacted",
    )
    .requiredOption("--agent <name>", "the agent whose sources to collect (a key of `agents` in the config)")
    .option(
      "--since <duration>",
      "how far back a query collected for the first time reaches, e.g. 7d (later runs start at the watermark)",
    )
    .option("--source <name...>", `only these sources (${SOURCES.join(", ")}); repeat or comma-separate`)
    .option("--json", "print the collection report as JSON")
    .action(
      action(async (opts: CollectOpts, cmd: Command) => {
        const sources = parseSources(opts.source);
        const sinceMs = opts.since ? durationOption(opts.since) : undefined;
        const { config } = loadCliConfig(cmd);
        const { signal, done } = abortOnSignal();
        let report: CollectionReport;
        try {
          report = await collect(config, { agent: opts.agent, sources, sinceMs, signal });
        } finally {
          done();
        }
        emit(opts.json, report, () => formatReport(report));
        return report.status === "ok" ? 0 : 1;
      }),
    );

  const group = program.command("sources").description("Inspect an agent's data sources");
  group
    .command("check")
    .description("For each source: reachable? authorised? how much history does its API show?")
    .requiredOption("--agent <name>", "the agent whose sources to check")
    .option("--source <name...>", `only these sources (${SOURCES.join(", ")})`)
    .option("--json", "print the result as JSON")
    .action(
      action(async (opts: { agent: string; source?: string[]; json?: boolean }, cmd: Command) => {
        const sources = parseSources(opts.source);
        const { config } = loadCliConfig(cmd);
        const checks = await checkSources(config, { agent: opts.agent, sources });
        emit(opts.json, checks, () => checkText(checks));
        return checks.every((c) => c.status === "ok" || c.status === "disabled") ? 0 : 1;
      }),
    );
}
