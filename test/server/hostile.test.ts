// The hostile twin of the authorisation matrix: a scripted client over Streamable HTTP with two
// agents' tokens and an admin's. It walks every tool that tools/list returns and puts traversal
// (../, %2e%2e), NUL and a right-to-left override into every id argument, control characters into
// every free-text argument, 10k-element arrays into every list; it sends foreign Host and Origin
// headers, oversized and malformed bodies, and reaches for the other agent's resources and jobs.
// Every answer must be a clean error (no stack trace, no server path, none of the other agent's
// data), the server must keep answering, and the store must be byte-identical afterwards.
import { request } from "node:http";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { Tool } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ServerContext } from "../../src/server/context.js";
import { type HttpServer, startHttpServer } from "../../src/server/http.js";
import {
  BRUNO,
  quickStages,
  registerTiny,
  removeDir,
  SRE,
  snapshot,
  TOKENS,
  tempDir,
  testConfig,
  textOf,
  tokenSection,
} from "./helpers.js";

const TRAVERSAL = ["../../../etc/passwd", "%2e%2e%2f%2e%2e%2fetc", "agent-sre\u0000../x", "\u202egnp.exe"];
/** Free text is allowed ../ and %2e%2e; control characters are what it must refuse. */
const CONTROL = ["probe\u0000nul", "probe \u202eevil", "probe\r\nforged: line", "probe \u001b[2J"];
const BIG = 10_000;

type JsonSchema = {
  type?: string | string[];
  pattern?: string;
  enum?: unknown[];
  const?: unknown;
  anyOf?: JsonSchema[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
  minimum?: number;
};

interface Probe {
  tool: string;
  /** The argument path the hostile value sits at, e.g. input.path[]. */
  at: string;
  args: Record<string, unknown>;
  /** An id argument: the call must be refused. */
  mustRefuse: boolean;
}

/** Valid ids, one per id pattern: the first that matches is used. */
const VALID_IDS = [SRE, "latest", "r20990101-000000-000-abcd", "ds-20990101-0123456789ab"];

/**
 * A valid value for a required field, so that the hostile one is the only thing wrong: were it
 * let through, the call would act (and the store check would see it).
 */
function filler(s: JsonSchema): unknown {
  const alt = s.anyOf?.[0] ?? s;
  if (alt.enum) return alt.enum[0];
  if (alt.const !== undefined) return alt.const;
  const type = Array.isArray(alt.type) ? alt.type[0] : alt.type;
  if (type === "string" && alt.pattern) {
    const re = new RegExp(alt.pattern);
    return VALID_IDS.find((v) => re.test(v)) ?? "hostile probe";
  }
  if (type === "string") return "hostile probe";
  if (type === "number" || type === "integer") return alt.minimum ?? 1;
  if (type === "boolean") return false;
  if (type === "array") return [filler(alt.items ?? {})];
  if (type === "object") return fillRequired(alt);
  return null;
}

function fillRequired(s: JsonSchema): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of s.required ?? []) out[k] = filler(s.properties?.[k] ?? {});
  return out;
}

/** Every string leaf of a tool's input (top level, anyOf alternatives, nested objects, arrays), with a way to set it. */
function leaves(
  s: JsonSchema,
  at: string,
  set: (v: unknown) => unknown,
): { at: string; id: boolean; free: boolean; array: boolean; set: (v: unknown) => unknown }[] {
  const out: ReturnType<typeof leaves> = [];
  for (const alt of s.anyOf ?? [s]) {
    const type = Array.isArray(alt.type) ? alt.type : [alt.type];
    if (type.includes("string") && alt.const === undefined)
      out.push({ at, id: Boolean(alt.pattern), free: !alt.pattern && !alt.enum, array: false, set });
    if (type.includes("array") && alt.items) {
      out.push({ at: `${at}[]`, id: false, free: false, array: true, set });
      for (const l of leaves(alt.items, `${at}[]`, (v) => set([v]))) if (!l.array) out.push(l);
    }
    if (type.includes("object") && alt.properties)
      for (const [k, p] of Object.entries(alt.properties))
        out.push(...leaves(p, `${at}.${k}`, (v) => set({ ...fillRequired(alt), [k]: v })));
  }
  return out;
}

function probesOf(tool: Tool): Probe[] {
  const schema = tool.inputSchema as JsonSchema;
  const out: Probe[] = [];
  for (const [key, prop] of Object.entries(schema.properties ?? {}))
    for (const leaf of leaves(prop, key, (v) => v)) {
      const args = (v: unknown) => ({ ...fillRequired(schema), [key]: leaf.set(v) });
      if (leaf.array) {
        // A 10k-element list of plausible elements: over the element cap, refused as a whole.
        const el = filler((prop.anyOf?.find((a) => a.items) ?? prop).items ?? {});
        out.push({
          tool: tool.name,
          at: leaf.at,
          args: args(Array.from({ length: BIG }, () => el)),
          mustRefuse: true,
        });
        continue;
      }
      const id = leaf.id || /(^|_|\.)(id|agent|version|a|b|against)$/.test(leaf.at);
      for (const v of leaf.free && !id ? CONTROL : TRAVERSAL)
        out.push({ tool: tool.name, at: leaf.at, args: args(v), mustRefuse: id || /reason/.test(leaf.at) });
    }
  // Any argument at all as a 10k-element array, and 10k unknown keys.
  const first = Object.keys(schema.properties ?? {})[0] ?? "agent";
  out.push({
    tool: tool.name,
    at: `${first} (10k array)`,
    args: { ...fillRequired(schema), [first]: Array.from({ length: BIG }, () => "../") },
    mustRefuse: true,
  });
  out.push({
    tool: tool.name,
    at: "(10k keys)",
    args: Object.fromEntries(Array.from({ length: BIG }, (_, i) => [`k${i}`, "../"])),
    mustRefuse: true,
  });
  return out;
}

function raw(
  url: string,
  opts: { method?: string; headers?: Record<string, string>; body?: string | Buffer; path?: string } = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    // A path given as is: the URL parser would resolve its dot segments before sending.
    const o = {
      method: opts.method ?? "POST",
      headers: opts.headers,
      ...(opts.path ? { path: opts.path } : {}),
    };
    const req = request(url, o, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
    });
    // The server may close early on an oversized body: what it answered is what counts.
    req.on("error", (err) => reject(err));
    req.end(opts.body);
  });
}

async function connect(url: string, token: string): Promise<{ client: Client; sessionId: string }> {
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { Authorization: `Bearer ${token}` } },
  });
  const client = new Client({ name: "hostile", version: "0" });
  await client.connect(transport);
  return { client, sessionId: transport.sessionId! };
}

const MCP_HEADERS = { "Content-Type": "application/json", Accept: "application/json, text/event-stream" };

describe("a hostile client over Streamable HTTP", () => {
  const dir = tempDir("trm-hostile-");
  let ctx: ServerContext;
  let http: HttpServer;
  let sre: { client: Client; sessionId: string };
  let admin: { client: Client; sessionId: string };
  let before: Record<string, string>;
  /** What agent-sre must never see of agent-bruno's unless it named it itself. */
  const secrets: string[] = [];
  const brunoJob = { id: "" };
  const brunoVersions: string[] = [];

  /** A clean answer: no stack trace, no server path or module, bounded; for an agent, none of the other agent's data. */
  function expectClean(text: string, where: string, opts: { asked: string; agent: boolean }) {
    expect(text, where).not.toMatch(/\n\s+at .+:\d+:\d+/);
    expect(text, where).not.toMatch(/node_modules|node:internal|\.ts:\d+|\.js:\d+:\d+/);
    expect(text, where).not.toContain(dir);
    expect(text.length, where).toBeLessThan(64 * 1024);
    if (opts.agent)
      for (const s of secrets) if (!opts.asked.includes(s)) expect(text, where).not.toContain(s);
  }

  beforeAll(async () => {
    const config = testConfig(dir, { tokens: tokenSection(dir) });
    ctx = new ServerContext({ config, stages: quickStages(), schedule: false });
    await ctx.start();
    for (const a of [SRE, BRUNO]) {
      // Two champions in turn: a rollback or a promotion let through would move an alias.
      const v = await registerTiny(ctx.registry, a, { seed: 1 });
      await ctx.registry.promote(a, v, { actor: "test", reason: "setup" });
      const challenger = await registerTiny(ctx.registry, a, { seed: 2 });
      await ctx.registry.promote(a, challenger, { actor: "test", reason: "setup" });
      await registerTiny(ctx.registry, a, { seed: 3 });
      const r = await ctx.jobs.startRun(a, { kind: "collect", actor: "test" });
      await ctx.jobs.follow(r.job.job_id, a, { timeoutMs: 20_000 });
      await ctx.models.serveAgent(a);
      if (a === BRUNO) {
        brunoJob.id = r.job.job_id;
        brunoVersions.push(v, challenger);
      }
    }
    await ctx.jobs.idle();
    secrets.push(brunoJob.id, ...brunoVersions, `${BRUNO} knowledge`, `# ${BRUNO} · TRM`, BRUNO);
    http = await startHttpServer(ctx, { host: "127.0.0.1", port: 0 });
    sre = await connect(http.url, TOKENS.sre);
    admin = await connect(http.url, TOKENS.admin);
    before = snapshot(config.data_dir);
  });
  afterAll(async () => {
    await sre?.client.close().catch(() => undefined);
    await admin?.client.close().catch(() => undefined);
    await http?.close(2000);
    await ctx?.stop(5000);
    removeDir(dir);
  });

  it("puts traversal, control characters and 10k-element arrays into every argument of every tool", async () => {
    const { tools } = await sre.client.listTools();
    expect(tools.length).toBeGreaterThanOrEqual(16);
    const probes = tools.flatMap(probesOf);
    // Every tool is probed, and every id argument (a patterned string) of every tool.
    for (const t of tools) {
      expect(
        probes.some(
          (p) =>
            p.tool === t.name &&
            TRAVERSAL.some((v) => JSON.stringify(p.args).includes(JSON.stringify(v).slice(1, -1))),
        ),
        t.name,
      ).toBe(true);
      for (const [k, p] of Object.entries((t.inputSchema as JsonSchema).properties ?? {}))
        if (p.pattern)
          expect(
            probes.some((x) => x.tool === t.name && x.at === k),
            `${t.name}.${k}`,
          ).toBe(true);
    }
    let refused = 0;
    for (const who of [
      { name: "agent-sre", c: sre.client, agent: true },
      { name: "admin", c: admin.client, agent: false },
    ])
      for (const p of probes) {
        const where = `${who.name} → ${p.tool} ${p.at}`;
        const asked = JSON.stringify(p.args);
        let text: string;
        let isError: boolean;
        try {
          const r = await who.c.callTool({ name: p.tool, arguments: p.args });
          text = `${textOf(r)}\n${JSON.stringify(r.structuredContent ?? "")}`;
          isError = Boolean(r.isError);
        } catch (err) {
          text = (err as Error).message;
          isError = true;
        }
        expectClean(text, where, { asked, agent: who.agent });
        if (p.mustRefuse) {
          expect(isError, `${where}: ${text.slice(0, 300)}`).toBe(true);
          refused++;
        }
      }
    expect(refused).toBeGreaterThan(2 * tools.length * TRAVERSAL.length);
    expect(snapshot(ctx.config.data_dir)).toEqual(before);
  }, 120_000);

  it("reaches for the other agent's resources, jobs and names, and learns nothing", async () => {
    const c = sre.client;
    const attempts: [string, () => Promise<unknown>][] = [
      ["registry", () => c.readResource({ uri: `trm://agents/${BRUNO}/registry` })],
      ["card", () => c.readResource({ uri: `trm://agents/${BRUNO}/models/champion/card` })],
      [
        "knowledge",
        () => c.readResource({ uri: `trm://agents/${BRUNO}/models/${brunoVersions[0]}/knowledge` }),
      ],
      ["job resource", () => c.readResource({ uri: `trm://jobs/${brunoJob.id}` })],
      ["scan resource", () => c.readResource({ uri: `trm://agents/${BRUNO}/scan/latest` })],
      ["traversal registry", () => c.readResource({ uri: "trm://agents/../../etc/registry" })],
      ["encoded traversal", () => c.readResource({ uri: `trm://agents/${SRE}/models/%2e%2e%2f%2e%2e/card` })],
      ["NUL version", () => c.readResource({ uri: `trm://agents/${SRE}/models/champion%00/card` })],
      ["RTL agent", () => c.readResource({ uri: `trm://agents/\u202e${SRE}/registry` })],
      ["job traversal", () => c.readResource({ uri: "trm://jobs/..%2F..%2Fregistry" })],
      ["job_status", () => c.callTool({ name: "job_status", arguments: { job_id: brunoJob.id } })],
      ["job_logs", () => c.callTool({ name: "job_logs", arguments: { job_id: brunoJob.id } })],
      ["job_cancel", () => c.callTool({ name: "job_cancel", arguments: { job_id: brunoJob.id } })],
      ["jobs_list", () => c.callTool({ name: "jobs_list", arguments: { agent: BRUNO } })],
      [
        "model_card",
        () => c.callTool({ name: "model_card", arguments: { agent: BRUNO, part: "knowledge" } }),
      ],
      [
        "model_predict",
        () =>
          c.callTool({ name: "model_predict", arguments: { agent: BRUNO, task: "log_triage", input: "x" } }),
      ],
      [
        "anomalies_scan",
        () => c.callTool({ name: "anomalies_scan", arguments: { agent: BRUNO, since: "1h" } }),
      ],
    ];
    for (const [what, attempt] of attempts) {
      const text = await attempt().then(
        (r: any) => {
          expect(r.isError, what).toBe(true);
          return textOf(r);
        },
        (err: Error) => err.message,
      );
      // The caller named agent-bruno and the ids itself; nothing more of agent-bruno's comes back.
      expectClean(
        text.replaceAll(BRUNO, "").replaceAll(brunoJob.id, "").replaceAll(brunoVersions[0], ""),
        what,
        {
          asked: "",
          agent: true,
        },
      );
    }
    // Another agent's job reads exactly as an unknown id: nothing says it exists.
    const unknown = "r20990101-000000-000-abcd";
    for (const tool of ["job_status", "job_logs", "job_cancel"]) {
      const theirs = textOf(await c.callTool({ name: tool, arguments: { job_id: brunoJob.id } }));
      const none = textOf(await c.callTool({ name: tool, arguments: { job_id: unknown } }));
      expect(theirs.replaceAll(brunoJob.id, "<id>"), tool).toBe(none.replaceAll(unknown, "<id>"));
    }
    const resourceError = (id: string) =>
      c.readResource({ uri: `trm://jobs/${id}` }).then(
        () => "read",
        (err: Error) => err.message.replaceAll(id, "<id>"),
      );
    expect(await resourceError(brunoJob.id)).toBe(await resourceError(unknown));
    // Lists and completion show agent-sre its own only.
    const listed = JSON.stringify(await c.listResources());
    expect(listed).toContain(SRE);
    expect(listed).not.toContain(BRUNO);
    const jobs = JSON.stringify(await c.callTool({ name: "jobs_list", arguments: {} }));
    expect(jobs).not.toContain(BRUNO);
    for (const value of ["", "agent-", "agent-b"]) {
      const done = await c.complete({
        ref: { type: "ref/resource", uri: "trm://agents/{agent}/registry" },
        argument: { name: "agent", value },
      });
      expect(done.completion.values).not.toContain(BRUNO);
    }
    const health = await raw(http.url.replace(/\/mcp$/, "/healthz"), {
      method: "GET",
      headers: { Authorization: `Bearer ${TOKENS.sre}` },
    });
    expect(health.status).toBe(200);
    expect(health.body).not.toContain(BRUNO);
    expect(snapshot(ctx.config.data_dir)).toEqual(before);
  });

  it("refuses foreign Host and Origin headers, oversized and malformed bodies, with clean JSON errors", async () => {
    const base = http.url.replace(/\/mcp$/, "");
    const auth = { ...MCP_HEADERS, Authorization: `Bearer ${TOKENS.sre}` };
    const inSession = { ...auth, "mcp-session-id": sre.sessionId, "mcp-protocol-version": "2025-11-25" };
    const tiny = JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" });
    const cases: {
      what: string;
      url?: string;
      path?: string;
      method?: string;
      headers: Record<string, string>;
      body?: string | Buffer;
      status: number[];
    }[] = [
      ...["/mcp", "/healthz", "/metrics"].flatMap((path) => [
        {
          what: `${path} foreign Host`,
          url: `${base}${path}`,
          method: path === "/mcp" ? "POST" : "GET",
          headers: { ...auth, Host: "evil.example" },
          body: path === "/mcp" ? tiny : undefined,
          status: [403],
        },
        {
          what: `${path} Host with userinfo`,
          url: `${base}${path}`,
          method: "GET",
          headers: { ...auth, Host: "evil.example@localhost" },
          status: [403],
        },
        {
          what: `${path} Host with a path`,
          url: `${base}${path}`,
          method: "GET",
          headers: { ...auth, Host: "localhost/../evil" },
          status: [403],
        },
        {
          what: `${path} foreign Origin`,
          url: `${base}${path}`,
          method: "GET",
          headers: { ...auth, Origin: "https://evil.example" },
          status: [403],
        },
        {
          what: `${path} null Origin`,
          url: `${base}${path}`,
          method: "GET",
          headers: { ...auth, Origin: "null" },
          status: [403],
        },
        {
          what: `${path} look-alike Origin`,
          url: `${base}${path}`,
          method: "GET",
          headers: { ...auth, Origin: "http://127.0.0.1.evil.example" },
          status: [403],
        },
      ]),
      {
        what: "2 MiB body",
        headers: inSession,
        body: JSON.stringify({
          jsonrpc: "2.0",
          id: 1,
          method: "tools/list",
          params: { pad: "x".repeat(2 << 20) },
        }),
        status: [413],
      },
      { what: "truncated JSON", headers: inSession, body: '{"jsonrpc":"2.0","id":1,', status: [400] },
      { what: "NUL bytes", headers: inSession, body: "\u0000\u0000", status: [400] },
      {
        what: "invalid UTF-8",
        headers: inSession,
        body: Buffer.from([0x7b, 0xff, 0xfe, 0x7d]),
        status: [400],
      },
      {
        what: "200k-deep nesting",
        headers: inSession,
        body: `${"[".repeat(200_000)}${"]".repeat(200_000)}`,
        status: [400],
      },
      { what: "JSON that is not JSON-RPC", headers: inSession, body: '{"hello":"world"}', status: [400] },
      { what: "a bare number", headers: inSession, body: "42", status: [400] },
      {
        what: "a 10k-message batch",
        headers: inSession,
        body: JSON.stringify(
          Array.from({ length: BIG }, (_, i) => ({ jsonrpc: "2.0", id: i, method: "tools/list" })),
        ),
        status: [400],
      },
      {
        what: "10k initialize requests",
        headers: auth,
        body: JSON.stringify(
          Array.from({ length: BIG }, (_, i) => ({
            jsonrpc: "2.0",
            id: i,
            method: "initialize",
            params: {
              protocolVersion: "2025-11-25",
              capabilities: {},
              clientInfo: { name: "x", version: "0" },
            },
          })),
        ),
        status: [400, 413],
      },
      {
        what: "a traversal session id",
        headers: { ...auth, "mcp-session-id": "../../etc/passwd" },
        body: tiny,
        status: [404],
      },
      {
        what: "another identity's session",
        headers: { ...inSession, Authorization: `Bearer ${TOKENS.bruno}` },
        body: tiny,
        status: [403],
      },
      {
        what: "a wrong content type",
        headers: { ...inSession, "Content-Type": "text/plain" },
        body: tiny,
        status: [415],
      },
      { what: "PUT", method: "PUT", headers: inSession, body: tiny, status: [405] },
      {
        what: "a traversal path",
        path: "/mcp/../healthz",
        method: "GET",
        headers: auth,
        status: [404],
      },
      {
        what: "an encoded traversal path",
        path: "/%2e%2e/%2e%2e/etc/passwd",
        method: "GET",
        headers: auth,
        status: [404],
      },
    ];
    for (const c of cases) {
      const r = await raw(c.url ?? http.url, {
        path: c.path,
        method: c.method ?? "POST",
        headers: c.headers,
        body: c.body,
      });
      expect(c.status, `${c.what}: ${r.status} ${r.body.slice(0, 300)}`).toContain(r.status);
      expectClean(r.body, c.what, { asked: "", agent: true });
      if (r.body) expect(() => JSON.parse(r.body), c.what).not.toThrow();
    }
    // Still answering, to the same session.
    expect((await sre.client.listTools()).tools.length).toBeGreaterThanOrEqual(16);
    expect(snapshot(ctx.config.data_dir)).toEqual(before);
  }, 60_000);
});
