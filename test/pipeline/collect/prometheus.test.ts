// Prometheus collection against the real thing: 30 days of series with known values are written
// as OpenMetrics, backfilled with promtool, served by prometheus on a loopback port, collected,
// and checked point by point. Also: the step rule, rate windows, special values, idempotency,
// a crash between segment and watermark, and canary secrets in label values.
import { existsSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  backfill,
  type OmValue,
  PROMETHEUS_BIN,
  PROMTOOL_BIN,
  type RunningPrometheus,
  startPrometheus,
  writeOpenMetrics,
} from "../../../src/bench/prometheus-backfill.js";
import { checkSources, collect } from "../../../src/pipeline/collect/index.js";
import { minStepFor, parseSample, rateInterval } from "../../../src/pipeline/collect/prometheus.js";
import type { MetricSeriesRecord } from "../../../src/pipeline/collect/records.js";
import { FsStore, type ObjectStore } from "../../../src/store/index.js";
import { labConfig, leakedCanaries, readAll, tempDir } from "./helpers.js";

const HOUR = 3600;
const DAYS = 30;
const NOW = Date.now();
/** The last sample: a whole hour, two hours before now (so the settle time never cuts it). */
const T_END = Math.floor(NOW / 1000 / HOUR) * HOUR - 2 * HOUR;
// promtool (2.42) writes one block per 2 h range that holds samples, and each costs real time:
// the 30-day gauges are sampled every 12 h, the series that need density hourly for 2 days.
const TIMES = Array.from({ length: DAYS * 2 }, (_, k) => T_END - (DAYS * 2 - 1 - k) * 12 * HOUR);
const DENSE = Array.from({ length: 48 }, (_, k) => T_END - (47 - k) * HOUR);

const gaugeValue = (instance: string, k: number): OmValue => {
  if (instance === "a") return k * 0.25 + 1;
  if (instance === "b") return (0 - k) * 1.5;
  return k % 50 === 3 ? "NaN" : k % 50 === 4 ? "+Inf" : k % 50 === 5 ? "-Inf" : k;
};

const CANARY_LABELS = {
  token: "ghp_BaISmxb3soiNJ3vQEZ1HvIoicsONUggbjrqk",
  dsn: "postgres://notifi:60jbXjIanttFaymbA5@db.internal:5432/notifications",
  authorization:
    "Bearer eyJhbGciOiAiSFMyNTYiLCAidHlwIjogIkpXVCJ9.eyJzdWIiOiAiZGtlbEV1Zm92NSIsICJleHAiOiAxODkzNDU2MDAwfQ.AOT05nKfeOLvHNh_ZOCBRK6iIT6Y2YTIicpDiYmfb9a",
  api_key: "sk_live_t0BQ09E4qs3GuFMV8IpapLxc",
};

const haveProm = existsSync(PROMETHEUS_BIN) && existsSync(PROMTOOL_BIN);

describe.skipIf(!haveProm && !process.env.CI)("Prometheus collection (real Prometheus)", () => {
  let prom: RunningPrometheus;
  const work = tempDir("trm-prom-");

  beforeAll(async () => {
    // Backfilling 30 days and loading the blocks takes a while on a busy machine.
    const om = join(work, "data.om");
    await writeOpenMetrics(om, [
      {
        name: "trm_test_gauge",
        type: "gauge",
        series: ["a", "b", "c"].map((instance) => ({
          labels: { instance, job: "lab" },
          samples: TIMES.map((t, k) => [t, gaugeValue(instance, k)] as [number, OmValue]),
        })),
      },
      {
        name: "trm_test_requests_total",
        type: "counter",
        series: [
          {
            labels: { service: "agent-sre" },
            samples: DENSE.map((t, k) => [t, k * HOUR] as [number, OmValue]),
          },
        ],
      },
      {
        name: "up",
        type: "gauge",
        series: [{ labels: { instance: "a", job: "lab" }, samples: TIMES.map((t) => [t, 1]) }],
      },
      {
        name: "trm_test_info",
        type: "gauge",
        series: [{ labels: CANARY_LABELS, samples: DENSE.map((t) => [t, 1]) }],
      },
    ]);
    await backfill(om, join(work, "tsdb"));
    prom = await startPrometheus(join(work, "tsdb"), work);
  }, 600_000);
  afterAll(async () => {
    await prom?.stop();
  });

  const config = (
    queries: unknown[],
    extra: Record<string, unknown> = {},
    collectCfg: Record<string, unknown> = {},
  ) =>
    labConfig(
      { prometheus: { url: prom.url, scrape_interval: "1h", step: "1h", timeout: "30s", queries, ...extra } },
      { collect: { lookback: "31d", ...collectCfg } },
    );

  it("collects 30 days of points exactly as written, one record per series per day, NaN and ±Inf kept", async () => {
    const cfg = config([{ name: "gauge", promql: "trm_test_gauge" }]);
    const report = await collect(cfg, { agent: "lab", now: NOW });
    const q = report.sources.find((s) => s.source === "prometheus")!.queries[0];
    expect(q.errors).toEqual([]);
    expect(q.status).toBe("ok");
    const recs = (await readAll(
      new FsStore(`${cfg.data_dir}/store`),
      "lab",
      "prometheus",
    )) as MetricSeriesRecord[];
    for (const instance of ["a", "b", "c"]) {
      const mine = recs.filter((r) => r.labels.instance === instance);
      expect(mine.every((r) => r.labels.__name__ === "trm_test_gauge" && r.labels.job === "lab")).toBe(true);
      const points = mine.flatMap((r) => r.points);
      expect(points.map((p) => p[0])).toEqual(TIMES);
      expect(points.map((p) => p[1])).toEqual(TIMES.map((_t, k) => gaugeValue(instance, k)));
      // One batch per series per day chunk: 30 days of data span 30 or 31 UTC days.
      expect(mine.length).toBeGreaterThanOrEqual(30);
      expect(mine.length).toBeLessThanOrEqual(31);
      expect(new Set(mine.map((r) => r.start)).size).toBe(mine.length);
    }
    expect(q.covered).toEqual({
      start: new Date(TIMES[0] * 1000).toISOString(),
      end: new Date(T_END * 1000).toISOString(),
    });
    // The window starts 31 days back; the first day has no data: reported as a gap.
    expect(q.gaps[0].end).toBe(new Date(TIMES[0] * 1000).toISOString());
    // A second run over the same window adds nothing.
    const again = await collect(cfg, { agent: "lab", now: NOW });
    expect(again.totals.records).toBe(0);
    expect((await readAll(new FsStore(`${cfg.data_dir}/store`), "lab", "prometheus")).length).toBe(
      recs.length,
    );
  });

  it("widens rate windows to at least the step and computes rates over the backfilled counter", async () => {
    const cfg = config(
      [{ name: "req_rate", promql: "rate(trm_test_requests_total[$__rate_interval])" }],
      {},
      { lookback: "3d" },
    );
    const report = await collect(cfg, { agent: "lab", now: NOW });
    const q = report.sources.find((s) => s.source === "prometheus")!.queries[0];
    expect(q.errors).toEqual([]);
    const recs = (await readAll(
      new FsStore(`${cfg.data_dir}/store`),
      "lab",
      "prometheus",
    )) as MetricSeriesRecord[];
    expect(recs[0].promql).toBe(`rate(trm_test_requests_total[${rateInterval(3600, 3600) / 3600}h])`);
    expect(recs[0].labels).toEqual({ service: "agent-sre" }); // rate() drops __name__
    // Where the window holds four samples (not at either end of the data), the rate is exact.
    const values = recs.flatMap((r) =>
      r.points.filter((p) => p[0] >= DENSE[0] + 4 * HOUR && p[0] <= T_END).map((p) => p[1] as number),
    );
    expect(values.length).toBeGreaterThan(36);
    for (const v of values) expect(v).toBeCloseTo(1, 6);
  });

  it("raises a step that would exceed 11,000 points per request, and the real server accepts every chunk", async () => {
    expect(minStepFor(30 * 86400)).toBe(236);
    const cfg = config(
      [{ name: "fine", promql: 'trm_test_gauge{instance="a"}', step: "1s" }],
      {},
      { lookback: "1d" },
    );
    const report = await collect(cfg, { agent: "lab", now: NOW });
    const q = report.sources.find((s) => s.source === "prometheus")!.queries[0];
    expect(q.errors).toEqual([]);
    expect(q.warnings[0]).toMatch(/step raised from 1s to 8s/);
    const recs = (await readAll(
      new FsStore(`${cfg.data_dir}/store`),
      "lab",
      "prometheus",
    )) as MetricSeriesRecord[];
    for (const r of recs) {
      expect(r.step_s).toBe(8);
      expect((r.end - r.start) / r.step_s).toBeLessThanOrEqual(11_000);
    }
    // At 8 s the 5-minute lookback after each sample yields ~38 points.
    expect(recs.flatMap((r) => r.points).length).toBeGreaterThan(30);
  });

  it("survives a crash between segment and watermark: the re-run replaces the segment, no duplicates", async () => {
    const cfg = config([{ name: "gauge", promql: 'trm_test_gauge{instance="a"}' }], {}, { lookback: "5d" });
    const fs = new FsStore(`${cfg.data_dir}/store`);
    let segments = 0;
    // The store fails the watermark write that follows the first segment, as a kill right after
    // the segment's rename would.
    const crashing: ObjectStore = Object.assign(Object.create(fs), {
      put: async (key: string, data: Uint8Array | string) => {
        if (key.startsWith("raw/")) segments++;
        if (key.startsWith("state/") && segments === 1) throw new Error("simulated crash");
        return fs.put(key, data);
      },
    });
    const r1 = await collect(cfg, { agent: "lab", now: NOW, store: crashing });
    const q1 = r1.sources.find((s) => s.source === "prometheus")!.queries[0];
    expect(q1.errors[0]).toMatch(/simulated crash/);
    expect(q1.segments.length).toBe(1);
    await collect(cfg, { agent: "lab", now: NOW });
    const recs = (await readAll(fs, "lab", "prometheus")) as MetricSeriesRecord[];
    const times = recs.flatMap((r) => r.points.map((p) => p[0]));
    expect(new Set(times).size).toBe(times.length);
    const expected = TIMES.filter((t) => t * 1000 >= NOW - 5 * 86400e3 && t % HOUR === 0);
    expect(times.sort((a, b) => a - b)).toEqual(expected);
  });

  it("redacts label values: no canary reaches the store", async () => {
    const cfg = config([{ name: "info", promql: "trm_test_info" }], {}, { lookback: "3d" });
    const report = await collect(cfg, { agent: "lab", now: NOW });
    const q = report.sources.find((s) => s.source === "prometheus")!.queries[0];
    expect(q.records).toBeGreaterThan(0);
    expect(leakedCanaries(cfg.data_dir)).toEqual([]);
    const recs = (await readAll(
      new FsStore(`${cfg.data_dir}/store`),
      "lab",
      "prometheus",
    )) as MetricSeriesRecord[];
    expect(recs[0].labels).toMatchObject({
      token: "<redacted:github_token>",
      dsn: "postgres://notifi:<redacted:password>@db.internal:5432/notifications",
      authorization: "<redacted:credentials>",
      api_key: "<redacted:stripe_key>",
    });
    expect(q.redactions.github_token).toBeGreaterThan(0);
  });

  it("reports a bad query clearly and still collects the others", async () => {
    const cfg = config(
      [
        { name: "broken", promql: "rate(trm_test_requests_total[" },
        { name: "up", promql: "up" },
      ],
      {},
      { lookback: "2d" },
    );
    const report = await collect(cfg, { agent: "lab", now: NOW });
    const [broken, up] = report.sources.find((s) => s.source === "prometheus")!.queries;
    expect(broken.status).toBe("failed");
    expect(broken.errors[0]).toMatch(/^prometheus query "broken": HTTP 400 bad_data: .*parse error/);
    expect(up.status).toBe("ok");
    expect(up.records).toBeGreaterThan(0);
  });

  it("checks the source: version, retention and the oldest sample", async () => {
    const cfg = config([{ name: "up", promql: "up" }]);
    const [check] = (await checkSources(cfg, { agent: "lab", now: NOW })).filter(
      (c) => c.source === "prometheus",
    );
    expect(check.status).toBe("ok");
    expect(check.retention.version).toMatch(/^2\./);
    expect(check.retention.retention).toMatch(/3650d|10y/);
    const oldest = Date.parse(String(check.retention.oldest_sample));
    expect(Math.abs(oldest - TIMES[0] * 1000)).toBeLessThanOrEqual(3600e3);
  });
});

describe("Prometheus sample values", () => {
  it("reads the API's string values, including NaN and ±Inf, and rejects anything else", () => {
    expect(parseSample("0.0123")).toBe(0.0123);
    expect(parseSample("NaN")).toBe("NaN");
    expect(parseSample("+Inf")).toBe("+Inf");
    expect(parseSample("-Inf")).toBe("-Inf");
    expect(parseSample("1e400")).toBe("+Inf");
    expect(parseSample("abc")).toBeNull();
    expect(parseSample(1)).toBeNull();
    expect(rateInterval(60, 30)).toBe(120);
    expect(rateInterval(3600, 30)).toBeGreaterThanOrEqual(3600);
  });
});

describe("Prometheus responses beyond plain floats", () => {
  /** A one-route server answering query_range with a fixed body (native histograms need a feature flag and cannot be backfilled). */
  async function answer(body: string): Promise<{ url: string; close: () => void }> {
    const server = createServer((_req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(body);
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => server.close() };
  }
  const now = Date.UTC(2026, 0, 1, 12);
  const t = Date.UTC(2026, 0, 1, 11) / 1000;

  it("skips native-histogram series with a count and keeps float series", async () => {
    const srv = await answer(
      JSON.stringify({
        status: "success",
        data: {
          resultType: "matrix",
          result: [
            {
              metric: { __name__: "rpc_duration_seconds", job: "a" },
              histograms: [
                [
                  t,
                  {
                    count: "10",
                    sum: "3.2",
                    buckets: [
                      [0, "0.5", "1", "4"],
                      [0, "1", "2", "6"],
                    ],
                  },
                ],
              ],
            },
            { metric: { __name__: "rpc_duration_seconds_count", job: "b" }, values: [[t, "1"]] },
          ],
        },
      }),
    );
    try {
      const cfg = labConfig(
        {
          prometheus: {
            url: srv.url,
            step: "1h",
            queries: [{ name: "rpc", promql: "rpc_duration_seconds" }],
          },
        },
        { collect: { lookback: "2h" } },
      );
      const report = await collect(cfg, { agent: "lab", now });
      const q = report.sources.find((s) => s.source === "prometheus")!.queries[0];
      expect(q.status).toBe("ok");
      expect(q.skipped).toEqual({ native_histogram_series: 1, native_histogram_points: 1 });
      const recs = (await readAll(
        new FsStore(`${cfg.data_dir}/store`),
        "lab",
        "prometheus",
      )) as MetricSeriesRecord[];
      expect(recs.map((r) => [r.labels.job, r.points])).toEqual([["b", [[t, 1]]]]);
    } finally {
      srv.close();
    }
  });

  it("names the place of a malformed sample", async () => {
    const srv = await answer(
      JSON.stringify({
        status: "success",
        data: {
          resultType: "matrix",
          result: [
            {
              metric: { job: "a" },
              values: [
                [t, "1"],
                [t + 3600, 2],
              ],
            },
          ],
        },
      }),
    );
    try {
      const cfg = labConfig(
        { prometheus: { url: srv.url, step: "1h", queries: [{ name: "odd", promql: "odd" }] } },
        { collect: { lookback: "3h" } },
      );
      const report = await collect(cfg, { agent: "lab", now });
      const q = report.sources.find((s) => s.source === "prometheus")!.queries[0];
      expect(q.status).toBe("failed");
      expect(q.errors[0]).toMatch(
        /^prometheus query "odd": unexpected sample at data\.result\.0\.values\.1: \[\d+,2\]/,
      );
    } finally {
      srv.close();
    }
  });
});
