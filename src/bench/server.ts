// `npm run bench -- server`: MCP sessions over Streamable HTTP (default 50, each with a bearer
// token) calling models_list and model_predict against a served model (random weights, the
// small preset unless --preset), for a fixed time. Reports p50/p99 per tool and the errors, next to the
// same work done by direct function calls at the same concurrency, and the difference: what the
// MCP layer (HTTP, sessions, auth, validation, JSON) adds. The clients run in a worker thread, so
// they have their own event loop but share the machine's cores with the server.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import * as tf from "@tensorflow/tfjs-core";
import { parseConfig } from "../config/index.js";
import { UsageError } from "../errors.js";
import { ServerContext } from "../server/context.js";
import { startHttpServer } from "../server/http.js";
import { FsStore } from "../store/index.js";
import { registerRandomChampion } from "./champion.js";
import { type ClientJob, LINES, type LoadResult, load, type Work } from "./server-load.js";

const AGENT = "bench";
const TOKEN_ENV = "TRM_FORGE_BENCH_SERVER_TOKEN";
const BUDGET_MS = 5;

interface Options {
  sessions: number;
  durationMs: number;
  preset: "small" | "demo" | "7m";
}

function parseArgs(args: string[]): Options {
  const o: Options = { sessions: 50, durationMs: 5000, preset: "small" };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const next = () => {
      const v = args[++i];
      if (v === undefined) throw new UsageError(`${a} needs a value`);
      return v;
    };
    if (a === "--sessions") o.sessions = Number(next());
    else if (a === "--duration-ms") o.durationMs = Number(next());
    else if (a === "--preset") o.preset = next() as Options["preset"];
    else throw new UsageError(`server bench: unknown option ${a} (--sessions, --duration-ms, --preset)`);
  }
  if (!Number.isInteger(o.sessions) || o.sessions < 1)
    throw new UsageError("--sessions must be a positive integer");
  if (!["small", "demo", "7m"].includes(o.preset)) throw new UsageError("--preset is small, demo or 7m");
  return o;
}

const round = (x: number, d = 2) => Math.round(x * 10 ** d) / 10 ** d;

/** Runs the MCP clients in a worker thread and returns each phase's result. */
function runClients(job: ClientJob): Promise<LoadResult[]> {
  return new Promise((resolve, reject) => {
    const w = new Worker(new URL("./server-load.js", import.meta.url), {
      workerData: { benchServerClients: job },
    });
    w.once("message", (m: { results?: LoadResult[]; error?: string }) => {
      void w.terminate();
      if (m.results) resolve(m.results);
      else reject(new Error(`bench clients failed: ${m.error}`));
    });
    w.once("error", reject);
  });
}

export async function run(args: string[]): Promise<unknown> {
  const o = parseArgs(args);
  const dir = mkdtempSync(join(tmpdir(), "trm-bench-server-"));
  const token = `bench-${Math.random().toString(36).slice(2)}-${Date.now().toString(36)}-token`;
  const config = parseConfig({
    data_dir: dir,
    log_level: "warn",
    model: { preset: o.preset },
    agents: { [AGENT]: {} },
    schedule: { enabled: false },
    serve: { shadow_fraction: 0 },
    server: { max_sessions: Math.max(256, o.sessions * 2) },
    tokens: [{ identity: AGENT, scopes: ["read"], token: { env: TOKEN_ENV } }],
  });
  const ctx = new ServerContext({
    config,
    store: new FsStore(join(dir, "store")),
    schedule: false,
    env: { ...process.env, [TOKEN_ENV]: token },
  });
  try {
    const { version } = await registerRandomChampion(ctx.registry, AGENT, config, config.model);
    await ctx.start();
    const http = await startHttpServer(ctx, { host: "127.0.0.1", port: 0 });
    process.stderr.write(
      `server bench: ${o.preset} champion ${version}, ${o.sessions} sessions at ${http.url}\n`,
    );

    // What the tools do, without MCP.
    const direct: Record<string, Work> = {
      models_list: async () => {
        await ctx.registry.read(AGENT);
        ctx.models.status();
        return true;
      },
      model_predict: async (i) => {
        await ctx.models.predict(AGENT, "log_triage", LINES[i % LINES.length]);
        return true;
      },
    };
    for (let i = 0; i < 10; i++) await direct[i % 2 ? "model_predict" : "models_list"](i, 0);
    const short = Math.min(o.durationMs, 3000);
    process.stderr.write("server bench: direct calls\n");
    const directResults = [
      await load(1, short, { models_list: direct.models_list }),
      await load(o.sessions, o.durationMs, { models_list: direct.models_list }),
      await load(o.sessions, o.durationMs, direct),
    ];
    process.stderr.write("server bench: the same over MCP\n");
    const mcpResults = await runClients({
      url: http.url,
      token,
      sessions: o.sessions,
      phases: [
        { callers: 1, durationMs: short, tools: ["models_list"] },
        { callers: o.sessions, durationMs: o.durationMs, tools: ["models_list"] },
        { callers: o.sessions, durationMs: o.durationMs, tools: ["models_list", "model_predict"] },
      ],
    });
    await http.close(5000);

    const overhead = (m: LoadResult, d: LoadResult) =>
      Object.fromEntries(
        Object.keys(m.per_tool).map((k) => [k, round(m.per_tool[k].p50_ms - d.per_tool[k].p50_ms)]),
      );
    const [d1, dN, dMix] = directResults;
    const [m1, mN, mMix] = mcpResults;
    const readOverhead = overhead(m1, d1).models_list;
    return {
      preset: o.preset,
      backend: tf.getBackend(),
      sessions: o.sessions,
      duration_ms: o.durationMs,
      models_list_one_caller: {
        direct: d1.per_tool.models_list,
        mcp: m1.per_tool.models_list,
        p50_overhead_ms: readOverhead,
      },
      models_list_concurrent: {
        direct: dN.per_tool.models_list,
        mcp: mN.per_tool.models_list,
        p50_overhead_ms: overhead(mN, dN).models_list,
        calls_per_s: { direct: dN.calls_per_s, mcp: mN.calls_per_s },
      },
      mixed_concurrent: {
        direct: dMix.per_tool,
        mcp: mMix.per_tool,
        p50_overhead_ms: overhead(mMix, dMix),
        calls_per_s: { direct: dMix.calls_per_s, mcp: mMix.calls_per_s },
      },
      errors: m1.errors + mN.errors + mMix.errors,
      read_tool_budget_ms: BUDGET_MS,
      read_tool_within_budget: readOverhead <= BUDGET_MS,
      note: "clients run in a worker thread of this process and share its cores; predictions run on the server's event loop, so under the mixed load models_list waits behind them, directly or over MCP",
    };
  } finally {
    await ctx.stop(5000);
    rmSync(dir, { recursive: true, force: true });
  }
}
