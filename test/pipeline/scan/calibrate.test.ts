// Calibration against the reference period: what the model is always unsure of here stops being a
// finding, what stands out against its own kind's usual surprise still is.
import { describe, expect, it } from "vitest";
import { calibrate, calibrationOf } from "../../../src/pipeline/scan/calibrate.js";
import { EMPTY_CARD } from "../../../src/pipeline/scan/card.js";
import { markAnomalies, rankFindings } from "../../../src/pipeline/scan/findings.js";
import type { RecordScore, Signal } from "../../../src/pipeline/scan/types.js";

const MIN = 60_000;
const T0 = Date.parse("2026-03-02T00:00:00Z");

function log(
  time: number,
  service: string,
  template: string,
  parts: Partial<Record<Signal, number>>,
): RecordScore {
  const score = Object.values(parts).reduce((s, v) => s + (v ?? 0), 0);
  return {
    time,
    source: "loki",
    service,
    text: `${template} #${time}`,
    score,
    signals: [],
    parts,
    expected: {},
    observed: {},
    template,
  };
}

// A service the model is unsure of all day: every ordinary line costs it 2 nats on level and service.
const unsure = (t: number, i: number) =>
  log(t, "grafana", `INFO render panel <n> ms (${i % 3})`, {
    log_level: 2,
    log_service: 2,
    log_incident: 0.1,
  });
// A service the model knows well.
const sure = (t: number) =>
  log(t, "postgres", "INFO checkpoint complete", { log_level: 0.05, log_service: 0.1 });

function hour(start: number): RecordScore[] {
  const out: RecordScore[] = [];
  for (let i = 0; i < 120; i++) out.push(unsure(start + i * 30_000, i), sure(start + i * 30_000 + 5));
  return out;
}

// The scan's defaults (config scan.*).
const settings = { bucketMs: 5 * MIN, recordThreshold: 2, minScore: 8, minRecords: 3, topK: 10 };

describe("scan calibration against the reference period", () => {
  it("drops a service whose lines are all mildly surprising, and keeps a planted novel error on top", () => {
    const reference = hour(T0);
    const window = hour(T0 + 60 * MIN);
    const novel = "ERROR flux capacitor desynchronised: quorum lost on shard <n>";
    for (let i = 0; i < 4; i++)
      window.push(
        log(T0 + 80 * MIN + i * 20_000, "postgres", novel, {
          log_level: 3.5,
          log_service: 0.2,
          log_incident: 1.5,
          novel_template: 3,
        }),
      );
    // Without calibration the unsure service's every bucket is a finding: the noise the scan had.
    const raw = window.map((r) => ({ ...r, parts: { ...r.parts } }));
    markAnomalies(raw, settings.recordThreshold);
    const before = rankFindings(raw, EMPTY_CARD, settings);
    expect(before.some((f) => f.service === "grafana")).toBe(true);

    calibrate(window, calibrationOf(reference, 0.95));
    markAnomalies(window, settings.recordThreshold);
    const after = rankFindings(window, EMPTY_CARD, settings);
    expect(after.map((f) => f.service)).toEqual(["postgres"]);
    expect(after[0].evidence[0].record).toMatch(/flux capacitor/);
    expect(after[0].signals.map((s) => s.signal)).toContain("novel_template");
    // The model's own surprise stays beside the calibrated one.
    const planted = window.find((r) => r.template === novel)!;
    expect(planted.raw).toBeCloseTo(8.2);
    expect(planted.score).toBeGreaterThan(settings.recordThreshold);
    expect(window.filter((r) => r.service === "grafana").every((r) => r.score === 0)).toBe(true);
  });

  it("still flags a known kind that is far more surprising than it usually is", () => {
    const reference = hour(T0);
    const window = hour(T0 + 60 * MIN);
    // The same panel line at once far off what the model expects of it (level error, say).
    for (let i = 0; i < 6; i++)
      window.push(
        log(T0 + 100 * MIN + i * 10_000, "grafana", "INFO render panel <n> ms (0)", {
          log_level: 9,
          log_service: 2,
          log_incident: 3,
        }),
      );
    calibrate(window, calibrationOf(reference, 0.95));
    markAnomalies(window, settings.recordThreshold);
    const after = rankFindings(window, EMPTY_CARD, settings);
    expect(after).toHaveLength(1);
    expect(after[0].service).toBe("grafana");
    expect(Date.parse(after[0].start)).toBe(T0 + 100 * MIN);
    // What it adds over the usual: 7 nats of level and 2.9 of incident, nothing of service.
    expect(after[0].evidence[0].score).toBeCloseTo(9.9);
    expect(after[0].signals.map((s) => s.signal)).toEqual(["log_level", "log_incident"]);
  });

  it("compares a kind the reference never saw with its service's median record", () => {
    const reference = hour(T0);
    const fresh = log(T0 + 70 * MIN, "grafana", "WARN a line grafana never wrote before", {
      log_level: 2.5,
      log_service: 2,
    });
    const newService = log(T0 + 70 * MIN, "jellyfin", "INFO started", { log_level: 1, log_service: 4 });
    calibrate([fresh, newService], calibrationOf(reference, 0.95));
    expect(fresh.score).toBeCloseTo(0.5);
    // A service the reference never saw keeps the model's own surprise.
    expect(newService.score).toBe(5);
    expect(newService.raw).toBe(5);
  });
});
