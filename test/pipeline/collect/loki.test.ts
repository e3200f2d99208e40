// Loki collection against a local server speaking Loki's query_range API (fakes shaped like the
// recorded samples): pagination across equal timestamps, limit errors, retries, timeouts, broken
// bodies, the cap, incremental runs, cancellation and redaction.
import { afterEach, describe, expect, it } from "vitest";
import { collect } from "../../../src/pipeline/collect/index.js";
import { parseGoDuration } from "../../../src/pipeline/collect/loki.js";
import type { LogEntryRecord } from "../../../src/pipeline/collect/records.js";
import { FsStore } from "../../../src/store/index.js";
import { FakeLoki, type LogEntry } from "../../helpers/observability-fakes.js";
import { canaryLines, labConfig, leakedCanaries, readAll } from "./helpers.js";

const NOW = Date.UTC(2026, 10, 10, 12, 0, 0);
const NS = 1_000_000n;
const ms2ns = (ms: number) => BigInt(ms) * NS;

const STREAMS = [
  {
    namespace: "knative-lambda",
    pod: "lambda-pod-restart-00001-deployment-5d8c7b9f4-abcde",
    service_name: "lambda-pod-restart",
  },
  {
    namespace: "knative-lambda",
    pod: "knative-lambda-operator-6b7f9d8c5-qwert",
    service_name: "knative-lambda-operator",
  },
  { namespace: "ai-agents", pod: "agent-sre-7c9d8f6b5-x2k4q", service_name: "agent-sre" },
];

/**
 * n entries over the 40 h before NOW − 1 h; positions 37k+1 … 37k+6 share the nanosecond of 37k
 * (across the three streams), so page boundaries keep falling inside clusters of equal timestamps.
 */
function entries(n: number): LogEntry[] {
  const start = ms2ns(NOW - 41 * 3600e3);
  const spacing = ms2ns(40 * 3600e3) / BigInt(n);
  const out: LogEntry[] = [];
  for (let i = 0; i < n; i++) {
    const base = i >= 37 && i % 37 < 7 ? i - (i % 37) : i;
    out.push({
      ts: start + spacing * BigInt(base),
      labels: STREAMS[i % 3],
      line: `level=${i % 5 === 0 ? "error" : "info"} msg="event ${i}" seq=${i}`,
    });
  }
  return out;
}

function key(e: { ts_ns?: string; ts?: bigint; line: string }): string {
  return `${e.ts_ns ?? e.ts}|${e.line}`;
}

const servers: FakeLoki[] = [];
afterEach(async () => {
  while (servers.length) await servers.pop()!.stop();
});

async function serve(list: LogEntry[]): Promise<{ loki: FakeLoki; url: string }> {
  const loki = new FakeLoki(list);
  servers.push(loki);
  return { loki, url: await loki.start() };
}

function config(url: string, loki: Record<string, unknown> = {}, collectCfg: Record<string, unknown> = {}) {
  return labConfig(
    {
      loki: {
        url,
        retries: 3,
        timeout: "2s",
        queries: [{ name: "all", logql: '{namespace=~".+"}' }],
        ...loki,
      },
    },
    { collect: { lookback: "3d", backoff_base: "10ms", backoff_max: "50ms", ...collectCfg } },
  );
}

describe("Loki collection", () => {
  it("pages through every entry once, across equal-timestamp boundaries, with ns string times", async () => {
    const list = entries(1500);
    const { loki, url } = await serve(list);
    const cfg = config(url, { batch_size: 50 });
    const report = await collect(cfg, { agent: "lab", now: NOW });
    const q = report.sources.find((s) => s.source === "loki")!.queries[0];
    expect(q.errors).toEqual([]);
    expect(q.status).toBe("ok");
    const store = new FsStore(`${cfg.data_dir}/store`);
    const got = await readAll(store, "lab", "loki");
    expect(got.length).toBe(list.length);
    expect(new Set(got.map(key)).size).toBe(list.length);
    expect(new Set(got.map(key))).toEqual(new Set(list.map(key)));
    expect(q.records).toBe(list.length);
    expect(q.skipped.duplicates).toBeGreaterThan(0); // boundary entries came back and were dropped
    // logcli's technique: forward, limit ≤ 5000, the next start is the newest timestamp of the page.
    const pages = loki.requests.filter((r) => r.path === "/loki/api/v1/query_range");
    for (const r of pages) {
      expect(r.params.get("direction")).toBe("forward");
      expect(Number(r.params.get("limit"))).toBeLessThanOrEqual(50);
      expect(r.params.get("start")).toMatch(/^\d{19}$/);
    }
    const stored = got.map((r) => r as LogEntryRecord);
    expect(stored.every((r) => /^\d{19}$/.test(r.ts_ns))).toBe(true);
    expect(stored[0].labels).toEqual(STREAMS[0]);
    // Segments are per UTC day and hold whole records in time order.
    expect(
      q.segments.every((k) => /^raw\/lab\/loki\/2026-11-(08|09|10)\/all-\d+-\d+\.jsonl\.gz$/.test(k)),
    ).toBe(true);
  });

  it("follows the reference's page-1 example: end/start at the shared timestamp, boundary entries dropped", async () => {
    const t1 = 1767229200000000000n;
    const t2 = 1767232800000000000n;
    const [a, b] = STREAMS;
    const list: LogEntry[] = [
      { ts: t2, labels: a, line: 'level=error msg="reconcile failed" err="context deadline exceeded"' },
      { ts: t1, labels: a, line: 'level=error msg="retrying"' },
      { ts: t1, labels: b, line: 'level=error msg="build failed"' },
      { ts: t1 - 5n, labels: b, line: 'level=error msg="older"' },
      { ts: t2 + 7n, labels: b, line: 'level=error msg="newer"' },
    ];
    const { url } = await serve(list);
    const now = Number(t2 / NS) + 3600e3;
    const cfg = config(url, { batch_size: 2 });
    const report = await collect(cfg, { agent: "lab", now });
    const got = await readAll(new FsStore(`${cfg.data_dir}/store`), "lab", "loki");
    expect(report.status).toBe("ok");
    // Equal timestamps come back in Loki's order: by stream (knative-lambda-operator first).
    expect(got.map((r) => r.line)).toEqual([
      'level=error msg="older"',
      'level=error msg="build failed"',
      'level=error msg="retrying"',
      'level=error msg="reconcile failed" err="context deadline exceeded"',
      'level=error msg="newer"',
    ]);
  });

  it("lowers the batch when the server's max_entries_limit is smaller (400, plain text) and says so", async () => {
    const list = entries(3000);
    const { loki, url } = await serve(list);
    loki.maxEntriesLimit = 1000;
    const cfg = config(url);
    const report = await collect(cfg, { agent: "lab", now: NOW });
    const q = report.sources.find((s) => s.source === "loki")!.queries[0];
    expect(q.status).toBe("ok");
    expect(q.records).toBe(3000);
    expect(q.warnings.join(" ")).toMatch(/allows 1000 entries per request/);
    const limits = loki.requests.map((r) => Number(r.params.get("limit")));
    expect(limits[0]).toBe(5000);
    expect(Math.max(...limits.slice(1))).toBeLessThanOrEqual(1000);
  });

  it("retries 5xx and slow responses with backoff, then succeeds; counts the retries", async () => {
    const { loki, url } = await serve(entries(300));
    loki.faults.add((r) => (r.n <= 2 ? { status: 503, body: "upstream unavailable" } : undefined));
    loki.faults.add((r) => (r.n === 3 ? { delayMs: 1500 } : undefined));
    const cfg = config(url, { timeout: "500ms" });
    const report = await collect(cfg, { agent: "lab", now: NOW });
    const q = report.sources.find((s) => s.source === "loki")!.queries[0];
    expect(q.status).toBe("ok");
    expect(q.records).toBe(300);
    expect(q.retries).toBe(3);
  });

  it("names the source and query in errors, keeps other queries going: timeout, truncated JSON, plain-text 400", async () => {
    const { loki, url } = await serve(entries(300));
    loki.faults.add((r) => (r.params.get("query")?.includes("slow") ? { delayMs: 800 } : undefined));
    loki.faults.add((r) => (r.params.get("query")?.includes("cut") ? { truncateAt: 40 } : undefined));
    const cfg = config(url, {
      timeout: "300ms",
      retries: 1,
      queries: [
        { name: "slow", logql: '{namespace=~".+"} |= "slow"' },
        { name: "cut", logql: '{namespace=~".+"} |= "cut"' },
        { name: "bad", logql: '{namespace=~".+"} |~~ "x"' },
        { name: "good", logql: '{namespace="ai-agents"}' },
      ],
    });
    const report = await collect(cfg, { agent: "lab", now: NOW });
    const qs = Object.fromEntries(
      report.sources.find((s) => s.source === "loki")!.queries.map((q) => [q.query, q]),
    );
    expect(qs.slow.status).toBe("failed");
    expect(qs.slow.errors[0]).toMatch(
      /^loki query "slow": no response from \/loki\/api\/v1\/query_range within 300 ms \(after 2 attempts\)/,
    );
    expect(qs.cut.status).toBe("failed");
    expect(qs.cut.errors[0]).toMatch(/^loki query "cut": response is not valid JSON/);
    expect(qs.bad.status).toBe("failed");
    expect(qs.bad.errors[0]).toMatch(/^loki query "bad": HTTP 400: parse error/);
    expect(qs.bad.retries).toBe(0); // a 4xx is not retried
    expect(qs.good.status).toBe("ok");
    expect(qs.good.records).toBe(100);
    expect(report.status).toBe("partial");
  });

  it("stops at the cap, reports it, and the next run continues without loss or duplicates", async () => {
    const list = entries(2000);
    const { url } = await serve(list);
    const cfg = config(url, { batch_size: 300, max_entries: 700 });
    const r1 = await collect(cfg, { agent: "lab", now: NOW });
    const q1 = r1.sources.find((s) => s.source === "loki")!.queries[0];
    expect(q1.records).toBe(700);
    expect(q1.status).toBe("partial");
    expect(q1.caps_hit[0]).toMatch(/^max_entries 700/);
    const store = new FsStore(`${cfg.data_dir}/store`);
    for (let i = 0; i < 3; i++) await collect(cfg, { agent: "lab", now: NOW });
    const got = await readAll(store, "lab", "loki");
    expect(got.length).toBe(2000);
    expect(new Set(got.map(key))).toEqual(new Set(list.map(key)));
    // A fifth run over the same window adds nothing.
    const r5 = await collect(cfg, { agent: "lab", now: NOW });
    expect(r5.totals.records).toBe(0);
    expect((await readAll(store, "lab", "loki")).length).toBe(2000);
  });

  it("is incremental: a later run collects only what is new", async () => {
    const list = entries(900);
    const { url } = await serve(list);
    const cfg = config(url);
    const early = NOW - 20 * 3600e3;
    const r1 = await collect(cfg, { agent: "lab", now: early });
    const r2 = await collect(cfg, { agent: "lab", now: NOW });
    const got = await readAll(new FsStore(`${cfg.data_dir}/store`), "lab", "loki");
    expect(r1.totals.records + r2.totals.records).toBe(900);
    expect(r1.totals.records).toBeGreaterThan(0);
    expect(new Set(got.map(key))).toEqual(new Set(list.map(key)));
    const q2 = r2.sources.find((s) => s.source === "loki")!.queries[0];
    expect(q2.window!.start).toBe(new Date(early - 2 * 60e3).toISOString());
  });

  it("cancels promptly on abort and reports cancelled", async () => {
    const { loki, url } = await serve(entries(300));
    loki.faults.add(() => ({ delayMs: 5000 }));
    const cfg = config(url, { timeout: "10s" });
    const ac = new AbortController();
    const t0 = Date.now();
    setTimeout(() => ac.abort(), 200);
    const report = await collect(cfg, { agent: "lab", now: NOW, signal: ac.signal });
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(report.status).toBe("cancelled");
    expect(report.sources.find((s) => s.source === "loki")!.queries[0].status).toBe("cancelled");
  });

  it("stores no canary secret from log lines or stream labels", async () => {
    const lines = canaryLines();
    const list: LogEntry[] = lines.map((line, i) => ({
      ts: ms2ns(NOW - 3600e3) + BigInt(i),
      labels: {
        namespace: "ai-agents",
        pod: "agent-sre-1",
        token: "ghp_BaISmxb3soiNJ3vQEZ1HvIoicsONUggbjrqk",
      },
      line,
    }));
    const { url } = await serve(list);
    const cfg = config(url);
    const report = await collect(cfg, { agent: "lab", now: NOW });
    const q = report.sources.find((s) => s.source === "loki")!.queries[0];
    expect(q.records).toBe(lines.length);
    expect(Object.keys(q.redactions).length).toBeGreaterThan(5);
    expect(leakedCanaries(cfg.data_dir)).toEqual([]);
    const got = await readAll(new FsStore(`${cfg.data_dir}/store`), "lab", "loki");
    expect(got.some((r) => r.line.includes("<redacted:jwt>"))).toBe(true);
    expect(got[0].labels.token).toBe("<redacted:github_token>");
  });

  it("sends the bearer token and tenant header, and says when they are wrong", async () => {
    const { loki, url } = await serve(entries(30));
    loki.token = "s3cret-token-value";
    loki.tenant = "homelab";
    const cfg = config(url, { auth: { bearer: { env: "LOKI_TOKEN" } }, tenant: "homelab" });
    const ok = await collect(cfg, { agent: "lab", now: NOW, env: { LOKI_TOKEN: "s3cret-token-value" } });
    expect(ok.totals.records).toBe(30);
    const bad = await collect(config(url, { auth: { bearer: { env: "LOKI_TOKEN" } } }), {
      agent: "lab",
      now: NOW,
      env: { LOKI_TOKEN: "wrong" },
    });
    expect(bad.sources.find((s) => s.source === "loki")!.queries[0].errors[0]).toMatch(/HTTP 401/);
  });
});

describe("parseGoDuration", () => {
  it("reads Go and Prometheus durations as Loki prints its limits", () => {
    expect(parseGoDuration("721h0m0s")).toBe(721 * 3600e3);
    expect(parseGoDuration("30d1h")).toBe(30 * 86400e3 + 3600e3);
    expect(parseGoDuration("1w")).toBe(7 * 86400e3);
    expect(parseGoDuration("100ms")).toBe(100);
    expect(parseGoDuration("1m30s")).toBe(90e3);
    expect(parseGoDuration("soon")).toBeNull();
    expect(parseGoDuration("5x")).toBeNull();
  });
});
