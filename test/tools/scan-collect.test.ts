// anomalies_scan with collect: true over real MCP clients, the simulator as the agent's sources and
// the real collect stage: the collect is a job (job_status, jobs_list, job_cancel see it) whose
// progress reaches the caller, then the scan runs; a failed or cancelled collect is an error that
// names the job, a read-only caller is refused, and the one-run-per-agent rule holds.
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { CallToolResultSchema, type Progress } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { agentConfigFor, createSimulator, type Simulator } from "../../src/simulator/index.js";
import { COLLECT_WAIT_MS } from "../../src/tools/scan.js";
import {
  BRUNO,
  call,
  identity,
  registerTiny,
  SRE,
  snapshot,
  startTestServer,
  type TestServer,
  tempDir,
  testConfig,
  textOf,
} from "../server/helpers.js";

describe("anomalies_scan collect: true", () => {
  let sim: Simulator;
  let t: TestServer;
  let sre: Client;
  let readOnly: Client;

  beforeAll(async () => {
    sim = await createSimulator({ seed: 11, days: 2, logsPerDay: 1500, tracesPerDay: 300 });
    const dir = tempDir();
    const config = testConfig(dir, {
      agents: { [SRE]: agentConfigFor(sim.url, { lookback: "8h" }), [BRUNO]: {} },
    });
    // The real stages: a collect pulls from the simulator.
    t = await startTestServer({ dir, config, stages: {} });
    const v = await registerTiny(t.ctx.registry, SRE, { seed: 1 });
    await t.ctx.registry.promote(SRE, v, { actor: "test", reason: "setup" });
    await t.ctx.models.serveAgent(SRE);
    sre = await t.client(identity(SRE, ["read", "train"]));
    readOnly = await t.client(identity(SRE, ["read"]));
  }, 120_000);
  afterAll(async () => {
    await t?.close();
    await sim?.close();
  });

  const jobsOf = async (c: Client) => (await call(c, "jobs_list", { limit: 20 })).structuredContent as any;

  it("refuses a read-only caller before anything is collected; its plain scan works", async () => {
    const before = snapshot(t.config.data_dir);
    const r = await call(readOnly, "anomalies_scan", { collect: true });
    expect(r.isError).toBe(true);
    expect(textOf(r)).toMatch(/^Forbidden \(403\): anomalies_scan with collect: true/);
    expect(textOf(r)).toContain("missing permission: scope:train");
    expect(snapshot(t.config.data_dir)).toEqual(before);
    expect((await jobsOf(readOnly)).jobs).toEqual([]);
    const plain = await call(readOnly, "anomalies_scan", {});
    expect(plain.isError, textOf(plain)).toBeFalsy();
    expect((plain.structuredContent as any).collect).toBeUndefined();
  });

  it("collects nothing for an agent without a champion: the scan's own error says why", async () => {
    const bruno = await t.client(identity(BRUNO, ["read", "train"]));
    const r = await call(bruno, "anomalies_scan", { collect: true });
    expect(r.isError).toBe(true);
    expect(textOf(r)).toMatch(/^agent agent-bruno has no champion model to scan with/);
    expect((await jobsOf(bruno)).jobs).toEqual([]);
  });

  it("answers a failed collect with an error naming the job, and the scan of what is stored", async () => {
    const off = sim.faults.add(() => ({ status: 401, body: "unauthorised" }));
    try {
      const r = await call(sre, "anomalies_scan", { collect: true, since: "6h" });
      expect(r.isError, textOf(r)).toBe(true);
      const text = textOf(r);
      const id = /collect job (r[\d-]+-[0-9a-f]{4}) failed: .*every source failed/.exec(text)?.[1];
      expect(id, text).toBeDefined();
      expect(text).toContain("Nothing new was pulled; the scan below covers what was already stored");
      // What is stored is scanned all the same: here nothing yet, and the scan says why.
      expect(text).toMatch(/\nagent-sre scan by v[\d-]+[0-9a-f]{4}, .*: 0 log lines/);
      expect(text).toContain(
        "no loki, tempo, prometheus records of agent-sre in the window: nothing collected yet",
      );
      const job = (await call(sre, "job_status", { job_id: id! })).structuredContent as any;
      expect(job).toMatchObject({ kind: "collect", status: "failed" });
    } finally {
      off();
    }
  }, 60_000);

  it("collects as a job with progress, then scans what it pulled", async () => {
    const progress: Progress[] = [];
    const r = (await sre.callTool(
      { name: "anomalies_scan", arguments: { collect: true, since: "6h" } },
      CallToolResultSchema,
      { onprogress: (p) => progress.push(p) },
    )) as any;
    expect(r.isError, textOf(r)).toBeFalsy();
    const out = r.structuredContent;
    expect(out.collect).toMatchObject({ started: true, status: "succeeded", error: null });
    expect(out.collect.records).toBeGreaterThan(0);
    // The window's records are the simulator's, pulled by this collect.
    expect(out.scanned.logs).toBeGreaterThan(0);
    expect(out.scanned.traces).toBeGreaterThan(0);
    expect(out.note).toContain(
      `collected first: collect job ${out.collect.job_id}, ${out.collect.records} new records`,
    );
    // The job is an ordinary collect job.
    const job = (await call(sre, "job_status", { job_id: out.collect.job_id })).structuredContent as any;
    expect(job).toMatchObject({ kind: "collect", status: "succeeded", agent: SRE, actor: `mcp:${SRE}` });
    expect((await jobsOf(sre)).jobs.map((j: any) => j.job_id)).toContain(out.collect.job_id);
    // Progress: the collect's, then the scan's end; values only increase.
    expect(progress.some((p) => /^collecting: collect job/.test(p.message ?? ""))).toBe(true);
    expect(progress.at(-1)).toMatchObject({ progress: 100, total: 100 });
    expect(progress.at(-1)!.message).toMatch(/^scanned agent-sre: \d+ findings/);
    for (let i = 1; i < progress.length; i++)
      expect(progress[i].progress).toBeGreaterThan(progress[i - 1].progress);
  }, 60_000);

  it("a collect cancelled with job_cancel ends the call with an error naming it", async () => {
    const off = sim.faults.add(() => ({ delayMs: 20_000 }));
    try {
      const pending = call(sre, "anomalies_scan", { collect: true });
      let id: string | undefined;
      for (let i = 0; i < 100 && !id; i++) {
        id = (await jobsOf(sre)).jobs.find((j: any) => j.status === "running")?.job_id;
        if (!id) await new Promise((r) => setTimeout(r, 50));
      }
      expect(id).toBeDefined();
      expect((await call(sre, "job_cancel", { job_id: id! })).isError).toBeFalsy();
      const r = await pending;
      expect(r.isError).toBe(true);
      expect(textOf(r)).toContain(`collect job ${id} cancelled`);
    } finally {
      off();
    }
  }, 60_000);

  it("follows the agent's running collect up to the time limit, and starts none beside another run", async () => {
    const off = sim.faults.add(() => ({ delayMs: COLLECT_WAIT_MS + 20_000 }));
    try {
      const started = (await call(sre, "data_collect", {})).structuredContent as any;
      const collectId = started.job.job_id;
      const t0 = Date.now();
      const r = await call(sre, "anomalies_scan", { collect: true });
      expect(r.isError, textOf(r)).toBeFalsy();
      expect(Date.now() - t0).toBeGreaterThanOrEqual(COLLECT_WAIT_MS - 100);
      const out = r.structuredContent as any;
      expect(out.collect).toMatchObject({ job_id: collectId, started: false, status: "running" });
      expect(out.note).toContain(`the already running collect job ${collectId} still runs after`);
      expect((await jobsOf(sre)).jobs.filter((j: any) => j.status === "running")).toHaveLength(1);
      expect((await call(sre, "job_cancel", { job_id: collectId })).isError).toBeFalsy();
      await t.ctx.jobs.follow(collectId, SRE, { timeoutMs: 20_000 });

      // A training run holds the agent: the scan says so and scans what is stored.
      const training = await t.ctx.jobs.startRun(SRE, { kind: "training", actor: "test" });
      const again = await call(sre, "anomalies_scan", { collect: true });
      expect(again.isError, textOf(again)).toBeFalsy();
      const o2 = again.structuredContent as any;
      expect(o2.collect).toBeUndefined();
      expect(o2.note).toContain(
        `not collected: ${SRE} already has training job ${training.job.job_id} running (one run per agent)`,
      );
      await t.ctx.jobs.cancel(training.job.job_id, SRE);
      await t.ctx.jobs.follow(training.job.job_id, SRE, { timeoutMs: 20_000 });
    } finally {
      off();
    }
  }, 90_000);
});
