// Streamable HTTP with tokens, through the SDK's own client and raw requests: 401 with
// WWW-Authenticate, Host and Origin checks, the body limit, sessions bound to their identity,
// scopes per tool call, progress over SSE, /healthz and /metrics, refusing a public bind without
// tokens, and a graceful close that lets an in-flight call finish.
import { request } from "node:http";
import { networkInterfaces } from "node:os";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError } from "../../src/errors.js";
import { ServerContext } from "../../src/server/context.js";
import { type HttpServer, startHttpServer } from "../../src/server/http.js";
import {
  BRUNO,
  call,
  quickStages,
  registerTiny,
  removeDir,
  SRE,
  TOKENS,
  tempDir,
  testConfig,
  textOf,
  tokenSection,
} from "./helpers.js";

function raw(
  url: string,
  opts: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: opts.method ?? "POST", headers: opts.headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks).toString(),
        }),
      );
    });
    req.on("error", reject);
    req.end(opts.body);
  });
}

const INIT = JSON.stringify({
  jsonrpc: "2.0",
  id: 1,
  method: "initialize",
  params: { protocolVersion: "2025-11-25", capabilities: {}, clientInfo: { name: "raw", version: "0" } },
});
const MCP_HEADERS = { "Content-Type": "application/json", Accept: "application/json, text/event-stream" };

async function connect(
  url: string,
  token: string,
): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { Authorization: `Bearer ${token}` } },
  });
  const client = new Client({ name: "http-test", version: "0" });
  await client.connect(transport);
  return { client, transport };
}

describe("Streamable HTTP with tokens", () => {
  const dir = tempDir("trm-http-");
  let ctx: ServerContext;
  let http: HttpServer;
  let release!: () => void;
  const hold = new Promise<void>((r) => {
    release = r;
  });

  beforeAll(async () => {
    const config = testConfig(dir, {
      tokens: tokenSection(dir),
      server: { max_request_bytes: 4096, allowed_hosts: ["trm-forge.trm-forge.svc"] },
    });
    ctx = new ServerContext({
      config,
      stages: quickStages({ steps: 6, stepMs: 120, hold }),
      schedule: false,
    });
    await ctx.start();
    for (const a of [SRE, BRUNO]) {
      const v = await registerTiny(ctx.registry, a);
      await ctx.registry.promote(a, v, { actor: "test", reason: "setup" });
    }
    http = await startHttpServer(ctx, { host: "127.0.0.1", port: 0 });
  });
  afterAll(async () => {
    release();
    await http?.close(5000);
    await ctx?.stop(5000);
    removeDir(dir);
  });

  it("answers 401 with WWW-Authenticate for a missing or invalid token", async () => {
    const missing = await raw(http.url, { headers: MCP_HEADERS, body: INIT });
    expect(missing.status).toBe(401);
    expect(missing.headers["www-authenticate"]).toBe('Bearer realm="trm-forge"');
    const wrong = await raw(http.url, {
      headers: { ...MCP_HEADERS, Authorization: "Bearer not-a-real-token-000000" },
      body: INIT,
    });
    expect(wrong.status).toBe(401);
    expect(wrong.headers["www-authenticate"]).toMatch(/error="invalid_token"/);
    expect(JSON.parse(wrong.body).error.message).toMatch(/Unauthorized/);
    const basic = await raw(http.url, {
      headers: { ...MCP_HEADERS, Authorization: `Basic ${TOKENS.sre}` },
      body: INIT,
    });
    expect(basic.status).toBe(401);
  });

  it("checks the Host header (DNS rebinding) and the Origin", async () => {
    const auth = { ...MCP_HEADERS, Authorization: `Bearer ${TOKENS.sre}` };
    const evil = await raw(http.url, { headers: { ...auth, Host: "evil.example:8750" }, body: INIT });
    expect(evil.status).toBe(403);
    expect(JSON.parse(evil.body).error.message).toBe("Invalid Host: evil.example:8750");
    const origin = await raw(http.url, { headers: { ...auth, Origin: "https://evil.example" }, body: INIT });
    expect(origin.status).toBe(403);
    const inCluster = await raw(http.url, {
      headers: { ...auth, Host: "trm-forge.trm-forge.svc:8750" },
      body: INIT,
    });
    expect(inCluster.status).toBe(200);
    expect(inCluster.headers["mcp-session-id"]).toBeTruthy();
  });

  it("limits the request size (413) and rejects bodies that are not JSON", async () => {
    const auth = { ...MCP_HEADERS, Authorization: `Bearer ${TOKENS.sre}` };
    const big = await raw(http.url, { headers: auth, body: JSON.stringify({ pad: "x".repeat(10_000) }) });
    expect(big.status).toBe(413);
    const notJson = await raw(http.url, { headers: auth, body: "{not json" });
    expect(notJson.status).toBe(400);
    expect(JSON.parse(notJson.body).error.code).toBe(-32700);
    const noSession = await raw(http.url, {
      headers: auth,
      body: JSON.stringify({ jsonrpc: "2.0", id: 2, method: "tools/list" }),
    });
    expect(noSession.status).toBe(400);
    const unknown = await raw(http.url, {
      headers: { ...auth, "mcp-session-id": "00000000-0000-0000-0000-000000000000" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 2, method: "tools/list" }),
    });
    expect(unknown.status).toBe(404);
  });

  it("serves the SDK client with a token: identity from the token, scopes per call, own agent only", async () => {
    const { client: sre, transport } = await connect(http.url, TOKENS.sre);
    const { tools } = await sre.listTools();
    expect(tools).toHaveLength(18);
    const own = await call(sre, "models_list", {});
    expect((own.structuredContent as any).agent).toBe(SRE);
    const other = await call(sre, "models_list", { agent: BRUNO });
    expect(textOf(other)).toMatch(/^Forbidden \(403\).*missing permission: agent:agent-bruno/);

    const { client: readOnly } = await connect(http.url, TOKENS.sreRead);
    const train = await call(readOnly, "training_start", {});
    expect(textOf(train)).toMatch(/missing permission: scope:train/);
    const list = await call(readOnly, "jobs_list", {});
    expect(list.isError).toBeFalsy();

    // The session belongs to agent-sre's token: another identity cannot ride on it.
    const hijack = await raw(http.url, {
      headers: {
        ...MCP_HEADERS,
        Authorization: `Bearer ${TOKENS.bruno}`,
        "mcp-session-id": transport.sessionId!,
        "mcp-protocol-version": "2025-11-25",
      },
      body: JSON.stringify({ jsonrpc: "2.0", id: 9, method: "tools/list" }),
    });
    expect(hijack.status).toBe(403);

    const { client: admin } = await connect(http.url, TOKENS.admin);
    const bruno = await call(admin, "models_list", { agent: BRUNO });
    expect((bruno.structuredContent as any).agent).toBe(BRUNO);
    await Promise.all([sre.close(), readOnly.close(), admin.close()]);
  });

  it("streams progress notifications of a job over SSE", async () => {
    const { client } = await connect(http.url, TOKENS.bruno);
    const progress: number[] = [];
    const messages: string[] = [];
    release();
    const r = await client.callTool(
      { name: "training_start", arguments: { stages: ["build", "train"], wait_s: 20 } },
      undefined,
      {
        onprogress: (p) => {
          progress.push(p.progress);
          messages.push(p.message ?? "");
        },
      },
    );
    expect((r.structuredContent as any).job.status).toBe("succeeded");
    expect(progress.length).toBeGreaterThan(2);
    for (let i = 1; i < progress.length; i++) expect(progress[i]).toBeGreaterThan(progress[i - 1]);
    expect(
      messages.some((m) => m.includes("train step")),
      messages.join("\n"),
    ).toBe(true);
    await client.close();
  });

  it("reports health and metrics", async () => {
    const base = http.url.replace(/\/mcp$/, "");
    // Without a token: the status alone, no agent names, versions or failure text.
    const anon = await fetch(`${base}/healthz`);
    expect(anon.status).toBe(200);
    expect(await anon.json()).toEqual({ status: "ok" });
    const bad = await fetch(`${base}/healthz`, {
      headers: { Authorization: "Bearer not-a-real-token-000000" },
    });
    expect(bad.status).toBe(401);
    expect(await bad.text()).not.toContain(SRE);
    // An agent's token: its own agent only.
    const own = (await (
      await fetch(`${base}/healthz`, { headers: { Authorization: `Bearer ${TOKENS.sreRead}` } })
    ).json()) as any;
    expect(own.served.map((s: any) => s.agent)).toEqual([SRE]);
    expect(JSON.stringify(own)).not.toContain(BRUNO);
    const h = await fetch(`${base}/healthz`, { headers: { Authorization: `Bearer ${TOKENS.admin}` } });
    expect(h.status).toBe(200);
    const body = (await h.json()) as any;
    expect(body).toMatchObject({
      status: "ok",
      store: { kind: "fs", ok: true },
      scheduler: { enabled: false, running: false },
    });
    expect(body.served.map((s: any) => s.agent).sort()).toEqual([BRUNO, SRE]);
    expect(body.served.every((s: any) => typeof s.champion === "string")).toBe(true);
    const m = await fetch(`${base}/metrics`);
    expect(m.headers.get("content-type")).toMatch(/^text\/plain/);
    const text = await m.text();
    expect(text).toMatch(/^# HELP trm_forge_/m);
    expect(text).toContain(`trm_forge_served_model_info{agent="${SRE}",alias="champion"`);
    const nope = await fetch(`${base}/admin`);
    expect(nope.status).toBe(404);
  });

  it("checks Host and Origin on /healthz and /metrics as on /mcp", async () => {
    const base = http.url.replace(/\/mcp$/, "");
    for (const path of ["/healthz", "/metrics"]) {
      const host = await raw(`${base}${path}`, { method: "GET", headers: { Host: "evil.example" } });
      expect(host.status, path).toBe(403);
      expect(JSON.parse(host.body).error.message).toBe("Invalid Host: evil.example");
      const origin = await raw(`${base}${path}`, {
        method: "GET",
        headers: { Origin: "https://evil.example" },
      });
      expect(origin.status, path).toBe(403);
      expect(origin.body).not.toContain("trm_forge_");
      const ok = await raw(`${base}${path}`, {
        method: "GET",
        headers: { Host: `trm-forge.trm-forge.svc:${http.port}`, Origin: "http://localhost" },
      });
      expect(ok.status, path).toBe(200);
    }
  });

  it("caps sessions per identity: a flood closes the flooder's own oldest, others still initialise and call tools", async () => {
    const d = tempDir("trm-http-flood-");
    const c = new ServerContext({
      config: testConfig(d, {
        tokens: tokenSection(d),
        server: { max_sessions: 12, max_sessions_per_identity: 4 },
      }),
      schedule: false,
    });
    await c.start();
    const h = await startHttpServer(c, { host: "127.0.0.1", port: 0 });
    const opened: Client[] = [];
    try {
      // agent-sre initialises 40 SDK sessions, ten at a time. Each closes the identity's oldest idle
      // session; one that finds them all still initialising is refused (503), and a session closed
      // by a sibling before the client's initialized notification reads as gone (404).
      for (let i = 0; i < 4; i++) {
        const batch = await Promise.allSettled(Array.from({ length: 10 }, () => connect(h.url, TOKENS.sre)));
        for (const r of batch)
          if (r.status === "fulfilled") opened.push(r.value.client);
          else
            expect(String(r.reason)).toMatch(
              /Too many sessions for agent-sre \(4\), each busy|Session not found: initialize a new one/,
            );
        expect(h.sessions()).toBeLessThanOrEqual(4);
      }
      expect(opened.length).toBeGreaterThanOrEqual(4);
      // The newest of them still works; the oldest was closed for a newer one.
      expect((await call(opened.at(-1)!, "models_list", {})).isError).toBeFalsy();
      await expect(opened[0].listTools()).rejects.toThrow(/Session not found|404/);
      // The other agent and admin still initialise and call tools.
      const { client: bruno } = await connect(h.url, TOKENS.bruno);
      expect((await call(bruno, "models_list", {})).structuredContent).toMatchObject({ agent: BRUNO });
      const { client: admin } = await connect(h.url, TOKENS.admin);
      expect((await call(admin, "models_list", { agent: SRE })).structuredContent).toMatchObject({
        agent: SRE,
      });
      opened.push(bruno, admin);
      expect(h.sessions()).toBeLessThanOrEqual(6);
    } finally {
      await Promise.all(opened.map((x) => x.close().catch(() => undefined)));
      await h.close(1000);
      await c.stop(1000);
      removeDir(d);
    }
  });

  it("keeps room for admin when the agents fill max_sessions, and refuses an identity whose sessions are all busy", async () => {
    const d = tempDir("trm-http-full-");
    let release!: () => void;
    const held = new Promise<void>((r) => {
      release = r;
    });
    const c = new ServerContext({
      config: testConfig(d, {
        tokens: tokenSection(d),
        server: { max_sessions: 2, max_sessions_per_identity: 2 },
      }),
      stages: quickStages({ steps: 2, stepMs: 5, hold: held }),
      schedule: false,
    });
    await c.start();
    const h = await startHttpServer(c, { host: "127.0.0.1", port: 0 });
    const opened: Client[] = [];
    try {
      const sre = [await connect(h.url, TOKENS.sre), await connect(h.url, TOKENS.sre)].map((x) => x.client);
      opened.push(...sre);
      // Both of agent-sre's sessions are busy: a job they wait on is held at its train stage.
      const started = (await call(sre[0], "training_start", { stages: ["build", "train"] }))
        .structuredContent as any;
      const waits = sre.map((x) => call(x, "job_status", { job_id: started.job.job_id, wait_s: 20 }));
      await new Promise((r) => setTimeout(r, 200));
      const third = await raw(h.url, {
        headers: { ...MCP_HEADERS, Authorization: `Bearer ${TOKENS.sre}` },
        body: INIT,
      });
      expect(third.status).toBe(503);
      expect(JSON.parse(third.body).error.message).toMatch(
        /Too many sessions for agent-sre \(2\), each busy/,
      );
      // The agents' slots are full (2 of 2); admin still gets a session and works.
      const bruno = await raw(h.url, {
        headers: { ...MCP_HEADERS, Authorization: `Bearer ${TOKENS.bruno}` },
        body: INIT,
      });
      expect(bruno.status).toBe(503);
      expect(JSON.parse(bruno.body).error.message).toMatch(/Too many sessions \(2\)/);
      const { client: admin } = await connect(h.url, TOKENS.admin);
      opened.push(admin);
      expect((await call(admin, "jobs_list", { agent: SRE })).isError).toBeFalsy();
      release();
      for (const w of await Promise.all(waits)) expect((w.structuredContent as any).status).toBe("succeeded");
    } finally {
      release();
      await Promise.all(opened.map((x) => x.close().catch(() => undefined)));
      await h.close(1000);
      await c.stop(1000);
      removeDir(d);
    }
  });

  it("bound to every interface, accepts the machine's own addresses as Host (the kubelet probes the pod IP)", async () => {
    const d = tempDir("trm-http-any-");
    const c = new ServerContext({ config: testConfig(d, { tokens: tokenSection(d) }), schedule: false });
    await c.start();
    const h = await startHttpServer(c, { host: "0.0.0.0", port: 0 });
    try {
      const addrs = Object.values(networkInterfaces())
        .flat()
        .filter((i) => i && i.family === "IPv4")
        .map((i) => i!.address);
      expect(addrs).toContain("127.0.0.1");
      for (const a of addrs) {
        const r = await raw(`http://${a}:${h.port}/healthz`, { method: "GET" });
        expect(r.status, a).toBe(200);
        expect(JSON.parse(r.body)).toEqual({ status: "ok" });
      }
      const foreign = await raw(`http://127.0.0.1:${h.port}/healthz`, {
        method: "GET",
        headers: { Host: `203.0.113.9:${h.port}` },
      });
      expect(foreign.status).toBe(403);
    } finally {
      await h.close(1000);
      await c.stop(1000);
      removeDir(d);
    }
  });

  it("refuses to listen beyond loopback without tokens, and serves loopback as the local identity", async () => {
    const d = tempDir("trm-http-open-");
    const open = new ServerContext({ config: testConfig(d), schedule: false });
    await open.start();
    try {
      await expect(startHttpServer(open, { host: "0.0.0.0", port: 0 })).rejects.toThrow(ConfigError);
      await expect(startHttpServer(open, { host: "0.0.0.0", port: 0 })).rejects.toThrow(/without tokens/);
      const local = await startHttpServer(open, {
        host: "127.0.0.1",
        port: 0,
        localIdentity: { name: SRE, scopes: ["read"] },
      });
      const transport = new StreamableHTTPClientTransport(new URL(local.url));
      const c = new Client({ name: "local", version: "0" });
      await c.connect(transport);
      expect((await call(c, "models_list", {})).structuredContent).toMatchObject({ agent: SRE });
      expect(textOf(await call(c, "data_collect", {}))).toMatch(/scope:train/);
      await c.close();
      await local.close(1000);
    } finally {
      await open.stop(1000);
      removeDir(d);
    }
  });

  it("closes gracefully: an in-flight call finishes, new requests are turned away", async () => {
    const { client } = await connect(http.url, TOKENS.admin);
    const started = (await call(client, "training_start", { agent: SRE, stages: ["collect", "build"] }))
      .structuredContent as any;
    const inflight = call(client, "job_status", { job_id: started.job.job_id, wait_s: 20 });
    await new Promise((r) => setTimeout(r, 100));
    const closing = http.close(15_000);
    await new Promise((r) => setTimeout(r, 50));
    const late = await raw(http.url, {
      headers: { ...MCP_HEADERS, Authorization: `Bearer ${TOKENS.admin}` },
      body: INIT,
    }).catch((err: Error) => ({ status: 0, body: err.message }));
    expect([0, 503]).toContain(late.status);
    const done = await inflight;
    expect(done.isError).toBeFalsy();
    expect((done.structuredContent as any).status).toBe("succeeded");
    await closing;
    expect(http.sessions()).toBe(0);
  });
});
