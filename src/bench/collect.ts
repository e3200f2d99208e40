// The collection benchmark (`npm run bench -- collect`): wall time, records/s and peak RSS of
//   repo        a generated 4,000-file, ~60 MB mixed-language repository
//   prometheus  30 days × the 6 default queries × 50 series at the 30-day minimum step, real Prometheus
//   logs        200k log lines (and 100k, to show RSS does not grow with lines) through a local Loki
//   traces      20k traces through a local Tempo
//   redaction   false-positive rate on ordinary lines, misses on secret lines and canaries
// Each part runs in a child process of its own, so its peak RSS is its own; Loki and Tempo (the
// simulator's APIs over generated data) run in a further child, so their work and memory are not
// counted as the collector's.
// Options: --parts repo,prometheus,logs,traces,redaction  --quick (small sizes, a smoke run)
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type Config, parseConfig } from "../config/index.js";
import { UsageError } from "../errors.js";
import { setLogLevel } from "../log.js";
import { collect, listSegments, readSegment } from "../pipeline/collect/index.js";
import { Redactor } from "../pipeline/collect/redact.js";
import type { CollectionReport } from "../pipeline/collect/report.js";
import { SERVICE_NAMES as SERVICES } from "../simulator/homelab.js";
import { LokiApi } from "../simulator/loki-api.js";
import { apiHandler, listen } from "../simulator/server.js";
import { TempoApi } from "../simulator/tempo-api.js";
import type { SimSpan } from "../simulator/traces.js";
import { openStore } from "../store/index.js";
import { generateRepo, ordinaryLine, pick, secretLine, seeded } from "./collect-data.js";
import { generatedLogs, generatedTraces } from "./collect-sources.js";
import { backfill, type OmFamily, startPrometheus, writeOpenMetrics } from "./prometheus-backfill.js";

const SELF = fileURLToPath(import.meta.url);
const PARTS = ["repo", "prometheus", "logs", "traces", "redaction"] as const;
type Part = (typeof PARTS)[number];

interface Sizes {
  repoFiles: number;
  repoBytes: number;
  promSeries: number;
  promDays: number;
  logLines: number[];
  traces: number;
}

const FULL: Sizes = {
  repoFiles: 4000,
  repoBytes: 60 * 1024 * 1024,
  promSeries: 50,
  promDays: 30,
  logLines: [100_000, 200_000],
  traces: 20_000,
};
const QUICK: Sizes = {
  repoFiles: 400,
  repoBytes: 6 * 1024 * 1024,
  promSeries: 5,
  promDays: 3,
  logLines: [10_000, 20_000],
  traces: 2_000,
};

const round = (x: number, d = 2) => Math.round(x * 10 ** d) / 10 ** d;
/** CPU seconds this process spent since `from` (all threads: JS, gzip, GC). */
const cpuSince = (from: NodeJS.CpuUsage) => {
  const c = process.cpuUsage(from);
  return (c.user + c.system) / 1e6;
};
const peakRssMb = () => round(process.resourceUsage().maxRSS / 1024, 1);

/** One collection of the bench agent, timed by the wall clock and by CPU (seconds). */
async function timedCollect(cfg: Config, now?: number) {
  const t0 = Date.now();
  const c0 = process.cpuUsage();
  const report = await collect(cfg, { agent: "bench", now });
  return { report, wall: (Date.now() - t0) / 1000, cpu: cpuSince(c0) };
}
const progress = (msg: string) => process.stderr.write(`bench collect: ${msg}\n`);

function benchConfig(
  dataDir: string,
  sources: Record<string, unknown>,
  collectCfg: Record<string, unknown> = {},
) {
  return parseConfig({
    data_dir: dataDir,
    log_level: "warn",
    agents: { bench: { sources } },
    collect: { settle: "0s", ...collectCfg },
  });
}

function totals(r: CollectionReport) {
  const qs = r.sources.flatMap((s) => s.queries);
  const errors = qs.flatMap((q) => q.errors);
  if (errors.length) progress(`errors: ${errors.slice(0, 3).join(" | ")}`);
  return { records: r.totals.records, bytes: r.totals.bytes, errors: errors.length, status: r.status };
}

// ---- parts (each runs in its own child process) ------------------------------------------------

async function partRepo(s: Sizes, work: string) {
  const root = join(work, "repo");
  const t0 = Date.now();
  const gen = generateRepo(root, { files: s.repoFiles, totalBytes: s.repoBytes });
  const setup = (Date.now() - t0) / 1000;
  const cfg = benchConfig(join(work, "data"), { code: { path: root } });
  const { report, wall, cpu } = await timedCollect(cfg);
  return {
    files: gen.files,
    mb: round(gen.bytes / 1024 / 1024, 1),
    setup_s: round(setup),
    wall_s: round(wall),
    cpu_s: round(cpu),
    files_per_s: Math.round(report.totals.records / wall),
    mb_per_s: round(gen.bytes / 1024 / 1024 / wall, 1),
    redactions: report.totals.redactions,
    ...totals(report),
    peak_rss_mb: peakRssMb(),
    target: "wall_s < 10",
  };
}

/** The six default queries' metrics, `series` services each, at the given times (counters grow with t). */
function promFamilies(series: number, times: number[]): OmFamily[] {
  const svc = Array.from({ length: series }, (_, i) => `svc-${i}`);
  const family = (
    name: string,
    type: OmFamily["type"],
    value: (i: number, t: number) => number,
    extra: (i: number) => Record<string, string> = () => ({}),
  ): OmFamily => ({
    name,
    type,
    series: svc.map((service, i) => ({
      labels: { service, namespace: "bench", ...extra(i) },
      samples: times.map((t) => [t, value(i, t)] as [number, number]),
    })),
  });
  const pod = (i: number) => ({ pod: `svc-${i}-0` });
  const le = (bound: string, share: number) =>
    family(
      "http_request_duration_seconds_bucket",
      "unknown",
      (i, t) => Math.round(t * (i + 1) * share),
      () => ({ le: bound }),
    );
  const fast = le("0.5", 0.9);
  return [
    family(
      "up",
      "gauge",
      () => 1,
      (i) => ({ instance: `10.0.0.${i}:8080`, job: "bench" }),
    ),
    family("http_requests_total", "counter", (i, t) => t * (i + 1)),
    { ...fast, series: [...fast.series, ...le("+Inf", 1).series] },
    family("container_cpu_usage_seconds_total", "counter", (i, t) => round(t * 0.01 * (i + 1), 2), pod),
    family("container_memory_usage_bytes", "gauge", (i, t) => 100e6 + i * 1e6 + (t % 9700) * 10, pod),
    family(
      "kube_pod_status_phase",
      "gauge",
      (i) => (i % 10 === 0 ? 0 : 1),
      (i) => ({ ...pod(i), phase: "Running" }),
    ),
  ];
}

/** Backfills `days` of data into a cached TSDB (per day and size); promtool reads one 2-hour file at a time. */
async function promData(
  s: Sizes,
): Promise<{ tsdb: string; end: number; samples: number; setup_s: number; cached: boolean }> {
  const step = Math.ceil((s.promDays * 86400) / 11000 / 60) * 60; // the 30-day minimum, on whole minutes: 240 s
  const end = Math.floor(Date.now() / 1000 / 86400) * 86400; // today 00:00 UTC: stable for a day of reruns
  const key = createHash("sha256")
    .update(JSON.stringify([s.promSeries, s.promDays, step, end, 1]))
    .digest("hex")
    .slice(0, 12);
  const dir = join(tmpdir(), `trm-forge-bench-prom-${key}`);
  const meta = join(dir, "meta.json");
  if (existsSync(meta)) return { ...JSON.parse(readFileSync(meta, "utf8")), setup_s: 0, cached: true };
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, "om"), { recursive: true });
  const t0 = Date.now();
  const start = end - s.promDays * 86400;
  let samples = 0;
  const windows: string[] = [];
  for (let w = start; w < end; w += 7200) {
    const times: number[] = [];
    for (let t = w; t < w + 7200; t += step) times.push(t);
    const file = join(dir, "om", `${w}.om`);
    samples += await writeOpenMetrics(file, promFamilies(s.promSeries, times));
    windows.push(file);
  }
  progress(`backfilling ${samples} samples in ${windows.length} blocks`);
  let next = 0;
  const worker = async () => {
    while (next < windows.length) await backfill(windows[next++], join(dir, "tsdb"));
  };
  await Promise.all([worker(), worker()]);
  rmSync(join(dir, "om"), { recursive: true, force: true });
  const info = { tsdb: join(dir, "tsdb"), end, samples, step };
  writeFileSync(meta, JSON.stringify(info));
  return { ...info, setup_s: round((Date.now() - t0) / 1000), cached: false };
}

async function partPrometheus(s: Sizes, work: string) {
  const data = await promData(s);
  const prom = await startPrometheus(data.tsdb, work);
  try {
    const step = Math.ceil((s.promDays * 86400) / 11000 / 60) * 60;
    const cfg = benchConfig(
      join(work, "data"),
      { prometheus: { url: prom.url, step: `${step}s`, scrape_interval: `${step}s`, timeout: "120s" } },
      { lookback: `${s.promDays}d`, concurrency: 2 },
    );
    const { report, wall, cpu } = await timedCollect(cfg, data.end * 1000);
    const qs = report.sources.find((x) => x.source === "prometheus")!.queries;
    const store = openStore(cfg);
    let points = 0;
    const series = new Set<string>();
    for (const ref of await listSegments(store, "bench", "prometheus"))
      for (const r of (await readSegment(store, { key: ref.key, source: "prometheus" })).records) {
        points += r.points.length;
        series.add(`${r.query}${JSON.stringify(r.labels)}`);
      }
    return {
      queries: qs.length,
      series: series.size,
      days: s.promDays,
      step_s: step,
      samples_backfilled: data.samples,
      setup_s: data.setup_s,
      setup_cached: data.cached,
      wall_s: round(wall),
      cpu_s: round(cpu),
      points,
      points_per_s: Math.round(points / wall),
      records_per_s: Math.round(report.totals.records / wall),
      ...totals(report),
      peak_rss_mb: peakRssMb(),
    };
  } finally {
    await prom.stop();
  }
}

/** Starts a fake in a child process; resolves to its URL. */
function serveFake(kind: "loki" | "tempo", count: number): Promise<{ url: string; child: ChildProcess }> {
  // Its stdin is a pipe from this process: when this process ends, however it ends, the fake does too.
  const child = spawn(process.execPath, [SELF, "--serve", kind, "--count", String(count)], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  return new Promise((resolve, reject) => {
    let out = "";
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      const line = out.split("\n")[0];
      if (out.includes("\n")) resolve({ url: JSON.parse(line).url, child });
    });
    child.once("exit", (code) => reject(new Error(`fake ${kind} exited (${code})`)));
  });
}

const DAY_START = Date.UTC(2026, 10, 1);
/** The old-space cap of the bounded-memory log runs. */
const LOG_HEAP_CAP_MB = 64;

function logSource(count: number) {
  const streams = Array.from({ length: 20 }, (_, i) => ({
    namespace: i % 2 ? "ai-agents" : "knative-lambda",
    pod: `${SERVICES[i % SERVICES.length]}-${i}`,
    service_name: SERVICES[i % SERVICES.length],
  }));
  // A pool of lines keeps the fake server's own work small; a sequence number keeps lines distinct.
  const r = seeded(1);
  const pool = Array.from({ length: 10_000 }, (_, i) =>
    i % 100 === 7 ? secretLine(r).line : ordinaryLine(r),
  );
  return generatedLogs(DAY_START, 86_400_000, count, (i) => ({
    labels: streams[i % streams.length],
    line: `${pool[i % pool.length]} seq=${i}`,
  }));
}

function traceSource(count: number) {
  return generatedTraces(DAY_START, 86_400_000, count, 10_000, (i, _traceId, startUs) => {
    const r = seeded(i + 7);
    const n = 3 + (i % 4);
    const spans: Omit<SimSpan, "events" | "pod">[] = [];
    for (let k = 0; k < n; k++) {
      const svc = pick(r, SERVICES);
      const error = r() < 0.05;
      spans.push({
        spanId: createHash("md5").update(`${i}:${k}`).digest("hex").slice(0, 16),
        parentId: k === 0 ? null : spans[Math.floor(r() * k)].spanId,
        service: svc,
        name: k === 0 ? `POST /api/v1/${svc}` : `call ${pick(r, SERVICES)}`,
        kind: k === 0 ? "SPAN_KIND_SERVER" : "SPAN_KIND_CLIENT",
        startUs: startUs + k * 1000,
        durUs: Math.floor(r() * 2e6),
        status: error ? "error" : "unset",
        ...(error ? { message: "upstream error" } : {}),
        attrs: [
          { key: "http.method", value: { stringValue: "POST" } },
          { key: "http.status_code", value: { intValue: r() < 0.05 ? "500" : "200" } },
          { key: "http.url", value: { stringValue: `http://${svc}.ai-agents.svc:8080/api/v1/items/${i}` } },
          { key: "k8s.pod.name", value: { stringValue: `${svc}-${i % 7}` } },
          { key: "thread.id", value: { intValue: String(k) } },
        ],
      });
    }
    return { spans, namespace: "ai-agents" };
  });
}

async function partLogs(lines: number, work: string) {
  const fake = await serveFake("loki", lines);
  try {
    const cfg = benchConfig(
      join(work, "data"),
      {
        loki: {
          url: fake.url,
          queries: [{ name: "all", logql: '{namespace=~".+"}' }],
          max_entries: lines + 1,
        },
      },
      { lookback: "1d" },
    );
    const { report, wall, cpu } = await timedCollect(cfg, DAY_START + 86_400_000);
    return {
      lines,
      wall_s: round(wall),
      cpu_s: round(cpu),
      lines_per_s: Math.round(report.totals.records / wall),
      lines_per_cpu_s: Math.round(report.totals.records / cpu),
      redactions: report.totals.redactions,
      ...totals(report),
      peak_rss_mb: peakRssMb(),
    };
  } finally {
    fake.child.kill();
  }
}

async function partTraces(count: number, work: string) {
  const fake = await serveFake("tempo", count);
  try {
    const cfg = benchConfig(
      join(work, "data"),
      {
        tempo: {
          url: fake.url,
          queries: [{ name: "all", traceql: "{}" }],
          search_limit: 2000,
          search_window: "1h",
          fetch_concurrency: 8,
          max_traces: count + 1,
        },
      },
      { lookback: "1d" },
    );
    const { report, wall, cpu } = await timedCollect(cfg, DAY_START + 86_400_000);
    return {
      traces: count,
      wall_s: round(wall),
      cpu_s: round(cpu),
      traces_per_s: Math.round(report.totals.records / wall),
      traces_per_cpu_s: Math.round(report.totals.records / cpu),
      ...totals(report),
      peak_rss_mb: peakRssMb(),
    };
  } finally {
    fake.child.kill();
  }
}

function partRedaction(quick: boolean) {
  const n = quick ? 10_000 : 50_000;
  const r = seeded(99);
  const red = new Redactor();
  let changed = 0;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const line = ordinaryLine(r);
    if (red.redact(line) !== line) changed++;
  }
  const ms = performance.now() - t0;
  let missed = 0;
  const m = quick ? 2_000 : 10_000;
  for (let i = 0; i < m; i++) {
    const { line, secret } = secretLine(r);
    if (red.redact(line).includes(secret)) missed++;
  }
  const fixtures = fileURLToPath(new URL("../../test/fixtures/collect/", import.meta.url));
  let canaries: { lines: number; leaked: number } | null = null;
  if (existsSync(join(fixtures, "secrets.txt"))) {
    const text = readFileSync(join(fixtures, "secrets.txt"), "utf8");
    const values = readFileSync(join(fixtures, "secret-values.txt"), "utf8").split("\n").filter(Boolean);
    const out = text
      .split("\n")
      .map((l) => red.redact(l))
      .join("\n");
    canaries = { lines: text.split("\n").length, leaked: values.filter((v) => out.includes(v)).length };
  }
  return {
    ordinary_lines: n,
    false_positives: changed,
    false_positive_rate: round(changed / n, 5),
    redact_only_lines_per_s: Math.round(n / (ms / 1000)),
    secret_lines: m,
    secrets_missed: missed,
    canaries,
    note: "the ordinary and secret lines are generated by src/bench/collect-data.ts; real logs have more forms",
  };
}

async function runPart(part: Part, sizes: Sizes, arg: number): Promise<unknown> {
  const work = join(tmpdir(), `trm-forge-bench-${part}-${process.pid}`);
  mkdirSync(work, { recursive: true });
  try {
    if (part === "repo") return await partRepo(sizes, work);
    if (part === "prometheus") return await partPrometheus(sizes, work);
    if (part === "logs") return await partLogs(arg, work);
    if (part === "traces") return await partTraces(arg, work);
    return partRedaction(sizes === QUICK);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** Runs one part in a child process (optionally with its old space capped) and returns what it printed. */
function inChild(part: Part, quick: boolean, arg = 0, heapMb?: number): unknown {
  progress(`${part}${arg ? ` (${arg})` : ""}${heapMb ? `, heap capped at ${heapMb} MB` : ""}…`);
  const node = heapMb ? [`--max-old-space-size=${heapMb}`] : [];
  const args = [...node, SELF, "--part", part, "--arg", String(arg), ...(quick ? ["--quick"] : [])];
  const res = spawnSync(process.execPath, args, {
    stdio: ["ignore", "pipe", "inherit"],
    maxBuffer: 16 << 20,
  });
  if (res.status !== 0) return { error: `part ${part} exited with ${res.status ?? res.signal}` };
  return JSON.parse(res.stdout.toString());
}

export async function run(args: string[]): Promise<unknown> {
  const quick = args.includes("--quick");
  const pi = args.indexOf("--parts");
  const parts = (pi >= 0 ? (args[pi + 1] ?? "") : PARTS.join(",")).split(",").filter(Boolean) as Part[];
  for (const p of parts)
    if (!PARTS.includes(p)) throw new UsageError(`--parts: "${p}" is not one of ${PARTS.join(", ")}`);
  const sizes = quick ? QUICK : FULL;
  const out: Record<string, unknown> = {
    machine: {
      cpus: cpus().length,
      loadavg_at_start: loadavg().map((x) => round(x)),
      note: "a shared machine: other work ran at the same time, so these numbers are noisy",
    },
  };
  for (const part of parts) {
    if (part === "logs") {
      // V8 grows its heap lazily, so peak RSS under the default heap says little about what is live.
      // With the old space capped, a collector that held every line would fail on the larger size.
      type Run = { peak_rss_mb?: number };
      const growth = (rs: Run[]) =>
        rs.length === 2 ? round((rs[1].peak_rss_mb ?? 0) - (rs[0].peak_rss_mb ?? 0), 1) : null;
      const runs = sizes.logLines.map((n) => inChild("logs", quick, n)) as Run[];
      const capped = sizes.logLines.map((n) => inChild("logs", quick, n, LOG_HEAP_CAP_MB)) as Run[];
      out.logs = {
        runs,
        rss_growth_mb: growth(runs),
        heap_cap_mb: LOG_HEAP_CAP_MB,
        capped_runs: capped,
        capped_rss_growth_mb: growth(capped),
        target: "lines_per_s >= 50000 with redaction; memory bounded as lines double",
      };
    } else if (part === "traces") out.traces = inChild("traces", quick, sizes.traces);
    else out[part] = inChild(part, quick);
  }
  return out;
}

// ---- child entry points ------------------------------------------------------------------------

async function childMain(argv: string[]): Promise<void> {
  setLogLevel("warn");
  const quick = argv.includes("--quick");
  const sizes = quick ? QUICK : FULL;
  const serve = argv.indexOf("--serve");
  if (serve >= 0) {
    const kind = argv[serve + 1];
    const count = Number(argv[argv.indexOf("--count") + 1]);
    const api = kind === "loki" ? new LokiApi(logSource(count)) : new TempoApi(traceSource(count));
    const { url } = await listen(apiHandler([api]));
    process.stdin.on("close", () => process.exit(0));
    process.stdin.resume();
    process.stdout.write(`${JSON.stringify({ url })}\n`);
    return; // serves until killed
  }
  const part = argv[argv.indexOf("--part") + 1] as Part;
  const arg = Number(argv[argv.indexOf("--arg") + 1] ?? 0);
  const result = await runPart(part, sizes, arg);
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0);
}

if (process.argv[1] === SELF && (process.argv.includes("--part") || process.argv.includes("--serve"))) {
  childMain(process.argv.slice(2)).catch((err) => {
    process.stderr.write(`bench collect child: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  });
}
