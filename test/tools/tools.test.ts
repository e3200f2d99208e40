// Each tool through a real MCP Client (in-memory transport) against the real registry, serving,
// job manager and pipeline (with quick stages where the pipeline's own work is not the point).
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { ProgressNotificationSchema } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { INSTRUCTIONS } from "../../src/server/mcp.js";
import {
  BRUNO,
  call,
  identity,
  quickStages,
  registerTiny,
  SRE,
  startTestServer,
  type TestServer,
  textOf,
} from "../server/helpers.js";

describe("the tools, in memory", () => {
  let t: TestServer;
  let sre: Client;
  let admin: Client;
  let v1: string;
  let v2: string;
  let failed: string;
  let release!: () => void;
  const hold = new Promise<void>((r) => {
    release = r;
  });

  beforeAll(async () => {
    t = await startTestServer({ stages: quickStages({ steps: 8, stepMs: 20, hold }) });
    v1 = await registerTiny(t.ctx.registry, SRE, { seed: 1, scores: { log_triage: 0.5 } });
    v2 = await registerTiny(t.ctx.registry, SRE, { seed: 2, scores: { log_triage: 0.6 } });
    failed = await registerTiny(t.ctx.registry, SRE, { seed: 3, gate: false });
    await t.ctx.registry.promote(SRE, v1, { actor: "test", reason: "first" });
    await t.ctx.models.serveAgent(SRE);
    sre = await t.client(identity(SRE));
    admin = await t.client(identity("admin"));
  });
  afterAll(async () => {
    release();
    await t?.close();
  });

  it("lists the tools with schemas, annotations and workflow descriptions, and gives instructions in three lines", async () => {
    const { tools } = await sre.listTools();
    expect(tools.map((x) => x.name)).toEqual([
      "sources_check",
      "data_collect",
      "data_status",
      "training_start",
      "schedule_status",
      "job_status",
      "job_logs",
      "job_cancel",
      "jobs_list",
      "models_list",
      "model_card",
      "model_evaluate",
      "model_compare",
      "model_promote",
      "model_rollback",
      "model_import",
      "model_predict",
      "anomalies_scan",
    ]);
    for (const tool of tools) {
      expect(tool.name).toMatch(/^[a-z][a-z0-9_]{2,40}$/);
      expect(tool.description!.length).toBeGreaterThan(120);
      expect(tool.inputSchema.additionalProperties).toBe(false);
      expect(tool.outputSchema?.type).toBe("object");
      const a = tool.annotations!;
      expect(typeof a.readOnlyHint).toBe("boolean");
      expect(typeof a.destructiveHint).toBe("boolean");
      expect(typeof a.idempotentHint).toBe("boolean");
      if (a.readOnlyHint) expect(a.destructiveHint).toBe(false);
    }
    const byName = Object.fromEntries(tools.map((x) => [x.name, x]));
    expect(byName.model_promote.annotations?.destructiveHint).toBe(true);
    expect(byName.model_rollback.annotations?.destructiveHint).toBe(true);
    expect(byName.models_list.annotations?.readOnlyHint).toBe(true);
    expect(sre.getInstructions()).toBe(INSTRUCTIONS);
    expect(INSTRUCTIONS.split("\n")).toHaveLength(3);
  });

  it("models_list: versions newest first with gate and aliases, history, served model; bounded by limit", async () => {
    const r = await call(sre, "models_list", { limit: 2, history_limit: 1 });
    expect(r.isError).toBeFalsy();
    const s = r.structuredContent as any;
    expect(s.agent).toBe(SRE);
    expect(s.aliases).toEqual({ champion: v1, challenger: null });
    expect(s.versions.map((v: any) => v.version)).toEqual([failed, v2]);
    expect(s.versions[0].gate_passed).toBe(false);
    expect(s.total_versions).toBe(3);
    expect(s.truncated).toBe(true);
    expect(s.history).toHaveLength(1);
    expect(s.history[0]).toMatchObject({ alias: "champion", to: v1, actor: "test" });
    expect(s.served.champion).toBe(v1);
    expect(textOf(r)).toContain(`champion ${v1}`);
  });

  it("model_card: the card, the knowledge card, bounded by max_chars", async () => {
    const card = await call(sre, "model_card", {});
    expect((card.structuredContent as any).version).toBe(v1);
    expect((card.structuredContent as any).text).toContain(`TRM ${v1}`);
    expect((card.structuredContent as any).truncated).toBe(false);
    const k = await call(sre, "model_card", { version: v2, part: "knowledge", max_chars: 200 });
    expect((k.structuredContent as any).text).toContain("services: api, db");
    const long = await call(sre, "model_card", { version: "latest", max_chars: 200 });
    expect((long.structuredContent as any).version).toBe(failed);
    expect((long.structuredContent as any).gate).toEqual({
      passed: false,
      reasons: ["log_triage: below its baseline"],
    });
  });

  it("model_predict: the champion's typed answer with confidences and steps", async () => {
    const r = await call(sre, "model_predict", { task: "log_triage", input: "ERROR db connection refused" });
    expect(r.isError).toBeFalsy();
    const s = r.structuredContent as any;
    expect(s.version).toBe(v1);
    expect(Object.keys(s.answer).sort()).toEqual(["incident", "level", "service"]);
    expect(s.answer.level.confidence).toBeGreaterThan(0);
    expect(s.confidence).toBeLessThanOrEqual(s.answer.level.confidence);
    expect(s.steps).toBeGreaterThanOrEqual(1);
    expect(s.steps).toBeLessThanOrEqual(s.max_steps);
    const trace = await call(sre, "model_predict", {
      task: "trace_outcome",
      input: { path: ["api:GET /", "db:select"] },
    });
    expect(Object.keys((trace.structuredContent as any).answer).sort()).toEqual([
      "culprit",
      "latency",
      "status",
    ]);
    // A query of the wrong shape for the task is a clear tool error.
    const wrong = await call(sre, "model_predict", { task: "code_infill", input: "just text" });
    expect(wrong.isError).toBe(true);
    expect(textOf(wrong)).toMatch(/code_infill takes a JSON query/);
    // An agent with nothing served says so.
    const none = await call(admin, "model_predict", { agent: BRUNO, task: "log_triage", input: "x" });
    expect(none.isError).toBe(true);
    expect(textOf(none)).toMatch(/not served|no champion/);
  });

  it("model_promote refuses a version that failed its gate unless force; promote swaps the served model; rollback goes back", async () => {
    const refused = await call(sre, "model_promote", { version: failed, reason: "try it" });
    expect(refused.isError).toBe(true);
    expect(textOf(refused)).toMatch(/failed its evaluation gate/);
    expect(textOf(refused)).toContain("log_triage: below its baseline");
    expect((await t.ctx.registry.read(SRE)).aliases.champion).toBe(v1);

    const p = await call(sre, "model_promote", { version: v2, reason: "better on log_triage" });
    expect(p.isError).toBeFalsy();
    const s = p.structuredContent as any;
    expect(s.moves).toHaveLength(1);
    expect(s.moves[0]).toMatchObject({
      alias: "champion",
      from: v1,
      to: v2,
      actor: `mcp:${SRE}`,
      forced: false,
    });
    expect(s.served.champion).toBe(v2);
    const again = await call(sre, "model_promote", { version: v2, reason: "again" });
    expect((again.structuredContent as any).moves).toEqual([]);

    const forced = await call(sre, "model_promote", {
      version: failed,
      force: true,
      reason: "accepting the regression",
    });
    expect((forced.structuredContent as any).forced).toBe(true);
    expect((forced.structuredContent as any).served.champion).toBe(failed);

    const rb = await call(sre, "model_rollback", { reason: "it misbehaves" });
    expect(rb.isError).toBeFalsy();
    expect((rb.structuredContent as any).move).toMatchObject({ action: "rollback", from: failed, to: v2 });
    expect((rb.structuredContent as any).served.champion).toBe(v2);
    const pred = await call(sre, "model_predict", { task: "log_triage", input: "WARN slow" });
    expect((pred.structuredContent as any).version).toBe(v2);
  });

  it("model_compare: side by side per task, saying when the scores come from separate evaluations", async () => {
    const r = await call(sre, "model_compare", { a: v1, b: v2 });
    expect(r.isError).toBeFalsy();
    const s = r.structuredContent as any;
    expect(s.basis).toBe("separate_evaluations");
    expect(s.tasks).toEqual([expect.objectContaining({ task: "log_triage", a: 0.5, b: 0.6, better: "b" })]);
    expect(s.tasks[0].delta).toBeCloseTo(0.1, 9);
    expect(s.summary).toMatch(/separate evaluations/);
    const same = await call(sre, "model_compare", { a: v1, b: v1 });
    expect(same.isError).toBe(true);
    expect(textOf(same)).toMatch(/both/);
  });

  it("training_start returns a job at once, the running one on a second call; job_status, job_logs, jobs_list follow it", async () => {
    const r = await call(sre, "training_start", { stages: ["build", "train"] });
    expect(r.isError).toBeFalsy();
    const first = r.structuredContent as any;
    expect(first.started).toBe(true);
    expect(first.job).toMatchObject({ kind: "training", agent: SRE, status: "running", actor: `mcp:${SRE}` });
    const again = await call(sre, "training_start", {});
    expect((again.structuredContent as any).started).toBe(false);
    expect((again.structuredContent as any).job.job_id).toBe(first.job.job_id);
    const id = first.job.job_id;

    // The train stage waits on `hold`: the job is running, at the train stage.
    let status = (await call(sre, "job_status", { job_id: id, wait_s: 1 })).structuredContent as any;
    for (let i = 0; i < 50 && status.stage !== "train"; i++)
      status = (await call(sre, "job_status", { job_id: id, wait_s: 0.2 })).structuredContent as any;
    expect(status.status).toBe("running");
    expect(status.stage).toBe("train");
    expect(status.stages.map((s: any) => [s.name, s.status])).toEqual([
      ["build", "succeeded"],
      ["train", "running"],
    ]);
    expect(status.fraction).toBeGreaterThanOrEqual(0.5);
    expect(status.next).toMatch(/job_status/);

    const listed = (await call(sre, "jobs_list", { status: "running" })).structuredContent as any;
    expect(listed.jobs.map((j: any) => j.job_id)).toEqual([id]);

    // Progress notifications while waiting, with a progressToken; values only increase.
    release();
    const progress: { progress: number; total?: number; message?: string }[] = [];
    const done = await sre.callTool(
      { name: "job_status", arguments: { job_id: id, wait_s: 20 } },
      undefined,
      { onprogress: (p) => progress.push(p) },
    );
    expect((done.structuredContent as any).status).toBe("succeeded");
    expect((done.structuredContent as any).fraction).toBe(1);
    expect(progress.length).toBeGreaterThan(1);
    for (let i = 1; i < progress.length; i++)
      expect(progress[i].progress).toBeGreaterThan(progress[i - 1].progress);
    expect(progress.every((p) => p.total === 100)).toBe(true);
    expect(progress.some((p) => /train/.test(p.message ?? ""))).toBe(true);

    const logs = (await call(sre, "job_logs", { job_id: id, limit: 2 })).structuredContent as any;
    expect(logs.lines).toHaveLength(2);
    expect(logs.truncated).toBe(true);
    expect(logs.total).toBeGreaterThanOrEqual(4);
    const warns = (await call(sre, "job_logs", { job_id: id, min_level: "warn", stage: "train" }))
      .structuredContent as any;
    expect(warns.lines.map((l: any) => l.msg)).toEqual(["train finished with a warning"]);
    // The job record follows the run a moment after it ends.
    const record = async () => JSON.parse((await t.ctx.store.get(`jobs/${SRE}/${id}.json`)).toString());
    for (let i = 0; i < 40 && (await record()).status === "running"; i++)
      await new Promise((r) => setTimeout(r, 50));
    expect(await record()).toMatchObject({ id, kind: "training", status: "succeeded", actor: `mcp:${SRE}` });
  });

  it("data_collect starts a collect job; job_cancel stops a running job at a step boundary", async () => {
    const r = await call(sre, "data_collect", { wait_s: 10 });
    expect(r.isError).toBeFalsy();
    const job = (r.structuredContent as any).job;
    expect(job).toMatchObject({ kind: "collect", status: "succeeded" });
    expect(job.result.collect.records).toBe(10);

    const started = (await call(sre, "training_start", { stages: ["collect", "build"] }))
      .structuredContent as any;
    const c = await call(sre, "job_cancel", { job_id: started.job.job_id });
    expect(c.isError).toBeFalsy();
    expect(c.structuredContent).toMatchObject({ cancelled: true, status: "cancelled" });
    const twice = await call(sre, "job_cancel", { job_id: started.job.job_id });
    expect(twice.structuredContent).toMatchObject({ cancelled: false, status: "cancelled" });
    expect(textOf(twice)).toMatch(/already cancelled/);
  });

  it("data_status: per source per day, the last collection, the dataset (none here); sources_check reports unconfigured sources", async () => {
    const r = await call(sre, "data_status", { days: 3 });
    expect(r.isError).toBeFalsy();
    const s = r.structuredContent as any;
    expect(s.sources.map((x: any) => x.source)).toEqual(["code", "prometheus", "loki", "tempo"]);
    expect(s.sources.every((x: any) => x.enabled === false && x.total_segments === 0)).toBe(true);
    expect(s.dataset).toBeNull();
    expect(s.next).toMatch(/sources_check/);
    const chk = await call(sre, "sources_check", {});
    expect((chk.structuredContent as any).sources.every((x: any) => x.status === "disabled")).toBe(true);
  });

  it("schedule_status: the agent's own jobs; admin sees every agent", async () => {
    const own = (await call(sre, "schedule_status", {})).structuredContent as any;
    expect(new Set(own.jobs.map((j: any) => j.agent))).toEqual(new Set([SRE]));
    expect(own.jobs.map((j: any) => j.job).sort()).toEqual(["collect", "train"]);
    const all = (await call(admin, "schedule_status", {})).structuredContent as any;
    expect(new Set(all.jobs.map((j: any) => j.agent))).toEqual(new Set([SRE, BRUNO]));
    expect(all.enabled).toBe(false);
  });

  it("model_evaluate validates the version before starting a job", async () => {
    const r = await call(sre, "model_evaluate", { version: "v20990101-000000-000-abcd" });
    expect(r.isError).toBe(true);
    expect(textOf(r)).toMatch(/has no model version "v20990101-000000-000-abcd"/);
    // With no dataset the job starts and fails with a clear reason.
    const j = (await call(sre, "model_evaluate", { version: v2, wait_s: 10 })).structuredContent as any;
    expect(j.job.kind).toBe("evaluation");
    expect(j.job.status).toBe("failed");
    expect(j.job.error).toMatch(/no dataset/);
    expect(j.job.next).toMatch(/job_logs/);
  });

  it("resources: registry, card, knowledge card and a job; prompts with their walkthroughs", async () => {
    const { resources } = await sre.listResources();
    expect(resources.map((r) => r.uri)).toEqual([`trm://agents/${SRE}/registry`]);
    const templates = (await sre.listResourceTemplates()).resourceTemplates.map((r) => r.uriTemplate).sort();
    expect(templates).toEqual([
      "trm://agents/{agent}/models/{version}/card",
      "trm://agents/{agent}/models/{version}/knowledge",
      "trm://agents/{agent}/registry",
      "trm://agents/{agent}/scan/latest",
      "trm://jobs/{id}",
    ]);
    const reg = await sre.readResource({ uri: `trm://agents/${SRE}/registry` });
    expect(JSON.parse((reg.contents[0] as any).text).versions).toHaveLength(3);
    const card = await sre.readResource({ uri: `trm://agents/${SRE}/models/champion/card` });
    expect((card.contents[0] as any).text).toContain("TRM");
    const k = await sre.readResource({ uri: `trm://agents/${SRE}/models/${v1}/knowledge` });
    expect((k.contents[0] as any).text).toContain("knowledge");
    const jobs = (await call(sre, "jobs_list", { limit: 1 })).structuredContent as any;
    const job = await sre.readResource({ uri: `trm://jobs/${jobs.jobs[0].job_id}` });
    expect(JSON.parse((job.contents[0] as any).text).job_id).toBe(jobs.jobs[0].job_id);
    await expect(sre.readResource({ uri: `trm://agents/${BRUNO}/registry` })).rejects.toThrow(
      /Forbidden \(403\).*agent:agent-bruno/,
    );

    const { prompts } = await sre.listPrompts();
    expect(prompts.map((p) => p.name).sort()).toEqual(["diagnose_with_model", "retrain_review"]);
    const review = await sre.getPrompt({ name: "retrain_review", arguments: { agent: SRE } });
    const text = (review.messages[0].content as any).text as string;
    for (const tool of ["data_status", "training_start", "job_status", "model_compare", "model_promote"])
      expect(text).toContain(tool);
    const diag = await sre.getPrompt({
      name: "diagnose_with_model",
      arguments: { symptom: "checkout 500s" },
    });
    expect((diag.messages[0].content as any).text).toContain("model_predict");
    expect((diag.messages[0].content as any).text).toContain("checkout 500s");
  });

  it("honours the client's cancellation of a waiting call", async () => {
    const started = (await call(admin, "training_start", { agent: BRUNO, stages: ["collect"] }))
      .structuredContent as any;
    const ac = new AbortController();
    const p = admin.callTool(
      { name: "job_status", arguments: { job_id: started.job.job_id, wait_s: 25 } },
      undefined,
      {
        signal: ac.signal,
      },
    );
    setTimeout(() => ac.abort("enough"), 50);
    const t0 = Date.now();
    await expect(p).rejects.toThrow();
    expect(Date.now() - t0).toBeLessThan(5000);
    // Nothing about the job changed: it ran to its end regardless.
    const end = (await call(admin, "job_status", { job_id: started.job.job_id, wait_s: 10 }))
      .structuredContent as any;
    expect(end.status).toBe("succeeded");
  });

  it("sends no progress without a progressToken", async () => {
    const seen: unknown[] = [];
    sre.setNotificationHandler(ProgressNotificationSchema, (n) => {
      seen.push(n);
    });
    const id = ((await call(sre, "jobs_list", { limit: 1 })).structuredContent as any).jobs[0].job_id;
    await call(sre, "job_status", { job_id: id, wait_s: 1 });
    expect(seen).toEqual([]);
  });
});
