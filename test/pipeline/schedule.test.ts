// The schedule with croner's own timers driven by a fake clock: nothing here waits in real time.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as realSleep } from "node:timers/promises";
import { afterEach, describe, expect, it, vi } from "vitest";
import { type Config, parseConfig } from "../../src/config/index.js";
import { Pipeline, type RunRecord, type StageFn, type StageFns } from "../../src/pipeline/run.js";
import {
  planJobs,
  readScheduleState,
  Scheduler,
  scheduleStateKey,
  scheduleStatus,
  shiftPattern,
} from "../../src/pipeline/schedule.js";
import { FsStore } from "../../src/store/index.js";

function setup(extra: Record<string, unknown> = {}, trainMs = 0, collectMs = 0) {
  const dir = mkdtempSync(join(tmpdir(), "trm-sched-"));
  const config = parseConfig({ data_dir: join(dir, "data"), agents: { alpha: {}, beta: {} }, ...extra });
  const store = new FsStore(join(dir, "store"));
  const calls: { agent: string; stage: string; at: string }[] = [];
  const stage =
    (name: string): StageFn =>
    async (ctx) => {
      calls.push({ agent: ctx.agent, stage: name, at: new Date().toISOString() });
      if (name === "train" && trainMs) await new Promise((r) => setTimeout(r, trainMs));
      if (name === "collect" && collectMs) await new Promise((r) => setTimeout(r, collectMs));
      calls.push({ agent: ctx.agent, stage: `${name}:end`, at: new Date().toISOString() });
      return {};
    };
  const stages = Object.fromEntries(
    ["collect", "build", "train", "evaluate", "deploy"].map((s) => [s, stage(s)]),
  ) as StageFns;
  const pipeline = new Pipeline({ config, store, stages });
  return { config, store, pipeline, calls };
}

async function seedState(store: FsStore, agent: string, collectDue: string | null, trainDue: string | null) {
  const job = (due: string | null) => ({
    last_due: due,
    last_fired_at: due,
    last_run_id: null,
    last_result: "succeeded",
    last_reason: "scheduled",
  });
  await store.put(
    scheduleStateKey(agent),
    JSON.stringify({
      agent,
      started_at: "2026-10-01T00:00:00.000Z",
      jobs: { collect: job(collectDue), train: job(trainDue) },
    }),
  );
}

/**
 * Advances the fake clock a minute at a time (at most `minutes`) until `done`, letting real file
 * I/O finish in between; then keeps it ticking until the scheduler settles, since the last run's
 * end (its lease released through the store's compare-and-swap, which may wait on a renewal)
 * still runs on the fake clock.
 */
async function tickUntil(s: Scheduler, minutes: number, done: () => boolean): Promise<void> {
  for (let i = 0; i < minutes && !done(); i++) {
    await vi.advanceTimersByTimeAsync(60_000);
    await realSleep(3);
  }
  let settled = false;
  const settling = s.settle().then(() => {
    settled = true;
  });
  for (let i = 0; i < 600 && !settled; i++) {
    await vi.advanceTimersByTimeAsync(1000);
    await realSleep(3);
  }
  await settling;
}

let scheduler: Scheduler | null = null;
afterEach(() => {
  scheduler?.stop();
  scheduler = null;
  vi.useRealTimers();
});

describe("planJobs", () => {
  it("plans a daily collect and a monthly train per agent, staggering the trainings", () => {
    const { config } = setup();
    expect(planJobs(config).map((j) => [j.name, j.pattern, j.timezone, j.staggered_by_min])).toEqual([
      ["trm-forge:alpha:collect", "0 3 * * *", "UTC", 0],
      ["trm-forge:alpha:train", "0 2 1 * *", "UTC", 0],
      ["trm-forge:beta:collect", "0 3 * * *", "UTC", 0],
      ["trm-forge:beta:train", "0 3 1 * *", "UTC", 60],
    ]);
  });

  it("honours per-agent patterns, time zones and switched-off jobs", () => {
    const config: Config = parseConfig({
      agents: { alpha: {}, beta: {} },
      schedule: {
        timezone: "Europe/Stockholm",
        agents: { alpha: { train: null }, beta: { collect: "30 4 * * *", timezone: "America/New_York" } },
      },
    });
    expect(planJobs(config).map((j) => [j.name, j.pattern, j.timezone])).toEqual([
      ["trm-forge:alpha:collect", "0 3 * * *", "Europe/Stockholm"],
      ["trm-forge:beta:collect", "30 4 * * *", "America/New_York"],
      ["trm-forge:beta:train", "0 3 1 * *", "America/New_York"],
    ]);
    expect(shiftPattern("0 23 1 * *", 90)).toBeNull();
    expect(shiftPattern("*/5 2 1 * *", 30)).toBeNull();
    expect(shiftPattern("0 0 2 1 * *", 75)).toBe("0 15 3 1 * *");
  });
});

describe("Scheduler", () => {
  it("fires the daily collection at 03:00 with croner's timers and records it", async () => {
    vi.useFakeTimers({
      toFake: ["setTimeout", "clearTimeout", "setInterval", "clearInterval", "Date"],
      now: new Date("2026-11-29T02:58:00Z"),
    });
    const { config, store, pipeline, calls } = setup();
    scheduler = new Scheduler({ config, pipeline });
    expect(await scheduler.start()).toEqual([]);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(calls).toEqual([]);
    await vi.advanceTimersByTimeAsync(61_000);
    await scheduler.settle();
    expect(
      calls
        .filter((c) => c.stage === "collect")
        .map((c) => c.agent)
        .sort(),
    ).toEqual(["alpha", "beta"]);
    const state = await readScheduleState(store, "alpha");
    expect(state.jobs.collect).toMatchObject({
      last_due: "2026-11-29T03:00:00.000Z",
      last_result: "succeeded",
      last_reason: "scheduled",
    });
    const run = await pipeline.getRun(state.jobs.collect.last_run_id!, "alpha");
    expect(run.trigger).toMatchObject({ kind: "schedule", actor: "schedule" });
    expect(run.stages.filter((s) => s.requested).map((s) => s.name)).toEqual(["collect"]);
    const status = await scheduler.status();
    expect(status.find((s) => s.name === "trm-forge:alpha:collect")?.next_run).toBe(
      "2026-11-30T03:00:00.000Z",
    );
    expect(status.find((s) => s.name === "trm-forge:beta:train")?.next_run).toBe("2026-12-01T03:00:00.000Z");
  });

  it("never lets two trainings run at once, even when one overruns its stagger", async () => {
    vi.useFakeTimers({
      toFake: ["setTimeout", "clearTimeout", "setInterval", "clearInterval", "Date"],
      now: new Date("2026-11-30T23:59:00Z"),
    });
    // Training takes 3 hours: longer than the 1 h stagger.
    // The fake clock moves a minute at a time while the store's I/O runs in real time: a lease
    // much longer than that step, so that no renewal lags past its expiry.
    const { config, pipeline, calls } = setup(
      { schedule: { collect: "0 12 * * *" }, runs: { lease: "30m" } },
      3 * 3600_000,
    );
    scheduler = new Scheduler({ config, pipeline });
    await scheduler.start();
    await tickUntil(scheduler, 24 * 60, () =>
      calls.some((c) => c.agent === "beta" && c.stage === "train:end"),
    );
    const at = (agent: string, stage: string) =>
      Date.parse(calls.find((c) => c.agent === agent && c.stage === stage)!.at);
    const t = (iso: string) => Date.parse(`2026-12-01T${iso}:00Z`);
    // alpha fires at 02:00; beta is due at 03:00 (staggered) but waits until alpha's run is over.
    // The runs the trainings made (alpha's daily collect at 12:00 may have run since).
    const trainingOf = async (agent: string) =>
      (await pipeline.listRuns(agent)).find((r) => r.trigger.reason?.startsWith("train "))!;
    const a = await trainingOf("alpha");
    const b = await trainingOf("beta");
    expect(Date.parse(a.created_at)).toBeGreaterThanOrEqual(t("02:00"));
    expect(Date.parse(a.created_at)).toBeLessThan(t("02:30")); // file I/O runs on the real clock
    expect(Date.parse(b.created_at)).toBeGreaterThanOrEqual(Date.parse(a.ended_at!));
    expect(b.trigger.reason).toMatch(/^train 2026-12-01T03:00:00.000Z/);
    expect(at("beta", "train")).toBeGreaterThanOrEqual(at("alpha", "train:end"));
    expect(at("alpha", "train:end") - at("alpha", "train")).toBeGreaterThanOrEqual(3 * 3600_000);
    expect(calls.filter((c) => c.stage === "train")).toHaveLength(2);
  });

  it("catches up once on a missed collection and a missed training, saying why", async () => {
    const now = new Date("2026-11-29T10:00:00Z");
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "setInterval", "clearInterval", "Date"], now });
    const { config, store, pipeline, calls } = setup();
    await seedState(store, "alpha", "2026-11-25T03:00:00.000Z", "2026-10-01T02:00:00.000Z");
    await seedState(store, "beta", "2026-11-29T03:00:00.000Z", "2026-11-01T03:00:00.000Z");
    scheduler = new Scheduler({ config, pipeline, now: () => new Date() });
    const caught = await scheduler.start();
    await scheduler.settle();
    // alpha missed both; its training collects first, so one run catches up on both. beta missed nothing.
    expect(caught.map((c) => [c.agent, c.job, c.due, c.missed])).toEqual([
      ["alpha", "train", "2026-11-01T02:00:00.000Z", 1],
    ]);
    expect(caught[0].reason).toMatch(/training due 2026-11-01T02:00:00.000Z was missed/);
    expect(caught[0].reason).toMatch(/4 collections missed since 2026-11-25T03:00:00.000Z/);
    expect(caught[0].reason).toMatch(/lost to retention: tempo before 2026-11-28T10:00:00.000Z \(kept 1d\)/);
    expect(caught[0].reason).not.toMatch(/prometheus before/);
    expect(calls.filter((c) => c.stage === "collect").map((c) => c.agent)).toEqual(["alpha"]);
    expect(calls.filter((c) => c.stage === "train").map((c) => c.agent)).toEqual(["alpha"]);
    const runs: RunRecord[] = await pipeline.listRuns("alpha");
    expect(runs.map((r) => [r.trigger.kind, r.status])).toEqual([["catch-up", "succeeded"]]);
    expect(runs[0].trigger.reason).toMatch(/lost to retention/);
    expect(caught[0].run_id).toBe(runs[0].id);
    // Only a collection missed: it runs alone.
    await seedState(store, "beta", "2026-11-27T03:00:00.000Z", "2026-11-01T03:00:00.000Z");
    // A second start finds nothing more to do.
    scheduler.stop();
    scheduler = new Scheduler({ config, pipeline, now: () => new Date() });
    const again = await scheduler.start();
    await scheduler.settle();
    expect(again.map((c) => [c.agent, c.job, c.missed])).toEqual([["beta", "collect", 2]]);
    expect(again[0].reason).not.toMatch(/lost to retention: (prometheus|loki)/);
    scheduler.stop();
    scheduler = new Scheduler({ config, pipeline, now: () => new Date() });
    expect(await scheduler.start()).toEqual([]);
  });

  it("does not catch up on a first start, only records where to count from", async () => {
    vi.useFakeTimers({
      toFake: ["setTimeout", "clearTimeout", "setInterval", "clearInterval", "Date"],
      now: new Date("2026-11-29T10:00:00Z"),
    });
    const { config, store, pipeline, calls } = setup();
    scheduler = new Scheduler({ config, pipeline, now: () => new Date() });
    expect(await scheduler.start()).toEqual([]);
    expect(calls).toEqual([]);
    expect((await readScheduleState(store, "beta")).jobs.train.last_due).toBe("2026-11-01T03:00:00.000Z");
    const status = await scheduleStatus(config, store, new Date());
    expect(status.map((s) => [s.name, s.next_run])).toEqual([
      ["trm-forge:alpha:collect", "2026-11-30T03:00:00.000Z"],
      ["trm-forge:alpha:train", "2026-12-01T02:00:00.000Z"],
      ["trm-forge:beta:collect", "2026-11-30T03:00:00.000Z"],
      ["trm-forge:beta:train", "2026-12-01T03:00:00.000Z"],
    ]);
  });

  it("records a failed scheduled run without taking the process down", async () => {
    vi.useFakeTimers({
      toFake: ["setTimeout", "clearTimeout", "setInterval", "clearInterval", "Date"],
      now: new Date("2026-11-29T02:59:30Z"),
    });
    const { config, store } = setup({ agents: { alpha: {} } });
    const failing = new Pipeline({
      config,
      store,
      stages: {
        collect: async () => {
          throw new Error("prometheus: 401 Unauthorized");
        },
      } as unknown as StageFns,
    });
    scheduler = new Scheduler({ config, pipeline: failing });
    await scheduler.start();
    await vi.advanceTimersByTimeAsync(60_000);
    await scheduler.settle();
    const state = await readScheduleState(store, "alpha");
    expect(state.jobs.collect.last_result).toBe("failed");
  });

  it("tries a run whose start failed transiently again, instead of waiting for the next due time", async () => {
    vi.useFakeTimers({
      toFake: ["setTimeout", "clearTimeout", "setInterval", "clearInterval", "Date"],
      now: new Date("2026-11-29T02:59:30Z"),
    });
    const { config, store, calls } = setup({ agents: { alpha: {} } });
    // The store refuses the first two run record writes for a moment (a MinIO restart, say).
    let refused = 0;
    const flaky = new Proxy(store, {
      get(target, prop) {
        const v = Reflect.get(target, prop);
        if (prop !== "put" || typeof v !== "function") return typeof v === "function" ? v.bind(target) : v;
        return async (key: string, ...rest: unknown[]) => {
          if (key.startsWith("runs/") && key.endsWith("/run.json") && refused < 2) {
            refused++;
            throw Object.assign(new Error("503 Service Unavailable"), { status: 503 });
          }
          return v.call(target, key, ...rest);
        };
      },
    });
    const stages = Object.fromEntries(
      ["collect", "build", "train", "evaluate", "deploy"].map((n) => [
        n,
        async () => {
          calls.push({ agent: "alpha", stage: n, at: new Date().toISOString() });
          return {};
        },
      ]),
    ) as unknown as StageFns;
    scheduler = new Scheduler({ config, pipeline: new Pipeline({ config, store: flaky, stages }) });
    await scheduler.start();
    // The store's writes are real I/O: give them real time between the fake clock's steps.
    for (let i = 0; i < 600 && !calls.length; i++) {
      await vi.advanceTimersByTimeAsync(1_000);
      await realSleep(5);
    }
    await scheduler.settle();
    expect(refused).toBe(2);
    expect(calls.map((c) => c.stage)).toEqual(["collect"]);
    const state = await readScheduleState(store, "alpha");
    expect(state.jobs.collect.last_result).toBe("succeeded");
  });
  it("lets a training that falls on the agent's running collection wait for it, not for next month", async () => {
    vi.useFakeTimers({
      toFake: ["setTimeout", "clearTimeout", "setInterval", "clearInterval", "Date"],
      now: new Date("2026-12-01T01:32:00Z"),
    });
    // The daily collect starts at 01:33 and takes an hour; the training is due at 02:00.
    const { config, store, pipeline, calls } = setup(
      { agents: { alpha: {} }, schedule: { collect: "33 1 * * *" }, runs: { lease: "30m" } },
      0,
      60 * 60_000,
    );
    scheduler = new Scheduler({ config, pipeline });
    await scheduler.start();
    // The fake clock stops while the collect's start does its real I/O (a store write that waits on
    // another does so on the fake clock), so the training finds the collect running.
    for (let i = 0; i < 10 && !calls.some((c) => c.stage === "collect"); i++) {
      await vi.advanceTimersByTimeAsync(60_000);
      for (let k = 0; k < 100 && !calls.some((c) => c.stage === "collect"); k++) await realSleep(5);
    }
    await tickUntil(scheduler, 3 * 60, () => calls.some((c) => c.stage === "train:end"));
    const runs = await pipeline.listRuns("alpha");
    const collectRun = runs.find((r) => r.trigger.reason?.startsWith("collect "))!;
    const training = runs.find((r) => r.trigger.reason?.startsWith("train "));
    const state = await readScheduleState(store, "alpha");
    expect(training?.status, JSON.stringify(state.jobs.train)).toBe("succeeded");
    expect(Date.parse(training!.created_at)).toBeGreaterThanOrEqual(Date.parse(collectRun.ended_at!));
    expect(state.jobs.train).toMatchObject({
      last_due: "2026-12-01T02:00:00.000Z",
      last_result: "succeeded",
    });
    expect(calls.filter((c) => c.stage === "train")).toHaveLength(1);
  });
  it("starts at once when a catch-up training finds the agent's run going, and trains after it", async () => {
    // Real timers: the agent's collect (started before the schedule, as a resumed run would be)
    // takes 1.5 s; the schedule's start must not wait for it (the server listens only after).
    const { store, pipeline, config, calls } = setup({ agents: { alpha: {} } }, 0, 1_500);
    await seedState(store, "alpha", "2099-01-01T03:00:00.000Z", "2020-01-01T02:00:00.000Z");
    const manual = await pipeline.startRun({
      agent: "alpha",
      stages: ["collect"],
      trigger: { kind: "cli", actor: "test" },
    });
    expect(manual.started).toBe(true);
    scheduler = new Scheduler({ config, pipeline });
    const caught = await scheduler.start();
    expect(calls.some((c) => c.stage === "collect:end")).toBe(false);
    expect(caught.map((c) => [c.job, c.run_id])).toEqual([["train", null]]);
    const collected = await manual.done;
    await scheduler.settle();
    const training = (await pipeline.listRuns("alpha")).find((r) => r.trigger.kind === "catch-up");
    expect(training?.status).toBe("succeeded");
    expect(Date.parse(training!.created_at)).toBeGreaterThanOrEqual(Date.parse(collected.ended_at!));
  }, 30_000);
});
