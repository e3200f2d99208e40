// `npm run bench -- dataset [--scale F] [--keep DIR]`: builds a dataset from a homelab-sized raw
// store (4k code files, 200k log lines, 20k traces, 300 series x 30 days at 1 h) and reports the
// build's wall time and peak RSS. Each build runs in a fresh child process, so its peak RSS is
// its own; building 15 of the 30 days as well shows whether memory grows with the data read.
import { fork } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseConfig } from "../config/index.js";
import { UsageError } from "../errors.js";
import { buildDataset } from "../pipeline/dataset/index.js";
import { FsStore } from "../store/index.js";
import { writeRawHomelab } from "./homelab-raw.js";

const AGENT = "bench";

interface ChildResult {
  window_days: number;
  wall_s: number;
  peak_rss_mb: number;
  records_read: number;
  examples: { train: number; val: number };
}

function parseArgs(args: string[]): { scale: number; keep?: string } {
  let scale = 1;
  let keep: string | undefined;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--scale") scale = Number(args[++i]);
    else if (args[i] === "--keep") keep = args[++i];
    else throw new UsageError(`dataset bench: unknown option ${args[i]} (have --scale F, --keep DIR)`);
  }
  if (!(scale > 0 && scale <= 4)) throw new UsageError("--scale must be in (0, 4]");
  return { scale, keep };
}

function buildInChild(root: string, windowDays: number): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const child = fork(fileURLToPath(import.meta.url), ["--child-build", root, String(windowDays)], {
      stdio: ["ignore", "inherit", "inherit", "ipc"],
      env: { ...process.env, TRM_FORGE_LOG_LEVEL: "warn" },
    });
    let result: ChildResult | undefined;
    child.on("message", (m) => {
      result = m as ChildResult;
    });
    child.on("error", reject);
    child.on("exit", (code) => {
      if (code === 0 && result) resolve(result);
      else reject(new Error(`dataset build child exited with ${code}`));
    });
  });
}

async function childBuild(root: string, windowDays: number): Promise<void> {
  const started = performance.now();
  const res = await buildDataset({
    store: new FsStore(root),
    agent: AGENT,
    config: parseConfig({ dataset: { window: `${windowDays}d` } }).dataset,
  });
  const wall = (performance.now() - started) / 1000;
  const q = res.manifest.quality.tasks;
  const out: ChildResult = {
    window_days: windowDays,
    wall_s: Math.round(wall * 100) / 100,
    // maxRSS is in kilobytes.
    peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024),
    records_read: Object.values(q).reduce((a, t) => a + t.records_read, 0),
    examples: { train: res.manifest.counts.train, val: res.manifest.counts.val },
  };
  process.send?.(out);
}

export async function run(args: string[]): Promise<unknown> {
  const { scale, keep } = parseArgs(args);
  const root = keep ?? mkdtempSync(join(tmpdir(), "trm-bench-dataset-"));
  const sizes = {
    files: Math.round(4000 * scale),
    logLines: Math.round(200_000 * scale),
    traces: Math.round(20_000 * scale),
    series: Math.round(300 * scale),
  };
  try {
    process.stderr.write(`dataset bench: writing the raw store (${JSON.stringify(sizes)}) to ${root}\n`);
    const genStart = performance.now();
    await writeRawHomelab({ store: new FsStore(root), agent: AGENT, days: 30, ...sizes });
    const generate_s = Math.round((performance.now() - genStart) / 10) / 100;
    process.stderr.write("dataset bench: building 15 days, then 30 days\n");
    const half = await buildInChild(root, 15);
    const full = await buildInChild(root, 30);
    return {
      raw: { days: 30, ...sizes, generate_s },
      builds: [half, full],
      wall_s: full.wall_s,
      peak_rss_mb: full.peak_rss_mb,
      target: { wall_s: 60 },
      ok: full.wall_s < 60,
    };
  } finally {
    if (!keep) rmSync(root, { recursive: true, force: true });
  }
}

function isMain(): boolean {
  try {
    return import.meta.url === pathToFileURL(process.argv[1] ?? "").href;
  } catch {
    return false;
  }
}

if (isMain() && process.argv[2] === "--child-build") {
  childBuild(process.argv[3], Number(process.argv[4])).catch((err) => {
    process.stderr.write(`dataset bench child: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  });
}
