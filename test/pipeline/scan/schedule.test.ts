// scan.schedule: the scheduler scans after each daily collect that succeeded, a scan failure leaves
// the collection's result alone, and trm_forge_anomaly_score follows the newest stored scan (also
// after a restart). croner's timers run on a fake clock. The scan itself is the server's to pass in
// (it needs the served champion; scan.test.ts covers it): here it stores the results it is given.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { parseConfig } from "../../../src/config/index.js";
import { registry as metrics } from "../../../src/metrics.js";
import { Pipeline, type StageFns } from "../../../src/pipeline/run.js";
import { type Finding, readLatestScan, type ScanResult, saveScan } from "../../../src/pipeline/scan/index.js";
import { readScheduleState, Scheduler } from "../../../src/pipeline/schedule.js";
import { restoreStoreGauges } from "../../../src/pipeline/store-gauges.js";
import { FsStore } from "../../../src/store/index.js";

const FAKE = () => ({
  toFake: ["setTimeout", "clearTimeout", "setInterval", "clearInterval", "Date"] as (
    | "setTimeout"
    | "clearTimeout"
    | "setInterval"
    | "clearInterval"
    | "Date"
  )[],
});

function setup(scan: Record<string, unknown>, collectFails = false) {
  const dir = mkdtempSync(join(tmpdir(), "trm-scan-sched-"));
  const config = parseConfig({
    data_dir: join(dir, "data"),
    log_level: "silent",
    agents: { alpha: {} },
    scan,
  });
  const store = new FsStore(join(dir, "store"));
  const collect = async () => {
    if (collectFails) throw new Error("loki: 401 Unauthorized");
    return {};
  };
  const pipeline = new Pipeline({ config, store, stages: { collect } as unknown as StageFns });
  return { config, store, pipeline };
}

function finding(service: string, score: number): Finding {
  return {
    service,
    start: "2026-11-29T02:10:00.000Z",
    end: "2026-11-29T02:15:00.000Z",
    score,
    signals: [{ signal: "novel_template", share: 1 }],
    records: 3,
    anomalous: 3,
    evidence: [],
    knowledge: [],
  };
}

function result(agent: string, end: Date, findings: Finding[]): ScanResult {
  return {
    agent,
    version: "v0001",
    window: { start: new Date(end.getTime() - 3_600_000).toISOString(), end: end.toISOString() },
    sources: ["loki", "tempo", "prometheus"],
    scanned: { logs: 10, traces: 2, series: 1 },
    inferences: 5,
    findings,
    note: null,
    took_ms: 1,
    at: end.toISOString(),
  };
}

/** The gauge's value per service for an agent, from the exported registry. */
async function gauge(agent: string): Promise<Record<string, number>> {
  const m = await metrics.getSingleMetric("trm_forge_anomaly_score")!.get();
  return Object.fromEntries(
    m.values.filter((v) => v.labels.agent === agent).map((v) => [String(v.labels.service), v.value]),
  );
}

let scheduler: Scheduler | null = null;
afterEach(() => {
  scheduler?.stop();
  scheduler = null;
  vi.useRealTimers();
});

describe("scan.schedule", () => {
  it("scans after each daily collect and the gauge follows the newest scan", async () => {
    vi.useFakeTimers({ ...FAKE(), now: new Date("2026-11-29T02:59:30Z") });
    const { config, store, pipeline } = setup({ schedule: true });
    // Day one: two services flagged; day two: only one, so the other goes back to 0.
    const days = [
      [finding("postgres", 9.5), finding("postgres", 5), finding("api", 4.2)],
      [finding("api", 6)],
    ];
    const scans: { agent: string; end: string }[] = [];
    scheduler = new Scheduler({
      config,
      pipeline,
      scan: async (agent, end) => {
        scans.push({ agent, end: end.toISOString() });
        await saveScan(store, result(agent, end, days[scans.length - 1]));
      },
    });
    await scheduler.start();
    await vi.advanceTimersByTimeAsync(60_000);
    await scheduler.settle();
    expect(scans).toEqual([{ agent: "alpha", end: expect.stringMatching(/^2026-11-29T03:00/) }]);
    expect((await readScheduleState(store, "alpha")).jobs.collect.last_result).toBe("succeeded");
    expect(await gauge("alpha")).toEqual({ postgres: 9.5, api: 4.2 });
    await vi.advanceTimersByTimeAsync(86_400_000);
    await scheduler.settle();
    expect(scans.map((s) => s.end.slice(0, 13))).toEqual(["2026-11-29T03", "2026-11-30T03"]);
    expect(await gauge("alpha")).toEqual({ postgres: 0, api: 6 });
    expect((await readLatestScan(store, "alpha"))?.findings.map((f) => f.service)).toEqual(["api"]);
  });

  it("logs a failed scan and leaves the collection's result alone", async () => {
    vi.useFakeTimers({ ...FAKE(), now: new Date("2026-11-29T02:59:30Z") });
    const { config, store, pipeline } = setup({ schedule: true });
    let tried = 0;
    scheduler = new Scheduler({
      config,
      pipeline,
      scan: async () => {
        tried++;
        throw new Error("agent alpha has no champion model to scan with");
      },
    });
    await scheduler.start();
    await vi.advanceTimersByTimeAsync(60_000);
    await scheduler.settle();
    expect(tried).toBe(1);
    const state = await readScheduleState(store, "alpha");
    expect(state.jobs.collect.last_result).toBe("succeeded");
    const run = await pipeline.getRun(state.jobs.collect.last_run_id!, "alpha");
    expect(run.status).toBe("succeeded");
  });

  it("does not scan when scan.schedule is off, nor after a failed collect", async () => {
    vi.useFakeTimers({ ...FAKE(), now: new Date("2026-11-29T02:59:30Z") });
    for (const [scan, fails] of [
      [{}, false],
      [{ schedule: true }, true],
    ] as const) {
      const { config, store, pipeline } = setup(scan, fails);
      let tried = 0;
      scheduler = new Scheduler({
        config,
        pipeline,
        scan: async () => {
          tried++;
        },
      });
      await scheduler.start();
      await vi.advanceTimersByTimeAsync(86_400_000);
      await scheduler.settle();
      scheduler.stop();
      expect(tried).toBe(0);
      expect((await readScheduleState(store, "alpha")).jobs.collect.last_result).toBe(
        fails ? "failed" : "succeeded",
      );
    }
  });

  it("restores the gauge from the stored newest scan when the server starts", async () => {
    const { store, pipeline } = setup({ schedule: true });
    await saveScan(store, result("restored", new Date(), [finding("redis", 7.25), finding("redis", 3)]));
    metrics.getSingleMetric("trm_forge_anomaly_score")!.reset();
    expect(await gauge("restored")).toEqual({});
    await restoreStoreGauges(store, pipeline.registry, ["restored"]);
    expect(await gauge("restored")).toEqual({ redis: 7.25 });
  });
});
