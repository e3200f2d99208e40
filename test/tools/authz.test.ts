// The authorisation matrix: every tool, called by each identity on its own agent and on the other
// agent. Missing scopes and other agents' models get a 403-style tool error that names the missing
// permission; another agent's job answers exactly as an unknown job id does; nothing changes; admin
// acts on all.
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Scope } from "../../src/server/auth.js";
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

type Agent = typeof SRE | typeof BRUNO;

interface ToolCase {
  tool: string;
  scope: Exclude<Scope, "admin">;
  args(agent: Agent): Record<string, unknown>;
}

/** Tools that name a job rather than an agent: another agent's job must read as no job at all. */
const JOB_TOOLS = new Set(["job_status", "job_logs", "job_cancel"]);
const UNKNOWN_JOB = "r20990101-000000-000-abcd";

const CALLERS: { name: string; as: string; scopes: Scope[] }[] = [
  { name: "agent-sre (read, train, promote)", as: SRE, scopes: ["read", "train", "promote"] },
  { name: "agent-sre (read only)", as: SRE, scopes: ["read"] },
  { name: "agent-bruno (read, train, promote)", as: BRUNO, scopes: ["read", "train", "promote"] },
  { name: "admin", as: "admin", scopes: ["admin"] },
];

describe("authorisation: identity × tool × own or other agent", () => {
  let t: TestServer;
  const jobs: Record<string, string> = {};
  const versions: Record<string, string> = {};
  const clients = new Map<string, Client>();

  const cases: ToolCase[] = [
    { tool: "sources_check", scope: "read", args: (a) => ({ agent: a }) },
    { tool: "data_collect", scope: "train", args: (a) => ({ agent: a }) },
    { tool: "data_status", scope: "read", args: (a) => ({ agent: a, days: 2 }) },
    { tool: "training_start", scope: "train", args: (a) => ({ agent: a, stages: ["build"] }) },
    { tool: "schedule_status", scope: "read", args: (a) => ({ agent: a }) },
    { tool: "job_status", scope: "read", args: (a) => ({ job_id: jobs[a] }) },
    { tool: "job_logs", scope: "read", args: (a) => ({ job_id: jobs[a], limit: 5 }) },
    { tool: "job_cancel", scope: "train", args: (a) => ({ job_id: jobs[a] }) },
    { tool: "jobs_list", scope: "read", args: (a) => ({ agent: a, limit: 3 }) },
    { tool: "models_list", scope: "read", args: (a) => ({ agent: a }) },
    { tool: "model_card", scope: "read", args: (a) => ({ agent: a, version: versions[a] }) },
    { tool: "model_evaluate", scope: "train", args: (a) => ({ agent: a, version: versions[a] }) },
    { tool: "model_compare", scope: "read", args: (a) => ({ agent: a, a: "champion", b: versions[a] }) },
    {
      tool: "model_promote",
      scope: "promote",
      args: (a) => ({ agent: a, version: versions[a], alias: "challenger", reason: "matrix" }),
    },
    { tool: "model_rollback", scope: "promote", args: (a) => ({ agent: a, reason: "matrix" }) },
    {
      tool: "model_predict",
      scope: "read",
      args: (a) => ({ agent: a, task: "log_triage", input: "ERROR x" }),
    },
    { tool: "anomalies_scan", scope: "read", args: (a) => ({ agent: a, since: "2h", top_k: 3 }) },
    { tool: "model_import", scope: "promote", args: (a) => ({ agent: a, path: "model.safetensors" }) },
  ];

  const permitted = (c: (typeof CALLERS)[number], tc: ToolCase, target: Agent) =>
    (c.scopes.includes("admin") || c.scopes.includes(tc.scope)) && (c.as === "admin" || c.as === target);

  beforeAll(async () => {
    t = await startTestServer();
    for (const a of [SRE, BRUNO] as Agent[]) {
      const champion = await registerTiny(t.ctx.registry, a, { seed: 1 });
      await t.ctx.registry.promote(a, champion, { actor: "test", reason: "setup" });
      versions[a] = await registerTiny(t.ctx.registry, a, { seed: 2 });
      const r = await t.ctx.jobs.startRun(a, { kind: "collect", actor: "test" });
      await t.ctx.jobs.follow(r.job.job_id, a, { timeoutMs: 20_000 });
      jobs[a] = r.job.job_id;
      await t.ctx.models.serveAgent(a);
    }
    for (const c of CALLERS) clients.set(c.name, await t.client(identity(c.as, c.scopes)));
    await t.ctx.jobs.idle();
  });
  afterAll(async () => {
    await t?.close();
  });

  it("covers every tool the server lists", async () => {
    const { tools } = await clients.get("admin")!.listTools();
    expect(cases.map((c) => c.tool).sort()).toEqual(tools.map((x) => x.name).sort());
  });

  it("refuses, naming the missing permission, and changes nothing", async () => {
    const before = snapshot(t.ctx.config.data_dir);
    let refused = 0;
    for (const c of CALLERS)
      for (const tc of cases)
        for (const target of [SRE, BRUNO] as Agent[]) {
          if (permitted(c, tc, target)) continue;
          const r = await call(clients.get(c.name)!, tc.tool, tc.args(target));
          const where = `${c.name} → ${tc.tool} on ${target}`;
          expect(r.isError, where).toBe(true);
          const text = textOf(r);
          const scopeOk = c.scopes.includes("admin") || c.scopes.includes(tc.scope);
          refused++;
          if (scopeOk && JOB_TOOLS.has(tc.tool)) {
            const unknown = await call(clients.get(c.name)!, tc.tool, {
              ...tc.args(target),
              job_id: UNKNOWN_JOB,
            });
            expect(unknown.isError, where).toBe(true);
            expect(text.replaceAll(jobs[target], "<id>"), where).toBe(
              textOf(unknown).replaceAll(UNKNOWN_JOB, "<id>"),
            );
            expect(text, where).not.toMatch(/Forbidden|agent-/);
            continue;
          }
          expect(text, where).toMatch(/^Forbidden \(403\): /);
          expect(text, where).toContain(
            `missing permission: ${scopeOk ? `agent:${target}` : `scope:${tc.scope}`}`,
          );
        }
    // sre read-only: 7 write tools × 2 agents and 11 read tools on bruno; sre and bruno: all 18
    // tools on the other agent.
    expect(refused).toBe(7 * 2 + 18 + 18 + 11);
    expect(snapshot(t.ctx.config.data_dir)).toEqual(before);
  });

  it("lets each identity act where it may (own agent with the scope; admin on all)", async () => {
    for (const c of CALLERS)
      for (const tc of cases)
        for (const target of [SRE, BRUNO] as Agent[]) {
          if (!permitted(c, tc, target)) continue;
          const r = await call(clients.get(c.name)!, tc.tool, tc.args(target));
          const where = `${c.name} → ${tc.tool} on ${target}: ${textOf(r).slice(0, 200)}`;
          expect(textOf(r), where).not.toMatch(/Forbidden/);
          // The calls that may fail for a reason of their own: no earlier champion to roll back to,
          // and no import folder configured (the server refuses every import then).
          if (tc.tool === "model_rollback" && r.isError)
            expect(textOf(r), where).toMatch(/no previous champion/);
          else if (tc.tool === "model_import") expect(textOf(r), where).toMatch(/import\.dir/);
          else expect(r.isError, where).toBeFalsy();
          if (!r.isError && typeof (r.structuredContent as any)?.agent === "string")
            expect((r.structuredContent as any).agent, where).toBe(target);
        }
  });

  it("anomalies_scan with collect: true needs the train scope as well, on the caller's own agent", async () => {
    for (const c of CALLERS)
      for (const target of [SRE, BRUNO] as Agent[]) {
        const r = await call(clients.get(c.name)!, "anomalies_scan", {
          agent: target,
          since: "2h",
          collect: true,
        });
        const where = `${c.name} → anomalies_scan collect: true on ${target}: ${textOf(r).slice(0, 200)}`;
        const own = c.as === "admin" || c.as === target;
        const train = c.scopes.includes("admin") || c.scopes.includes("train");
        if (own && train) {
          expect(r.isError, where).toBeFalsy();
          expect((r.structuredContent as any).collect.status, where).toBe("succeeded");
          continue;
        }
        expect(r.isError, where).toBe(true);
        expect(textOf(r), where).toContain(`missing permission: ${own ? "scope:train" : `agent:${target}`}`);
      }
  });

  it("an agent's omitted agent is its own; admin must name one", async () => {
    const own = await call(clients.get("agent-bruno (read, train, promote)")!, "models_list", {});
    expect((own.structuredContent as any).agent).toBe(BRUNO);
    const admin = await call(clients.get("admin")!, "models_list", {});
    expect(admin.isError).toBe(true);
    expect(textOf(admin)).toMatch(/admin must name the agent/);
    // Listing tools show an agent only its own jobs; admin sees both agents'.
    const sreJobs = (await call(clients.get("agent-sre (read only)")!, "jobs_list", {}))
      .structuredContent as any;
    expect(new Set(sreJobs.jobs.map((j: any) => j.agent))).toEqual(new Set([SRE]));
    const all = (await call(clients.get("admin")!, "jobs_list", { limit: 100 })).structuredContent as any;
    expect(new Set(all.jobs.map((j: any) => j.agent))).toEqual(new Set([SRE, BRUNO]));
  });

  it("applies the same rules to resources", async () => {
    const sre = clients.get("agent-sre (read only)")!;
    await expect(sre.readResource({ uri: `trm://agents/${SRE}/registry` })).resolves.toBeTruthy();
    await expect(sre.readResource({ uri: `trm://agents/${BRUNO}/registry` })).rejects.toThrow(
      /missing permission: agent:agent-bruno/,
    );
    // Another agent's job reads exactly as an unknown id.
    const errorOf = (uri: string) =>
      sre.readResource({ uri }).then(
        () => "read",
        (err: Error) => err.message,
      );
    const foreign = await errorOf(`trm://jobs/${jobs[BRUNO]}`);
    const unknown = await errorOf(`trm://jobs/${UNKNOWN_JOB}`);
    expect(foreign).toMatch(/no job/);
    expect(foreign.replaceAll(jobs[BRUNO], "<id>")).toBe(unknown.replaceAll(UNKNOWN_JOB, "<id>"));
    await expect(
      sre.readResource({ uri: `trm://agents/${BRUNO}/models/${versions[BRUNO]}/card` }),
    ).rejects.toThrow(/Forbidden/);
    // Its own newest scan (stored by the anomalies_scan calls above) it reads.
    const own = await sre.readResource({ uri: `trm://agents/${SRE}/scan/latest` });
    expect(JSON.parse((own.contents[0] as { text: string }).text).agent).toBe(SRE);
    await expect(sre.readResource({ uri: `trm://agents/${BRUNO}/scan/latest` })).rejects.toThrow(
      /missing permission: agent:agent-bruno/,
    );
    const admin = clients.get("admin")!;
    await expect(admin.readResource({ uri: `trm://jobs/${jobs[BRUNO]}` })).resolves.toBeTruthy();
  });

  it("completes resource-template agents to the caller's own only (admin: all)", async () => {
    const complete = async (c: Client, uri: string, value: string) =>
      (
        await c.complete({
          ref: { type: "ref/resource", uri },
          argument: { name: "agent", value },
        })
      ).completion.values;
    for (const uri of [
      "trm://agents/{agent}/registry",
      "trm://agents/{agent}/models/{version}/card",
      "trm://agents/{agent}/models/{version}/knowledge",
    ]) {
      expect(await complete(clients.get("agent-sre (read only)")!, uri, ""), uri).toEqual([SRE]);
      expect(await complete(clients.get("agent-sre (read only)")!, uri, "agent-b"), uri).toEqual([]);
      expect(await complete(clients.get("agent-bruno (read, train, promote)")!, uri, "agent-"), uri).toEqual([
        BRUNO,
      ]);
      expect((await complete(clients.get("admin")!, uri, "agent-")).sort(), uri).toEqual([BRUNO, SRE].sort());
    }
  });
});
