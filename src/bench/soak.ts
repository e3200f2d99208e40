// The simulated year (issue 14): the real server process (`trm-forge serve`, schedule on) lives
// through N months against the simulator on a clock the soak advances a day at a time, with a
// tiny model so that a month's training takes seconds. Faults are injected on a fixed plan
// (soak-faults.ts). After each month it checks what a year unattended must keep true
// (soak-checks.ts) and reports one JSON line.
//
// `npm run bench -- soak [--months 12] [--agents 2] [--no-faults] [--seed 1] [--keep] [--json]`.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { UsageError } from "../errors.js";
import { agentConfigFor } from "../simulator/index.js";
import { bootstrapChampion, checkMonth, type MonthReport, SoakState } from "./soak-checks.js";
import { FaultPlan } from "./soak-faults.js";
import { type ServerLogLine, SoakServer } from "./soak-server.js";
import { SOURCE_RETENTION, SoakHomelab } from "./soak-sim.js";

export const DAY = 86_400_000;
/** The soak's first day; any past date works, the simulator's world is placed around it. */
const START = Date.UTC(2025, 0, 1);
/** Each step ends here after midnight: past the 02:00/03:00 trainings and the 03:00 collect. */
const STEP_HOUR = 4;
const LOOKBACK_DAYS = 14;

export interface SoakOptions {
  months: number;
  agents?: number;
  seed?: number;
  faults?: boolean;
  /** Progress lines (stderr in the bench). */
  log?: (line: string) => void;
  onMonth?: (m: MonthReport) => void;
  /** Keep the soak's directory (store, config) for a look afterwards. */
  keep?: boolean;
}

export interface SoakResult {
  months: MonthReport[];
  /** Store bytes from month 4 on: mean and the largest deviation from it (fraction). */
  store_bytes: { mean: number; max_deviation: number } | null;
  /** Server RSS from month 4: least-squares slope in bytes per month, and as a fraction of the mean. */
  rss: { mean: number; slope_per_month: number; slope_fraction: number } | null;
  violations: string[];
  wall_s: number;
}

const AGENT_NAMES = ["agent-sre", "agent-bruno", "agent-lab"];

/** The soak's config: a tiny model, few steps, the default retention. */
export function soakConfig(dir: string, url: string, agents: string[]): Record<string, unknown> {
  const agent = agentConfigFor(url, { lookback: `${LOOKBACK_DAYS}d` });
  const few = { max_examples: 80, min_examples: 1 };
  return {
    data_dir: join(dir, "data"),
    log_level: "info",
    agents: Object.fromEntries(agents.map((a) => [a, agent])),
    model: {
      backend: "cpu",
      preset: "demo",
      hidden_size: 16,
      num_heads: 2,
      H_cycles: 1,
      L_cycles: 1,
      halt_max_steps: 2,
      puzzle_emb_len: 2,
    },
    dataset: {
      window: `${LOOKBACK_DAYS}d`,
      seq_len: 64,
      // A tiny model cannot beat the seasonal baselines of the simulator's daily rhythm in a few steps.
      tasks: {
        code_infill: { enabled: false },
        metric_forecast: { enabled: false },
        log_triage: few,
        trace_outcome: few,
      },
    },
    train: {
      max_steps: 6,
      batch_size: 8,
      eval_interval: 3,
      checkpoint_interval: 2,
      log_interval: 2,
      eval_examples: 8,
      warmup_steps: 2,
      lr: 0.003,
    },
    gate: { min_examples: 5 },
    serve: { shadow_fraction: 0 },
    schedule: {
      enabled: true,
      retention: Object.fromEntries(
        Object.entries(SOURCE_RETENTION).map(([s, ms]) => [s, `${Math.round(ms / DAY)}d`]),
      ),
    },
  };
}

export async function runSoak(opts: SoakOptions): Promise<SoakResult> {
  const t0 = Date.now();
  const log = opts.log ?? (() => undefined);
  const agents = AGENT_NAMES.slice(0, Math.max(1, Math.min(opts.agents ?? 1, AGENT_NAMES.length)));
  const end = Date.UTC(2025, opts.months, 1);
  const homelab = new SoakHomelab(
    { seed: opts.seed ?? 1, start: START - (2 * LOOKBACK_DAYS + 2) * DAY, end: end + DAY },
    SOURCE_RETENTION,
  );
  const dir = mkdtempSync(join(tmpdir(), "trm-soak-"));
  const state = new SoakState(agents, join(dir, "data", "store"));
  const faults = new FaultPlan(opts.faults ? opts.months : 0, homelab, state);
  let server: SoakServer | null = null;
  try {
    await homelab.start();
    mkdirSync(join(dir, "data"), { recursive: true });
    const configPath = join(dir, "trm-forge.json");
    writeFileSync(configPath, JSON.stringify(soakConfig(dir, homelab.url, agents), null, 2));
    const onLog = (l: ServerLogLine) => state.serverLog(l);
    const start = async (at: number) => {
      homelab.now = at;
      const s = await SoakServer.start(configPath, at, onLog);
      state.restarts++;
      state.server = s;
      return s;
    };
    // Installed two weeks before the first training, which then has a whole window of every
    // source (Tempo keeps 2 days: the first collection alone would give it two days of traces).
    const installed = START - LOOKBACK_DAYS * DAY;
    server = await start(installed - DAY + STEP_HOUR * 3_600_000);
    for (let day = installed; day < START; day += DAY) {
      homelab.now = day + STEP_HOUR * 3_600_000;
      await server.advance(homelab.now);
      for (const a of agents) await state.readCollections(a);
    }
    state.restarts = 0;
    const months: MonthReport[] = [];
    for (let m = 0; m < opts.months; m++) {
      const from = Date.UTC(2025, m, 1);
      const to = Date.UTC(2025, m + 1, 1);
      state.beginMonth(m + 1, from, to);
      for (let day = from; day < to; day += DAY) {
        const at = day + STEP_HOUR * 3_600_000;
        homelab.now = at;
        // The step runs the day's jobs; a fault may stop, kill and restart the server meanwhile.
        server = await faults.step(day, at, server, start);
        // Read each day: gc deletes a collection's report with the raw days it describes.
        for (const a of agents) await state.readCollections(a);
        if (server && day === START) faults.note(...(await bootstrapChampion(state, server)));
      }
      if (!server) throw new Error("the server is down at the end of a month (the fault plan is wrong)");
      const report = await checkMonth(state, homelab, server);
      report.events = faults.takeMonth();
      report.wall_s = Math.round((Date.now() - t0) / 100) / 10;
      months.push(report);
      log(
        `soak: month ${report.month}: ${report.runs.monthly} monthly runs, ${report.store_bytes} store bytes, rss ${Math.round(report.rss_bytes / 1e6)} MB, ${report.violations.length} violations`,
      );
      opts.onMonth?.(report);
    }
    return summarize(months, (Date.now() - t0) / 1000);
  } finally {
    await (server as SoakServer | null)?.kill("SIGTERM");
    await homelab.close();
    if (!opts.keep) rmSync(dir, { recursive: true, force: true });
    else log(`soak: kept ${dir}`);
  }
}

function summarize(months: MonthReport[], wall: number): SoakResult {
  const steady = months.filter((m) => m.month >= 4);
  let storeBytes: SoakResult["store_bytes"] = null;
  const violations = months.flatMap((m) => m.violations.map((v) => `month ${m.month}: ${v}`));
  if (steady.length >= 2) {
    const mean = steady.reduce((n, m) => n + m.store_bytes, 0) / steady.length;
    const dev = Math.max(...steady.map((m) => Math.abs(m.store_bytes - mean) / mean));
    storeBytes = { mean: Math.round(mean), max_deviation: Math.round(dev * 1000) / 1000 };
    if (dev > 0.15)
      violations.push(
        `store bytes from month 4 deviate ${(dev * 100).toFixed(1)}% from their mean (limit 15%)`,
      );
  }
  let rss: SoakResult["rss"] = null;
  // From month 4, as the store bytes: the faults' restarts (months 1-2) start the process afresh.
  const pts = months.filter((m) => m.month >= 4 && m.rss_bytes > 0);
  if (pts.length >= 3) {
    const xs = pts.map((m) => m.month);
    const ys = pts.map((m) => m.rss_bytes);
    const mx = xs.reduce((a, b) => a + b, 0) / xs.length;
    const my = ys.reduce((a, b) => a + b, 0) / ys.length;
    const slope =
      xs.reduce((n, x, i) => n + (x - mx) * (ys[i] - my), 0) / xs.reduce((n, x) => n + (x - mx) ** 2, 0);
    rss = {
      mean: Math.round(my),
      slope_per_month: Math.round(slope),
      slope_fraction: Math.round((slope / my) * 1000) / 1000,
    };
    // Flat: less than 3% of the mean per month (a leak of a year's data would be far more).
    if (slope / my > 0.03)
      violations.push(`server RSS grows ${(rss.slope_fraction * 100).toFixed(1)}% of its mean per month`);
  }
  return { months, store_bytes: storeBytes, rss, violations, wall_s: Math.round(wall) };
}

/** The bench suite: one JSON line per month on stdout with --json, the summary as the suite's result. */
export async function run(args: string[]): Promise<SoakResult> {
  let months = 12;
  let agents = 2;
  let seed = 1;
  let faults = true;
  let json = false;
  let keep = false;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const num = () => {
      const v = Number(args[++i]);
      if (!Number.isInteger(v) || v < 1) throw new UsageError(`${a} needs a positive integer`);
      return v;
    };
    if (a === "--months") months = num();
    else if (a === "--agents") agents = num();
    else if (a === "--seed") seed = num();
    else if (a === "--no-faults") faults = false;
    else if (a === "--json") json = true;
    else if (a === "--keep") keep = true;
    else throw new UsageError(`soak: unknown option ${a}`);
  }
  if (months > 12)
    throw new UsageError("soak: --months is at most 12 (the simulator's world spans 400 days)");
  const result = await runSoak({
    months,
    agents,
    seed,
    faults,
    keep,
    log: (l) => process.stderr.write(`${l}\n`),
    onMonth: (m) => {
      if (json) process.stdout.write(`${JSON.stringify(m)}\n`);
    },
  });
  return { ...result, months: json ? [] : result.months };
}
