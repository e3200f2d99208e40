// The Kubernetes train stage inside a real Pipeline: the server's pipeline runs the stage as a Job
// on the local Kubernetes API; when the fake kubelet starts the pod, the "pod" is a second
// Pipeline in worker mode (`run --resume RUN --stages train`) sharing the store, as in the cluster.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { progressPrinter } from "../../../src/cli/run.js";
import { parseConfig } from "../../../src/config/index.js";
import type { Config } from "../../../src/config/schema.js";
import { runLeaseKey } from "../../../src/pipeline/common/lease.js";
import { Pipeline, type RunEvent, type StageFn, type StageFns } from "../../../src/pipeline/run.js";
import { kubernetesTrainStage, runnerStages } from "../../../src/pipeline/runner/train-stage.js";
import { FsStore } from "../../../src/store/index.js";
import { FakeKubeApi } from "./fake-kube-api.js";

const AGENT = "agent-sre";
let api: FakeKubeApi;
let dir: string;
let store: FsStore;

function config(dataDir: string, runner: "kubernetes" | "in-process"): Config {
  const kubeconfig = join(dir, "kubeconfig");
  writeFileSync(
    kubeconfig,
    `apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "${api.url}", insecure-skip-tls-verify: true}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u, namespace: trm-forge}}]\ncurrent-context: x\n`,
  );
  return parseConfig({
    data_dir: dataDir,
    agents: { [AGENT]: {} },
    store: {
      kind: "minio",
      endpoint: "minio",
      bucket: "bkt",
      access_key: { env: "A" },
      secret_key: { env: "S" },
    },
    runs: { retries: 0 },
    runner,
    kubernetes: {
      kubeconfig,
      poll_interval_s: 0.02,
      cancel_grace_s: 1,
      job: { image: "registry.lan/trm-forge:0.1.0-gpu", inherit_from_pod: false, backoff_limit: 0 },
    },
  });
}

const noop: StageFn = async () => ({});
function stages(train: StageFn): StageFns {
  return { collect: noop, build: noop, train, evaluate: noop, deploy: noop };
}

/** Plays the kubelet: when the Job's pod appears, run the worker pipeline in it and end the pod as it ends. */
async function kubelet(train: StageFn, lines: string[] = []): Promise<string> {
  const job = await until(() => [...api.jobs.values()][0]);
  const pod = (await until(() => api.podsOf(job.metadata.name)[0])).metadata.name as string;
  api.startPod(pod);
  api.print(pod, lines);
  const runId = job.metadata.annotations["trm-forge.dev/run-id"];
  const worker = new Pipeline({
    config: config(join(dir, "pod"), "in-process"),
    store,
    stages: stages(train),
  });
  // The pod's output is what `trm-forge run` prints off a TTY: its own event printer, into the log.
  const podOut = {
    isTTY: false,
    write: (text: string) => {
      api.print(pod, text.split("\n").filter(Boolean));
      return true;
    },
  };
  const onEvent = progressPrinter(podOut as unknown as NodeJS.WriteStream);
  const started = await worker.startRun({ agent: AGENT, resume: runId, stages: ["train"], onEvent });
  const record = await started.done;
  const ok = record.stages.find((s) => s.name === "train")!.status === "succeeded";
  api.print(pod, [ok ? "train finished" : `Error: ${record.error}`]);
  api.endPod(pod, ok ? 0 : 1);
  return pod;
}

async function until<T>(probe: () => T | undefined): Promise<T> {
  const end = Date.now() + 10_000;
  for (;;) {
    const v = probe();
    if (v) return v;
    if (Date.now() > end) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 5));
  }
}

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), "trm-k8s-stage-"));
  store = new FsStore(join(dir, "store"));
  api = new FakeKubeApi();
  await api.start();
});

afterEach(async () => {
  await api.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("the Kubernetes train stage in a pipeline", () => {
  it("is what `runner: kubernetes` selects, and nothing in-process", () => {
    expect(Object.keys(runnerStages(config(join(dir, "s"), "kubernetes")))).toEqual(["train"]);
    expect(runnerStages(config(join(dir, "s"), "in-process"))).toEqual({});
  });

  it("runs training in the Job, returns the pod's stage output, forwards its progress and log", async () => {
    const server = new Pipeline({
      config: config(join(dir, "server"), "kubernetes"),
      store,
      stages: stages(kubernetesTrainStage()),
    });
    const events: RunEvent[] = [];
    const run = await server.startRun({ agent: AGENT, stages: ["train"], onEvent: (e) => events.push(e) });
    const pod = kubelet(
      async (ctx) => {
        ctx.progress({ message: "step 40/80", step: 40, total: 80, eta_s: 3, metrics: { loss: 1.5 } });
        ctx.log("warn", "only 12 validation examples for trace_outcome");
        // Long enough for the server to read the stage result's progress from the store.
        await new Promise((r) => setTimeout(r, 1500));
        return { steps: 80, checkpoint: "runs/agent-sre/x/checkpoints/80", best_score: 0.91 };
      },
      [JSON.stringify({ type: "progress", step: 10, total_steps: 80, loss: 2.25 })],
    );
    const record = await run.done;
    const podName = await pod;
    const train = record.stages.find((s) => s.name === "train")!;
    expect(record.status).toBe("succeeded");
    expect(train.output).toEqual({
      steps: 80,
      checkpoint: "runs/agent-sre/x/checkpoints/80",
      best_score: 0.91,
    });
    expect(api.creates()).toBe(1);
    const progress = events.filter((e) => e.type === "progress").map((e) => (e as any).progress);
    // From the pod's log line, and from the worker's stage result in the store.
    expect(progress).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ stage: "train", step: 10, total: 80, metrics: { loss: 2.25 } }),
        expect.objectContaining({
          stage: "train",
          step: 40,
          total: 80,
          message: "step 40/80",
          metrics: { loss: 1.5 },
        }),
      ]),
    );
    const logs = record.log.map((l) => l.msg);
    expect(logs).toContain(`[${podName}] train finished`);
    // The worker's warning arrives as a warning; its progress lines go to progress, not the log.
    expect(record.log).toContainEqual(
      expect.objectContaining({
        level: "warn",
        msg: `[${podName}] only 12 validation examples for trace_outcome`,
      }),
    );
    expect(logs.some((m) => m.includes('"type":"progress"'))).toBe(false);
    expect(logs.some((m) => m.startsWith("[kubernetes] created Job"))).toBe(true);
  });

  it("fails the stage with the Job's reason and the worker's error", async () => {
    const server = new Pipeline({
      config: config(join(dir, "server"), "kubernetes"),
      store,
      stages: stages(kubernetesTrainStage()),
    });
    const run = await server.startRun({ agent: AGENT, stages: ["train"] });
    void kubelet(async () => {
      throw new Error("dataset has no train split");
    });
    const record = await run.done;
    expect(record.status).toBe("failed");
    const train = record.stages.find((s) => s.name === "train")!;
    expect(train.error).toMatch(/BackoffLimitExceeded/);
    expect(train.error).toMatch(/dataset has no train split/);
  });

  it("a cancel deletes the Job; a shutdown leaves it running for the next server", async () => {
    const server = new Pipeline({
      config: config(join(dir, "server"), "kubernetes"),
      store,
      stages: stages(kubernetesTrainStage()),
    });
    const run = await server.startRun({ agent: AGENT, stages: ["train"] });
    const job = await until(() => [...api.jobs.values()][0]);
    await server.cancel(run.runId);
    expect((await run.done).status).toBe("cancelled");
    expect(api.jobs.has(job.metadata.name)).toBe(false);

    // A shutdown aborts with another reason: the Job stays, and the stage rethrows that reason.
    const shutdown = new AbortController();
    const ctxLogs: string[] = [];
    const stage = kubernetesTrainStage();
    const c = config(join(dir, "server2"), "kubernetes");
    const pending = stage({
      runId: "r-shutdown",
      agent: AGENT,
      stage: "train",
      attempt: 1,
      config: c,
      store,
      registry: undefined as never,
      signal: shutdown.signal,
      fromScratch: false,
      record: undefined as never,
      now: () => new Date(),
      log: (_l, m) => ctxLogs.push(m),
      progress: () => {},
      pause: async () => {},
    });
    const job2 = await until(() =>
      [...api.jobs.values()].find((j) => j.metadata.annotations["trm-forge.dev/run-id"] === "r-shutdown"),
    );
    const reason = new Error("server shutting down");
    shutdown.abort(reason);
    await expect(pending).rejects.toBe(reason);
    expect(api.jobs.has(job2.metadata.name)).toBe(true);
  });

  /** A server that starts the run's Job and then dies (its process is gone: nothing settles). */
  async function serverThatDies(c: Config): Promise<string> {
    const dies: StageFn = async (ctx) => {
      const gone = new AbortController();
      kubernetesTrainStage()({ ...ctx, signal: gone.signal }).catch(() => undefined);
      await until(() => api.openStreams() > 0 || [...api.jobs.values()][0]);
      gone.abort(new Error("process killed"));
      return new Promise(() => {});
    };
    const first = new Pipeline({ config: c, store, stages: stages(dies) });
    const runId = (await first.startRun({ agent: AGENT, stages: ["train"] })).runId;
    // Its node is gone: the run's lease in the store runs out (the process here can no longer renew
    // it, its ETag having changed), as a dead server's does.
    const key = runLeaseKey(AGENT);
    const lease = JSON.parse((await store.get(key)).toString("utf8"));
    await store.put(key, `${JSON.stringify({ ...lease, nonce: "expired", expires_at: 0 })}\n`);
    return runId;
  }

  it("a restarted server resumes the run and re-attaches to the running Job", async () => {
    const runId = await serverThatDies(config(join(dir, "server1"), "kubernetes"));
    await until(() => [...api.jobs.values()][0]);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const pod = kubelet(async () => {
      await gate;
      return { steps: 80, resumed: true };
    });
    // The new server (its own data_dir, on another node) resumes the run.
    const second = new Pipeline({
      config: config(join(dir, "server2"), "kubernetes"),
      store,
      stages: stages(kubernetesTrainStage()),
    });
    const resumed = await second.resumeInterrupted();
    expect(resumed.map((r) => r.runId)).toEqual([runId]);
    await until(() => api.requests.filter((q) => q.method === "GET" && q.path.endsWith("/jobs")).length >= 2);
    release();
    const record = await resumed[0].done;
    await pod;
    expect(record.status).toBe("succeeded");
    expect(record.stages.find((s) => s.name === "train")!.output).toEqual({ steps: 80, resumed: true });
    expect(api.creates()).toBe(1);
  });

  it("a resumed run uses the result of a Job that completed while no server ran", async () => {
    const runId = await serverThatDies(config(join(dir, "server1"), "kubernetes"));
    await kubelet(async () => ({ steps: 80 }));
    const second = new Pipeline({
      config: config(join(dir, "server2"), "kubernetes"),
      store,
      stages: stages(kubernetesTrainStage()),
    });
    const resumed = await second.resumeInterrupted();
    expect(resumed.map((r) => r.runId)).toEqual([runId]);
    const record = await resumed[0].done;
    expect(record.status).toBe("succeeded");
    expect(record.stages.find((s) => s.name === "train")!.output).toEqual({ steps: 80 });
    expect(api.creates()).toBe(1);
    expect(record.log.map((l) => l.msg)).toContain(
      "the training Job completed while the server was away; using its result",
    );
  });
});
