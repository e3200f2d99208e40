// End to end over Streamable HTTP against the built CLI (`trm-forge serve --http`, a real process)
// with the homelab simulator as Prometheus, Loki and Tempo: sources_check, training_start on a
// tiny model, SIGTERM in the middle of training (the run stops at a checkpoint and the process
// exits cleanly), a restart that lists the job and resumes it to the end, a second run that
// fine-tunes, then model_compare, model_promote, model_predict and model_rollback.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { agentConfigFor, createSimulator, type Simulator } from "../../src/simulator/index.js";
import {
  BRUNO,
  call,
  connectHttp as connect,
  removeDir,
  type ServerProcess,
  SRE,
  startServerProcess as startServer,
  TOKENS,
  tempDir,
  textOf,
  tokenSection,
} from "./helpers.js";

async function untilDone(client: Client, jobId: string, limitMs = 540_000): Promise<any> {
  const end = Date.now() + limitMs;
  for (;;) {
    const r = await call(client, "job_status", { job_id: jobId, wait_s: 25 });
    expect(r.isError, textOf(r)).toBeFalsy();
    const v = r.structuredContent as any;
    if (v.status !== "running" || Date.now() > end) return v;
  }
}

describe("end to end over HTTP, with the simulated homelab", () => {
  const dir = tempDir("trm-mcp-e2e-");
  const configPath = join(dir, "trm-forge.yaml");
  const dataDir = join(dir, "data");
  let sim: Simulator;
  let server: ServerProcess | null = null;
  let v1: string;
  let v2: string;
  let firstJob: string;

  beforeAll(async () => {
    sim = await createSimulator({ seed: 11, days: 3, logsPerDay: 600, tracesPerDay: 250 });
    const few = { max_examples: 120, min_examples: 1 };
    writeFileSync(
      configPath,
      stringify({
        data_dir: dataDir,
        model: {
          preset: "demo",
          // The native kernels where they built (the pure-JS cpu backend trains ~100× slower).
          backend: "auto",
          hidden_size: 16,
          num_heads: 2,
          H_cycles: 1,
          L_cycles: 1,
          halt_max_steps: 2,
          puzzle_emb_len: 2,
        },
        agents: { [SRE]: agentConfigFor(sim.url, { lookback: "3d" }), [BRUNO]: {} },
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
          max_steps: 160,
          batch_size: 8,
          eval_interval: 40,
          checkpoint_interval: 10,
          log_interval: 5,
          eval_examples: 16,
          warmup_steps: 2,
          lr: 0.003,
          ema_decay: 0.8,
        },
        gate: { min_examples: 5, auto_promote: false },
        runs: { retries: 0 },
        schedule: { enabled: true, collect: "0 3 * * *", train: "0 2 1 * *" },
        serve: { shadow_fraction: 0, poll_interval_ms: 500 },
        server: { shutdown_grace: "60s" },
        tokens: tokenSection(dir),
      }),
    );
  });
  afterAll(async () => {
    if (server && server.child.exitCode === null) {
      server.child.kill("SIGKILL");
      await server.exit;
    }
    await sim?.close();
    removeDir(dir);
  });

  it("checks the sources, starts training, and stops it at a checkpoint on SIGTERM", {
    timeout: 600_000,
  }, async () => {
    server = await startServer(configPath);
    const sre = await connect(server.url, TOKENS.sre);
    const check = (await call(sre, "sources_check", {})).structuredContent as any;
    expect(check.all_ok).toBe(true);
    expect(check.sources.filter((s: any) => s.status === "ok").map((s: any) => s.source)).toEqual([
      "prometheus",
      "loki",
      "tempo",
    ]);
    const health = await (
      await fetch(server.url.replace(/\/mcp$/, "/healthz"), {
        headers: { Authorization: `Bearer ${TOKENS.admin}` },
      })
    ).json();
    expect((health as any).scheduler).toMatchObject({ enabled: true, running: true, jobs: 4 });

    const started = (await call(sre, "training_start", {})).structuredContent as any;
    expect(started.started).toBe(true);
    firstJob = started.job.job_id;
    // Follow it into the train stage, past its first checkpoint, to a training step's progress
    // (a validation or checkpoint progress in between carries no loss).
    let v: any;
    for (;;) {
      v = (await call(sre, "job_status", { job_id: firstJob, wait_s: 2 })).structuredContent;
      if (v.status !== "running" || (v.stage === "train" && v.step >= 15 && v.metrics.loss !== undefined))
        break;
    }
    expect(v.status).toBe("running");
    expect(v.total_steps).toBe(160);
    expect(v.metrics.loss).toBeGreaterThan(0);
    expect(v.stages.slice(0, 2).map((s: any) => s.status)).toEqual(["succeeded", "succeeded"]);
    await sre.close().catch(() => undefined);

    const t0 = Date.now();
    server.child.kill("SIGTERM");
    expect(await server.exit).toBe(0);
    expect(Date.now() - t0).toBeLessThan(60_000);
    const log = server.stderr();
    for (const token of Object.values(TOKENS)) expect(log).not.toContain(token);
    const record = JSON.parse(readFileSync(join(dataDir, "store", "jobs", SRE, `${firstJob}.json`), "utf8"));
    expect(record).toMatchObject({ status: "interrupted", kind: "training", actor: `mcp:${SRE}` });
    const run = JSON.parse(readFileSync(join(dataDir, "store", "runs", SRE, firstJob, "run.json"), "utf8"));
    expect(run.stages.find((s: any) => s.name === "train").status).toBe("cancelled");
    expect(existsSync(join(dataDir, "store", "runs", SRE, firstJob, "checkpoints"))).toBe(true);
  });

  it("after a restart lists the job, resumes it from its checkpoint and runs it to the end", {
    timeout: 600_000,
  }, async () => {
    server = await startServer(configPath);
    const sre = await connect(server.url, TOKENS.sre);
    const listed = (await call(sre, "jobs_list", {})).structuredContent as any;
    expect(listed.jobs.map((j: any) => j.job_id)).toContain(firstJob);
    const done = await untilDone(sre, firstJob);
    expect(done.status, JSON.stringify(done)).toBe("succeeded");
    expect(done.stages.map((s: any) => s.status)).toEqual([
      "succeeded",
      "succeeded",
      "succeeded",
      "succeeded",
      "succeeded",
    ]);
    const run = JSON.parse(readFileSync(join(dataDir, "store", "runs", SRE, firstJob, "run.json"), "utf8"));
    expect(run.resumes.at(-1)).toMatchObject({
      from_stage: "train",
      reason: "interrupted by a server shutdown",
    });
    const train = run.stages.find((s: any) => s.name === "train").output;
    expect(train.resumed_from_step).toBeGreaterThanOrEqual(10);
    expect(train.steps).toBe(160);
    v1 = done.result.deploy.version;
    expect(v1).toMatch(/^v\d{8}/);
    await sre.close();
  });

  it("trains a second version, compares, promotes, predicts and rolls back", {
    timeout: 600_000,
  }, async () => {
    const sre = await connect(server!.url, TOKENS.sre);
    // v1 becomes champion (auto_promote is off: a passing version waits as challenger).
    const p1 = await call(sre, "model_promote", { version: v1, reason: "first model", force: true });
    expect(p1.isError, textOf(p1)).toBeFalsy();
    expect((p1.structuredContent as any).served.champion).toBe(v1);

    const second = (await call(sre, "training_start", { stages: ["build", "train", "evaluate", "deploy"] }))
      .structuredContent as any;
    const done = await untilDone(sre, second.job.job_id);
    expect(done.status, JSON.stringify(done)).toBe("succeeded");
    expect(done.result.training.fine_tuned_from).toBe(v1);
    v2 = done.result.deploy.version;
    expect(v2 > v1).toBe(true);

    const cmp = (await call(sre, "model_compare", { a: v1, b: v2 })).structuredContent as any;
    expect(cmp.basis).toBe("same_examples");
    expect(cmp.tasks.map((t: any) => t.task).sort()).toEqual([
      "log_triage",
      "metric_forecast",
      "trace_outcome",
    ]);
    for (const t of cmp.tasks) {
      expect(typeof t.a).toBe("number");
      expect(typeof t.b).toBe("number");
      expect(t.delta).toBeCloseTo(t.b - t.a, 9);
    }

    const gatePassed = done.result.gate.passed as boolean;
    if (!gatePassed) {
      const refused = await call(sre, "model_promote", { version: v2, reason: "want it" });
      expect(textOf(refused)).toMatch(/failed its evaluation gate/);
    }
    const p2 = await call(sre, "model_promote", {
      version: v2,
      reason: "better on the same examples",
      force: !gatePassed,
    });
    expect(p2.isError, textOf(p2)).toBeFalsy();
    expect((p2.structuredContent as any).served.champion).toBe(v2);

    const pred = (
      await call(sre, "model_predict", { task: "log_triage", input: 'level=error msg="upstream timeout"' })
    ).structuredContent as any;
    expect(pred.version).toBe(v2);
    expect(pred.confidence).toBeGreaterThan(0);
    const trace = (
      await call(sre, "model_predict", { task: "trace_outcome", input: "gateway:GET /api -> orders:query" })
    ).structuredContent as any;
    expect(["ok", "error", null]).toContain(trace.answer.status.value);
    // The version remembers its training traces per path; this made-up path is not among them.
    expect(trace.seen_in_training).toBe(0);

    const rb = (await call(sre, "model_rollback", { reason: "checking the way back" }))
      .structuredContent as any;
    expect(rb.move).toMatchObject({ action: "rollback", from: v2, to: v1 });
    expect(rb.served.champion).toBe(v1);
    expect(
      ((await call(sre, "model_predict", { task: "log_triage", input: "INFO ok" })).structuredContent as any)
        .version,
    ).toBe(v1);

    // The history says who did what, and the metrics the server exports follow.
    const list = (await call(sre, "models_list", { history_limit: 5 })).structuredContent as any;
    expect(list.history.map((m: any) => m.action)).toEqual(expect.arrayContaining(["rollback", "promote"]));
    expect(list.history.every((m: any) => m.actor === `mcp:${SRE}`)).toBe(true);
    const metrics = await (await fetch(server!.url.replace(/\/mcp$/, "/metrics"))).text();
    expect(metrics).toContain(`trm_forge_served_model_info{agent="${SRE}",alias="champion",version="${v1}"`);
    expect(metrics).toMatch(/trm_forge_predictions_total\{[^}]*agent="agent-sre"/);
    await sre.close();

    server!.child.kill("SIGTERM");
    expect(await server!.exit).toBe(0);
  });
});
