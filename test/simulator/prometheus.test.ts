// The simulated Prometheus keeps Prometheus's rules: points at start + k*step, the 11,000-point
// limit, parameter errors with Prometheus's wording, values as strings (NaN included), series
// sorted by labels, and a 400 bad_data for queries outside what it serves.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createSimulator, type Simulator } from "../../src/simulator/index.js";
import { formatSample, formatTimestamp } from "../../src/simulator/prometheus-api.js";
import { bucketQuantile } from "../../src/simulator/promql.js";
import { DAY_S, END, END_S, get } from "./helpers.js";

let sim: Simulator;

beforeAll(async () => {
  sim = await createSimulator({ seed: 5, days: 3, end: END });
});
afterAll(async () => {
  await sim.close();
});

const range = (query: string, start: number | string, end: number | string, step: number | string) =>
  get(sim.url, "/api/v1/query_range", { query, start, end, step });

describe("query_range", () => {
  it("evaluates at start + k*step without aligning start, both ends inclusive", async () => {
    const start = END_S - 3600 + 0.781;
    const r = await range('up{service="api-gateway"}', start, END_S - 0.219, 15);
    expect(r.status).toBe(200);
    expect(r.json.data.resultType).toBe("matrix");
    const series = r.json.data.result;
    expect(series.length).toBeGreaterThan(0);
    for (const s of series) {
      expect(s.metric.__name__).toBe("up");
      s.values.forEach(([ts, v]: [number, string], k: number) => {
        expect(ts).toBeCloseTo(start + 15 * k, 6);
        expect(typeof v).toBe("string");
        expect(["0", "1"]).toContain(v);
      });
    }
    // (3600 - 1) / 15 = 239.93: points k = 0..239.
    expect(Math.max(...series.map((s: { values: unknown[] }) => s.values.length))).toBe(240);
    expect(r.text).toContain(`[${(start).toFixed(3)},"1"]`);
  });

  it("accepts RFC 3339 times and Prometheus durations, by GET and by form POST", async () => {
    const a = await range("up", "2026-11-29T23:00:00Z", "2026-11-30T00:00:00Z", "5m");
    const res = await fetch(`${sim.url}/api/v1/query_range`, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        query: "up",
        start: String(END_S - 3600),
        end: String(END_S),
        step: "300",
      }).toString(),
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual(a.json);
  });

  it("sorts series by their label sets", async () => {
    const r = await range("kube_pod_status_phase", END_S - 3600, END_S, 300);
    const keys = r.json.data.result.map((s: { metric: Record<string, string> }) =>
      JSON.stringify(Object.entries(s.metric).sort()),
    );
    expect(keys).toEqual([...keys].sort((a: string, b: string) => cmpPairs(JSON.parse(a), JSON.parse(b))));
  });

  it("returns NaN as a string where a quantile has no requests (a lambda scaled to zero)", async () => {
    const r = await range(
      'histogram_quantile(0.95, sum by (le, service) (rate(http_request_duration_seconds_bucket{service="lambda-notify-digest"}[5m])))',
      END_S - DAY_S,
      END_S,
      300,
    );
    const values = r.json.data.result[0].values.map((p: [number, string]) => p[1]);
    expect(values).toContain("NaN");
    expect(values.some((v: string) => v !== "NaN" && Number(v) > 0)).toBe(true);
  });

  it("serves the demo config's six queries in any grouping, with the corrected rate windows", async () => {
    const queries = [
      "up",
      "rate(http_requests_total[10m])",
      'sum by (service, code) (rate(http_requests_total{namespace=~"ai-agents|notifi"}[10m]))',
      "histogram_quantile(0.95, sum by (le, service) (rate(http_request_duration_seconds_bucket[10m])))",
      "histogram_quantile(0.95, rate(http_request_duration_seconds_bucket[600s]))",
      "rate(container_cpu_usage_seconds_total[10m])",
      "sum without (image) (rate(container_cpu_usage_seconds_total[1h]))",
      "container_memory_usage_bytes",
      "kube_pod_status_phase",
      'max by (pod) (container_memory_working_set_bytes{namespace="notifi"})',
      "count(count_over_time(up[3600s]))",
    ];
    for (const q of queries) {
      const r = await range(q, END_S - 6 * 3600, END_S, 600);
      expect(r.status, q).toBe(200);
      expect(r.json.data.result.length, q).toBeGreaterThan(0);
    }
    const grouped = await range(
      'sum by (service, code) (rate(http_requests_total{namespace=~"ai-agents|notifi"}[10m]))',
      END_S - 3600,
      END_S,
      600,
    );
    for (const s of grouped.json.data.result) {
      expect(Object.keys(s.metric).sort()).toEqual(["code", "service"]);
      expect(["agent-sre", "agent-bruno", "api-gateway", "notification-worker"]).toContain(s.metric.service);
    }
  });

  it("the oldest sample is the start of the window", async () => {
    const r = await range("count(count_over_time(up[3600s]))", END_S - 10 * DAY_S, END_S, 3600);
    const first = r.json.data.result[0].values[0][0];
    expect(first).toBeGreaterThanOrEqual(END_S - 3 * DAY_S);
    expect(first).toBeLessThanOrEqual(END_S - 3 * DAY_S + 3600);
    const lowest = await get(sim.url, "/api/v1/query", {
      query: "prometheus_tsdb_lowest_timestamp_seconds",
      time: END_S,
    });
    expect(Number(lowest.json.data.result[0].value[1])).toBe(END_S - 3 * DAY_S);
  });

  it("refuses more than 11,000 points per series, as Prometheus does", async () => {
    const ok = await range("up", END_S - 11_000 * 15, END_S, 15);
    expect(ok.status).toBe(200);
    const tooMany = await range("up", END_S - 11_001 * 15, END_S, 15);
    expect(tooMany.status).toBe(400);
    expect(tooMany.json).toEqual({
      status: "error",
      errorType: "bad_data",
      error:
        "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
    });
  });

  it("answers bad parameters with Prometheus's bad_data messages", async () => {
    const cases: [Record<string, string | number>, string][] = [
      [
        { query: "up", start: END_S, end: END_S, step: 0 },
        'invalid parameter "step": zero or negative query resolution step widths are not accepted. Try a positive integer',
      ],
      [
        { query: "up", start: END_S, end: END_S - 60, step: 15 },
        'invalid parameter "end": end timestamp must not be before start time',
      ],
      [
        { query: "up", start: "yesterday", end: END_S, step: 15 },
        'invalid parameter "start": cannot parse "yesterday" to a valid timestamp',
      ],
      [
        { query: "up", start: END_S - 60, end: END_S, step: "fast" },
        'invalid parameter "step": cannot parse "fast" to a valid duration',
      ],
      [
        { query: "", start: END_S - 60, end: END_S, step: 15 },
        'invalid parameter "query": 1:1: parse error: no expression found in input',
      ],
    ];
    for (const [params, error] of cases) {
      const r = await get(sim.url, "/api/v1/query_range", params);
      expect(r.status).toBe(400);
      expect(r.json).toEqual({ status: "error", errorType: "bad_data", error });
    }
  });

  it("refuses queries it does not serve with a bad_data error that says so", async () => {
    for (const q of [
      "node_load1",
      "up / 2",
      "http_requests_total",
      "predict_linear(up[1h], 60)",
      "rate(up[5m])",
    ]) {
      const r = await range(q, END_S - 3600, END_S, 60);
      expect(r.status, q).toBe(400);
      expect(r.json.errorType, q).toBe("bad_data");
      expect(r.json.error, q).toMatch(/^invalid parameter "query": /);
    }
  });

  it("truncates to `limit` series with a warning", async () => {
    const r = await get(sim.url, "/api/v1/query_range", {
      query: "kube_pod_status_phase",
      start: END_S - 600,
      end: END_S,
      step: 60,
      limit: 3,
    });
    expect(r.json.data.result).toHaveLength(3);
    expect(r.json.warnings).toEqual(["results truncated due to limit"]);
  });
});

describe("query and status", () => {
  it("instant queries give a vector, literals a scalar", async () => {
    const v = await get(sim.url, "/api/v1/query", { query: 'up{service="postgres"}', time: END_S - 30 });
    expect(v.json.data.resultType).toBe("vector");
    expect(v.json.data.result[0].value).toEqual([END_S - 30, "1"]);
    const s = await get(sim.url, "/api/v1/query", { query: "1", time: END_S });
    expect(s.json.data).toEqual({ resultType: "scalar", result: [END_S, "1"] });
  });

  it("shows version and retention like Prometheus", async () => {
    const b = await get(sim.url, "/api/v1/status/buildinfo");
    expect(b.json.status).toBe("success");
    expect(typeof b.json.data.version).toBe("string");
    const rt = await get(sim.url, "/api/v1/status/runtimeinfo");
    expect(rt.json.data.storageRetention).toBe("3d");
    const ready = await get(sim.url, "/-/ready");
    expect(ready.status).toBe(200);
    const labels = await get(sim.url, "/api/v1/label/__name__/values");
    expect(labels.json.data).toContain("http_request_duration_seconds_bucket");
  });
});

describe("formatting", () => {
  it("writes values as Go's FormatFloat(v, 'f', -1) and timestamps with millisecond fractions", () => {
    expect(formatSample(Number.NaN)).toBe("NaN");
    expect(formatSample(Number.POSITIVE_INFINITY)).toBe("+Inf");
    expect(formatSample(Number.NEGATIVE_INFINITY)).toBe("-Inf");
    expect(formatSample(1.5e-7)).toBe("0.00000015");
    expect(formatSample(2e21)).toBe("2000000000000000000000");
    expect(formatSample(0.0123)).toBe("0.0123");
    expect(formatTimestamp(1435781430781)).toBe("1435781430.781");
    expect(formatTimestamp(1435781430050)).toBe("1435781430.050");
    expect(formatTimestamp(1435781430000)).toBe("1435781430");
  });

  it("computes histogram_quantile as Prometheus does", () => {
    const b = [
      { le: 0.1, count: 50 },
      { le: 0.5, count: 90 },
      { le: 1, count: 100 },
      { le: Number.POSITIVE_INFINITY, count: 100 },
    ];
    expect(bucketQuantile(0.5, b)).toBeCloseTo(0.1, 10);
    expect(bucketQuantile(0.7, b)).toBeCloseTo(0.3, 10);
    expect(bucketQuantile(0.95, b)).toBeCloseTo(0.75, 10);
    expect(
      bucketQuantile(
        0.95,
        b.map((x) => ({ ...x, count: 0 })),
      ),
    ).toBeNaN();
    expect(
      bucketQuantile(0.99, [
        { le: 1, count: 1 },
        { le: Number.POSITIVE_INFINITY, count: 10 },
      ]),
    ).toBe(1);
  });
});

function cmpPairs(a: [string, string][], b: [string, string][]): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    if (a[i][0] !== b[i][0]) return a[i][0] < b[i][0] ? -1 : 1;
    if (a[i][1] !== b[i][1]) return a[i][1] < b[i][1] ? -1 : 1;
  }
  return a.length - b.length;
}
