// The collection as a whole and its CLI (through the built entry point, dist/cli.js): sources
// fail alone, the report is stored and printed, bad config exits 2 with the key path, a killed
// run leaves nothing partial and the next run completes it exactly once.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { freePort } from "../../../src/bench/prometheus-backfill.js";
import { collect } from "../../../src/pipeline/collect/index.js";
import { listSegments, readSegment } from "../../../src/pipeline/collect/raw-store.js";
import { FsStore } from "../../../src/store/index.js";
import { FakeLoki, type LogEntry } from "../../helpers/observability-fakes.js";
import { readAll, tempDir } from "./helpers.js";

const CLI = new URL("../../../dist/cli.js", import.meta.url).pathname;
const NS = 1_000_000n;

function entries(n: number, endMs = Date.now() - 3600e3): LogEntry[] {
  const start = BigInt(endMs - 6 * 3600e3) * NS;
  return Array.from({ length: n }, (_, i) => ({
    ts: start + BigInt(i) * 1_000_000_000n,
    labels: { namespace: "ai-agents", pod: `agent-sre-${i % 4}` },
    line: `level=info msg="tick ${i}"`,
  }));
}

const servers: FakeLoki[] = [];
const children: ChildProcess[] = [];
afterEach(async () => {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill("SIGKILL");
  while (servers.length) await servers.pop()!.stop();
});

async function loki(list: LogEntry[]): Promise<{ fake: FakeLoki; url: string }> {
  const fake = new FakeLoki(list);
  servers.push(fake);
  return { fake, url: await fake.start() };
}

/** A config file for agent "lab" in a fresh directory; data_dir beside it. */
function configFile(doc: Record<string, unknown>): { path: string; dataDir: string } {
  const dir = tempDir("trm-cli-");
  const path = join(dir, "trm-forge.yaml");
  writeFileSync(path, stringify({ data_dir: "data", log_level: "warn", ...doc }));
  return { path, dataDir: join(dir, "data") };
}

function run(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first`);
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      env: { ...process.env, ...env, TRM_FORGE_LOG_LEVEL: "silent" },
    });
    children.push(child);
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => {
      stdout += d;
    });
    child.stderr.on("data", (d) => {
      stderr += d;
    });
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

describe("collect (orchestration)", () => {
  it("keeps going when one source is down, and stores the report it returns", async () => {
    const { url } = await loki(entries(40));
    const deadPort = await freePort();
    const { parseConfig } = await import("../../../src/config/index.js");
    const cfg = parseConfig({
      data_dir: tempDir("trm-data-"),
      agents: {
        lab: {
          sources: {
            prometheus: {
              url: `http://127.0.0.1:${deadPort}`,
              retries: 0,
              queries: [
                { name: "up", promql: "up" },
                { name: "mem", promql: "container_memory_usage_bytes" },
              ],
            },
            loki: { url, queries: [{ name: "all", logql: '{namespace="ai-agents"}' }] },
            tempo: { url: "http://127.0.0.1:1", auth: { bearer: { env: "TEMPO_TOKEN_UNSET" } } },
          },
        },
      },
    });
    const report = await collect(cfg, { agent: "lab", env: {} });
    const by = Object.fromEntries(report.sources.map((s) => [s.source, s]));
    expect(by.loki.status).toBe("ok");
    expect(by.loki.queries[0].records).toBe(40);
    expect(by.prometheus.status).toBe("failed");
    expect(by.prometheus.queries.map((q) => q.errors[0])).toEqual([
      expect.stringMatching(/^prometheus query "up": ECONNREFUSED/),
      expect.stringMatching(/^prometheus query "mem": ECONNREFUSED/),
    ]);
    expect(by.tempo.queries[0].errors[0]).toMatch(
      /agents\.lab\.sources\.tempo\.auth\.bearer: environment variable TEMPO_TOKEN_UNSET is not set/,
    );
    expect(by.code.status).toBe("disabled");
    expect(report.status).toBe("partial");
    const store = new FsStore(join(cfg.data_dir, "store"));
    expect(JSON.parse((await store.get(report.report_key)).toString())).toEqual(report);
    expect(report.report_key).toMatch(/^raw\/lab\/_reports\/\d{8}T\d{6}Z-[0-9a-f]{6}\.json$/);
  });

  it("runs one collection per agent at a time", async () => {
    const { fake, url } = await loki(entries(10));
    fake.faults.add(() => ({ delayMs: 400 }));
    const { parseConfig } = await import("../../../src/config/index.js");
    const cfg = parseConfig({
      data_dir: tempDir("trm-data-"),
      agents: {
        lab: { sources: { loki: { url, queries: [{ name: "all", logql: '{namespace="ai-agents"}' }] } } },
      },
      collect: { lookback: "1d" },
    });
    const first = collect(cfg, { agent: "lab" });
    await new Promise((r) => setTimeout(r, 50));
    await expect(collect(cfg, { agent: "lab" })).rejects.toThrow(/a collection for lab is already running/);
    await first;
    await expect(collect(cfg, { agent: "lab" })).resolves.toBeTruthy();
  });
});

describe("trm-forge collect / sources check (CLI)", () => {
  it("prints the stored report with --json and exits 0", async () => {
    const { url } = await loki(entries(25));
    const { path, dataDir } = configFile({
      agents: {
        lab: { sources: { loki: { url, queries: [{ name: "all", logql: '{namespace="ai-agents"}' }] } } },
      },
    });
    const r = await run(["--config", path, "collect", "--agent", "lab", "--json"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report.totals.records).toBe(25);
    const stored = await new FsStore(join(dataDir, "store")).get(report.report_key);
    expect(JSON.parse(stored.toString())).toEqual(report);
    const human = await run(["--config", path, "collect", "--agent", "lab", "--since", "2d"]);
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/^collection \S+ for lab: ok/);
    expect(human.stdout).toMatch(/loki\/all: ok, 0 records/);
  });

  it("exits 2 with the key path on bad config, unknown agents and bad options", async () => {
    const bad = configFile({ agents: { lab: { sources: { loki: { batch_size: 9000 } } } } });
    const r1 = await run(["--config", bad.path, "collect", "--agent", "lab"]);
    expect(r1.code).toBe(2);
    expect(r1.stderr).toMatch(/agents\.lab\.sources\.loki\.batch_size: .*5000/);
    const bad2 = configFile({ agents: { lab: { sources: { prometheus: { step: "fast" } } } } });
    const r2 = await run(["--config", bad2.path, "collect", "--agent", "lab"]);
    expect(r2.code).toBe(2);
    expect(r2.stderr).toMatch(/agents\.lab\.sources\.prometheus\.step: expected a duration/);
    const bad3 = configFile({ agents: { lab: { sources: { loki: { url: "http://user:pw@loki:3100" } } } } });
    const r3 = await run(["--config", bad3.path, "collect", "--agent", "lab"]);
    expect(r3.code).toBe(2);
    expect(r3.stderr).toMatch(/agents\.lab\.sources\.loki\.url: put credentials under auth/);
    expect(r3.stderr).not.toContain("pw");
    const good = configFile({ agents: { lab: { sources: { loki: {} } } } });
    const r4 = await run(["--config", good.path, "collect", "--agent", "nope"]);
    expect(r4.code).toBe(2);
    expect(r4.stderr).toMatch(/agents\.nope: no such agent in the config \(configured: lab\)/);
    const r5 = await run(["--config", good.path, "collect", "--agent", "lab", "--source", "graphite"]);
    expect(r5.code).toBe(2);
    expect(r5.stderr).toMatch(/--source: "graphite" is not one of code, prometheus, loki, tempo/);
    const r6 = await run(["--config", good.path, "collect", "--agent", "lab", "--source", "tempo"]);
    expect(r6.code).toBe(2);
    expect(r6.stderr).toMatch(/agents\.lab\.sources\.tempo: not configured or switched off/);
  });

  it("sources check: reachable with retention facts, unreachable, and exit 1 when any fails", async () => {
    const { url } = await loki(entries(30, Date.now() - 5 * 3600e3));
    const dead = await freePort();
    const { path } = configFile({
      agents: {
        lab: {
          sources: {
            loki: { url, queries: [{ name: "all", logql: '{namespace="ai-agents"}' }] },
            prometheus: { url: `http://127.0.0.1:${dead}`, timeout: "2s" },
            tempo: { url, enabled: false },
          },
        },
      },
    });
    const r = await run(["--config", path, "sources", "check", "--agent", "lab", "--json"]);
    expect(r.code).toBe(1);
    const checks = Object.fromEntries(JSON.parse(r.stdout).map((c: { source: string }) => [c.source, c]));
    expect(checks.loki.status).toBe("ok");
    expect(checks.loki.retention.labels).toBe(2);
    expect(Date.parse(checks.loki.retention.oldest_entry)).toBeLessThan(Date.now() - 10 * 3600e3);
    expect(checks.prometheus.status).toBe("unreachable");
    expect(checks.tempo.status).toBe("disabled");
    expect(checks.code.status).toBe("disabled");
  });

  it("a run killed mid-way leaves only whole segments, and the next run completes it exactly once", async () => {
    const list = entries(3000);
    const { fake, url } = await loki(list);
    fake.faults.add((req) => (req.n > 2 ? { delayMs: 120 } : undefined));
    const { path, dataDir } = configFile({
      agents: {
        lab: {
          sources: {
            loki: { url, batch_size: 100, queries: [{ name: "all", logql: '{namespace="ai-agents"}' }] },
          },
        },
      },
      collect: { segment_max_records: 200, lookback: "1d" },
    });
    const child = spawn(process.execPath, [CLI, "--config", path, "collect", "--agent", "lab"], {
      env: { ...process.env, TRM_FORGE_LOG_LEVEL: "silent" },
      stdio: "ignore",
    });
    children.push(child);
    const segDir = join(dataDir, "store", "raw", "lab", "loki");
    const deadline = Date.now() + 60_000;
    const segmentsOnDisk = () => {
      if (!existsSync(segDir)) return 0;
      return readdirSync(segDir, { recursive: true }).filter((f) => String(f).endsWith(".jsonl.gz")).length;
    };
    while (segmentsOnDisk() < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    child.kill("SIGKILL");
    await new Promise((r) => child.once("exit", r));
    const store = new FsStore(join(dataDir, "store"));
    const refs = await listSegments(store, "lab", "loki");
    expect(refs.length).toBeGreaterThanOrEqual(3);
    let partial = 0;
    for (const ref of refs) partial += (await readSegment(store, ref)).records.length; // each validates whole
    expect(partial).toBeLessThan(list.length);
    fake.faults.clear();
    const { loadConfig } = await import("../../../src/config/index.js");
    await collect(loadConfig({ path }).config, { agent: "lab" });
    const got = await readAll(store, "lab", "loki");
    expect(got.length).toBe(list.length);
    expect(new Set(got.map((r) => `${r.ts_ns}|${r.line}`)).size).toBe(list.length);
  });
});
