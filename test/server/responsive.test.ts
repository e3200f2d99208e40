// A server that trains stays a server: against the built CLI (`trm-forge serve --http`, the
// in-process runner, the demo preset), /healthz answers within a second at every probe and a
// read tool within a second while a training runs, because the train stage runs in a child
// process. A crash of that child fails the run with a clear error, the server goes on, and the
// run resumes from its checkpoint; SIGTERM during a training stops the child at a checkpoint and
// the server exits cleanly, leaving no trainer behind. A model_evaluate job runs in that child
// process too, with the same answers, cancel and crash.
import { spawn } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { initBackend } from "../../src/model/backend.js";
import { resolveModelConfig } from "../../src/model/config.js";
import { Trainer } from "../../src/model/trainer.js";
import { openDataset } from "../../src/pipeline/dataset/index.js";
import { ModelRegistry } from "../../src/pipeline/deploy/registry.js";
import { agentConfigFor, createSimulator, type Simulator } from "../../src/simulator/index.js";
import { FsStore } from "../../src/store/index.js";
import {
  BRUNO,
  call,
  connectHttp,
  removeDir,
  type ServerProcess,
  SRE,
  startServerProcess,
  TOKENS,
  tempDir,
  textOf,
  tokenSection,
} from "./helpers.js";

interface Probes {
  health: number[];
  /** When each /healthz probe was sent (epoch ms), beside its time in `health`. */
  healthAt: number[];
  reads: number[];
  failures: string[];
  stop: () => Promise<void>;
}

/** /healthz every 200 ms and models_list back to back, each timed, until stopped. */
function probe(server: ServerProcess, reader: Client): Probes {
  const p: Probes = { health: [], healthAt: [], reads: [], failures: [], stop: async () => {} };
  let running = true;
  const healthz = server.url.replace(/\/mcp$/, "/healthz");
  const health = (async () => {
    while (running) {
      const t0 = performance.now();
      p.healthAt.push(Date.now());
      try {
        const r = await fetch(healthz, { signal: AbortSignal.timeout(10_000) });
        await r.text();
        if (!r.ok) p.failures.push(`/healthz ${r.status}`);
      } catch (err) {
        p.failures.push(`/healthz ${(err as Error).message}`);
      }
      p.health.push(performance.now() - t0);
      await new Promise((r) => setTimeout(r, 200));
    }
  })();
  const reads = (async () => {
    while (running) {
      const t0 = performance.now();
      try {
        const r = await call(reader, "models_list", {});
        if (r.isError) p.failures.push(`models_list: ${textOf(r)}`);
      } catch (err) {
        p.failures.push(`models_list: ${(err as Error).message}`);
      }
      p.reads.push(performance.now() - t0);
      await new Promise((r) => setTimeout(r, 300));
    }
  })();
  p.stop = async () => {
    running = false;
    await Promise.all([health, reads]);
  };
  return p;
}

async function status(client: Client, jobId: string): Promise<any> {
  const r = await call(client, "job_status", { job_id: jobId, wait_s: 1 });
  expect(r.isError, textOf(r)).toBeFalsy();
  return r.structuredContent;
}

/** Polls job_status until `until` holds or the job ends. */
async function follow(client: Client, jobId: string, until: (v: any) => boolean): Promise<any> {
  const end = Date.now() + 300_000;
  for (;;) {
    const v = await status(client, jobId);
    if (v.status !== "running" || until(v) || Date.now() > end) return v;
  }
}

/** The training child's pid, from the line the train stage logs when it starts it. */
async function childPid(client: Client, jobId: string): Promise<number> {
  const r = await call(client, "job_logs", { job_id: jobId, stage: "train", limit: 200 });
  const m = /training in a child process \(pid (\d+)\)/.exec(textOf(r));
  expect(m, textOf(r)).not.toBeNull();
  return Number(m![1]);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The server's config (the in-process runner, the demo preset) in dir/trm-forge.yaml; data under dir/data. */
function writeServerConfig(dir: string, simUrl: string): void {
  const few = { max_examples: 200, min_examples: 1 };
  writeFileSync(
    join(dir, "trm-forge.yaml"),
    stringify({
      data_dir: join(dir, "data"),
      model: { preset: "demo", backend: "auto" },
      agents: { [SRE]: agentConfigFor(simUrl, { lookback: "3d" }), [BRUNO]: {} },
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
      train: {
        max_steps: 30,
        batch_size: 16,
        eval_interval: 15,
        checkpoint_interval: 5,
        log_interval: 1,
        eval_examples: 64,
        warmup_steps: 2,
      },
      runs: { retries: 0 },
      schedule: { enabled: false },
      serve: { shadow_fraction: 0 },
      server: { shutdown_grace: "60s" },
      tokens: tokenSection(dir),
    }),
  );
}

describe("the server answers while it trains", () => {
  const dir = tempDir("trm-responsive-");
  const configPath = join(dir, "trm-forge.yaml");
  const dataDir = join(dir, "data");
  let sim: Simulator;
  let server: ServerProcess | null = null;
  let crashedRun = "";

  beforeAll(async () => {
    sim = await createSimulator({ seed: 5, days: 3, logsPerDay: 600, tracesPerDay: 250 });
    writeServerConfig(dir, sim.url);
  });
  afterAll(async () => {
    if (server && server.child.exitCode === null) {
      server.child.kill("SIGKILL");
      await server.exit;
    }
    await sim?.close();
    removeDir(dir);
  });

  it("answers /healthz and models_list within 1 s during a training; a crashed trainer fails the run, not the server", {
    timeout: 600_000,
  }, async () => {
    server = await startServerProcess(configPath);
    const sre = await connectHttp(server.url, TOKENS.sre);
    const reader = await connectHttp(server.url, TOKENS.sreRead);
    const started = (await call(sre, "training_start", { stages: ["collect", "build", "train"] }))
      .structuredContent as any;
    expect(started.started).toBe(true);
    const jobId = started.job.job_id;
    crashedRun = jobId;

    const probes = probe(server, reader);
    const v = await follow(sre, jobId, (x) => x.stage === "train" && x.step >= 11);
    await probes.stop();
    expect(v.status, JSON.stringify(v)).toBe("running");
    // Progress crosses the process boundary: the step and the loss come from the child.
    expect(v.total_steps).toBe(30);
    expect(v.metrics.loss).toBeGreaterThan(0);
    expect(probes.failures).toEqual([]);
    expect(probes.health.length).toBeGreaterThan(5);
    expect(Math.max(...probes.health)).toBeLessThan(1000);
    expect(Math.max(...probes.reads)).toBeLessThan(1000);

    const pid = await childPid(sre, jobId);
    expect(pid).not.toBe(server.child.pid);
    process.kill(pid, "SIGKILL");
    const failed = await follow(sre, jobId, () => false);
    expect(failed.status).toBe("failed");
    expect(JSON.stringify(failed)).toMatch(/killed by SIGKILL/);
    const health = await fetch(server.url.replace(/\/mcp$/, "/healthz"));
    expect(health.status).toBe(200);
    expect(server.child.exitCode).toBeNull();
    const run = JSON.parse(readFileSync(join(dataDir, "store", "runs", SRE, jobId, "run.json"), "utf8"));
    expect(run.status).toBe("failed");
    expect(run.stages.find((s: any) => s.name === "train").error).toMatch(
      /training process \(pid \d+\) was killed by SIGKILL.*resume it/,
    );
    expect(existsSync(join(dataDir, "store", "runs", SRE, jobId, "checkpoints"))).toBe(true);
    await sre.close();
    await reader.close();
  });

  // Before another training: retention keeps the checkpoints of the newest failed run only.
  it("resumes the crashed run from its checkpoint, beside the running server", {
    timeout: 600_000,
  }, async () => {
    const out = await new Promise<{ code: number | null; text: string }>((res) => {
      const p = spawn(
        process.execPath,
        [resolve("dist/cli.js"), "-c", configPath, "run", "--agent", SRE, "--resume", crashedRun],
        { stdio: ["ignore", "pipe", "pipe"] },
      );
      let text = "";
      p.stdout!.on("data", (d) => (text += d));
      p.stderr!.on("data", (d) => (text += d));
      p.on("exit", (code) => res({ code, text }));
    });
    expect(out.code, out.text.slice(-2000)).toBe(0);
    const run = JSON.parse(readFileSync(join(dataDir, "store", "runs", SRE, crashedRun, "run.json"), "utf8"));
    expect(run.status).toBe("succeeded");
    const train = run.stages.find((s: any) => s.name === "train").output;
    expect(train.resumed_from_step).toBeGreaterThanOrEqual(5);
    expect(train.steps).toBe(30);
  });
  // Evaluation runs the candidate over the whole validation split in synchronous batches: on the
  // server's event loop a probe sent during it would wait for all of it.
  it("answers /healthz within 1 s during the evaluate stage, which runs in a child process too", {
    timeout: 600_000,
  }, async () => {
    const sre = await connectHttp(server!.url, TOKENS.sre);
    const reader = await connectHttp(server!.url, TOKENS.sreRead);
    const started = (await call(sre, "training_start", { stages: ["build", "train", "evaluate"] }))
      .structuredContent as any;
    expect(started.started).toBe(true);
    const jobId = started.job.job_id;
    const probes = probe(server!, reader);
    const v = await follow(sre, jobId, () => false);
    await probes.stop();
    expect(v.status, JSON.stringify(v)).toBe("succeeded");
    expect(probes.failures).toEqual([]);

    const run = JSON.parse(readFileSync(join(dataDir, "store", "runs", SRE, jobId, "run.json"), "utf8"));
    const ev = run.stages.find((s: any) => s.name === "evaluate");
    expect(ev.status).toBe("succeeded");
    const from = Date.parse(ev.started_at);
    const to = Date.parse(ev.ended_at);
    const during = probes.health.filter((_, i) => probes.healthAt[i] >= from && probes.healthAt[i] <= to);
    // Probes go out every 200 ms plus their own time: a blocked loop would let one through at most.
    expect(during.length, `evaluate took ${to - from} ms`).toBeGreaterThanOrEqual(3);
    expect(Math.max(...during)).toBeLessThan(1000);
    expect(Math.max(...probes.health)).toBeLessThan(1000);
    const logs = textOf(await call(sre, "job_logs", { job_id: jobId, stage: "evaluate", limit: 200 }));
    expect(logs).toMatch(/evaluation in a child process \(pid \d+\)/);
    // The score the child computed reaches this server's /metrics through the stage's output.
    const metrics = await (await fetch(server!.url.replace(/\/mcp$/, "/metrics"))).text();
    const task = Object.entries(ev.output.scores).find(([, x]) => typeof x === "number")?.[0];
    expect(task, JSON.stringify(ev.output)).toBeDefined();
    expect(metrics).toMatch(
      new RegExp(`trm_forge_validation_score\\{[^}]*task="${task}"[^}]*version="candidate"[^}]*\\} \\S+`),
    );
    await sre.close();
    await reader.close();
  });

  it("stops the trainer at a checkpoint on SIGTERM and exits cleanly", { timeout: 600_000 }, async () => {
    const sre = await connectHttp(server!.url, TOKENS.sre);
    const started = (await call(sre, "training_start", { stages: ["build", "train"] }))
      .structuredContent as any;
    expect(started.started).toBe(true);
    const jobId = started.job.job_id;
    const v = await follow(sre, jobId, (x) => x.stage === "train" && x.step >= 6);
    expect(v.status).toBe("running");
    const pid = await childPid(sre, jobId);
    await sre.close().catch(() => undefined);

    const t0 = Date.now();
    server!.child.kill("SIGTERM");
    expect(await server!.exit).toBe(0);
    expect(Date.now() - t0).toBeLessThan(60_000);
    expect(alive(pid)).toBe(false);
    const record = JSON.parse(readFileSync(join(dataDir, "store", "jobs", SRE, `${jobId}.json`), "utf8"));
    expect(record).toMatchObject({ status: "interrupted", kind: "training" });
    const run = JSON.parse(readFileSync(join(dataDir, "store", "runs", SRE, jobId, "run.json"), "utf8"));
    expect(run.stages.find((s: any) => s.name === "train").status).toBe("cancelled");
    expect(server!.stderr()).toMatch(/stopped at a checkpoint|training cancelled|cancelled/);
  });
});

// model_evaluate is a run of the evaluate stage alone: it runs in the same child process as the
// evaluate stage, so the server answers during it, and a cancel or a crash of that child ends the
// job, not the server. Its own server: it needs a dataset and two registered versions, no training.
describe("the server answers while it evaluates", () => {
  const dir = tempDir("trm-responsive-eval-");
  const dataDir = join(dir, "data");
  let sim: Simulator;
  let server: ServerProcess;

  beforeAll(async () => {
    sim = await createSimulator({ seed: 5, days: 3, logsPerDay: 600, tracesPerDay: 250 });
    writeServerConfig(dir, sim.url);
    server = await startServerProcess(join(dir, "trm-forge.yaml"));
    const sre = await connectHttp(server.url, TOKENS.sre);
    const built = (await call(sre, "training_start", { stages: ["collect", "build"] }))
      .structuredContent as any;
    expect((await follow(sre, built.job.job_id, () => false)).status).toBe("succeeded");
    await sre.close();
  }, 600_000);
  afterAll(async () => {
    if (server && server.child.exitCode === null) {
      server.child.kill("SIGKILL");
      await server.exit;
    }
    await sim?.close();
    removeDir(dir);
  });

  it("answers /healthz within 1 s during a model_evaluate job; cancel and a crashed child end the job, not the server", {
    timeout: 600_000,
  }, async () => {
    const store = new FsStore(join(dataDir, "store"));
    const registry = new ModelRegistry(store);
    const ds = await openDataset(store, SRE);
    await initBackend("auto");
    // Untrained, so every answer takes all its supervision steps: an evaluation lasts long enough
    // to act on it mid-way. Narrower than the demo preset, so that it still ends on a loaded machine.
    const register = async (seed: number) => {
      const cfg = resolveModelConfig(
        { preset: "demo", hidden_size: 32, H_cycles: 1, L_cycles: 2, halt_max_steps: 4 },
        {
          vocab_size: ds.vocab.size,
          seq_len: ds.manifest.seq_len,
          num_puzzle_identifiers: ds.manifest.num_puzzle_identifiers,
        },
      );
      const t = Trainer.create(cfg, {}, seed);
      const data = t.exportModel();
      t.dispose();
      const m = await registry.register(SRE, {
        artifacts: [{ name: "model.safetensors", data }],
        lineage: {
          run_id: null,
          dataset_id: ds.id,
          raw_segments: [],
          code_version: "t",
          parent_version: null,
        },
        gate: null,
        createdBy: "test",
      });
      return m.version;
    };
    const a = await register(1);
    const b = await register(2);
    const sre = await connectHttp(server.url, TOKENS.sre);
    const reader = await connectHttp(server.url, TOKENS.sreRead);
    const evaluate = async () => {
      const r = await call(sre, "model_evaluate", { version: b, against: a });
      expect(r.isError, textOf(r)).toBeFalsy();
      const s = r.structuredContent as any;
      expect(s.started).toBe(true);
      expect(s.job).toMatchObject({ kind: "evaluation", status: "running" });
      return s.job.job_id as string;
    };
    // The child's pid, from the line the stage logs as it starts it (polled: it may not be there yet).
    const evalPid = async (jobId: string) => {
      let logs = "";
      for (let i = 0; i < 300; i++) {
        logs = textOf(await call(sre, "job_logs", { job_id: jobId, stage: "evaluate", limit: 200 }));
        const m = /evaluation in a child process \(pid (\d+)\)/.exec(logs);
        if (m) return Number(m[1]);
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error(`no child process in the evaluation's log: ${logs}`);
    };

    const jobId = await evaluate();
    expect(jobId).toMatch(/^r/);
    const probes = probe(server, reader);
    const v = await follow(sre, jobId, () => false);
    await probes.stop();
    expect(v.status, JSON.stringify(v)).toBe("succeeded");
    expect(probes.failures).toEqual([]);
    const run = JSON.parse(readFileSync(join(dataDir, "store", "runs", SRE, jobId, "run.json"), "utf8"));
    expect(run.stages.filter((s: any) => s.requested).map((s: any) => s.name)).toEqual(["evaluate"]);
    const ev = run.stages.find((s: any) => s.name === "evaluate");
    const from = Date.parse(ev.started_at);
    const to = Date.parse(ev.ended_at);
    const during = probes.health.filter((_, i) => probes.healthAt[i] >= from && probes.healthAt[i] <= to);
    expect(during.length, `the evaluation took ${to - from} ms`).toBeGreaterThanOrEqual(3);
    expect(Math.max(...during)).toBeLessThan(1000);
    expect(Math.max(...probes.health)).toBeLessThan(1000);
    expect(Math.max(...probes.reads)).toBeLessThan(1000);
    const pid = await evalPid(jobId);
    expect(pid).not.toBe(server.child.pid);
    // The job's result: the version against the other on the same examples, stored in the run.
    expect(v.result).toMatchObject({
      version: b,
      against: a,
      stored_at: `runs/${SRE}/${jobId}/evaluation.json`,
    });
    expect(Object.keys(v.result.tasks).length).toBeGreaterThan(0);
    expect(existsSync(join(dataDir, "store", "runs", SRE, jobId, "evaluation.json"))).toBe(true);
    const cmp = (await call(reader, "model_compare", { a, b })).structuredContent as any;
    expect(cmp.basis).toBe("same_examples");

    // A cancel while the child works stops it; the job ends cancelled. (As soon as the child is
    // there: waiting for its first progress could let a fast machine finish the evaluation first.)
    const cancelled = await evaluate();
    const cpid = await evalPid(cancelled);
    const c = await call(sre, "job_cancel", { job_id: cancelled });
    expect(c.structuredContent).toMatchObject({ cancelled: true });
    expect((await follow(sre, cancelled, () => false)).status).toBe("cancelled");
    for (let i = 0; i < 50 && alive(cpid); i++) await new Promise((r) => setTimeout(r, 100));
    expect(alive(cpid)).toBe(false);

    // A crash of the child fails the job with the reason; the server goes on.
    const crashed = await evaluate();
    process.kill(await evalPid(crashed), "SIGKILL");
    const failed = await follow(sre, crashed, () => false);
    expect(failed.status).toBe("failed");
    expect(failed.error).toMatch(/evaluation process \(pid \d+\) was killed by SIGKILL/);
    expect((await fetch(server.url.replace(/\/mcp$/, "/healthz"))).status).toBe(200);
    expect(server.child.exitCode).toBeNull();
    await sre.close();
    await reader.close();
  });
});
