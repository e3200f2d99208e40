// `runner: external` in a real Pipeline: the train stage exports the dataset, runs a command, follows
// its progress lines and log, and imports its weights as the run's best checkpoint. The runner's own
// behaviour (progress, crash, cancel, shutdown, re-attach) is driven by a Node stand-in trainer;
// the whole train -> evaluate -> deploy path by the project's PyTorch trainer, when torch is there.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import { writeRawHomelab } from "../../../src/bench/homelab-raw.js";
import { type Config, parseConfig } from "../../../src/config/index.js";
import { initBackend } from "../../../src/model/backend.js";
import { Trainer } from "../../../src/model/trainer.js";
import { runLeaseKey } from "../../../src/pipeline/common/lease.js";
import { realStages } from "../../../src/pipeline/create.js";
import { buildDataset, type Dataset, openDataset } from "../../../src/pipeline/dataset/index.js";
import { configForDataset } from "../../../src/pipeline/import/index.js";
import { Pipeline, type RunEvent, type StageFn } from "../../../src/pipeline/run.js";
import { externalTrainStage, externalWorkDir } from "../../../src/pipeline/runner/external.js";
import { buildTrainJob } from "../../../src/pipeline/runner/job-spec.js";
import { runnerStages } from "../../../src/pipeline/runner/train-stage.js";
import { latestCheckpoint } from "../../../src/pipeline/train/checkpoint.js";
import { FsStore } from "../../../src/store/index.js";
import { logTraceDataset, tinyModel } from "../../helpers/tiny-config.js";
import { TRAINER, torchPython } from "../helpers/torch.js";

const AGENT = "sre";
const FAKE = fileURLToPath(new URL("./fake-trainer.mjs", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "trm-external-"));
const store = new FsStore(join(dir, "store"));
const weights = join(dir, "weights.safetensors");
let ds: Dataset;

function config(external: Record<string, unknown> = {}, env: Record<string, string> = {}): Config {
  return parseConfig({
    data_dir: join(dir, "data"),
    agents: { [AGENT]: {} },
    model: tinyModel({ L_cycles: 2, halt_max_steps: 3 }),
    train: { batch_size: 8, max_steps: 5, lr: 0.003, warmup_steps: 0 },
    dataset: logTraceDataset(60),
    gate: { min_examples: 5 },
    runs: { retries: 0 },
    runner: "external",
    external: {
      command: [process.execPath, FAKE, "{output_dir}", "{config_file}"],
      env: { WEIGHTS: weights, ...env },
      poll_interval_s: 0.02,
      kill_grace_s: 1,
      ...external,
    },
  });
}

function pipeline(c: Config, train: StageFn = externalTrainStage()): Pipeline {
  return new Pipeline({ config: c, store, stages: { ...realStages({ deployHooks: [] }), train } });
}

async function until<T>(probe: () => T | undefined | Promise<T | undefined>, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > end) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 20));
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const trainerPid = (runId: string) => {
  const path = join(externalWorkDir(config(), AGENT, runId), "trainer.json");
  return existsSync(path) ? (JSON.parse(readFileSync(path, "utf8")).pid as number) : undefined;
};

beforeAll(async () => {
  await initBackend("auto");
  await writeRawHomelab({
    store,
    agent: AGENT,
    days: 4,
    files: 10,
    logLines: 500,
    traces: 250,
    series: 6,
    end: Date.parse("2026-11-29T00:00:00Z"),
  });
  await buildDataset({ store, agent: AGENT, config: config().dataset });
  ds = await openDataset(store, AGENT);
  const t = Trainer.create(configForDataset(config(), ds), {}, 5);
  writeFileSync(weights, t.exportModel());
  t.dispose();
}, 120_000);

describe("runner: external", () => {
  it("is what `runner: external` selects, also inside a Kubernetes Job when kubernetes.job.env asks for it", () => {
    expect(Object.keys(runnerStages(config()))).toEqual(["train"]);
    const runnerIn = (env: { name: string; value: string }[]) => {
      const c = parseConfig({
        runner: "kubernetes",
        kubernetes: { job: { image: "registry.lan/trm-forge-torch:1", env } },
      });
      const job = buildTrainJob({
        runId: "r20300101-020000-000-ab12",
        agent: AGENT,
        attempt: 1,
        namespace: "ns",
        job: c.kubernetes.job,
        inherited: null,
        dataDir: "/data",
      });
      return job
        .spec!.template.spec!.containers[0]!.env!.filter((e) => e.name === "TRM_FORGE_RUNNER")
        .map((e) => e.value);
    };
    // The pod's worker runs the train stage in its own process, unless the Job asks for the external command.
    expect(runnerIn([])).toEqual(["in-process"]);
    expect(runnerIn([{ name: "TRM_FORGE_RUNNER", value: "kubernetes" }])).toEqual(["in-process"]);
    expect(runnerIn([{ name: "TRM_FORGE_RUNNER", value: "external" }])).toEqual(["external"]);
  });

  it("runs the command, forwards its progress and log, and imports its weights as the run's best checkpoint", async () => {
    const events: RunEvent[] = [];
    const run = await pipeline(config()).startRun({
      agent: AGENT,
      stages: ["train"],
      datasetId: ds.id,
      onEvent: (e) => events.push(e),
    });
    const record = await run.done;
    expect(record.status).toBe("succeeded");
    const out = record.stages.find((s) => s.name === "train")!.output as Record<string, unknown>;
    expect(out).toMatchObject({
      dataset_id: ds.id,
      backend: "external",
      steps: 5,
      best_step: 5,
      stopped: "external",
    });
    expect(String(out.note)).toContain("trained by the external command");
    const steps = events.flatMap((e) =>
      e.type === "progress" && e.progress.stage === "train" ? [e.progress.step] : [],
    );
    expect(steps).toEqual([1, 2, 3, 4, 5]);
    const msgs = record.log.map((l) => l.msg);
    expect(msgs.some((m) => m.startsWith("started the trainer (pid "))).toBe(true);
    expect(msgs).toContain("[trainer] fake trainer: wrote model.safetensors");
    expect(msgs.some((m) => m.includes('"type":"progress"'))).toBe(false);
    const best = await latestCheckpoint(store, `runs/${AGENT}/${run.runId}`, "best");
    expect(best?.manifest.step).toBe(5);
    // The work folder (export, log) goes once the weights are in the store.
    expect(existsSync(externalWorkDir(config(), AGENT, run.runId))).toBe(false);
  }, 120_000);

  it("a new run removes the folders earlier runs left, but not one whose trainer still runs", async () => {
    const parent = join(dir, "data", "external", AGENT);
    const failed = "r20200101-000000-000-aaaa";
    const running = "r20200101-000001-000-bbbb";
    const state = (pid: number, extra = {}) =>
      JSON.stringify({ pid, started_at: "2020-01-01T00:00:00Z", argv: ["x"], ...extra });
    mkdirSync(join(parent, failed, "export"), { recursive: true });
    writeFileSync(join(parent, failed, "trainer.json"), state(process.pid, { exit_code: 3 }));
    mkdirSync(join(parent, running), { recursive: true });
    // This test process stands in for a trainer that outlived its server.
    writeFileSync(join(parent, running, "trainer.json"), state(process.pid));
    mkdirSync(join(parent, "notes"), { recursive: true });
    const run = await pipeline(config()).startRun({ agent: AGENT, stages: ["train"], datasetId: ds.id });
    const record = await run.done;
    expect(record.status).toBe("succeeded");
    expect(existsSync(join(parent, failed))).toBe(false);
    expect(existsSync(join(parent, running, "trainer.json"))).toBe(true);
    expect(existsSync(join(parent, "notes"))).toBe(true);
    const msgs = record.log.map((l) => l.msg);
    expect(msgs).toContain(`removed the external folder of the earlier run ${failed}`);
    expect(msgs.some((m) => m.startsWith(`the trainer of run ${running} still runs`))).toBe(true);
    rmSync(join(parent, running), { recursive: true });
  }, 120_000);

  it("fails the stage with the trainer's last log lines when it crashes", async () => {
    const run = await pipeline(config({}, { CRASH: "3" })).startRun({
      agent: AGENT,
      stages: ["train"],
      datasetId: ds.id,
    });
    const record = await run.done;
    expect(record.status).toBe("failed");
    expect(record.error).toMatch(
      /the trainer exited with code 3: .*RuntimeError: CUDA out of memory \(simulated\)/,
    );
    // A failed trainer's folder stays for a person to look at.
    expect(existsSync(join(externalWorkDir(config(), AGENT, run.runId), "trainer.log"))).toBe(true);
  }, 120_000);

  it("refuses weights of another vocabulary with the import's error", async () => {
    const other = join(dir, "other.safetensors");
    const cfg = configForDataset(config(), ds);
    const t = Trainer.create({ ...cfg, vocab_size: cfg.vocab_size - 1 }, {}, 5);
    writeFileSync(other, t.exportModel());
    t.dispose();
    const run = await pipeline(config({}, { WEIGHTS: other })).startRun({
      agent: AGENT,
      stages: ["train"],
      datasetId: ds.id,
    });
    const record = await run.done;
    expect(record.status).toBe("failed");
    expect(record.error).toContain(
      `model.safetensors: a different vocabulary: the weights have ${cfg.vocab_size - 1} tokens`,
    );
    expect(await latestCheckpoint(store, `runs/${AGENT}/${run.runId}`, "best")).toBeNull();
  }, 120_000);

  it("stops a command that runs past external.timeout_s and fails the stage saying so", async () => {
    const hold = join(dir, "hold-timeout");
    writeFileSync(hold, "");
    const run = await pipeline(config({ timeout_s: 1 }, { HOLD: hold })).startRun({
      agent: AGENT,
      stages: ["train"],
      datasetId: ds.id,
    });
    const record = await run.done;
    expect(record.status).toBe("failed");
    expect(record.error).toMatch(/the trainer was stopped: it ran past external\.timeout_s \(1 s\)/);
    rmSync(hold);
  }, 120_000);

  it("a cancel stops the command", async () => {
    const hold = join(dir, "hold-cancel");
    writeFileSync(hold, "");
    const p = pipeline(config({}, { HOLD: hold }));
    const run = await p.startRun({ agent: AGENT, stages: ["train"], datasetId: ds.id });
    const pid = await until(() => trainerPid(run.runId));
    await until(async () => (await p.getRun(run.runId, AGENT))?.progress?.step === 1);
    await p.cancel(run.runId);
    const record = await run.done;
    expect(record.status).toBe("cancelled");
    await until(() => !alive(pid));
    rmSync(hold);
  }, 120_000);

  /** A server that starts the trainer, then dies: its stage never settles and its lease runs out. */
  async function serverThatDies(c: Config): Promise<{ runId: string; pid: number }> {
    const dies: StageFn = async (ctx) => {
      const gone = new AbortController();
      let failed: unknown = null;
      externalTrainStage()({ ...ctx, signal: gone.signal }).catch((err) => {
        failed = err;
      });
      await until(() => {
        if (failed && !(failed instanceof Error && failed.message === "process killed")) throw failed;
        return trainerPid(ctx.runId);
      });
      gone.abort(new Error("process killed"));
      return new Promise(() => {});
    };
    const runId = (await pipeline(c, dies).startRun({ agent: AGENT, stages: ["train"], datasetId: ds.id }))
      .runId;
    const pid = await until(() => trainerPid(runId));
    const key = runLeaseKey(AGENT);
    const lease = JSON.parse((await store.get(key)).toString("utf8"));
    await store.put(key, `${JSON.stringify({ ...lease, nonce: "expired", expires_at: 0 })}\n`);
    return { runId, pid };
  }

  it("a shutdown leaves the command running; the restarted server re-attaches and finishes the run", async () => {
    const hold = join(dir, "hold-reattach");
    writeFileSync(hold, "");
    const c = config({}, { HOLD: hold });
    const { runId, pid } = await serverThatDies(c);
    expect(alive(pid)).toBe(true);
    const second = pipeline(c);
    // Followed through the events: the dead server's pipeline lives on in this test process and may
    // still write its stale copy of run.json.
    const logs: string[] = [];
    const resumed = await second.resumeInterrupted({
      onEvent: (e) => {
        if (e.type === "log") logs.push(e.line.msg);
      },
    });
    expect(resumed.map((r) => r.runId)).toEqual([runId]);
    await until(() => logs.some((m) => m.startsWith("re-attaching")));
    rmSync(hold);
    const record = await resumed[0].done;
    expect(record.status).toBe("succeeded");
    const msgs = record.log.map((l) => l.msg);
    // The one trainer the first server started, followed to its end.
    expect(msgs.some((m) => m.startsWith("started the trainer"))).toBe(false);
    expect(alive(pid)).toBe(false);
    expect(msgs.some((m) => m.startsWith(`re-attaching to the trainer (pid ${pid}, started `))).toBe(true);
    expect(record.stages.find((s) => s.name === "train")!.output).toMatchObject({
      steps: 5,
      backend: "external",
    });
  }, 120_000);

  it("a resumed run imports what the command wrote while no server watched", async () => {
    const hold = join(dir, "hold-away");
    writeFileSync(hold, "");
    const c = config({}, { HOLD: hold });
    const { runId, pid } = await serverThatDies(c);
    rmSync(hold);
    await until(() => !alive(pid));
    const logs: string[] = [];
    const resumed = await pipeline(c).resumeInterrupted({
      onEvent: (e) => {
        if (e.type === "log") logs.push(e.line.msg);
      },
    });
    expect(resumed.map((r) => r.runId)).toEqual([runId]);
    const record = await resumed[0].done;
    expect(record.status).toBe("succeeded");
    expect(logs).toContain("the trainer finished while no server watched; importing its weights");
  }, 120_000);
});

describe.skipIf(!torchPython())("runner: external with the PyTorch trainer", () => {
  it("trains with PyTorch, then evaluates and deploys as any run", async () => {
    const c = config({
      command: [
        torchPython()!,
        TRAINER,
        "train",
        "--data",
        "{export_dir}",
        "--config",
        "{config_file}",
        "--out",
        "{output_dir}",
        "--device",
        "cpu",
      ],
    });
    const run = await pipeline(c).startRun({
      agent: AGENT,
      stages: ["train", "evaluate", "deploy"],
      datasetId: ds.id,
    });
    const record = await run.done;
    expect(record.error ?? null).toBeNull();
    expect(record.status).toBe("succeeded");
    const train = record.stages.find((s) => s.name === "train")!.output as Record<string, unknown>;
    expect(String(train.note)).toContain("trm-forge-torch/1");
    const deploy = record.stages.find((s) => s.name === "deploy")!.output as {
      version: string;
      gate_passed: boolean;
    };
    const evaluate = record.stages.find((s) => s.name === "evaluate")!.output as {
      gate: { passed: boolean };
    };
    expect(deploy.gate_passed).toBe(evaluate.gate.passed);
    expect(deploy.version).toMatch(/^v\d{8}-/);
  }, 600_000);
});
