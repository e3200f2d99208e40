// `npm run bench -- server`: MCP sessions over Streamable HTTP (default 50, each with a bearer
// token) calling models_list and model_predict against a served model (random weights, the
// small preset unless --preset), for a fixed time. Then how the server answers while it works:
// p50/p99 of /healthz and models_list from one more session, under 50 prediction callers and
// during an in-process training (the 7m preset unless --train-preset; it trains in a child
// process, predictions run in the inference worker). Reports p50/p99 per tool and the errors, next to the
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
import { agentConfigFor, createSimulator } from "../simulator/index.js";
import { FsStore } from "../store/index.js";
import { eachArg } from "./args.js";
import { registerRandomChampion } from "./champion.js";
import { type ClientJob, LINES, type LoadResult, load, type Work } from "./server-load.js";

const AGENT = "bench";
const TOKEN_ENV = "TRM_FORGE_BENCH_SERVER_TOKEN";
const BUDGET_MS = 5;

interface Options {
  sessions: number;
  durationMs: number;
  preset: "small" | "demo" | "7m";
  trainPreset: "small" | "demo" | "7m";
  trainMs: number;
}

function parseArgs(args: string[]): Options {
  const o: Options = { sessions: 50, durationMs: 5000, preset: "small", trainPreset: "7m", trainMs: 20_000 };
  eachArg(args, (a, next) => {
    if (a === "--sessions") o.sessions = Number(next());
    else if (a === "--duration-ms") o.durationMs = Number(next());
    else if (a === "--preset") o.preset = next() as Options["preset"];
    else if (a === "--train-preset") o.trainPreset = next() as Options["preset"];
    else if (a === "--train-ms") o.trainMs = Number(next());
    else
      throw new UsageError(
        `server bench: unknown option ${a} (--sessions, --duration-ms, --preset, --train-preset, --train-ms)`,
      );
  });
  if (!Number.isInteger(o.sessions) || o.sessions < 1)
    throw new UsageError("--sessions must be a positive integer");
  for (const p of [o.preset, o.trainPreset])
    if (!["small", "demo", "7m"].includes(p))
      throw new UsageError("--preset and --train-preset are small, demo or 7m");
  if (!(o.trainMs >= 1000)) throw new UsageError("--train-ms must be at least 1000");
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
  const sim = await createSimulator({ seed: 3, days: 3, logsPerDay: 600, tracesPerDay: 250 });
  const few = { max_examples: 200, min_examples: 1 };
  const config = parseConfig({
    data_dir: dir,
    log_level: "warn",
    // The model trained; the served champion has its own (--preset).
    model: { preset: o.trainPreset },
    agents: { [AGENT]: agentConfigFor(sim.url, { lookback: "3d" }) },
    dataset: {
      window: "3d",
      seq_len: 64,
      tasks: {
        code_infill: { enabled: false },
        log_triage: few,
        metric_forecast: { ...few, points: 8, step: "15m", stride: 2 },
        trace_outcome: few,
      },
    },
    // Long enough to outlast the measurement: the run is cancelled after it.
    train: {
      max_steps: 100_000,
      batch_size: 8,
      log_interval: 1,
      eval_interval: 100_000,
      checkpoint_interval: 100_000,
    },
    schedule: { enabled: false },
    serve: { shadow_fraction: 0 },
    server: {
      max_sessions: Math.max(256, o.sessions * 2),
      max_sessions_per_identity: Math.min(1024, o.sessions + 8),
    },
    tokens: [{ identity: AGENT, scopes: ["read"], token: { env: TOKEN_ENV } }],
  });
  const ctx = new ServerContext({
    config,
    store: new FsStore(join(dir, "store")),
    schedule: false,
    env: { ...process.env, [TOKEN_ENV]: token },
  });
  try {
    const { version } = await registerRandomChampion(ctx.registry, AGENT, config, { preset: o.preset });
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
      sessions: o.sessions + 1,
      phases: [
        { callers: 1, durationMs: short, tools: ["models_list"] },
        { callers: o.sessions, durationMs: o.durationMs, tools: ["models_list"] },
        { callers: o.sessions, durationMs: o.durationMs, tools: ["models_list", "model_predict"] },
        { callers: o.sessions, durationMs: o.durationMs, tools: ["model_predict"], probe: true },
      ],
    });
    const training = await duringTraining(ctx, http.url, token, o);
    await http.close(5000);

    const overhead = (m: LoadResult, d: LoadResult) =>
      Object.fromEntries(
        Object.keys(m.per_tool).map((k) => [k, round(m.per_tool[k].p50_ms - d.per_tool[k].p50_ms)]),
      );
    const [d1, dN, dMix] = directResults;
    const [m1, mN, mMix, mPredict] = mcpResults;
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
      responsiveness: {
        targets_p99_ms: { during_training: TRAINING_P99_MS, under_prediction_callers: PREDICTING_P99_MS },
        under_prediction_callers: {
          callers: o.sessions,
          model_predict: mPredict.per_tool.model_predict,
          ...mPredict.probe!.per_tool,
          errors: mPredict.errors + mPredict.probe!.errors,
          within_target: withinTarget(mPredict.probe!, PREDICTING_P99_MS),
        },
        during_training: training,
      },
      errors: m1.errors + mN.errors + mMix.errors,
      read_tool_budget_ms: BUDGET_MS,
      read_tool_within_budget: readOverhead <= BUDGET_MS,
      note: "clients run in a worker thread of this process and share its cores; predictions run in the server's inference worker thread and training in a child process, so neither holds up the event loop",
    };
  } finally {
    await ctx.stop(30_000);
    await sim.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const TRAINING_P99_MS = 100;
const PREDICTING_P99_MS = 250;

function withinTarget(probe: LoadResult, p99: number): boolean {
  return Object.values(probe.per_tool).every((t) => t.calls > 0 && t.p99_ms <= p99) && probe.errors === 0;
}

/**
 * Collects and builds a dataset, starts a training through the server's pipeline (the in-process
 * runner: a child process), and once it steps, probes /healthz and models_list for o.trainMs.
 */
async function duringTraining(ctx: ServerContext, url: string, token: string, o: Options) {
  process.stderr.write("server bench: collect and build a dataset for the training\n");
  const prep = await ctx.pipeline.startRun({ agent: AGENT, stages: ["collect", "build"] });
  const built = await prep.done;
  if (built.status !== "succeeded") throw new Error(`bench dataset: the run ${built.status}: ${built.error}`);
  let stepped: () => void = () => {};
  const firstStep = new Promise<void>((r) => (stepped = r));
  let steps = 0;
  const started = await ctx.pipeline.startRun({
    agent: AGENT,
    stages: ["train"],
    fromScratch: true,
    onEvent: (e) => {
      if (e.type === "progress" && e.progress.stage === "train" && (e.progress.step ?? 0) >= 1) {
        steps = e.progress.step ?? steps;
        stepped();
      }
    },
  });
  process.stderr.write(
    `server bench: ${o.trainPreset} training (run ${started.runId}), waiting for its first step\n`,
  );
  const t0 = performance.now();
  const ended = await Promise.race([firstStep.then(() => null), started.done]);
  if (ended) throw new Error(`bench training ended before its first step: ${ended.status} ${ended.error}`);
  const firstStepS = (performance.now() - t0) / 1000;
  const stepsBefore = steps;
  process.stderr.write(`server bench: probing for ${o.trainMs} ms while it trains\n`);
  const [r] = await runClients({
    url,
    token,
    sessions: 1,
    phases: [{ callers: 0, durationMs: o.trainMs, tools: [], probe: true }],
  });
  const stepsDuring = steps - stepsBefore;
  await ctx.pipeline.cancel(started.runId);
  const end = await started.done;
  const probe = r.probe!;
  return {
    preset: o.trainPreset,
    runner: "in-process (child process)",
    seconds_to_first_step: round(firstStepS, 1),
    steps_while_probing: stepsDuring,
    probe_ms: o.trainMs,
    ...probe.per_tool,
    errors: probe.errors,
    run_after_cancel: end.status,
    within_target: withinTarget(probe, TRAINING_P99_MS),
  };
}
