// `npm run bench -- serve`: the served TRM at the demo config (or an agent's real champion with
// --config/--agent): latency of one prediction (p50/p99), throughput with 1, 8 and 32 concurrent
// callers with and without dynamic batching, supervision steps used, RSS; and the raw inference
// rate of one supervision step at batch 32 against the PyTorch reference (`ref_trm.py --bench`,
// same config and batch) when python3 and the reference are found.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as tf from "@tensorflow/tfjs-core";
import { loadConfig, parseConfig } from "../config/index.js";
import type { Config } from "../config/schema.js";
import { UsageError } from "../errors.js";
import { initBackend } from "../model/backend.js";
import type { TRMConfig } from "../model/config.js";
import { TRM } from "../model/trm.js";
import { ModelRegistry } from "../pipeline/deploy/registry.js";
import { ModelServer } from "../serve/index.js";
import { FsStore, type ObjectStore, openStore } from "../store/index.js";
import { eachArg } from "./args.js";
import { registerRandomChampion, SERVICES } from "./champion.js";

const LEVELS = ["ERROR", "WARN", "INFO", "DEBUG"];
const MESSAGES = [
  "connection refused to db:5432 after 3 retries",
  "GET /api/v1/orders/8812 200 14ms",
  "payment declined for order 77123 (card expired)",
  "cache miss ratio 0.42 above threshold",
  "user 1882 logged in from 10.2.0.17",
  "timeout waiting for upstream checkout after 5000ms",
  "queue depth 1204 exceeds 1000",
  "TLS handshake failed: certificate has expired",
];

interface Options {
  durationMs: number;
  requests: number;
  ref: boolean;
  configPath?: string;
  agent?: string;
}

function parseArgs(args: string[]): Options {
  const o: Options = { durationMs: 3000, requests: 100, ref: true };
  eachArg(args, (a, next) => {
    if (a === "--duration-ms") o.durationMs = Number(next());
    else if (a === "--requests") o.requests = Number(next());
    else if (a === "--no-ref") o.ref = false;
    else if (a === "--config") o.configPath = next();
    else if (a === "--agent") o.agent = next();
    else
      throw new UsageError(
        `serve bench: unknown option ${a} (--duration-ms, --requests, --no-ref, --config, --agent)`,
      );
  });
  if (Boolean(o.configPath) !== Boolean(o.agent)) throw new UsageError("--config and --agent go together");
  return o;
}

function line(i: number): string {
  return `${LEVELS[i % LEVELS.length]} [${SERVICES[(i * 7) % SERVICES.length]}] ${MESSAGES[(i * 3) % MESSAGES.length]}`;
}

function pct(sorted: number[], q: number): number {
  if (!sorted.length) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

const round = (x: number, d = 2) => Math.round(x * 10 ** d) / 10 ** d;

/** A demo-preset model with a task vocabulary, registered as champion of "bench" in a temp store. */
async function demoChampion(
  config: Config,
  store: ObjectStore,
): Promise<{ agent: string; cfg: TRMConfig; trained: false }> {
  const { cfg } = await registerRandomChampion(new ModelRegistry(store), "bench", config, { preset: "demo" });
  return { agent: "bench", cfg, trained: false };
}

async function withServer<T>(
  base: Config,
  store: ObjectStore,
  agent: string,
  serve: Partial<Config["serve"]>,
  fn: (s: ModelServer) => Promise<T>,
): Promise<T> {
  const config: Config = { ...base, serve: { ...base.serve, shadow_fraction: 0, ...serve } };
  const server = new ModelServer({ config, store, agents: [agent] });
  await server.start();
  try {
    if (!server.status()[0].champion) throw new Error(`agent ${agent} has no champion loaded`);
    return await fn(server);
  } finally {
    await server.stop();
  }
}

async function throughput(server: ModelServer, agent: string, callers: number, durationMs: number) {
  const model = server.model(agent)!;
  const batchesBefore = model.batcher.sizes.length;
  let done = 0;
  let steps = 0;
  const end = performance.now() + durationMs;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: callers }, async (_, c) => {
      // At least three rounds per caller, so even 32 callers measure more than one batch.
      for (let i = c, k = 0; k < 3 || performance.now() < end; i += callers, k++) {
        const r = await server.predict(agent, "log_triage", line(i));
        done++;
        steps += r.steps;
      }
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  const sizes = model.batcher.sizes.slice(batchesBefore);
  return {
    callers,
    predictions: done,
    samples_per_s: round(done / secs),
    mean_batch: round(sizes.reduce((a, b) => a + b, 0) / Math.max(1, sizes.length)),
    mean_steps: round(steps / Math.max(1, done)),
  };
}

/** One supervision step at batch B through the TRM itself: the number ref_trm.py --bench reports. */
function rawInference(cfg: TRMConfig, batch: number, iters: number): number {
  const model = TRM.init(cfg, 3);
  const tokens = tf.tensor2d(
    Int32Array.from({ length: batch * cfg.seq_len }, (_, i) => 1 + (i % (cfg.vocab_size - 1))),
    [batch, cfg.seq_len],
    "int32",
  );
  const ids = Int32Array.from({ length: batch }, (_, i) => i % cfg.num_puzzle_identifiers);
  const rows = model.puzzleRows(ids);
  let { zH, zL } = model.initState(batch);
  const times: number[] = [];
  for (let i = 0; i < iters + 2; i++) {
    const t0 = performance.now();
    const out = model.step(model.weights, zH, zL, tokens, rows);
    out.logits.dataSync();
    const dt = performance.now() - t0;
    tf.dispose([zH, zL, out.logits, out.qHalt, out.qContinue]);
    zH = out.zH;
    zL = out.zL;
    if (i >= 2) times.push(dt);
  }
  tf.dispose([zH, zL, tokens]);
  rows?.dispose();
  model.dispose();
  times.sort((a, b) => a - b);
  return batch / (pct(times, 0.5) / 1000);
}

function findReference(): string | null {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [
    process.env.TRM_FORGE_REF,
    resolve(here, "../../../shared/reference/ref_trm.py"),
    resolve(process.cwd(), "../shared/reference/ref_trm.py"),
  ].filter((p): p is string => Boolean(p));
  return candidates.find((p) => existsSync(p)) ?? null;
}

function referenceInference(cfg: TRMConfig, batch: number): { samples_per_s: number | null; note: string } {
  const ref = findReference();
  if (!ref) return { samples_per_s: null, note: "ref_trm.py not found (set TRM_FORGE_REF)" };
  const args = [
    ref,
    "--bench",
    ...["--hidden", cfg.hidden_size, "--heads", cfg.num_heads, "--layers", cfg.num_layers],
    ...["--expansion", cfg.expansion, "--seq-len", cfg.seq_len, "--vocab", cfg.vocab_size],
    ...["--H", cfg.H_cycles, "--L", cfg.L_cycles, "--nsup", cfg.halt_max_steps],
    ...[
      "--puzzle-len",
      cfg.puzzle_emb_len,
      "--num-puzzles",
      cfg.num_puzzle_identifiers,
      "--pos",
      cfg.pos_encodings,
    ],
    ...["--batch", batch, "--threads", 2, "--warmup", 2, "--iters", 10],
  ].map(String);
  const py = existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
  const r = spawnSync(py, args, { encoding: "utf8", timeout: 600_000 });
  if (r.status !== 0)
    return {
      samples_per_s: null,
      note: `ref_trm.py failed: ${(r.stderr || String(r.error)).trim().slice(-300)}`,
    };
  const last = r.stdout.trim().split("\n").at(-1) ?? "";
  try {
    const j = JSON.parse(last) as { infer_samples_per_s: number };
    return { samples_per_s: j.infer_samples_per_s, note: `${py} ${args.slice(1).join(" ")}` };
  } catch {
    return { samples_per_s: null, note: "ref_trm.py printed no JSON summary" };
  }
}

export async function run(args: string[]): Promise<unknown> {
  const o = parseArgs(args);
  const dir = mkdtempSync(join(tmpdir(), "trm-bench-serve-"));
  let peakRss = process.memoryUsage().rss;
  const sampler = setInterval(() => {
    peakRss = Math.max(peakRss, process.memoryUsage().rss);
  }, 50);
  try {
    let config: Config;
    let store: ObjectStore;
    let agent: string;
    let trained: boolean;
    if (o.configPath && o.agent) {
      config = loadConfig({ path: o.configPath }).config;
      store = openStore(config);
      agent = o.agent;
      trained = true;
    } else {
      config = parseConfig({ data_dir: dir, model: { preset: "demo" } });
      store = new FsStore(join(dir, "store"));
      agent = (await demoChampion(config, store)).agent;
      trained = false;
    }
    const backend = await initBackend(config.model.backend);
    process.stderr.write(`serve bench: backend ${backend.backend}, agent ${agent}\n`);

    const latency = async (serve: Partial<Config["serve"]>) =>
      withServer(config, store, agent, serve, async (server) => {
        for (let i = 0; i < 5; i++) await server.predict(agent, "log_triage", line(i));
        const ms: number[] = [];
        for (let i = 0; i < o.requests; i++)
          ms.push((await server.predict(agent, "log_triage", line(i))).latency_ms);
        ms.sort((a, b) => a - b);
        return { requests: ms.length, p50_ms: round(pct(ms, 0.5)), p99_ms: round(pct(ms, 0.99)) };
      });
    // The first server of a process pays for kernel set-up and JIT; keep that out of the numbers.
    process.stderr.write("serve bench: warm-up\n");
    await withServer(config, store, agent, {}, async (server) => {
      for (let i = 0; i < 10; i++) await server.predict(agent, "log_triage", line(i));
    });
    process.stderr.write("serve bench: latency\n");
    const unbatched = { max_batch_size: 1, max_wait_ms: 0 };
    const batched = { max_batch_size: 32, max_wait_ms: config.serve.max_wait_ms };
    const single = { no_batching: await latency(unbatched), batching: await latency(batched) };

    const tput: Record<string, unknown[]> = { no_batching: [], batching: [] };
    let cfg: TRMConfig | null = null;
    for (const [name, serve] of [
      ["no_batching", unbatched],
      ["batching", batched],
    ] as const) {
      await withServer(config, store, agent, serve, async (server) => {
        cfg = server.model(agent)!.cfg;
        for (const callers of [1, 8, 32]) {
          process.stderr.write(`serve bench: ${name}, ${callers} callers\n`);
          tput[name].push(await throughput(server, agent, callers, o.durationMs));
        }
      });
    }
    const steps = (tput.batching as { mean_steps: number }[]).map((t) => t.mean_steps);

    const modelCfg = cfg as unknown as TRMConfig;
    process.stderr.write("serve bench: one supervision step at batch 32\n");
    const ts = rawInference(modelCfg, 32, 10);
    const ref = o.ref ? referenceInference(modelCfg, 32) : { samples_per_s: null, note: "--no-ref" };
    return {
      backend: backend.backend,
      model: {
        agent,
        trained,
        note: trained
          ? undefined
          : "random-init demo model: its halting head starts at q_halt < 0, so every prediction uses N_sup steps",
        hidden: modelCfg.hidden_size,
        heads: modelCfg.num_heads,
        layers: modelCfg.num_layers,
        H_cycles: modelCfg.H_cycles,
        L_cycles: modelCfg.L_cycles,
        N_sup: modelCfg.halt_max_steps,
        seq_len: modelCfg.seq_len,
        vocab: modelCfg.vocab_size,
      },
      single_prediction_latency: single,
      throughput: tput,
      mean_steps_used: round(steps.reduce((a, b) => a + b, 0) / Math.max(1, steps.length)),
      inference_one_step_batch32: {
        trm_forge_samples_per_s: round(ts),
        reference_samples_per_s: ref.samples_per_s,
        ratio: ref.samples_per_s ? round(ts / ref.samples_per_s, 3) : null,
        reference: ref.note,
      },
      peak_rss_mb: round(peakRss / 2 ** 20, 1),
    };
  } finally {
    clearInterval(sampler);
    rmSync(dir, { recursive: true, force: true });
  }
}
