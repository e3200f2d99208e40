// `trm-forge simulate`: the built-in homelab. One loopback server speaks the Prometheus, Loki and
// Tempo APIs over a deterministic, seeded homelab, so the collectors (and the demo) have something
// real to talk to without an observability stack.
import type { Command } from "commander";
import { stringify } from "yaml";
import { UsageError } from "../errors.js";
import { agentConfigFor, createSimulator, type Simulator } from "../simulator/index.js";
import { atomicWriteJson } from "../util/fs.js";
import { action, emit, parseIntOption } from "./common.js";

export interface SimulateOptions {
  seed: number;
  days: string;
  port: number;
  host: string;
  end?: string;
  groundTruth?: string;
  logsPerDay?: number;
  tracesPerDay?: number;
  json?: boolean;
}

/**
 * Validates the options, starts the simulator, writes the ground truth, prints the summary, and
 * serves until `stop` aborts.
 */
export async function runSimulate(opts: SimulateOptions, stop: AbortSignal): Promise<void> {
  const days = Number(opts.days);
  if (!(days > 0 && days <= 400))
    throw new UsageError(`--days must be a number in (0, 400], got "${opts.days}"`);
  if (opts.seed < 0) throw new UsageError(`--seed must be a non-negative integer, got ${opts.seed}`);
  if (opts.port < 0 || opts.port > 65535)
    throw new UsageError(`--port must be in 0..65535, got ${opts.port}`);
  if (opts.end !== undefined && !Number.isFinite(Date.parse(opts.end)))
    throw new UsageError(`--end must be an ISO 8601 time, got "${opts.end}"`);
  for (const [flag, v] of [
    ["--logs-per-day", opts.logsPerDay],
    ["--traces-per-day", opts.tracesPerDay],
  ] as const) {
    if (v !== undefined && v <= 0) throw new UsageError(`${flag} must be positive, got ${v}`);
  }
  const sim = await createSimulator({
    seed: opts.seed,
    days,
    end: opts.end,
    host: opts.host,
    port: opts.port,
    logsPerDay: opts.logsPerDay,
    tracesPerDay: opts.tracesPerDay,
  });
  try {
    if (opts.groundTruth) await atomicWriteJson(opts.groundTruth, sim.groundTruth);
    emit(
      opts.json,
      { url: sim.url, ground_truth_file: opts.groundTruth ?? null, ground_truth: sim.groundTruth },
      () => describe(sim, opts.groundTruth),
    );
    if (!stop.aborted)
      await new Promise<void>((resolve) => stop.addEventListener("abort", () => resolve(), { once: true }));
  } finally {
    await sim.close();
  }
}

function describe(sim: Simulator, groundTruthPath: string | undefined): string {
  const gt = sim.groundTruth;
  const lines = [
    `simulated homelab (seed ${gt.seed}) from ${gt.start} to ${gt.end}${sim.world.live ? ", still running" : ""}`,
    `listening on ${sim.url}  (Prometheus /api/v1, Loki /loki/api/v1, Tempo /api/search and /api/v2/traces)`,
    "",
    `${gt.services.length} services: ${gt.services.map((s) => `${s.name} (${s.namespace})`).join(", ")}`,
    `${gt.deploys.filter((d) => d.reason !== "initial").length} deploys, ${gt.incidents.length} incidents:`,
    ...gt.incidents.map(
      (i) =>
        `  ${i.start}  ${i.kind.padEnd(12)} ${i.service.padEnd(21)} ${Math.round((i.end_ms - i.start_ms) / 60_000)} min`,
    ),
    "",
    ...(groundTruthPath ? [`ground truth written to ${groundTruthPath}`, ""] : []),
    "Point an agent's collectors at it (in trm-forge.yaml):",
    "",
    stringify({
      agents: { "agent-sre": agentConfigFor(sim.url, { lookback: `${Math.ceil(gt.days)}d` }) },
    }).trimEnd(),
    "",
    "Ctrl-C stops it.",
  ];
  return lines.join("\n");
}

export function registerSimulate(program: Command): void {
  program
    .command("simulate")
    .description(
      "Serve a simulated homelab (8 services, deploys, incidents) over the Prometheus, Loki and Tempo HTTP APIs, for the demo and for trying the collectors",
    )
    .option("--seed <n>", "seed: the same seed gives the same homelab", parseIntOption("--seed"), 1)
    .option("--days <n>", "days of history before the end", "30")
    .option("--port <port>", "port to listen on (0 picks a free one)", parseIntOption("--port"), 9797)
    .option("--host <host>", "address to bind", "127.0.0.1")
    .option(
      "--end <time>",
      "end of the simulated window (ISO 8601; default: now, and the homelab keeps running)",
    )
    .option("--ground-truth <file>", "write the incidents, deploys, service graph and fake secrets as JSON")
    .option(
      "--logs-per-day <n>",
      "ordinary log lines per day (incidents add more)",
      parseIntOption("--logs-per-day"),
    )
    .option(
      "--traces-per-day <n>",
      "request traces per day before tail sampling",
      parseIntOption("--traces-per-day"),
    )
    .option("--json", "print the startup summary (url, ground truth) as JSON")
    .action(
      action(async (opts: SimulateOptions) => {
        const stop = new AbortController();
        const onSignal = () => stop.abort();
        process.once("SIGINT", onSignal);
        process.once("SIGTERM", onSignal);
        try {
          await runSimulate(opts, stop.signal);
        } finally {
          process.off("SIGINT", onSignal);
          process.off("SIGTERM", onSignal);
        }
      }),
    );
}
