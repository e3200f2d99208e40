// `trm-forge scan`: the anomaly scan from the command line, with the agent's champion loaded here.
import type { Command } from "commander";
import { UsageError } from "../errors.js";
import { ModelRegistry } from "../pipeline/deploy/registry.js";
import { readRun } from "../pipeline/record.js";
import { addRunScan } from "../pipeline/report/scan.js";
import { writeRunReport } from "../pipeline/report.js";
import { type RecordScore, type ScanResult, saveScan } from "../pipeline/scan/index.js";
import { ModelServer } from "../serve/index.js";
import { scanChampion } from "../serve/scan.js";
import { openStore } from "../store/index.js";
import { action, durationOption, emit, loadCliConfig } from "./common.js";

interface ScanOpts {
  agent: string;
  since?: string;
  sources?: string;
  top?: number;
  json?: boolean;
  records?: string;
  end?: string;
  run?: string;
}

/** --end: an ISO time (UTC when it names no zone); the scan's window ends there instead of now. */
function parseEnd(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const ms = Date.parse(/[zZ]|[+-]\d\d:?\d\d$/.test(value) || !value.includes("T") ? value : `${value}Z`);
  if (!Number.isFinite(ms))
    throw new UsageError(`--end takes a time such as 2026-11-28T08:00:00Z, got "${value}"`);
  if (ms > Date.now() + 60_000) throw new UsageError(`--end ${value} is in the future`);
  return ms;
}

function parseRecords(value: string | undefined): number | null {
  if (value === undefined) return null;
  if (value === "all") return Number.POSITIVE_INFINITY;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`--records takes a count or "all", got "${value}"`);
  return n;
}

/** A record as --records shows it: enough to judge the score against labels from elsewhere. */
function recordRow(r: RecordScore) {
  return {
    time: new Date(r.time).toISOString(),
    source: r.source,
    service: r.service,
    text: r.text.slice(0, 160),
    score: Math.round(r.score * 1000) / 1000,
    signals: r.signals,
    answer: r.expected,
  };
}

function human(result: ScanResult, rows: ReturnType<typeof recordRow>[] | null): string {
  const lines = [
    `${result.agent} scanned by ${result.version}: ${result.window.start} to ${result.window.end}`,
    `  ${result.scanned.logs} log lines, ${result.scanned.traces} traces, ${result.scanned.series} series; ${result.inferences} model inputs in ${result.took_ms} ms`,
  ];
  if (result.note) lines.push(`  ${result.note}`);
  result.findings.forEach((f, i) => {
    lines.push(
      "",
      `${i + 1}. ${f.service}  ${f.start} to ${f.end}  score ${f.score}  (${f.signals.map((s) => `${s.signal} ${Math.round(s.share * 100)}%`).join(", ")})`,
    );
    for (const e of f.evidence) {
      lines.push(`   ${e.time} ${e.source}: ${e.record.slice(0, 140)}`);
      lines.push(
        `     expected ${Object.entries(e.expected)
          .map(([k, v]) => `${k} ${v}`)
          .join("; ")}`,
      );
      lines.push(
        `     observed ${Object.entries(e.observed)
          .map(([k, v]) => `${k} ${v}`)
          .join("; ")}`,
      );
    }
    for (const k of f.knowledge) lines.push(`   knowledge card (${k.kind}): ${k.text}`);
  });
  if (rows) {
    lines.push("", "time\tsource\tservice\tscore\tsignals\ttext");
    for (const r of rows)
      lines.push(`${r.time}\t${r.source}\t${r.service}\t${r.score}\t${r.signals.join(",")}\t${r.text}`);
  }
  return lines.join("\n");
}

export function registerScanCommand(program: Command): void {
  program
    .command("scan")
    .description(
      "Ask an agent's champion what in its recent data it did not expect: ranked findings with evidence",
    )
    .requiredOption("--agent <name>", "agent whose data and champion to use")
    .option(
      "--since <duration>",
      "how far back from now (default scan.default_window, at most scan.max_window)",
    )
    .option("--sources <list>", "comma-separated: loki, tempo, prometheus (default all)")
    .option("--top <n>", "findings to show (default scan.top_k)", (v) => Number(v))
    .option("--records <n|all>", "also print per-record scores, highest first: a count or all")
    .option(
      "--end <time>",
      "end the window at this time (ISO, UTC) instead of now: a past day, such as a validation day",
    )
    .option(
      "--run <run-id>",
      "also store the scan with this run of the agent: its report.html shows it (validation days)",
    )
    .option("--json", "print the scan as JSON")
    .action(
      action(async (opts: ScanOpts, cmd: Command) => {
        const { config } = loadCliConfig(cmd);
        if (!(opts.agent in config.agents))
          throw new UsageError(`unknown agent "${opts.agent}" (not in the config)`);
        const keep = parseRecords(opts.records);
        if (opts.top !== undefined && !(Number.isInteger(opts.top) && opts.top >= 1 && opts.top <= 100))
          throw new UsageError("--top takes a whole number from 1 to 100");
        const end = parseEnd(opts.end);
        const store = openStore(config);
        // The run is checked before the model loads: a wrong id costs nothing.
        if (opts.run !== undefined && !/^r\d{8}-\d{6}-\d{3}-[0-9a-f]{4}$/.test(opts.run))
          throw new UsageError(`--run takes a run id such as r20260101-020000-000-ab12, got "${opts.run}"`);
        const run = opts.run ? await readRun(store, opts.agent, opts.run) : null;
        const registry = new ModelRegistry(store, { dataDir: config.data_dir });
        const models = new ModelServer({ config, store, registry, agents: [opts.agent] });
        await models.start();
        try {
          const out = await scanChampion(models, {
            config,
            store,
            registry,
            agent: opts.agent,
            sinceMs: opts.since ? durationOption(opts.since) : undefined,
            end,
            sources: opts.sources
              ?.split(",")
              .map((s) => s.trim())
              .filter(Boolean) as never,
            topK: opts.top,
            keepRecords: keep !== null,
          });
          // A scan of a past window is not the agent's newest state: only a scan up to now is "latest".
          if (end === undefined) await saveScan(store, out.result);
          const kept = run ? await addRunScan(store, run.id, out.result) : false;
          if (run && kept) await writeRunReport(store, run);
          const rows =
            keep === null
              ? null
              : [...out.records!]
                  .sort((a, b) => b.score - a.score || a.time - b.time)
                  .slice(0, keep)
                  .map(recordRow);
          const stored = !run
            ? ""
            : kept
              ? `\nstored with run ${run.id}: its report.html shows it`
              : `\nnot stored: the window holds no records any more (retention deleted its raw days); run ${run.id} keeps its earlier scan of it`;
          emit(
            opts.json,
            rows ? { ...out.result, records: rows } : out.result,
            () => `${human(out.result, rows)}${stored}`,
          );
        } finally {
          await models.stop();
        }
      }),
    );
}
