// Tempo collection against a local server speaking Tempo's search and trace-by-ID APIs, plus the
// recorded bodies from the reference: TraceQL windows, bisection of full answers, de-duplication,
// v2→v1 fallback, base64 IDs, flattening, caps, incremental runs and redaction.
import { readFileSync } from "node:fs";
import { afterEach, describe, expect, it } from "vitest";
import { collect } from "../../../src/pipeline/collect/index.js";
import type { TraceRecord } from "../../../src/pipeline/collect/records.js";
import { Redactor } from "../../../src/pipeline/collect/redact.js";
import { flattenTrace, normaliseSpanId, normaliseTraceId } from "../../../src/pipeline/collect/tempo.js";
import { FsStore } from "../../../src/store/index.js";
import { FakeTempo, type FakeTrace } from "../../helpers/observability-fakes.js";
import { canaryLines, labConfig, leakedCanaries, readAll } from "./helpers.js";

const NOW = Date.UTC(2026, 10, 10, 12, 0, 0);
const S = 1_000_000_000n;
const fixture = (name: string) =>
  JSON.parse(readFileSync(new URL(`../../fixtures/collect/${name}`, import.meta.url), "utf8"));

const hex = (n: number, len: number) => n.toString(16).padStart(len, "0");
const SERVICES = [
  { service: "agent-sre", namespace: "ai-agents" },
  { service: "agent-bruno", namespace: "ai-agents" },
  { service: "lambda-notifi", namespace: "knative-lambda" },
];

/** Trace i: three spans, starts spread over 20 h before NOW − 1 h; every 10th ID has leading zeros. */
function makeTrace(i: number, startNs?: bigint, durS = 1): FakeTrace {
  const { service, namespace } = SERVICES[i % 3];
  const traceId =
    i % 10 === 0 ? `0000${hex(i * 7919 + 1, 28)}` : `${hex(i * 2654435761 + 17, 16)}${hex(i + 1, 16)}`;
  const start = startNs ?? BigInt(NOW - 21 * 3600e3) * 1_000_000n + (BigInt(i) * 20n * 3600n * S) / 240n;
  const dur = BigInt(Math.round((i % 7 === 0 ? 6 : durS) * 1e9));
  const root = hex(i * 3 + 1, 16);
  return {
    traceId,
    spans: [
      {
        spanId: root,
        service,
        namespace,
        name: `POST /api/${i}`,
        kind: 2,
        startNs: start,
        durationNs: dur,
        status: i % 5 === 0 ? { code: 2, message: "lambda trigger failed" } : undefined,
        attributes: {
          "http.method": "POST",
          "http.status_code": i % 5 === 0 ? 500 : 200,
          "internal.debug": "dropped",
        },
      },
      {
        spanId: hex(i * 3 + 2, 16),
        parentSpanId: root,
        service: "lambda-broker",
        namespace: "knative-lambda",
        name: "POST lambda-broker",
        kind: 3,
        startNs: start + 1000n,
        durationNs: dur / 2n,
        attributes: { "db.system": "postgresql", "k8s.pod.name": `lambda-broker-${i}` },
      },
      {
        spanId: hex(i * 3 + 3, 16),
        parentSpanId: hex(i * 3 + 2, 16),
        service: "lambda-broker",
        namespace: "knative-lambda",
        name: "db.query",
        kind: 1,
        startNs: start + 2000n,
        durationNs: 1000n,
        status: { code: 1 },
      },
    ],
  };
}

const servers: FakeTempo[] = [];
afterEach(async () => {
  while (servers.length) await servers.pop()!.stop();
});

async function serve(traces: FakeTrace[]) {
  const tempo = new FakeTempo(traces);
  servers.push(tempo);
  return { tempo, url: await tempo.start() };
}

function config(url: string, tempo: Record<string, unknown> = {}, collectCfg: Record<string, unknown> = {}) {
  return labConfig(
    { tempo: { url, retries: 3, timeout: "2s", search_limit: 20, search_window: "6h", ...tempo } },
    { collect: { lookback: "1d", backoff_base: "10ms", backoff_max: "50ms", ...collectCfg } },
  );
}

const tempoQueries = (r: Awaited<ReturnType<typeof collect>>) =>
  r.sources.find((s) => s.source === "tempo")!.queries;

describe("Tempo trace flattening (recorded bodies)", () => {
  it("decodes the reference v2 example: base64 IDs, parent, kinds, status, string int64 times", () => {
    const red = new Redactor();
    const { spans, partial } = flattenTrace(
      fixture("tempo-v2-trace.json"),
      "0af7651916cd43dd8448eb211c80319c",
      () => true,
      red,
    );
    expect(partial).toBe(false);
    expect(spans).toEqual([
      {
        trace_id: "0af7651916cd43dd8448eb211c80319c",
        span_id: "00f067aa0ba902b7",
        parent_span_id: null,
        service: "agent-sre",
        name: "POST /",
        kind: "server",
        start_ns: "1767225600000000000",
        duration_ns: 6_200_000_000,
        status: "error",
        status_message: "lambda trigger failed",
        attributes: {
          "service.name": "agent-sre",
          "k8s.namespace.name": "ai",
          "http.response.status_code": 500,
        },
      },
      {
        trace_id: "0af7651916cd43dd8448eb211c80319c",
        span_id: "b7ad6b7169203331",
        parent_span_id: "00f067aa0ba902b7",
        service: "agent-sre",
        name: "POST lambda-broker",
        kind: "client",
        start_ns: "1767225600100000000",
        duration_ns: 6_000_000_000,
        status: "unset",
        attributes: { "service.name": "agent-sre", "k8s.namespace.name": "ai" },
      },
    ]);
  });

  it("reads the v1 docs example ({batches}) and keeps only selected attributes", () => {
    const { spans } = flattenTrace(
      fixture("tempo-v1-trace.json"),
      "5b8efff798038103d269b633813fc700",
      (k) => k !== "my.span.attr",
      new Redactor(),
    );
    expect(spans).toHaveLength(1);
    expect(spans[0]).toMatchObject({
      trace_id: "5b8efff798038103d269b633813fc700",
      span_id: "eee19b7ec3c1b100",
      service: "my.service",
      kind: "server",
      duration_ns: 698_000_000_000,
    });
    expect(spans[0].attributes["my.span.attr"]).toBeUndefined();
  });

  it("normalises IDs: stripped hex from search, base64 from bodies", () => {
    expect(normaliseTraceId("d6e9329d67b6146a", true)).toBe("0000000000000000d6e9329d67b6146a");
    expect(normaliseTraceId(fixture("tempo-search.json").traces[0].traceID, true)).toBe(
      "5b8efff798038103d269b633813fc700",
    );
    expect(normaliseTraceId("W47/95gDgQPSabYzgT/HAA==")).toBe("5b8efff798038103d269b633813fc700");
    expect(normaliseSpanId("7uGbfsPBsQA=")).toBe("eee19b7ec3c1b100");
    expect(normaliseSpanId("00f067aa0ba902b7")).toBe("00f067aa0ba902b7");
    expect(normaliseTraceId("not an id")).toBeNull();
  });
});

describe("Tempo collection", () => {
  it("finds every trace through the default queries, bisecting full windows, and stores each once, flattened", async () => {
    const traces = Array.from({ length: 240 }, (_, i) => makeTrace(i));
    const { tempo, url } = await serve(traces);
    const cfg = config(url);
    const report = await collect(cfg, { agent: "lab", now: NOW });
    const qs = tempoQueries(report);
    expect(qs.map((q) => q.query)).toEqual([
      "service_agent_sre",
      "service_agent_bruno",
      "namespace_agents",
      "namespace_lambda",
      "slow",
      "errors",
    ]);
    for (const q of qs) expect(q.errors).toEqual([]);
    const got = await readAll(new FsStore(`${cfg.data_dir}/store`), "lab", "tempo");
    expect(got.length).toBe(240);
    expect(new Set(got.map((t) => t.trace_id))).toEqual(new Set(traces.map((t) => t.traceId)));
    expect(qs.reduce((n, q) => n + (q.skipped.duplicates ?? 0), 0)).toBeGreaterThan(0);
    // 20 per search, 80 agent-sre traces in 6 h windows: full answers were split and searched again.
    const searches = tempo.requests.filter((r) => r.path === "/api/search");
    expect(searches.length).toBeGreaterThan(6 * 5);
    for (const r of searches)
      expect(Number(r.params.get("end")) - Number(r.params.get("start"))).toBeLessThanOrEqual(6 * 3600);
    // Flattening against what the server was given.
    const byId = new Map(traces.map((t) => [t.traceId, t]));
    for (const rec of got as TraceRecord[]) {
      const t = byId.get(rec.trace_id)!;
      expect(rec.spans.map((s) => s.span_id)).toEqual(t.spans.map((s) => s.spanId));
      expect(rec.spans.map((s) => s.parent_span_id)).toEqual(t.spans.map((s) => s.parentSpanId ?? null));
      expect(rec.spans.map((s) => s.kind)).toEqual(["server", "client", "internal"]);
      expect(rec.spans[0].status).toBe(t.spans[0].status?.code === 2 ? "error" : "unset");
      expect(rec.spans[2].status).toBe("ok");
      expect(rec.spans[0].duration_ns).toBe(Number(t.spans[0].durationNs));
      expect(rec.start_ns).toBe(t.spans[0].startNs.toString());
      expect(rec.root_service).toBe(t.spans[0].service);
      expect(rec.spans[0].attributes["http.status_code"]).toBe(t.spans[0].attributes!["http.status_code"]);
      expect(rec.spans[0].attributes["internal.debug"]).toBeUndefined();
      expect(rec.spans[1].attributes["k8s.pod.name"]).toBe(t.spans[1].attributes!["k8s.pod.name"]);
    }
    // Leading zeros restored.
    expect(got.some((t) => t.trace_id.startsWith("0000"))).toBe(true);
  });

  it("falls back to /api/traces when the server has no v2 route, and learns it once", async () => {
    const traces = Array.from({ length: 30 }, (_, i) => makeTrace(i * 8));
    const { tempo, url } = await serve(traces);
    tempo.v2 = false;
    const cfg = config(url, { queries: [{ name: "all", traceql: "{}" }], search_limit: 100 });
    const report = await collect(cfg, { agent: "lab", now: NOW });
    expect(tempoQueries(report)[0].records).toBe(30);
    expect(tempo.requests.filter((r) => r.path.startsWith("/api/v2/")).length).toBe(1);
    expect(tempo.requests.filter((r) => r.path.startsWith("/api/traces/")).length).toBe(30);
  });

  it("keeps each search within 168 h even when configured longer", async () => {
    const traces = Array.from({ length: 40 }, (_, i) =>
      makeTrace(i, BigInt(NOW - (i + 1) * 5 * 3600e3) * 1_000_000n),
    );
    const { url } = await serve(traces);
    const cfg = config(
      url,
      { queries: [{ name: "all", traceql: "{}" }], search_window: "300h", search_limit: 500 },
      { lookback: "10d" },
    );
    const report = await collect(cfg, { agent: "lab", now: NOW });
    const q = tempoQueries(report)[0];
    expect(q.errors).toEqual([]);
    expect(q.warnings).toContain("search_window 300h cut to 168h (Tempo's max_duration)");
    expect(q.records).toBe(40);
  });

  it("reports an unreadable trace body and stores the others; a bad TraceQL fails only its query", async () => {
    const traces = Array.from({ length: 12 }, (_, i) => makeTrace(i * 20 + 1));
    const { tempo, url } = await serve(traces);
    const broken = traces[3].traceId;
    tempo.faults.add((r) =>
      r.path.endsWith(broken)
        ? {
            status: 200,
            type: "application/json",
            body: '{"trace":{"resourceSpans":[{"scopeSpans":[{"spans":[{"spanId":12}]}]}]}}',
          }
        : undefined,
    );
    const cfg = config(url, {
      search_limit: 100,
      queries: [
        { name: "all", traceql: "{}" },
        { name: "bad", traceql: "{ resource.service.name = }" },
      ],
    });
    const report = await collect(cfg, { agent: "lab", now: NOW });
    const [all, bad] = tempoQueries(report);
    expect(all.records).toBe(11);
    expect(all.status).toBe("partial");
    expect(all.errors[0]).toMatch(
      new RegExp(`^tempo query "all": trace ${broken}: span with an unreadable spanId 12`),
    );
    expect(all.skipped.unreadable_traces).toBe(1);
    expect(bad.status).toBe("failed");
    expect(bad.errors[0]).toMatch(/^tempo query "bad": HTTP 400: invalid TraceQL query/);
  });

  it("keeps a PARTIAL trace, flagged, and says so", async () => {
    const traces = Array.from({ length: 5 }, (_, i) => makeTrace(i * 30 + 4));
    traces[2].partial = true;
    const { url } = await serve(traces);
    const cfg = config(url, { queries: [{ name: "all", traceql: "{}" }], search_limit: 100 });
    const report = await collect(cfg, { agent: "lab", now: NOW });
    const q = tempoQueries(report)[0];
    expect(q.records).toBe(5);
    expect(q.warnings).toContain(
      "1 traces were PARTIAL (not every block searched); stored with partial: true",
    );
    const got = await readAll(new FsStore(`${cfg.data_dir}/store`), "lab", "tempo");
    expect(got.filter((t) => t.partial).map((t) => t.trace_id)).toEqual([traces[2].traceId]);
  });

  it("retries 5xx on trace fetches; the cap stops a run and later runs finish without duplicates", async () => {
    const traces = Array.from({ length: 120 }, (_, i) => makeTrace(i * 2));
    const { tempo, url } = await serve(traces);
    let failed = 0;
    tempo.faults.add((r) =>
      r.path.startsWith("/api/v2/") && failed++ < 3 ? { status: 502, body: "bad gateway" } : undefined,
    );
    const cfg = config(url, { queries: [{ name: "all", traceql: "{}" }], max_traces: 50, search_limit: 100 });
    const r1 = await collect(cfg, { agent: "lab", now: NOW });
    const q1 = tempoQueries(r1)[0];
    expect(q1.retries).toBe(3);
    expect(q1.records).toBe(50);
    expect(q1.caps_hit[0]).toMatch(/^max_traces 50/);
    for (let i = 0; i < 4; i++) await collect(cfg, { agent: "lab", now: NOW });
    const got = await readAll(new FsStore(`${cfg.data_dir}/store`), "lab", "tempo");
    expect(got.length).toBe(120);
    expect(new Set(got.map((t) => t.trace_id)).size).toBe(120);
  });

  it("is incremental: a trace that straddles two runs is stored once; a repeat run adds nothing", async () => {
    const early = NOW - 6 * 3600e3;
    const straddler = makeTrace(3, BigInt(early - 10 * 60e3) * 1_000_000n, 20 * 60);
    const traces = [straddler, ...Array.from({ length: 60 }, (_, i) => makeTrace(i * 4 + 1))];
    const { url } = await serve(traces);
    const cfg = config(url, { queries: [{ name: "all", traceql: "{}" }], search_limit: 500 });
    const r1 = await collect(cfg, { agent: "lab", now: early });
    const r2 = await collect(cfg, { agent: "lab", now: NOW });
    const r3 = await collect(cfg, { agent: "lab", now: NOW });
    expect(r3.totals.records).toBe(0);
    const got = await readAll(new FsStore(`${cfg.data_dir}/store`), "lab", "tempo");
    expect(r1.totals.records).toBeGreaterThan(0);
    expect(got.length).toBe(traces.length);
    expect(got.filter((t) => t.trace_id === straddler.traceId)).toHaveLength(1);
    expect(tempoQueries(r2)[0].skipped.duplicates).toBeGreaterThanOrEqual(1);
  });

  it("stores no canary secret from span attributes, names or status messages", async () => {
    const lines = canaryLines();
    const traces = lines.map((line, i) => {
      const t = makeTrace(i * 5 + 2);
      t.spans[0].attributes = {
        "http.url": "https://ghp_BaISmxb3soiNJ3vQEZ1HvIoicsONUggbjrqk@github.com/acme/notifi-services.git",
        "http.request.header.authorization":
          "Bearer eyJhbGciOiAiSFMyNTYiLCAidHlwIjogIkpXVCJ9.eyJzdWIiOiAiZGtlbEV1Zm92NSIsICJleHAiOiAxODkzNDU2MDAwfQ.AOT05nKfeOLvHNh_ZOCBRK6iIT6Y2YTIicpDiYmfb9a",
        "db.statement": "connecting to postgres://notifi:60jbXjIanttFaymbA5@db.internal:5432/notifications",
        "exception.message": line,
        "http.request.header.x-api-key": "7ozHhNNbIA3kGzLtr9MWixrZ19ksQv80",
      };
      t.spans[0].status = { code: 2, message: line };
      t.spans[1].name = `POST ${line}`;
      return t;
    });
    const { url } = await serve(traces);
    const cfg = config(url, { queries: [{ name: "all", traceql: "{}" }], search_limit: 500 });
    const report = await collect(cfg, { agent: "lab", now: NOW });
    expect(tempoQueries(report)[0].records).toBe(lines.length);
    expect(leakedCanaries(cfg.data_dir)).toEqual([]);
    const got = await readAll(new FsStore(`${cfg.data_dir}/store`), "lab", "tempo");
    const attrs = got[0].spans[0].attributes;
    expect(attrs["http.request.header.authorization"]).toBe("<redacted:credentials>");
    expect(attrs["db.statement"]).toBe(
      "connecting to postgres://notifi:<redacted:password>@db.internal:5432/notifications",
    );
  });
});
