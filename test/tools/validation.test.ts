// Bad input: unknown keys, wrong types, out-of-range and oversize values get the SDK's isError
// validation result before any handler runs; unknown agents, versions and jobs get clear tool
// errors; then a fuzz run of a few thousand malformed calls leaves the server answering, no job
// started and the store unchanged.
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Rng } from "../../src/model/rng.js";
import {
  BRUNO,
  call,
  identity,
  registerTiny,
  SRE,
  snapshot,
  startTestServer,
  type TestServer,
  textOf,
} from "../server/helpers.js";

const INVALID = /^MCP error -32602: (Input validation error: )?Invalid arguments for tool /;

describe("bad input", () => {
  let t: TestServer;
  let sre: Client;
  let admin: Client;
  let version: string;

  beforeAll(async () => {
    t = await startTestServer({ extra: { server: { max_tool_input_elements: 512 } } });
    version = await registerTiny(t.ctx.registry, SRE);
    await t.ctx.registry.promote(SRE, version, { actor: "test", reason: "setup" });
    await t.ctx.models.serveAgent(SRE);
    sre = await t.client(identity(SRE));
    admin = await t.client(identity("admin"));
  });
  afterAll(async () => {
    await t?.close();
  });

  it.each([
    ["an unknown key", "models_list", { limit: 5, limt: 5 }, /Unrecognized key|unrecognized/i],
    ["a wrong type", "models_list", { limit: "5" }, /limit/],
    ["a number out of range", "job_logs", { job_id: "r20260101-000000-000-abcd", limit: 5000 }, /limit/],
    ["a bad agent name", "models_list", { agent: "Agent SRE; drop" }, /agent/],
    ["a bad job id", "job_status", { job_id: "../../etc/passwd" }, /job_id/],
    ["a bad version", "model_card", { version: "v1; rm -rf /" }, /version/],
    ["an unknown enum value", "model_predict", { task: "mind_reading", input: "x" }, /task/],
    ["a missing field", "model_predict", { input: "x" }, /task/],
    ["an oversize string", "model_predict", { task: "log_triage", input: "x".repeat(9000) }, /input/],
    [
      "an oversize array",
      "model_predict",
      { task: "trace_outcome", input: { path: Array.from({ length: 200 }, (_, i) => `s${i}:op`) } },
      /input/,
    ],
    ["a reason too long", "model_rollback", { reason: "r".repeat(600) }, /reason/],
    ["a wait too long", "job_status", { job_id: "r20260101-000000-000-abcd", wait_s: 600 }, /wait_s/],
  ])("rejects %s with the SDK's validation result", async (_what, tool, args, field) => {
    const r = await call(sre, tool, args);
    expect(r.isError).toBe(true);
    expect(r.structuredContent).toBeUndefined();
    expect(textOf(r)).toMatch(INVALID);
    expect(textOf(r)).toMatch(field);
  });

  it("rejects control characters in free text (alias-history reasons) and stores nothing", async () => {
    const before = snapshot(t.ctx.config.data_dir);
    const hostile: [string, string][] = [
      ["NUL", "ok\u0000then"],
      ["an ANSI escape", "ok \u001b[31mred\u001b[0m"],
      ["CR/LF", "ok\r\nFAKE LOG LINE"],
      ["a tab", "ok\tthen"],
      ["DEL", "ok\u007f"],
      ["a C1 control (CSI)", "ok \u009b31m"],
      ["a right-to-left override", "ok \u202egnp.exe"],
      ["a bidi isolate", "ok \u2066x\u2069"],
      ["a line separator", "ok\u2028then"],
    ];
    for (const [what, reason] of hostile)
      for (const [tool, args] of [
        ["model_promote", { version, reason, force: true }],
        ["model_rollback", { reason }],
      ] as const) {
        const r = await call(sre, tool, args);
        const where = `${what} in ${tool}`;
        expect(r.isError, where).toBe(true);
        expect(textOf(r), where).toMatch(INVALID);
        expect(textOf(r), where).toMatch(/reason/);
        expect(textOf(r), where).toMatch(
          /control characters are not allowed \(found U\+[0-9A-F]{4} at \d+\)/,
        );
      }
    expect(snapshot(t.ctx.config.data_dir)).toEqual(before);
    // Plain text in any script passes validation (the rollback then fails for its own reason).
    const plain = await call(sre, "model_rollback", { reason: "régression — 回滚 💥 (ticket #12)" });
    expect(textOf(plain)).not.toMatch(INVALID);
    expect(textOf(plain)).toMatch(/no previous champion/);
  });

  it("caps the elements of one call's arguments (maxToolInputElements)", async () => {
    const r = await call(sre, "model_predict", {
      task: "metric_forecast",
      input: { query: "up", labels: {}, points: Array.from({ length: 1000 }, () => 1) },
    });
    expect(r.isError).toBe(true);
    expect(textOf(r)).toMatch(/more than the maximum of 512 elements/);
  });

  it("gives clear tool errors for unknown agents, versions, jobs and tools", async () => {
    const agent = await call(admin, "models_list", { agent: "agent-nobody" });
    expect(textOf(agent)).toBe(`unknown agent "agent-nobody" (configured: ${SRE}, ${BRUNO})`);
    // To an agent, another name is someone else's: refused without saying whether it exists.
    const other = await call(sre, "models_list", { agent: "agent-nobody" });
    expect(textOf(other)).toMatch(/^Forbidden \(403\).*missing permission: agent:agent-nobody/);
    const v = await call(sre, "model_card", { version: "v20990101-000000-000-abcd" });
    expect(v.isError).toBe(true);
    expect(textOf(v)).toMatch(/agent-sre has no model version "v20990101-000000-000-abcd" \(latest: v/);
    const noAlias = await call(sre, "model_card", { version: "challenger" });
    expect(textOf(noAlias)).toBe("agent agent-sre has no challenger");
    const j = await call(sre, "job_status", { job_id: "r20990101-000000-000-abcd" });
    expect(j.isError).toBe(true);
    expect(textOf(j)).toMatch(/no job "r20990101-000000-000-abcd" for any configured agent/);
    const unknownTool = await call(sre, "model_delete_everything", {});
    expect(unknownTool.isError).toBe(true);
    expect(textOf(unknownTool)).toMatch(/Tool model_delete_everything not found/);
    const bruno = await call(admin, "model_predict", { agent: BRUNO, task: "log_triage", input: "x" });
    expect(textOf(bruno)).toMatch(/agent-bruno/);
  });

  it("survives a few thousand random and malformed calls: still answers, no job started, store unchanged", async () => {
    await t.ctx.jobs.idle();
    const before = snapshot(t.ctx.config.data_dir);
    const { tools } = await admin.listTools();
    const names = tools.map((x) => x.name);
    const rng = new Rng(20261129);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rng.uniform() * xs.length)];
    const junk = (depth: number): unknown => {
      const k = Math.floor(rng.uniform() * 9);
      if (depth > 2 || k < 2)
        return pick([null, true, false, -1, 0, 1e308, -0.5, Number.MAX_SAFE_INTEGER + 2]);
      if (k < 4)
        return pick([
          "",
          "x".repeat(Math.floor(rng.uniform() * 20_000)),
          "../../x",
          "\u0000",
          "champion",
          "💥",
        ]);
      if (k < 6) return Array.from({ length: Math.floor(rng.uniform() * 6) }, () => junk(depth + 1));
      const o: Record<string, unknown> = {};
      for (let i = 0; i < Math.floor(rng.uniform() * 4); i++)
        o[pick(["agent", "x", "job_id", "__proto__", "limit", "input"])] = junk(depth + 1);
      return o;
    };
    // Valid-looking arguments per tool, each made invalid by at least one mutation.
    const base: Record<string, Record<string, unknown>> = {
      training_start: { agent: SRE, stages: ["train"] },
      data_collect: { agent: SRE },
      model_evaluate: { agent: SRE, version },
      model_promote: { agent: SRE, version, reason: "fuzz", force: true },
      model_rollback: { agent: SRE, reason: "fuzz" },
      job_cancel: { job_id: "r20260101-000000-000-abcd" },
      model_predict: { agent: SRE, task: "log_triage", input: "ERROR x" },
      anomalies_scan: { agent: SRE, since: "1h" },
    };
    const mutate = (args: Record<string, unknown>): Record<string, unknown> => {
      const out = { ...args };
      switch (Math.floor(rng.uniform() * 6)) {
        case 0:
          out[pick(["bogus", "agentt", "Force", "stage"])] = junk(0);
          break;
        case 1: {
          const key = pick(Object.keys(out).length ? Object.keys(out) : ["agent"]);
          out[key] = pick([42, [], {}, null, 3.5]);
          break;
        }
        case 2:
          out.agent = pick(["", "A", "agent-sre ", "x".repeat(80), 7]);
          break;
        case 3:
          out.wait_s = pick([-1, 26, "soon", 1e9]);
          break;
        case 4:
          out.input = { points: Array.from({ length: 600 }, () => 1) };
          out.task = "metric_forecast";
          out[`junk${Math.floor(rng.uniform() * 100)}`] = 1;
          break;
        default:
          return { ...(junk(1) as object), [`k${Math.floor(rng.uniform() * 1e6)}`]: junk(1) };
      }
      return out;
    };
    let errors = 0;
    const N = 3000;
    for (let i = 0; i < N; i++) {
      const name =
        rng.uniform() < 0.05
          ? pick(["", "nope", "models_list ", "MODELS_LIST", "x".repeat(300)])
          : pick(names);
      const args = mutate(base[name] ?? { agent: SRE });
      const r = await admin.callTool({ name, arguments: args });
      if (r.isError) errors++;
      else throw new Error(`a malformed call succeeded: ${name} ${JSON.stringify(args).slice(0, 300)}`);
    }
    expect(errors).toBe(N);
    // Still answering, and nothing happened.
    const ok = await call(sre, "models_list", {});
    expect(ok.isError).toBeFalsy();
    expect((await admin.listTools()).tools).toHaveLength(18);
    expect(t.ctx.jobs.active()).toEqual([]);
    const listed = (await call(admin, "jobs_list", { agent: SRE })).structuredContent as any;
    expect(listed.jobs).toEqual([]);
    expect(snapshot(t.ctx.config.data_dir)).toEqual(before);
  });
});
