import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseConfig } from "../../../src/config/index.js";
import { KnowledgeSchema } from "../../../src/config/schema.js";
import { writeSegment } from "../../../src/pipeline/collect/raw-store.js";
import type {
  CodeFileRecord,
  LogEntryRecord,
  MetricSeriesRecord,
  TraceRecord,
} from "../../../src/pipeline/collect/records.js";
import {
  buildKnowledgeCard,
  collectKnowledge,
  estimateTokens,
  KnowledgeCollector,
  knowledgeArtifact,
  renderKnowledgeCard,
} from "../../../src/pipeline/deploy/knowledge.js";
import { FsStore } from "../../../src/store/index.js";

const T0 = Date.UTC(2025, 0, 10, 12, 0, 0); // 2025-01-10 12:00 UTC
const WINDOW = { start: Date.UTC(2025, 0, 10), end: Date.UTC(2025, 0, 11) };
const hex = (n: number, len: number) => n.toString(16).padStart(len, "0");
const ns = (ms: number) => `${BigInt(Math.round(ms)) * 1_000_000n}`;

function span(trace: number, id: number, parent: number | null, service: string, ms: number, error = false) {
  return {
    trace_id: hex(trace, 32),
    span_id: hex(id, 16),
    parent_span_id: parent === null ? null : hex(parent, 16),
    service,
    name: `${service}-op`,
    kind: "server",
    start_ns: ns(T0 + trace * 1000),
    duration_ns: ms * 1e6,
    status: (error ? "error" : "ok") as "error" | "ok",
    attributes: {},
  };
}

// 10 checkout traces: frontend -> checkout (100..1000 ms) -> payments (10..100 ms), payments failing in 2.
function traces(): TraceRecord[] {
  const out: TraceRecord[] = [];
  for (let i = 1; i <= 10; i++) {
    const base = i * 10;
    out.push({
      kind: "trace",
      query: "{}",
      trace_id: hex(i, 32),
      root_service: "frontend",
      root_name: "GET /checkout",
      start_ns: ns(T0 + i * 1000),
      duration_ms: 1200,
      spans: [
        span(i, base + 1, null, "frontend", 1200),
        span(i, base + 2, base + 1, "checkout", i * 100),
        // An in-service child is not an edge.
        span(i, base + 3, base + 2, "checkout", 5),
        span(i, base + 4, base + 2, "payments", i * 10, i === 3 || i === 7),
      ],
    });
  }
  // Outside the window: must not count.
  out.push({ ...out[0], trace_id: hex(99, 32), start_ns: ns(WINDOW.end + 3600_000) });
  return out;
}

function log(service: string, ms: number, line: string, level?: string): LogEntryRecord {
  return {
    kind: "log_entry",
    query: "{}",
    ts_ns: ns(ms),
    labels: level ? { service_name: service, level } : { service_name: service },
    line,
  };
}

const LOGS: LogEntryRecord[] = [
  log("checkout", T0 + 60_000, "payment failed for order 1234 after 3 retries", "error"),
  log("checkout", T0 + 120_000, "payment failed for order 98 after 5 retries", "error"),
  log("checkout", T0 + 7_200_000, "payment failed for order 7 after 1 retries", "error"),
  log("checkout", T0 + 90_000, "cart loaded in 12ms", "info"),
  log("frontend", T0 + 30_000, 'level=error msg="upstream timeout" addr=10.0.0.5:8080'),
];

function series(labels: Record<string, string>, values: number[]): MetricSeriesRecord {
  return {
    kind: "metric_series",
    query: "q",
    promql: "q",
    labels,
    step_s: 60,
    start: T0 / 1000,
    end: T0 / 1000 + values.length * 60,
    points: values.map((v, i) => [T0 / 1000 + i * 60, v] as [number, number]),
  };
}

function code(path: string, language: string, size: number): CodeFileRecord {
  return {
    kind: "code_file",
    path,
    language,
    size,
    sha256: "0".repeat(64),
    commit: null,
    content: "x",
    redactions: 0,
    collected_at: new Date(T0).toISOString(),
  };
}

async function knownStore(): Promise<FsStore> {
  const store = new FsStore(mkdtempSync(join(tmpdir(), "trm-knowledge-")));
  await writeSegment(store, "agent-sre", "tempo", "2025-01-10", "s1", traces());
  await writeSegment(store, "agent-sre", "loki", "2025-01-10", "s1", LOGS);
  const up = Array(20).fill(1);
  up[12] = 0; // one scrape down at 12:12
  const latency = Array.from({ length: 100 }, (_, i) => i + 1);
  latency[50] = 1000;
  await writeSegment(store, "agent-sre", "prometheus", "2025-01-10", "s1", [
    series({ __name__: "up", job: "node", instance: "nas" }, up),
    series({ __name__: "http_latency_ms", service: "checkout" }, latency),
  ]);
  await writeSegment(store, "agent-sre", "code", "2025-01-10", "s1", [
    code("cmd/server/main.go", "go", 2048),
    code("internal/pay/pay.go", "go", 1024),
    code("internal/pay/pay_test.go", "go", 1024),
    code("deploy/base/kustomization.yaml", "yaml", 300),
    code("package.json", "json", 500),
    code("README.md", "markdown", 4000),
  ]);
  return store;
}

describe("knowledge card", () => {
  it("states the facts of known data: topology, error signatures, incidents, baselines, code map", async () => {
    const store = await knownStore();
    const c = await collectKnowledge(store, "agent-sre", WINDOW);
    const incidents = [
      {
        service: "payments",
        start: T0 + 2000,
        end: T0 + 8000 + 30 * 60_000,
        evidence: ["trace error ratio 0.20 > 0.10"],
      },
    ];
    const scores = [
      { task: "trace_outcome", metric: "exact", model: 0.91, baseline: 0.62, baselineName: "majority" },
    ];
    const facts = c.facts("agent-sre", WINDOW, { incidents, scores });

    expect(facts.traces).toBe(10);
    expect(facts.edges).toEqual([
      { from: "checkout", to: "payments", calls: 10, errors: 2, p95Ms: 95.5 },
      { from: "frontend", to: "checkout", calls: 10, errors: 0, p95Ms: 955 },
    ]);
    expect(facts.errorLines).toBe(4);
    expect(facts.errors[0]).toEqual({
      service: "checkout",
      signature: "payment failed for order <num> after <num> retries",
      count: 3,
      firstSeen: T0 + 60_000,
      lastSeen: T0 + 7_200_000,
    });
    const upBase = facts.series.find((s) => s.series.startsWith("up{"))!;
    expect(upBase).toMatchObject({
      points: 20,
      median: 1,
      anomalies: 1,
      firstAnomaly: T0 + 12 * 60_000,
      worst: 0,
    });
    const lat = facts.series.find((s) => s.series.startsWith("http_latency_ms"))!;
    expect(lat.anomalies).toBe(1);
    expect(lat.worst).toBe(1000);
    expect(facts.code.languages[0]).toEqual({ language: "go", files: 3, bytes: 4096 });
    expect(facts.code.modules.slice(0, 2)).toEqual([
      { path: "(root)", files: 2 },
      { path: "internal/", files: 2 },
    ]);
    expect(facts.code.configFiles).toEqual(["package.json", "deploy/base/kustomization.yaml"]);

    const { markdown, tokens, trimmed } = renderKnowledgeCard(facts, KnowledgeSchema.parse({}), {
      version: "v20250111-030000-000",
    });
    expect(trimmed).toBe(false);
    expect(tokens).toBe(estimateTokens(markdown));
    expect(markdown).toContain("for model version v20250111-030000-000");
    expect(markdown).toContain(
      "2025-01-10 00:00 to 2025-01-11 00:00 UTC: 10 traces, 5 log lines (4 at error level",
    );
    expect(markdown).toContain("| checkout | payments | 10 | 20.0% | 96 ms |");
    expect(markdown).toContain("| frontend | checkout | 10 | 0.0% | 955 ms |");
    expect(markdown).toContain("frontend `GET /checkout` (10 traces)");
    expect(markdown).toContain("### checkout (3 error lines)");
    expect(markdown).toContain(
      "- 3× `payment failed for order <num> after <num> retries` (first 2025-01-10 12:01, last 2025-01-10 14:00)",
    );
    expect(markdown).toContain("### frontend (1 error lines)");
    expect(markdown).toContain('- 1× `level=error msg="upstream timeout" addr=<ip>` (first 2025-01-10 12:00');
    expect(markdown).not.toContain("cart loaded");
    expect(markdown).toContain(
      "- payments: 2025-01-10 12:00 to 2025-01-10 12:30 (30 min): trace error ratio 0.20 > 0.10",
    );
    expect(markdown).toContain(
      '| up{instance="nas",job="node"} | 0.95 to 1 | 1 | 1 of 20 points, first 2025-01-10 12:12, extreme 0 |',
    );
    expect(markdown).toContain(
      '| http_latency_ms{service="checkout"} | 5.95 to 96.05 | 51 | 1 of 100 points, first 2025-01-10 12:50, extreme 1000 |',
    );
    expect(markdown).toContain(
      "Languages: go (3 files, 4.0 KiB), json (1 files, 0.5 KiB), markdown (1 files, 3.9 KiB)",
    );
    expect(markdown).toContain("Top-level modules: (root) (2), internal/ (2), cmd/ (1), deploy/ (1).");
    expect(markdown).toContain("Config files: `package.json`, `deploy/base/kustomization.yaml`.");
    expect(markdown).toContain("- trace_outcome: exact 0.91 (baseline majority 0.62)");
  });

  it("takes its incidents from the incident join over the same records", async () => {
    const store = await knownStore();
    const config = parseConfig({ data_dir: tmpdir() });
    const card = await buildKnowledgeCard({
      config,
      store,
      agent: "agent-sre",
      window: WINDOW,
      version: "v1",
    });
    // payments: 2 of 10 traces failed in the 12:00 bucket (ratio 0.2 reaches the 0.2 threshold);
    // node (the up series' job label): one scrape down at 12:12.
    expect(card.facts.incidents).toEqual([
      {
        service: "payments",
        start: T0,
        end: T0 + 5 * 60_000,
        evidence: ["trace error ratio up to 0.2 (threshold 0.2) in 1 bucket"],
      },
      {
        service: "node",
        start: T0 + 10 * 60_000,
        end: T0 + 15 * 60_000,
        evidence: ["up == 0 (1 down samples at worst) in 1 bucket"],
      },
    ]);
    expect(card.markdown).toContain(
      "- payments: 2025-01-10 12:00 to 2025-01-10 12:05 (5 min): trace error ratio up to 0.2 (threshold 0.2) in 1 bucket",
    );
    expect(card.markdown).toContain("- node: 2025-01-10 12:10 to 2025-01-10 12:15 (5 min): up == 0");
    const art = await knowledgeArtifact({ config, store, agent: "agent-sre", window: WINDOW, version: "v1" });
    expect(art).toEqual({
      name: "knowledge.md",
      data: card.markdown,
      contentType: "text/markdown; charset=utf-8",
    });
  });

  it("stays within the token budget on a large homelab, keeping the biggest entries", () => {
    const c = new KnowledgeCollector();
    // 300 services in a chain, each edge called a different number of times.
    for (let s = 0; s < 300; s++) {
      for (let k = 0; k <= s % 7; k++) {
        c.addTrace({
          kind: "trace",
          query: "{}",
          trace_id: hex(s * 10 + k + 1, 32),
          root_service: `svc-${s}`,
          root_name: "op",
          start_ns: ns(T0),
          duration_ms: 5,
          spans: [
            span(s * 10 + k + 1, 1, null, `svc-${s}`, 5),
            span(s * 10 + k + 1, 2, 1, `svc-${s + 1}`, 3),
          ],
        });
      }
      for (let e = 0; e < 20; e++)
        c.addLog(log(`svc-${s}`, T0 + e, `error ${"x".repeat(e)} failed ${s}`, "error"));
    }
    const facts = c.facts("big", WINDOW);
    const cfg = KnowledgeSchema.parse({ max_tokens: 2000 });
    const { markdown, tokens, trimmed } = renderKnowledgeCard(facts, cfg);
    expect(trimmed).toBe(true);
    expect(tokens).toBeLessThanOrEqual(2000);
    expect(markdown.length).toBeLessThanOrEqual(8000);
    expect(markdown).toContain("Lists are cut to the largest entries.");
    // The busiest edge (7 calls) is kept; the table is cut.
    const top = facts.edges[0];
    expect(top.calls).toBe(7);
    expect(markdown).toContain(`| ${top.from} | ${top.to} | 7 |`);
    expect(markdown).toMatch(/\(\d+ smaller edges not shown\)/);

    const full = renderKnowledgeCard(facts, KnowledgeSchema.parse({ max_tokens: 100_000 }));
    expect(full.trimmed).toBe(false);
    expect(full.tokens).toBeGreaterThan(2000);
  });
});
