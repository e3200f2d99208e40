// Evaluation jobs are runs: model_evaluate starts a run of the evaluate stage alone through the
// pipeline, and the job manager lists, follows and cancels it as any run. Evaluation jobs that a
// server from before kept in their own records (`j…` ids) are still listed and shown; one it left
// interrupted continues as an evaluation run at the next start.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { JobManager, type JobRecord, readJobRecord, writeJobRecord } from "../../src/server/jobs.js";
import {
  quickStages,
  registerTiny,
  removeDir,
  SRE,
  startTestServer,
  type TestServer,
  tempDir,
  testConfig,
} from "./helpers.js";

const legacy = (o: Partial<JobRecord> & Pick<JobRecord, "id" | "status">): JobRecord => ({
  schema: 1,
  kind: "evaluation",
  agent: SRE,
  actor: `mcp:${SRE}`,
  created_at: "2026-11-01T02:00:00.000Z",
  updated_at: "2026-11-01T02:05:00.000Z",
  ended_at: null,
  run_id: null,
  request: { version: "v20261101-000000-000-0000", against: null, dataset_id: null },
  result: null,
  error: null,
  progress: null,
  log: [],
  interrupted_at: null,
  ...o,
});

describe("evaluation jobs", () => {
  let t: TestServer;
  let v1: string;

  beforeAll(async () => {
    t = await startTestServer({ stages: quickStages({ steps: 3 }) });
    v1 = await registerTiny(t.ctx.registry, SRE, { seed: 1 });
  });
  afterAll(async () => {
    await t?.close();
  });

  it("model_evaluate starts a run of the evaluate stage alone, followed like any run", async () => {
    const { started, job } = await t.ctx.jobs.startEvaluation(SRE, {
      version: v1,
      against: null,
      actor: `mcp:${SRE}`,
    });
    expect(started).toBe(true);
    expect(job.job_id).toMatch(/^r\d{8}-/);
    expect(job.kind).toBe("evaluation");
    const end = await t.ctx.jobs.follow(job.job_id, SRE, { timeoutMs: 20_000 });
    // No dataset here: the run fails with the stage's reason.
    expect(end.status).toBe("failed");
    expect(end.error).toMatch(/evaluate: agent agent-sre has no dataset yet/);
    expect(end.stages.map((s) => [s.name, s.status])).toEqual([["evaluate", "failed"]]);
    expect(end.next).toMatch(/job_logs/);
    const run = await t.ctx.pipeline.getRun(job.job_id, SRE);
    expect(run.options.evaluate).toEqual({ version: v1, against: null });
    await t.ctx.jobs.idle();
    expect(await readJobRecord(t.ctx.store, SRE, job.job_id)).toMatchObject({
      kind: "evaluation",
      status: "failed",
      run_id: job.job_id,
      request: { version: v1, against: null, dataset_id: null },
    });
    const listed = await t.ctx.jobs.list([SRE], { limit: 10, kind: "evaluation" });
    expect(listed.jobs.map((j) => j.job_id)).toContain(job.job_id);
    expect(listed.jobs.every((j) => j.kind === "evaluation")).toBe(true);
    const training = await t.ctx.jobs.list([SRE], { limit: 10, kind: "training" });
    expect(training.jobs.map((j) => j.job_id)).not.toContain(job.job_id);
  });

  // Under runner: kubernetes the train stage goes to a Job; an evaluation still leaves the event loop.
  it("runs an evaluation in a child process under the kubernetes runner too", async () => {
    const dir = tempDir();
    const k = await startTestServer({ dir, config: testConfig(dir, { runner: "kubernetes" }), stages: {} });
    try {
      const version = await registerTiny(k.ctx.registry, SRE, { seed: 1 });
      const { job } = await k.ctx.jobs.startEvaluation(SRE, { version, against: null, actor: "test" });
      const end = await k.ctx.jobs.follow(job.job_id, SRE, { timeoutMs: 60_000 });
      expect(end.status).toBe("failed");
      expect(end.error).toMatch(/has no dataset yet/);
      const { lines } = await k.ctx.jobs.logs(job.job_id, SRE, { limit: 50 });
      const child = lines.map((l) => /evaluation in a child process \(pid (\d+)\)/.exec(l.msg)).find(Boolean);
      expect(child, JSON.stringify(lines)).toBeTruthy();
      expect(Number(child![1])).not.toBe(process.pid);
    } finally {
      await k.close();
      removeDir(dir);
    }
  });

  it("lists and shows an old server's evaluation job from its own record; cancelling it does nothing", async () => {
    const old = legacy({
      id: "j20261101-020000-000-ab12",
      status: "succeeded",
      ended_at: "2026-11-01T02:05:00.000Z",
      result: { version: v1, gate: { passed: true, reasons: ["cleared every check"] } },
      log: [{ at: "2026-11-01T02:00:01.000Z", level: "info", stage: "evaluate", msg: "evaluating" }],
    });
    await writeJobRecord(t.ctx.store, old);
    const v = await t.ctx.jobs.view(old.id, SRE);
    expect(v).toMatchObject({ job_id: old.id, kind: "evaluation", status: "succeeded", result: old.result });
    expect(v.next).toMatch(/passed the gate/);
    expect(await t.ctx.jobs.agentOf(old.id)).toBe(SRE);
    const listed = await t.ctx.jobs.list([SRE], { limit: 50, kind: "evaluation" });
    expect(listed.jobs.map((j) => j.job_id)).toContain(old.id);
    expect((await t.ctx.jobs.logs(old.id, SRE, { limit: 10 })).lines.map((l) => l.msg)).toEqual([
      "evaluating",
    ]);
    expect(await t.ctx.jobs.cancel(old.id, SRE)).toBe(false);
  });

  it("continues an evaluation job an old server left interrupted as an evaluation run", async () => {
    const old = legacy({
      id: "j20261101-030000-000-cd34",
      status: "interrupted",
      interrupted_at: "2026-11-01T03:01:00.000Z",
      request: { version: v1, against: null, dataset_id: null },
    });
    await writeJobRecord(t.ctx.store, old);
    const next = new JobManager({ config: t.config, store: t.ctx.store, stages: quickStages({ steps: 3 }) });
    try {
      const resumed = await next.start();
      const runId = resumed.find((id) => id.startsWith("r"));
      expect(runId, JSON.stringify(resumed)).toBeDefined();
      const rec = await readJobRecord(t.ctx.store, SRE, old.id);
      expect(rec).toMatchObject({ status: "failed", interrupted_at: null });
      expect(rec!.error).toContain(`continued as job ${runId}`);
      const end = await next.follow(runId!, SRE, { timeoutMs: 20_000 });
      expect(end.kind).toBe("evaluation");
      expect(end.stages.map((s) => s.name)).toEqual(["evaluate"]);
      expect((await next.pipeline.getRun(runId!, SRE)).options.evaluate).toEqual({
        version: v1,
        against: null,
      });
      await next.idle();
      // Not continued twice.
      expect(await next.start()).not.toContain(runId);
    } finally {
      await next.shutdown(10_000);
    }
  });
});
