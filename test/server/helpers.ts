// Shared set-up for the server and tool tests: a config with two agents, tiny model versions
// registered through the real registry, quick pipeline stages where a test is not about the
// pipeline, in-memory MCP clients with a chosen identity, and a store snapshot.
import { type ChildProcess, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { parseConfig } from "../../src/config/index.js";
import type { Config } from "../../src/config/schema.js";
import type { ModelRegistry } from "../../src/pipeline/deploy/registry.js";
import { evaluateStage } from "../../src/pipeline/evaluate/stage.js";
import type { StageContext, StageFns } from "../../src/pipeline/run.js";
import { defaultScopes, type Identity, type Scope } from "../../src/server/auth.js";
import { ServerContext } from "../../src/server/context.js";
import { createServer } from "../../src/server/mcp.js";
import { tinyArtifacts } from "../serve/helpers.js";

export const SRE = "agent-sre";
export const BRUNO = "agent-bruno";
export { SEQ_LEN, testVocab } from "../serve/helpers.js";

/** Tokens the tests configure (each at least 16 characters), by name. */
export const TOKENS = {
  sre: "sre-token-0123456789abcdef",
  sreRead: "sre-readonly-0123456789abcdef",
  bruno: "bruno-token-0123456789abcdef",
  admin: "admin-token-0123456789abcdef",
} as const;

export function tempDir(prefix = "trm-server-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** A config with agent-sre and agent-bruno (no sources unless given), the cpu backend, no schedule. */
export function testConfig(dir: string, extra: Record<string, unknown> = {}): Config {
  return parseConfig({
    data_dir: join(dir, "data"),
    log_level: "silent",
    model: { backend: "cpu" },
    agents: { [SRE]: {}, [BRUNO]: {} },
    schedule: { enabled: false },
    serve: { poll_interval_ms: 200, max_wait_ms: 1, shadow_fraction: 0 },
    runs: { retries: 0 },
    ...extra,
  });
}

/** The `tokens` section for TOKENS, read from files in dir (as a Kubernetes Secret mount would give them). */
export function tokenSection(dir: string): Record<string, unknown>[] {
  const tdir = join(dir, "tokens");
  mkdirSync(tdir, { recursive: true });
  const file = (name: string, value: string) => {
    writeFileSync(join(tdir, name), `${value}\n`, { mode: 0o440 });
    return { file: join(tdir, name) };
  };
  return [
    { identity: SRE, scopes: ["read", "train", "promote"], token: file("agent-sre", TOKENS.sre) },
    { identity: SRE, scopes: ["read"], token: file("agent-sre-read", TOKENS.sreRead) },
    { identity: BRUNO, scopes: ["read", "train", "promote"], token: file("agent-bruno", TOKENS.bruno) },
    { identity: "admin", scopes: ["admin"], token: file("admin", TOKENS.admin) },
  ];
}

export function identity(name: string, scopes?: Scope[]): Identity {
  return { name, scopes: scopes ?? defaultScopes(name) };
}

/** Registers a tiny TRM version (with card, knowledge card and smoke example); returns its id. */
export async function registerTiny(
  registry: ModelRegistry,
  agent: string,
  o: { gate?: boolean | null; seed?: number; scores?: Record<string, number> } = {},
): Promise<string> {
  const gate = o.gate === undefined ? true : o.gate;
  const manifest = await registry.register(agent, {
    artifacts: [
      ...tinyArtifacts({ seed: o.seed }),
      { name: "knowledge.md", data: `# ${agent} knowledge\n\nservices: api, db\n` },
    ],
    versioned: (v) => [{ name: "card.md", data: `# ${agent} · TRM ${v}\n\nA tiny test model.\n` }],
    lineage: { run_id: null, dataset_id: null, raw_segments: [], code_version: "test", parent_version: null },
    gate:
      gate === null
        ? null
        : { passed: gate, reasons: gate ? ["cleared every check"] : ["log_triage: below its baseline"] },
    scores: o.scores ?? { log_triage: 0.5 },
    createdBy: "test",
  });
  return manifest.version;
}

/** Quick stages for tests that are about the server, not the pipeline: each logs, reports progress and waits on `gate`. */
export function quickStages(opts: { steps?: number; stepMs?: number; hold?: Promise<void> } = {}): StageFns {
  const steps = opts.steps ?? 5;
  const stage = async (ctx: StageContext) => {
    ctx.log("info", `${ctx.stage} started`);
    if (ctx.stage === "train") await opts.hold;
    for (let i = 1; i <= steps; i++) {
      if (ctx.signal.aborted)
        throw ctx.signal.reason instanceof Error ? ctx.signal.reason : new Error("aborted");
      await new Promise((r) => setTimeout(r, opts.stepMs ?? 5));
      ctx.progress({
        message: `${ctx.stage} step ${i}`,
        step: i,
        total: steps,
        eta_s: steps - i,
        metrics: { loss: 1 / i },
      });
    }
    ctx.log("warn", `${ctx.stage} finished with a warning`);
    return ctx.stage === "collect" ? { records: 10, errors: 0, sources: {} } : {};
  };
  // An evaluation run (model_evaluate) is the evaluate stage alone, and what is under test there.
  const evaluate = (ctx: StageContext) => (ctx.record.options.evaluate ? evaluateStage(ctx) : stage(ctx));
  return { collect: stage, build: stage, train: stage, evaluate, deploy: stage };
}

export interface TestServer {
  dir: string;
  config: Config;
  ctx: ServerContext;
  /** An in-memory client acting as `id`. */
  client(id: Identity): Promise<Client>;
  close(): Promise<void>;
}

export async function startTestServer(
  opts: { dir?: string; config?: Config; stages?: Partial<StageFns>; extra?: Record<string, unknown> } = {},
): Promise<TestServer> {
  const dir = opts.dir ?? tempDir();
  const config = opts.config ?? testConfig(dir, opts.extra);
  const ctx = new ServerContext({ config, stages: opts.stages ?? quickStages(), schedule: false });
  await ctx.start();
  const clients: Client[] = [];
  return {
    dir,
    config,
    ctx,
    async client(id) {
      const server = createServer(ctx, { identity: id });
      const [a, b] = InMemoryTransport.createLinkedPair();
      await server.connect(b);
      const c = new Client({ name: "test", version: "0" });
      await c.connect(a);
      clients.push(c);
      return c;
    },
    async close() {
      for (const c of clients) await c.close().catch(() => undefined);
      await ctx.stop(10_000);
    },
  };
}

/** The text of a tool result. */
export function textOf(r: unknown): string {
  const c = (r as CallToolResult).content ?? [];
  return c.map((x) => (x.type === "text" ? x.text : "")).join("\n");
}

export async function call(c: Client, name: string, args: Record<string, unknown> = {}) {
  return (await c.callTool({ name, arguments: args })) as CallToolResult;
}

/** Every file under a directory with its sha256 (the store's state, for "nothing changed" checks). */
export function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string, rel: string) => {
    let names: string[];
    try {
      names = readdirSync(d);
    } catch {
      return;
    }
    for (const n of names.sort()) {
      const p = join(d, n);
      const r = rel ? `${rel}/${n}` : n;
      if (statSync(p).isDirectory()) walk(p, r);
      else out[r] = createHash("sha256").update(readFileSync(p)).digest("hex");
    }
  };
  walk(dir, "");
  return out;
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** A `trm-forge serve --http` process of the built CLI. */
export interface ServerProcess {
  child: ChildProcess;
  url: string;
  stderr: () => string;
  exit: Promise<number | null>;
}

/** Starts `node dist/cli.js -c <config> serve --http --port 0` and resolves once it listens. */
export async function startServerProcess(configPath: string): Promise<ServerProcess> {
  const child = spawn(
    process.execPath,
    [resolve("dist/cli.js"), "-c", configPath, "--log-level", "debug", "serve", "--http", "--port", "0"],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let err = "";
  child.stderr!.on("data", (d) => {
    err += d;
  });
  const exit = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
  const url = await new Promise<string>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`server did not start:\n${err.slice(-2000)}`)), 120_000);
    const look = () => {
      const m = /MCP over Streamable HTTP at (\S+)/.exec(err);
      if (m) {
        clearTimeout(timer);
        res(m[1]);
      }
    };
    child.stderr!.on("data", look);
    void exit.then((code) => rej(new Error(`server exited with ${code}:\n${err.slice(-2000)}`)));
  });
  return { child, url, stderr: () => err, exit };
}

/** An MCP client over Streamable HTTP with a bearer token. */
export async function connectHttp(url: string, token: string): Promise<Client> {
  const client = new Client({ name: "test", version: "0" });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(url), {
      requestInit: { headers: { Authorization: `Bearer ${token}` } },
    }),
  );
  return client;
}
