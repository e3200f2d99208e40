// The cluster path as shipped: k8s/base/config.yaml's store settings (MinIO, default part size)
// with the 7m preset (the gpu overlay's), pointed at the project's S3 endpoint in a process of its
// own (as MinIO runs apart from the pod: training blocks this process's event loop for minutes).
// A run on the simulated homelab trains 2 steps with a checkpoint every step (each a 117 MB
// training state, so a multipart upload), evaluates and registers; a fresh process then loads the
// version and answers. As little data as the pipeline accepts, but the 7m model is slow on 2
// cores: set TRM_TEST_7M=1 to run it.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import YAML from "yaml";
import { parseConfig } from "../../src/config/index.js";
import { createPipeline } from "../../src/pipeline/create.js";
import { agentConfigFor, createSimulator, type Simulator } from "../../src/simulator/index.js";
import { type S3Process, startS3Process } from "../store/s3-endpoint-process.js";

const ENV = { MINIO_ACCESS_KEY: "test-access", MINIO_SECRET_KEY: "test-secret" };

describe.skipIf(!process.env.TRM_TEST_7M)("a 7m run on the shipped MinIO settings", () => {
  let s3: S3Process;
  let sim: Simulator;

  beforeAll(async () => {
    s3 = await startS3Process();
    sim = await createSimulator({ seed: 5, days: 2, logsPerDay: 200, tracesPerDay: 80 });
    Object.assign(process.env, ENV);
  });
  afterAll(async () => {
    await sim?.close();
    await s3?.close();
  });

  it("trains 2 steps with a checkpoint each, evaluates, registers, and loads in a fresh process", {
    timeout: 3_600_000,
  }, async () => {
    const shipped = YAML.parse(readFileSync("k8s/base/config.yaml", "utf8"));
    expect(shipped.store.kind).toBe("minio");
    expect(shipped.store.part_size_mb).toBeUndefined(); // the default, untuned
    const dir = mkdtempSync(join(tmpdir(), "trm-7m-"));
    const agent = agentConfigFor(sim.url, { lookback: "2d" });
    const few = { max_examples: 24, min_examples: 1 };
    const raw = {
      data_dir: join(dir, "data"),
      log_level: "silent",
      store: { ...shipped.store, endpoint: "127.0.0.1", port: s3.port },
      // 7m as the gpu overlay trains it, with the preset's recursion (the cpu's model section is small's).
      model: { preset: "7m" },
      agents: { sre: agent },
      dataset: {
        window: "2d",
        seq_len: 64,
        tasks: {
          code_infill: { enabled: false },
          metric_forecast: { enabled: false },
          log_triage: few,
          trace_outcome: few,
        },
      },
      train: { max_steps: 2, batch_size: 2, checkpoint_interval: 1, eval_interval: 2, eval_examples: 4 },
      gate: { min_examples: 1 },
    };
    const config = parseConfig(raw);
    const t0 = Date.now();
    const run = await (await createPipeline(config).startRun({ agent: "sre" })).done;
    const seconds = (Date.now() - t0) / 1000;
    const stages = run.stages
      .filter((st) => st.started_at && st.ended_at)
      .map(
        (st) =>
          `${st.name} ${((Date.parse(st.ended_at as string) - Date.parse(st.started_at as string)) / 1000).toFixed(0)} s`,
      );
    process.stderr.write(`7m run on the S3 endpoint: ${seconds.toFixed(0)} s (${stages.join(", ")})\n`);
    expect(run.error).toBeNull();
    expect(run.status).toBe("succeeded");
    expect(run.stages.find((s) => s.name === "train")?.output).toMatchObject({ steps: 2 });
    const version = run.model_version as string;
    expect(version).toMatch(/^v/);

    // Every step's training state went up as a multipart upload of 2 parts.
    const held = await s3.inspect();
    const isState = (c: { key: string }) => c.key.endsWith("/state.safetensors");
    const completed = held.calls.filter(
      (c) => c.op === "CompleteMultipartUpload" && c.status === 200 && isState(c),
    );
    expect(completed.length).toBeGreaterThanOrEqual(2);
    for (const c of completed) {
      const parts = held.calls.filter((p) => p.op === "UploadPart" && p.status === 200 && p.key === c.key);
      expect(parts.map((p) => p.partNumber)).toEqual([1, 2]);
      expect(parts.reduce((n, p) => n + p.bytes, 0)).toBeGreaterThan(100_000_000);
    }
    expect(held.uploads).toBe(0);
    // gc at the run's end, under its lease, dropped the finished run's checkpoints (retention).
    expect(held.objects.filter(isState)).toEqual([]);
    expect(held.objects.filter((o) => o.key.startsWith(`models/sre/${version}/`)).length).toBeGreaterThan(0);

    // A fresh process loads the version (made champion by force: 2 steps pass no gate) and answers.
    const pipeline = createPipeline(config);
    await pipeline.registry.promote("sre", version, { actor: "test", reason: "load check", force: true });
    const file = join(dir, "trm-forge.yaml");
    const t1 = Date.now();
    writeFileSync(file, YAML.stringify(raw));
    const out = spawnSync(
      process.execPath,
      [
        resolve("dist/cli.js"),
        "--config",
        file,
        "predict",
        "--agent",
        "sre",
        "--task",
        "log_triage",
        "--input",
        'level=error msg="upstream timed out"',
        "--json",
      ],
      { env: { ...process.env, ...ENV }, encoding: "utf8", timeout: 600_000 },
    );
    expect(out.status, out.stderr).toBe(0);
    expect(JSON.parse(out.stdout)).toMatchObject({ version });
    process.stderr.write(
      `7m load and predict in a fresh process: ${((Date.now() - t1) / 1000).toFixed(0)} s\n`,
    );
  });
});
