// A real Prometheus over known data, for the collection tests and benchmark: series are written
// as OpenMetrics, backfilled into TSDB blocks with `promtool tsdb create-blocks-from openmetrics`,
// and served by `prometheus` on a free loopback port. Retention is set far out: Prometheus deletes
// backfilled blocks that fall outside it.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { createWriteStream, mkdirSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";

export const PROMETHEUS_BIN = process.env.PROMETHEUS_BIN ?? "/usr/bin/prometheus";
export const PROMTOOL_BIN = process.env.PROMTOOL_BIN ?? "/usr/bin/promtool";

export type OmValue = number | "NaN" | "+Inf" | "-Inf";

export interface OmSeries {
  labels: Record<string, string>;
  /** [unix seconds, value] in increasing time order. */
  samples: Iterable<[number, OmValue]>;
}

export interface OmFamily {
  /** The metric name as queried (a counter's samples end in _total). */
  name: string;
  /** "unknown" writes samples under exactly `name` (e.g. classic histogram _bucket series on their own). */
  type: "gauge" | "counter" | "unknown";
  series: OmSeries[];
}

const escapeLabel = (v: string) => v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");

function formatValue(v: OmValue): string {
  return typeof v === "number" ? String(v) : v;
}

/** Streams families to an OpenMetrics file (families contiguous, each series in time order). */
export async function writeOpenMetrics(path: string, families: OmFamily[]): Promise<number> {
  const out = createWriteStream(path);
  let samples = 0;
  let buf = "";
  const flush = async () => {
    if (!out.write(buf)) await new Promise<void>((r) => out.once("drain", () => r()));
    buf = "";
  };
  for (const f of families) {
    const family = f.type === "counter" ? f.name.replace(/_total$/, "") : f.name;
    buf += `# TYPE ${family} ${f.type}\n`;
    for (const s of f.series) {
      const labels = Object.entries(s.labels)
        .map(([k, v]) => `${k}="${escapeLabel(v)}"`)
        .join(",");
      const head = `${f.name}${labels ? `{${labels}}` : ""} `;
      for (const [t, v] of s.samples) {
        buf += `${head}${formatValue(v)} ${t}\n`;
        samples++;
        if (buf.length > 1 << 20) await flush();
      }
    }
  }
  buf += "# EOF\n";
  await flush();
  await new Promise<void>((resolve, reject) =>
    out.end((err?: Error | null) => (err ? reject(err) : resolve())),
  );
  return samples;
}

/** Backfills an OpenMetrics file into dataDir (the directory Prometheus will serve). */
export async function backfill(omPath: string, dataDir: string): Promise<void> {
  mkdirSync(dataDir, { recursive: true });
  await promisify(execFile)(PROMTOOL_BIN, ["tsdb", "create-blocks-from", "openmetrics", omPath, dataDir], {
    maxBuffer: 64 * 1024 * 1024,
  });
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export interface RunningPrometheus {
  url: string;
  stop(): Promise<void>;
}

/** Starts prometheus over dataDir on a free loopback port and waits until /-/ready answers. */
export async function startPrometheus(dataDir: string, workDir: string): Promise<RunningPrometheus> {
  const port = await freePort();
  const cfg = join(workDir, "prometheus.yml");
  writeFileSync(cfg, "global:\n  scrape_interval: 1h\n");
  const child: ChildProcess = spawn(
    PROMETHEUS_BIN,
    [
      `--config.file=${cfg}`,
      `--storage.tsdb.path=${dataDir}`,
      `--web.listen-address=127.0.0.1:${port}`,
      "--storage.tsdb.retention.time=3650d",
      "--query.max-samples=200000000",
      "--log.level=warn",
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(timer);
  };
  const deadline = Date.now() + 90_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`prometheus exited (${child.exitCode}): ${stderr}`);
    try {
      const res = await fetch(`${url}/-/ready`);
      if (res.ok) return { url, stop };
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  await stop();
  throw new Error(`prometheus did not become ready within 90 s: ${stderr}`);
}
