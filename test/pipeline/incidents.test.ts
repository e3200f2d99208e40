import { describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config/index.js";
import type { MetricSeriesRecord, TraceRecord } from "../../src/pipeline/collect/records.js";
import { IncidentIndex, IncidentJoin, incidentSettings, isUpSeries } from "../../src/pipeline/incidents.js";
import { DEFAULT_SERVICE_LABELS } from "../../src/pipeline/tasks/index.js";

const M = 60_000;
const T0 = Date.parse("2026-01-10T00:00:00Z");
const window = { start: T0, end: T0 + 24 * 60 * M };
const settings = incidentSettings(parseConfig({}).dataset.incidents);

let n = 0;
function trace(minute: number, spans: [string, "ok" | "error"][]): TraceRecord {
  n++;
  const id = n.toString(16).padStart(32, "0");
  return {
    kind: "trace",
    query: "q",
    trace_id: id,
    root_service: spans[0][0],
    root_name: "op",
    start_ns: `${T0 + minute * M}000000`,
    duration_ms: 10,
    spans: spans.map(([service, status], i) => ({
      trace_id: id,
      span_id: (i + 1).toString(16).padStart(16, "0"),
      parent_span_id: i === 0 ? null : "1".padStart(16, "0"),
      service,
      name: "op",
      kind: "server",
      start_ns: `${T0 + minute * M}000000`,
      duration_ns: 1000,
      status,
      attributes: {},
    })),
  };
}

function up(job: string, downAtMinutes: number[]): MetricSeriesRecord {
  const points: [number, number][] = [];
  for (let m = 0; m < 24 * 60; m += 15) points.push([(T0 + m * M) / 1000, downAtMinutes.includes(m) ? 0 : 1]);
  return {
    kind: "metric_series",
    query: "up",
    promql: "up",
    labels: { __name__: "up", job },
    step_s: 900,
    start: 0,
    end: 0,
    points,
  };
}

describe("incident join", () => {
  it("finds the incidents the test placed, with their evidence, and nothing else", () => {
    const join = new IncidentJoin(settings, window, DEFAULT_SERVICE_LABELS);
    // db: 4 of 5 traces fail at 01:00-01:05; healthy traces the rest of the day.
    for (let i = 0; i < 5; i++)
      join.addTrace(
        trace(60 + i, [
          ["api", "ok"],
          ["db", i < 4 ? "error" : "ok"],
        ]),
      );
    for (let m = 0; m < 24 * 60; m += 7)
      join.addTrace(
        trace(m, [
          ["api", "ok"],
          ["db", "ok"],
        ]),
      );
    // web: two failures, fewer traces than min_traces in their bucket.
    join.addTrace(trace(600, [["web", "error"]]));
    join.addTrace(trace(601, [["web", "error"]]));
    // api's target is down at 03:00 and 03:15 (merged into one incident), and queue's never.
    join.addSeries(up("api", [180, 195]));
    join.addSeries(up("queue", []));
    // queue logs one error an hour all day, then 20 at 05:00-05:05.
    for (let h = 0; h < 24; h++)
      join.addLog({ service: "queue", time: T0 + h * 60 * M + 30 * M, level: "error" });
    for (let i = 0; i < 20; i++)
      join.addLog({ service: "queue", time: T0 + 300 * M + i * 10_000, level: "error" });
    // info lines never count.
    for (let i = 0; i < 50; i++) join.addLog({ service: "web", time: T0 + 700 * M, level: "info" });

    const windows = join.windows();
    expect(windows.map((w) => [w.service, (w.start - T0) / M, (w.end - T0) / M])).toEqual([
      ["api", 180, 200],
      ["db", 60, 65],
      ["queue", 300, 305],
    ]);
    expect(windows[0].evidence).toEqual([{ signal: "up_down", buckets: 2, peak: 1, threshold: 0 }]);
    // 4 failures among the 5 placed traces and one healthy one at 01:03.
    expect(windows[1].evidence).toEqual([
      { signal: "trace_errors", buckets: 1, peak: 4 / 6, threshold: 0.2 },
    ]);
    expect(windows[2].evidence[0].signal).toBe("error_logs");
    expect(windows[2].evidence[0].peak).toBe(20);

    // Times within the configured window (15m) of a flagged bucket are in incident too.
    const index = new IncidentIndex(windows, settings.windowMs);
    expect(index.inIncident("db", T0 + 62 * M)).toBe(true);
    expect(index.inIncident("db", T0 + 79 * M)).toBe(true);
    expect(index.inIncident("db", T0 + 81 * M)).toBe(false);
    expect(index.inIncident("db", T0 + 46 * M)).toBe(true);
    expect(index.inIncident("db", T0 + 44 * M)).toBe(false);
    expect(index.inIncident("api", T0 + 62 * M)).toBe(false);
    expect(index.inIncident("nobody", T0 + 62 * M)).toBe(false);
  });

  it("follows its thresholds from the config", () => {
    const strict = incidentSettings(
      parseConfig({ dataset: { incidents: { trace_error_ratio: 0.9, min_traces: 2, up_down: false } } })
        .dataset.incidents,
    );
    const join = new IncidentJoin(strict, window, DEFAULT_SERVICE_LABELS);
    for (let i = 0; i < 5; i++) join.addTrace(trace(60 + i, [["db", i < 4 ? "error" : "ok"]]));
    join.addTrace(trace(600, [["web", "error"]]));
    join.addTrace(trace(601, [["web", "error"]]));
    join.addSeries(up("api", [180]));
    expect(join.windows().map((w) => w.service)).toEqual(["web"]);
  });

  it("recognises `up` by name, PromQL or query name", () => {
    expect(isUpSeries({ labels: { __name__: "up" }, promql: "x", query: "q" })).toBe(true);
    expect(isUpSeries({ labels: {}, promql: " up ", query: "q" })).toBe(true);
    expect(isUpSeries({ labels: {}, promql: "sum(up)", query: "up" })).toBe(true);
    expect(isUpSeries({ labels: { __name__: "upstream" }, promql: "upstream", query: "q" })).toBe(false);
  });
});
