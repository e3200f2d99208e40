// `trm-forge serve --stdio`, spawned from the built CLI (npm test builds dist first): only
// protocol on stdout, the SDK client and the official MCP Inspector (CLI mode) as clients, the
// process's identity from --as, and answers still delivered when the client closes stdin early.
import { execFile, spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { ModelRegistry } from "../../src/pipeline/deploy/registry.js";
import { FsStore } from "../../src/store/index.js";
import { BRUNO, call, registerTiny, removeDir, SRE, tempDir, textOf } from "./helpers.js";

const CLI = resolve("dist/cli.js");
const INSPECTOR = resolve("node_modules/@modelcontextprotocol/inspector/cli/build/cli.js");
const run = promisify(execFile);

describe("serve --stdio", () => {
  const dir = tempDir("trm-stdio-");
  const configPath = join(dir, "trm-forge.yaml");
  let champion: string;

  beforeAll(async () => {
    writeFileSync(
      configPath,
      stringify({
        data_dir: join(dir, "data"),
        model: { backend: "cpu" },
        agents: { [SRE]: {}, [BRUNO]: {} },
        schedule: { enabled: false },
        serve: { shadow_fraction: 0 },
      }),
    );
    const registry = new ModelRegistry(new FsStore(join(dir, "data", "store")), {
      dataDir: join(dir, "data"),
    });
    champion = await registerTiny(registry, SRE);
    await registry.promote(SRE, champion, { actor: "test", reason: "setup" });
  });
  afterAll(() => removeDir(dir));

  it("writes nothing but JSON-RPC on stdout, and answers what was asked before stdin closed", async () => {
    const proc = spawn(
      process.execPath,
      [CLI, "-c", configPath, "--log-level", "debug", "serve", "--stdio", "--as", SRE],
      {
        stdio: ["pipe", "pipe", "pipe"],
      },
    );
    let stdout = "";
    let stderr = "";
    proc.stdout.on("data", (d) => {
      stdout += d;
    });
    proc.stderr.on("data", (d) => {
      stderr += d;
    });
    const msgs = [
      {
        jsonrpc: "2.0",
        id: 1,
        method: "initialize",
        params: {
          protocolVersion: "2025-11-25",
          capabilities: {},
          clientInfo: { name: "raw", version: "0" },
        },
      },
      { jsonrpc: "2.0", method: "notifications/initialized" },
      {
        jsonrpc: "2.0",
        id: 2,
        method: "tools/call",
        params: { name: "model_predict", arguments: { task: "log_triage", input: "ERROR db down" } },
      },
      { jsonrpc: "2.0", id: 3, method: "tools/call", params: { name: "models_list", arguments: {} } },
    ];
    proc.stdin.end(`${msgs.map((m) => JSON.stringify(m)).join("\n")}\n`);
    const code = await new Promise<number | null>((r) => proc.on("exit", r));
    expect(code, stderr).toBe(0);
    const lines = stdout.split("\n").filter(Boolean);
    const parsed = lines.map((l) => JSON.parse(l));
    expect(parsed.every((m) => m.jsonrpc === "2.0")).toBe(true);
    expect(parsed.map((m) => m.id).sort()).toEqual([1, 2, 3]);
    const predict = parsed.find((m) => m.id === 2).result;
    expect(predict.structuredContent.version).toBe(champion);
    expect(parsed.find((m) => m.id === 3).result.structuredContent.agent).toBe(SRE);
    // The logs went to stderr (pino at debug level, tfjs' notice), none of it to stdout.
    expect(stderr).toMatch(/"msg":"server stopped"/);
  });

  it("serves the SDK client as the --as identity", async () => {
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [CLI, "-c", configPath, "serve", "--stdio", "--as", SRE, "--scopes", "read"],
      stderr: "pipe",
    });
    const errors: Error[] = [];
    const client = new Client({ name: "stdio-test", version: "0" });
    client.onerror = (e) => errors.push(e);
    await client.connect(transport);
    expect((await client.listTools()).tools).toHaveLength(18);
    const own = await call(client, "models_list", {});
    expect((own.structuredContent as any).aliases.champion).toBe(champion);
    expect(textOf(await call(client, "models_list", { agent: BRUNO }))).toMatch(
      /missing permission: agent:agent-bruno/,
    );
    expect(textOf(await call(client, "model_rollback", { reason: "no scope" }))).toMatch(
      /missing permission: scope:promote/,
    );
    await client.close();
    expect(errors).toEqual([]);
  });

  it("works with the official MCP Inspector in CLI mode: lists the tools and calls models_list", async () => {
    const env = { ...process.env, TRM_FORGE_LOG_LEVEL: "warn" };
    const target = [
      "-e",
      `TRM_FORGE_CONFIG=${configPath}`,
      process.execPath,
      CLI,
      "serve",
      "--stdio",
      "--as",
      SRE,
    ];
    const list = await run(process.execPath, [INSPECTOR, "--cli", ...target, "--method", "tools/list"], {
      env,
      timeout: 120_000,
    });
    const tools = JSON.parse(list.stdout).tools as {
      name: string;
      inputSchema: unknown;
      annotations: unknown;
    }[];
    expect(tools).toHaveLength(18);
    expect(tools.map((t) => t.name)).toContain("models_list");
    const res = await run(
      process.execPath,
      [
        INSPECTOR,
        "--cli",
        ...target,
        "--method",
        "tools/call",
        "--tool-name",
        "models_list",
        "--tool-arg",
        `agent=${SRE}`,
      ],
      { env, timeout: 120_000 },
    );
    const out = JSON.parse(res.stdout);
    expect(out.isError).toBeFalsy();
    expect(out.structuredContent.agent).toBe(SRE);
    expect(out.structuredContent.aliases.champion).toBe(champion);
    expect(out.content[0].text).toContain(`champion ${champion}`);
  });

  it("refuses an --as that is neither admin nor a configured agent", async () => {
    const r = await run(process.execPath, [
      CLI,
      "-c",
      configPath,
      "serve",
      "--stdio",
      "--as",
      "agent-ghost",
    ]).catch((e) => e);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--as: "agent-ghost" is neither admin nor a configured agent/);
    expect(r.stdout).toBe("");
  });
});
