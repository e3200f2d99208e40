// Run orchestration with stages injected as plain functions: the lock, the record, retries,
// cancellation and resume. The real stages are exercised in run-e2e and run-kill tests.
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config/index.js";
import { UsageError } from "../../src/errors.js";
import { type LeaseBody, runLeaseKey } from "../../src/pipeline/common/lease.js";
import type { LockOwner } from "../../src/pipeline/common/lock.js";
import {
  CancelledError,
  Pipeline,
  type RunEvent,
  type StageContext,
  type StageFn,
  type StageFns,
  TransientError,
} from "../../src/pipeline/run.js";
import { FsStore } from "../../src/store/index.js";

function setup(stages: Partial<StageFns> = {}, extra: Record<string, unknown> = {}) {
  const dir = mkdtempSync(join(tmpdir(), "trm-run-"));
  const config = parseConfig({
    data_dir: join(dir, "data"),
    agents: { alpha: {}, beta: {} },
    runs: { retries: 2, backoff: "30s", backoff_max: "45s" },
    ...extra,
  });
  const store = new FsStore(join(dir, "store"));
  const calls: string[] = [];
  const sleeps: number[] = [];
  const ok =
    (name: string, out: Record<string, unknown> = {}): StageFn =>
    async () => {
      calls.push(name);
      return out;
    };
  const all: StageFns = {
    collect: ok("collect", { records: 10 }),
    build: ok("build", { dataset_id: "d-1" }),
    train: ok("train", { best_step: 5 }),
    evaluate: ok("evaluate", { gate: { passed: true, reasons: [] } }),
    deploy: ok("deploy", { version: "v20261129-000000-000" }),
    ...stages,
  };
  const pipeline = new Pipeline({
    config,
    store,
    stages: all,
    sleep: async (ms) => {
      sleeps.push(ms);
    },
    cancelPollMs: 20,
  });
  return { pipeline, store, config, calls, sleeps, dir };
}

/** A run lease that has not expired, held by this owner (a process on this host). */
function lease(owner: LockOwner): LeaseBody {
  return { owner, nonce: "n", renewed_at: "", expires_at: Date.now() + 60_000, released: false };
}

function gate(): { wait: Promise<void>; open: () => void } {
  let open!: () => void;
  const wait = new Promise<void>((r) => {
    open = r;
  });
  return { wait, open };
}

describe("Pipeline runs", () => {
  it("runs the stages in order and records their outputs, the dataset and the model version", async () => {
    const { pipeline, calls, store } = setup();
    const events: RunEvent[] = [];
    const run = await pipeline.startRun({
      agent: "alpha",
      onEvent: (e) => events.push(e),
      trigger: { kind: "cli", actor: "cli:test" },
    });
    expect(run.started).toBe(true);
    const rec = await run.done;
    expect(calls).toEqual(["collect", "build", "train", "evaluate", "deploy"]);
    expect(rec.status).toBe("succeeded");
    expect(rec.dataset_id).toBe("d-1");
    expect(rec.model_version).toBe("v20261129-000000-000");
    expect(rec.stages.map((s) => [s.name, s.status, s.attempts.length])).toEqual([
      ["collect", "succeeded", 1],
      ["build", "succeeded", 1],
      ["train", "succeeded", 1],
      ["evaluate", "succeeded", 1],
      ["deploy", "succeeded", 1],
    ]);
    expect(rec.stages[0].output).toEqual({ records: 10 });
    expect(rec.code_version.id).toMatch(/^0\.1\.0\+/);
    expect((rec.config as { agents: object }).agents).toHaveProperty("alpha");
    const onDisk = JSON.parse((await store.get(`runs/alpha/${run.runId}/run.json`)).toString());
    expect(onDisk.status).toBe("succeeded");
    expect(
      events
        .filter((e) => e.type === "stage")
        .map((e) => (e.type === "stage" ? `${e.stage}:${e.status}` : "")),
    ).toEqual([
      "collect:running",
      "collect:succeeded",
      "build:running",
      "build:succeeded",
      "train:running",
      "train:succeeded",
      "evaluate:running",
      "evaluate:succeeded",
      "deploy:running",
      "deploy:succeeded",
    ]);
    expect((await pipeline.listRuns("alpha")).map((r) => r.id)).toEqual([run.runId]);
    expect((await pipeline.getRun(run.runId)).id).toBe(run.runId);
  });

  it("runs only the requested stages and marks the rest skipped", async () => {
    const { pipeline, calls } = setup();
    const rec = await (await pipeline.startRun({ agent: "alpha", stages: ["train", "collect"] })).done;
    expect(calls).toEqual(["collect", "train"]);
    expect(rec.stages.map((s) => s.status)).toEqual([
      "succeeded",
      "skipped",
      "succeeded",
      "skipped",
      "skipped",
    ]);
    await expect(pipeline.startRun({ agent: "alpha", stages: ["nope" as never] })).rejects.toBeInstanceOf(
      UsageError,
    );
    await expect(pipeline.startRun({ agent: "gamma" })).rejects.toThrow(
      /unknown agent "gamma" \(configured: alpha, beta\)/,
    );
    // The config's agent-name schema: reserved names and inherited keys are never agents.
    await expect(pipeline.startRun({ agent: "admin" })).rejects.toThrow(
      /bad agent name "admin": "admin" is reserved/,
    );
    await expect(pipeline.startRun({ agent: "constructor" })).rejects.toThrow(/"constructor" is reserved/);
  });

  it("returns the running run's id to a second trigger, and lets other agents run", async () => {
    const g = gate();
    const { pipeline } = setup({ train: async () => g.wait });
    const first = await pipeline.startRun({ agent: "alpha" });
    const second = await pipeline.startRun({ agent: "alpha" });
    expect(second.started).toBe(false);
    expect(second.runId).toBe(first.runId);
    const other = await pipeline.startRun({ agent: "beta", stages: ["collect"] });
    expect(other.started).toBe(true);
    expect((await other.done).status).toBe("succeeded");
    g.open();
    const [a, b] = await Promise.all([first.done, second.done]);
    expect(a.status).toBe("succeeded");
    expect(b.id).toBe(a.id);
    const third = await pipeline.startRun({ agent: "alpha", stages: ["collect"] });
    expect(third.started).toBe(true);
    expect(third.runId).not.toBe(first.runId);
    await third.done;
  });

  it("sees a run held by another live process through its lease, and takes over a dead one's", async () => {
    const { pipeline, store } = setup();
    const child = spawn("sleep", ["30"]);
    try {
      const procStart = readFileSync(`/proc/${child.pid}/stat`, "utf8").split(") ")[1].split(" ")[19];
      const owner = {
        pid: child.pid as number,
        host: hostname(),
        proc_start: procStart,
        acquired_at: "",
        purpose: "run",
        holder: "r-elsewhere",
      };
      await store.put(runLeaseKey("alpha"), JSON.stringify(lease(owner)));
      const r = await pipeline.startRun({ agent: "alpha" });
      expect(r).toMatchObject({ started: false, runId: "r-elsewhere" });
      child.kill("SIGKILL");
      await new Promise((res) => child.on("exit", res));
      const again = await pipeline.startRun({ agent: "alpha", stages: ["collect"] });
      expect(again.started).toBe(true);
      expect((await again.done).status).toBe("succeeded");
    } finally {
      child.kill("SIGKILL");
    }
  });

  it("retries a transient failure with backoff and keeps every attempt", async () => {
    let n = 0;
    const { pipeline, sleeps, calls } = setup({
      collect: async () => {
        n++;
        if (n < 3)
          throw Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:9090"), { code: "ECONNREFUSED" });
        calls.push("collect");
        return { records: 1 };
      },
    });
    const rec = await (await pipeline.startRun({ agent: "alpha", stages: ["collect", "build"] })).done;
    expect(rec.status).toBe("succeeded");
    const att = rec.stages[0].attempts;
    expect(att.map((a) => [a.n, a.status, a.transient])).toEqual([
      [1, "failed", true],
      [2, "failed", true],
      [3, "succeeded", null],
    ]);
    expect(att[0].error).toMatch(/ECONNREFUSED/);
    expect(sleeps).toEqual([30_000, 45_000]);
    expect(calls).toEqual(["collect", "build"]);
  });

  it("gives up after the configured retries, and fails at once on a non-transient error", async () => {
    const { pipeline, sleeps } = setup({
      collect: async () => {
        throw new TransientError("upload timed out");
      },
    });
    const rec = await (await pipeline.startRun({ agent: "alpha" })).done;
    expect(rec.status).toBe("failed");
    expect(rec.stages[0].attempts).toHaveLength(3);
    expect(rec.error).toMatch(/collect: upload timed out/);
    expect(rec.stages.slice(1).map((s) => s.status)).toEqual(["pending", "pending", "pending", "pending"]);
    expect(sleeps).toHaveLength(2);

    const t = setup({
      build: async () => {
        throw new Error("dataset has no examples");
      },
    });
    const r2 = await (await t.pipeline.startRun({ agent: "alpha" })).done;
    expect(r2.status).toBe("failed");
    expect(r2.stages[1].attempts.map((a) => a.transient)).toEqual([false]);
    expect(t.sleeps).toEqual([]);
  });

  it("resumes a failed run from the failed stage without redoing finished ones", async () => {
    let fail = true;
    const { pipeline, calls } = setup({
      train: async () => {
        calls.push("train");
        if (fail) throw new Error("out of memory");
        return { best_step: 9 };
      },
    });
    const first = await (await pipeline.startRun({ agent: "alpha" })).done;
    expect(first.status).toBe("failed");
    fail = false;
    calls.length = 0;
    const resumed = await pipeline.startRun({ agent: "alpha", resume: first.id });
    expect(resumed.runId).toBe(first.id);
    const rec = await resumed.done;
    expect(calls).toEqual(["train", "evaluate", "deploy"]);
    expect(rec.status).toBe("succeeded");
    expect(rec.stages[2].attempts.map((a) => a.status)).toEqual(["failed", "succeeded"]);
    expect(rec.resumes).toHaveLength(1);
    expect(rec.resumes[0].from_stage).toBe("train");
    // A finished run is not run again.
    const again = await pipeline.startRun({ agent: "alpha", resume: first.id });
    expect(again.started).toBe(false);
    expect((await again.done).status).toBe("succeeded");
  });

  it("resumes an interrupted run at start-up and marks the dead attempt interrupted", async () => {
    const g = gate();
    const a = setup({ train: async () => g.wait });
    const started = await a.pipeline.startRun({ agent: "alpha" });
    // Wait until train is running, then pretend this process died: a lease held by a dead pid.
    for (let i = 0; i < 100; i++) {
      const r = await a.pipeline.getRun(started.runId, "alpha");
      if (r.stages[2].status === "running") break;
      await new Promise((res) => setTimeout(res, 10));
    }
    const snapshot = (await a.store.get(`runs/alpha/${started.runId}/run.json`)).toString();
    g.open();
    await started.done;
    await a.store.put(`runs/alpha/${started.runId}/run.json`, snapshot);
    const dead = {
      pid: 999_999,
      host: hostname(),
      proc_start: "1",
      acquired_at: "",
      purpose: "run",
      holder: started.runId,
    };
    await a.store.put(runLeaseKey("alpha"), JSON.stringify(lease(dead)));

    const calls: string[] = [];
    const b = new Pipeline({
      config: a.config,
      store: a.store,
      stages: {
        collect: async () => {
          calls.push("collect");
        },
        build: async () => {
          calls.push("build");
        },
        train: async (ctx: StageContext) => {
          calls.push(`train#${ctx.attempt}`);
          return { best_step: 3 };
        },
        evaluate: async () => {
          calls.push("evaluate");
        },
        deploy: async () => {
          calls.push("deploy");
          return { version: "v20261129-000000-001" };
        },
      },
    });
    const resumed = await b.resumeInterrupted();
    expect(resumed.map((r) => r.runId)).toEqual([started.runId]);
    const rec = await resumed[0].done;
    expect(calls).toEqual(["train#2", "evaluate", "deploy"]);
    expect(rec.status).toBe("succeeded");
    expect(rec.trigger.kind).not.toBe("resume");
    expect(rec.resumes[0]).toMatchObject({
      from_stage: "train",
      reason: "interrupted run resumed at start-up",
    });
    expect(rec.stages[2].attempts.map((x) => x.status)).toEqual(["interrupted", "succeeded"]);
    expect(await b.resumeInterrupted()).toEqual([]);
  });

  it("suspends for a shutdown at a step boundary and resumes at the next start", async () => {
    const steps: number[] = [];
    const stepper: StageFn = async (ctx) => {
      for (let i = steps.length; i < 40; i++) {
        if (ctx.signal.aborted) throw new CancelledError("stopped");
        steps.push(i);
        await new Promise((r) => setTimeout(r, 5));
      }
      return { steps: steps.length };
    };
    const { pipeline, store, config } = setup({ train: stepper });
    const run = await pipeline.startRun({ agent: "alpha" });
    while (steps.length < 3) await new Promise((r) => setTimeout(r, 5));
    const [rec] = await pipeline.suspendAll();
    expect(rec.status).toBe("running");
    expect(rec.ended_at).toBeNull();
    expect(rec.stages[2]).toMatchObject({ status: "pending" });
    expect(rec.stages[2].attempts.map((a) => a.status)).toEqual(["interrupted"]);
    expect(JSON.parse((await store.get(`runs/alpha/${run.runId}/run.json`)).toString()).status).toBe(
      "running",
    );
    const later = new Pipeline({ config, store, stages: { ...pipeline["stages"], train: stepper } });
    const resumed = await later.resumeInterrupted();
    expect(resumed.map((r) => r.runId)).toEqual([run.runId]);
    const done = await resumed[0].done;
    expect(done.status).toBe("succeeded");
    expect(done.stages[2].attempts.map((a) => a.status)).toEqual(["interrupted", "succeeded"]);
    expect(done.stages[2].output).toEqual({ steps: 40 });
  });

  it("cancels at the next step boundary, in process and from another process", async () => {
    const steps: number[] = [];
    const stepper: StageFn = async (ctx) => {
      for (let i = 0; i < 1000; i++) {
        if (ctx.signal.aborted) throw new CancelledError("cancelled");
        steps.push(i);
        ctx.progress({ message: `step ${i}`, step: i, total: 1000, eta_s: null, metrics: {} });
        await new Promise((r) => setTimeout(r, 5));
      }
    };
    const { pipeline, store } = setup({ train: stepper });
    const ac = new AbortController();
    const run = await pipeline.startRun({ agent: "alpha", signal: ac.signal });
    while (steps.length < 3) await new Promise((r) => setTimeout(r, 5));
    ac.abort();
    const rec = await run.done;
    expect(rec.status).toBe("cancelled");
    expect(rec.stages.map((s) => s.status)).toEqual([
      "succeeded",
      "succeeded",
      "cancelled",
      "cancelled",
      "cancelled",
    ]);
    expect(steps.length).toBeLessThan(1000);
    const onDisk = JSON.parse((await store.get(`runs/alpha/${run.runId}/run.json`)).toString());
    expect(onDisk.status).toBe("cancelled");

    // A second Pipeline object stands in for another process: it only sees the store and data_dir.
    steps.length = 0;
    const run2 = await pipeline.startRun({ agent: "alpha", stages: ["train"] });
    while (steps.length < 3) await new Promise((r) => setTimeout(r, 5));
    const remote = new Pipeline({ config: pipeline.config, store, stages: {} as StageFns });
    expect(await remote.cancel(run2.runId, "alpha")).toBe(true);
    expect((await run2.done).status).toBe("cancelled");
    expect(await remote.cancel(run2.runId, "alpha")).toBe(false);
  });
});
