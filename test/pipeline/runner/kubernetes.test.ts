import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { parseConfig } from "../../../src/config/index.js";
import type { Config } from "../../../src/config/schema.js";
import { ConfigError } from "../../../src/errors.js";
import { TransientError } from "../../../src/pipeline/common/retry.js";
import {
  cancelTrainJobs,
  type LogMeta,
  listTrainJobs,
  loadKube,
  reattachTrainJob,
  runTrainStageInKubernetes,
  type TrainJobOptions,
  type TrainProgress,
} from "../../../src/pipeline/runner/index.js";
import { FakeKubeApi } from "./fake-kube-api.js";

const NS = "trm-forge";
const TOKEN = "sa-token-for-tests";
const SERVER_POD = "trm-forge-7d4b9c-x2x9q";
const IMAGE = "ghcr.io/homelab/trm-forge:0.1.0-gpu";

let api: FakeKubeApi;
let dir: string;

function writeKubeconfig(server: string, token: string): string {
  const path = join(dir, `kubeconfig-${Math.random().toString(36).slice(2)}`);
  writeFileSync(
    path,
    [
      "apiVersion: v1",
      "kind: Config",
      "clusters:",
      `- name: homelab\n  cluster:\n    server: ${server}\n    insecure-skip-tls-verify: true`,
      "users:",
      `- name: dev\n  user:\n    token: ${token}`,
      "contexts:",
      `- name: homelab\n  context:\n    cluster: homelab\n    user: dev\n    namespace: ${NS}`,
      "current-context: homelab",
      "",
    ].join("\n"),
  );
  return path;
}

function makeConfig(kubernetes: Record<string, unknown> = {}, job: Record<string, unknown> = {}): Config {
  return parseConfig({
    data_dir: "/data",
    store: {
      kind: "minio",
      endpoint: "minio.minio.svc",
      bucket: "trm-forge",
      access_key: { env: "MINIO_ACCESS_KEY" },
      secret_key: { env: "MINIO_SECRET_KEY" },
    },
    runner: "kubernetes",
    kubernetes: {
      kubeconfig: writeKubeconfig(api.url, TOKEN),
      poll_interval_s: 0.02,
      log_idle_reconnect_s: 0.4,
      cancel_grace_s: 2,
      ...kubernetes,
      job: {
        resources: { requests: { cpu: "4", memory: "8Gi" }, limits: { "nvidia.com/gpu": 1, memory: "16Gi" } },
        node_selector: { "nvidia.com/gpu.present": "true" },
        tolerations: [{ key: "nvidia.com/gpu", operator: "Exists", effect: "NoSchedule" }],
        ...job,
      },
    },
  });
}

/** The server's own pod, as the Deployment in k8s/base makes it. */
function serverPod() {
  return {
    metadata: { name: SERVER_POD, namespace: NS, labels: { "app.kubernetes.io/name": "trm-forge" } },
    spec: {
      serviceAccountName: "trm-forge",
      securityContext: { runAsNonRoot: true, runAsUser: 10001, fsGroup: 10001 },
      containers: [
        {
          name: "trm-forge",
          image: IMAGE,
          imagePullPolicy: "IfNotPresent",
          args: ["serve", "--http", "--host", "0.0.0.0"],
          env: [
            { name: "TRM_FORGE_CONFIG", value: "/etc/trm-forge/config.yaml" },
            {
              name: "MINIO_ACCESS_KEY",
              valueFrom: { secretKeyRef: { name: "trm-forge-minio", key: "access-key" } },
            },
            {
              name: "MINIO_SECRET_KEY",
              valueFrom: { secretKeyRef: { name: "trm-forge-minio", key: "secret-key" } },
            },
          ],
          securityContext: { readOnlyRootFilesystem: true, allowPrivilegeEscalation: false },
          volumeMounts: [
            { name: "config", mountPath: "/etc/trm-forge", readOnly: true },
            { name: "data", mountPath: "/data" },
            { name: "tmp", mountPath: "/tmp" },
            {
              name: "kube-api-access-abcde",
              mountPath: "/var/run/secrets/kubernetes.io/serviceaccount",
              readOnly: true,
            },
          ],
        },
      ],
      volumes: [
        { name: "config", configMap: { name: "trm-forge-config" } },
        { name: "data", persistentVolumeClaim: { claimName: "trm-forge-data" } },
        { name: "tmp", emptyDir: {} },
        {
          name: "kube-api-access-abcde",
          projected: { sources: [{ serviceAccountToken: { path: "token" } }] },
        },
      ],
    },
    status: { phase: "Running" },
  };
}

interface Captured {
  logs: { line: string; meta: LogMeta }[];
  progress: TrainProgress[];
}

function options(config: Config, extra: Partial<TrainJobOptions> = {}): TrainJobOptions & { seen: Captured } {
  const seen: Captured = { logs: [], progress: [] };
  return {
    runId: "r20300101-020000-000-ab12",
    agent: "agent-sre",
    config,
    env: { POD_NAME: SERVER_POD, POD_NAMESPACE: NS },
    onLog: (line, meta) => seen.logs.push({ line, meta }),
    onProgress: (p) => seen.progress.push(p),
    seen,
    ...extra,
  };
}

const podLines = (c: Captured) => c.logs.filter((l) => l.meta.source !== "runner").map((l) => l.line);
const runnerNotes = (c: Captured) => c.logs.filter((l) => l.meta.source === "runner").map((l) => l.line);

async function waitFor<T>(probe: () => T | undefined | null | false, what: string, ms = 10_000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = probe();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Waits for the single Job and its newest pod. */
async function jobAndPod(podIndex = 0): Promise<{ job: Record<string, any>; pod: string }> {
  const job = await waitFor(() => [...api.jobs.values()][0], "the Job");
  const pod = await waitFor(() => api.podsOf(job.metadata.name)[podIndex], `pod #${podIndex}`);
  return { job, pod: pod.metadata.name };
}

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), "trm-k8s-runner-"));
  api = new FakeKubeApi({ token: TOKEN });
  await api.start();
  api.addPod(serverPod());
});

afterEach(async () => {
  await api.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("Kubernetes Job runner", () => {
  it("creates the Job from the template and the server pod, streams logs and progress, and succeeds", async () => {
    const o = options(makeConfig());
    const running = runTrainStageInKubernetes(o);
    const { job, pod } = await jobAndPod();

    // The Job: same image, same config and store credentials, the GPU template, TTL, no API access.
    const spec = job.spec.template.spec;
    const c = spec.containers[0];
    expect(job.metadata.namespace).toBe(NS);
    expect(job.metadata.name).toMatch(/^trm-forge-train-r20300101-020000-000-ab12-[0-9a-f]{6}-1$/);
    expect(job.metadata.annotations["trm-forge.dev/run-id"]).toBe(o.runId);
    expect(c.image).toBe(IMAGE);
    expect(c.args).toEqual(["run", "--agent", "agent-sre", "--resume", o.runId, "--stages", "train"]);
    const env = Object.fromEntries(c.env.map((e: any) => [e.name, e]));
    expect(env.TRM_FORGE_RUNNER.value).toBe("in-process");
    expect(env.TRM_FORGE_CONFIG.value).toBe("/etc/trm-forge/config.yaml");
    expect(env.MINIO_SECRET_KEY.valueFrom.secretKeyRef).toEqual({
      name: "trm-forge-minio",
      key: "secret-key",
    });
    expect(spec.volumes).toEqual(
      expect.arrayContaining([
        { name: "config", configMap: { name: "trm-forge-config" } },
        { name: "data", emptyDir: {} },
      ]),
    );
    expect(spec.volumes.some((v: any) => v.persistentVolumeClaim)).toBe(false);
    expect(c.volumeMounts.some((m: any) => m.mountPath.startsWith("/var/run/secrets/kubernetes.io"))).toBe(
      false,
    );
    expect(spec.automountServiceAccountToken).toBe(false);
    expect(spec.restartPolicy).toBe("Never");
    expect(c.resources.limits).toEqual({ "nvidia.com/gpu": "1", memory: "16Gi" });
    expect(spec.nodeSelector).toEqual({ "nvidia.com/gpu.present": "true" });
    expect(spec.tolerations).toEqual([{ key: "nvidia.com/gpu", operator: "Exists", effect: "NoSchedule" }]);
    expect(job.spec.ttlSecondsAfterFinished).toBe(86_400);
    expect(spec.securityContext.runAsUser).toBe(10001);

    api.startPod(pod);
    api.print(pod, [
      "trm-forge: resuming run r20300101-020000-000-ab12 at stage train",
      JSON.stringify({ type: "progress", stage: "train", step: 50, total_steps: 200, loss: 2.5, eta_s: 90 }),
      JSON.stringify({ level: 30, msg: "step", progress: { step: 100, total_steps: 200, loss: 1.75 } }),
      "checkpoint written at step 100",
    ]);
    await waitFor(() => o.seen.progress.length === 2, "two progress events");
    api.endPod(pod, 0);
    const r = await running;

    expect(r.status).toBe("succeeded");
    expect(r.reattached).toBe(false);
    expect(r.pods).toEqual([pod]);
    expect(podLines(o.seen)).toEqual([
      "trm-forge: resuming run r20300101-020000-000-ab12 at stage train",
      expect.stringContaining('"step":50'),
      expect.stringContaining('"step":100'),
      "checkpoint written at step 100",
    ]);
    expect(o.seen.logs.filter((l) => l.meta.source === pod).every((l) => l.meta.time !== null)).toBe(true);
    expect(o.seen.progress).toEqual([
      { stage: "train", message: "step 50/200", step: 50, total: 200, eta_s: 90, metrics: { loss: 2.5 } },
      {
        stage: "train",
        message: "step 100/200",
        step: 100,
        total: 200,
        eta_s: null,
        metrics: { loss: 1.75 },
      },
    ]);
    expect(runnerNotes(o.seen).some((n) => n.includes(`created Job ${job.metadata.name}`))).toBe(true);
    expect(runnerNotes(o.seen).some((n) => n.includes("Running on gpu-node-1"))).toBe(true);
    expect(api.creates()).toBe(1);
    // Every API call carried the kubeconfig's token; the label lookup used the run's key.
    expect(api.requests.every((q) => q.authorization === `Bearer ${TOKEN}`)).toBe(true);
    const list = api.requests.find((q) => q.method === "GET" && q.path.endsWith("/jobs"));
    expect(list?.query.labelSelector).toContain("trm-forge.dev/run-key=");
  });

  it("reports a failed Job with Kubernetes' reason, the exit code and the end of the log", async () => {
    const o = options(makeConfig({}, { backoff_limit: 0 }));
    const running = runTrainStageInKubernetes(o);
    const { pod } = await jobAndPod();
    api.startPod(pod);
    api.print(pod, ["loading dataset d20300101", "Error: dataset d20300101 has no train split"]);
    api.endPod(pod, 1);
    const r = await running;
    expect(r.status).toBe("failed");
    expect(r.reason).toBe("BackoffLimitExceeded");
    expect(r.exitCode).toBe(1);
    expect(r.message).toContain("BackoffLimitExceeded: Job has reached the specified backoff limit");
    expect(r.message).toContain(`pod ${pod} exited 1 (Error)`);
    expect(r.message).toContain("last log line: Error: dataset d20300101 has no train split");
    expect(r.logTail).toEqual(["loading dataset d20300101", "Error: dataset d20300101 has no train split"]);
  });

  it("follows Kubernetes' pod retry after an OOM kill and reports the OOM when retries run out", async () => {
    const o = options(makeConfig({}, { backoff_limit: 1 }));
    const running = runTrainStageInKubernetes(o);
    const first = (await jobAndPod(0)).pod;
    api.startPod(first);
    api.print(first, ["step 10"]);
    api.endPod(first, 137, "OOMKilled");
    const second = (await jobAndPod(1)).pod;
    api.startPod(second);
    api.print(second, ["resumed from checkpoint at step 10", "step 20"]);
    api.endPod(second, 137, "OOMKilled");
    const r = await running;
    expect(r.status).toBe("failed");
    expect(r.reason).toBe("OOMKilled");
    expect(r.pods).toEqual([first, second]);
    expect(podLines(o.seen)).toEqual(["step 10", "resumed from checkpoint at step 10", "step 20"]);
  });

  it("cancel deletes the Job with its pods and stops following", async () => {
    const ac = new AbortController();
    const o = options(makeConfig(), { signal: ac.signal });
    const running = runTrainStageInKubernetes(o);
    const { job, pod } = await jobAndPod();
    api.startPod(pod);
    api.print(pod, ["step 1"]);
    await waitFor(() => podLines(o.seen).length === 1, "the first line");
    ac.abort();
    const r = await running;
    expect(r.status).toBe("cancelled");
    const del = api.requests.find((q) => q.method === "DELETE");
    expect(del?.path).toBe(`/apis/batch/v1/namespaces/${NS}/jobs/${job.metadata.name}`);
    expect(del?.query.propagationPolicy).toBe("Background");
    expect(api.jobs.size).toBe(0);
    expect(api.podsOf(job.metadata.name)).toEqual([]);
    expect(api.openStreams()).toBe(0);
  });

  it("does not create a Job when cancelled before it starts", async () => {
    const ac = new AbortController();
    ac.abort();
    const r = await runTrainStageInKubernetes(options(makeConfig(), { signal: ac.signal }));
    expect(r.status).toBe("cancelled");
    expect(api.creates()).toBe(0);
  });

  it("re-attaches to the running Job after a server restart instead of starting another", async () => {
    const config = makeConfig();
    const shutdown = new AbortController();
    const before = options(config, { detach: shutdown.signal });
    const first = runTrainStageInKubernetes(before);
    const { job, pod } = await jobAndPod();
    api.startPod(pod);
    api.print(pod, ["step 1", "step 2", "step 3"]);
    await waitFor(() => podLines(before.seen).length === 3, "three lines");
    shutdown.abort(); // SIGTERM to the server: the Job keeps running
    const detached = await first;
    expect(detached.status).toBe("detached");
    expect(api.jobs.has(job.metadata.name)).toBe(true);
    await waitFor(() => api.openStreams() === 0, "the log stream to close");
    api.print(pod, ["step 4 (printed while the server was down)"]);

    // A new server process: fresh clients, nothing in memory but what the run record kept.
    const after = options(makeConfig(), { logsSince: detached.lastLogTime });
    const second = runTrainStageInKubernetes(after);
    await waitFor(() => podLines(after.seen).length === 1, "the line printed during the restart");
    api.print(pod, ["step 5"]);
    await waitFor(() => podLines(after.seen).length === 2, "a new line");
    api.endPod(pod, 0);
    const r = await second;
    expect(r.status).toBe("succeeded");
    expect(r.reattached).toBe(true);
    expect(r.jobName).toBe(job.metadata.name);
    expect(api.creates()).toBe(1);
    expect(podLines(after.seen)).toEqual(["step 4 (printed while the server was down)", "step 5"]);
    expect(
      runnerNotes(after.seen).some((n) => n.includes(`following existing Job ${job.metadata.name}`)),
    ).toBe(true);
  });

  it("reports the outcome of a Job that finished while the server was down, without running it again", async () => {
    const config = makeConfig({}, { backoff_limit: 0 });
    const shutdown = new AbortController();
    const first = runTrainStageInKubernetes(options(config, { detach: shutdown.signal }));
    const { pod } = await jobAndPod();
    api.startPod(pod);
    shutdown.abort();
    await first;
    api.print(pod, ["Error: checkpoint upload failed: 503 Slow Down"]);
    api.endPod(pod, 1);

    expect(await reattachTrainJob(options(config, { runId: "r-other-run" }))).toBeNull();
    const r = await reattachTrainJob(options(config));
    expect(r?.status).toBe("failed");
    expect(r?.logTail).toEqual(["Error: checkpoint upload failed: 503 Slow Down"]);
    // The same attempt, called again (the stage resumes), reports it too rather than re-running it.
    const again = await runTrainStageInKubernetes(options(config));
    expect(again.status).toBe("failed");
    expect(api.creates()).toBe(1);
    // A retry is a new attempt: a new Job.
    const retry = runTrainStageInKubernetes(options(config, { attempt: 2 }));
    const job2 = await waitFor(
      () => [...api.jobs.values()].find((j) => j.metadata.name.endsWith("-2")),
      "Job 2",
    );
    const pod2 = await waitFor(() => api.podsOf(job2.metadata.name)[0], "pod of Job 2");
    api.startPod(pod2.metadata.name);
    api.endPod(pod2.metadata.name, 0);
    expect((await retry).status).toBe("succeeded");
    expect(api.creates()).toBe(2);
    const listed = await listTrainJobs(config);
    expect(listed.map((j) => [j.attempt, j.state, j.runId, j.agent])).toEqual([
      [2, "succeeded", "r20300101-020000-000-ab12", "agent-sre"],
      [1, "failed", "r20300101-020000-000-ab12", "agent-sre"],
    ]);
    expect((await cancelTrainJobs(config, "r20300101-020000-000-ab12")).length).toBe(2);
    expect(api.jobs.size).toBe(0);
  });

  it("reconnects dropped and silently dead log streams without losing or repeating lines", async () => {
    const o = options(makeConfig());
    const running = runTrainStageInKubernetes(o);
    const { pod } = await jobAndPod();
    api.startPod(pod);
    api.print(pod, ["a1", "a2", "a3"], true); // one timestamp for three lines
    await waitFor(() => podLines(o.seen).length === 3, "a1..a3");
    api.dropLogStreams();
    api.print(pod, ["b1", "b2"]);
    await waitFor(() => podLines(o.seen).length === 5, "b1, b2 after the drop");
    await waitFor(() => api.openStreams(pod) === 1, "a reopened stream");
    api.blackholeLogStreams();
    api.print(pod, ["c1"]);
    await waitFor(() => podLines(o.seen).length === 6, "c1 after the idle reconnect");
    api.endPod(pod, 0);
    await running;
    expect(podLines(o.seen)).toEqual(["a1", "a2", "a3", "b1", "b2", "c1"]);
    const reopened = api.requests.filter((q) => q.path.endsWith("/log") && q.query.sinceTime);
    expect(reopened.length).toBeGreaterThanOrEqual(2);
  });

  it("rides out a short API outage while following, and reports one at the start as transient", async () => {
    api.failNext(1);
    const err = await runTrainStageInKubernetes(options(makeConfig())).catch((e) => e);
    expect(err).toBeInstanceOf(TransientError);
    expect(err.message).toMatch(/503/);
    const o = options(makeConfig());
    const running = runTrainStageInKubernetes(o);
    const { pod } = await jobAndPod();
    api.startPod(pod);
    api.failNext(5);
    api.print(pod, ["still training"]);
    await waitFor(() => podLines(o.seen).length === 1, "the line");
    api.endPod(pod, 0);
    expect((await running).status).toBe("succeeded");
    expect(api.creates()).toBe(1);
  });

  it("says why a pod waits (unschedulable on the GPU pool)", async () => {
    const o = options(makeConfig());
    const running = runTrainStageInKubernetes(o);
    const { pod } = await jobAndPod();
    api.unschedulable(pod, "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.");
    await waitFor(
      () => runnerNotes(o.seen).some((n) => n.includes("Insufficient nvidia.com/gpu")),
      "the note",
    );
    api.startPod(pod);
    api.endPod(pod, 0);
    expect((await running).status).toBe("succeeded");
  });

  it("uses kubernetes.job alone when not inheriting, and needs an image then", async () => {
    const noImage = makeConfig({}, { inherit_from_pod: false });
    await expect(runTrainStageInKubernetes(options(noImage))).rejects.toThrow(
      /kubernetes.job.image is not set/,
    );
    const config = makeConfig(
      {},
      {
        inherit_from_pod: false,
        image: "registry.lan/trm-forge:0.1.0-gpu",
        config_map: { name: "trm-forge-config" },
        env: [
          { name: "MINIO_ACCESS_KEY", secret: { name: "trm-forge-minio", key: "access-key" } },
          { name: "EXTRA", value: "1" },
        ],
        args: ["run", "--resume", "{run_id}", "--agent", "{agent}", "--stages", "train"],
      },
    );
    const running = runTrainStageInKubernetes(options(config));
    const { job, pod } = await jobAndPod();
    const c = job.spec.template.spec.containers[0];
    expect(c.image).toBe("registry.lan/trm-forge:0.1.0-gpu");
    expect(c.args).toEqual([
      "run",
      "--resume",
      "r20300101-020000-000-ab12",
      "--agent",
      "agent-sre",
      "--stages",
      "train",
    ]);
    expect(c.env).toEqual(
      expect.arrayContaining([
        { name: "TRM_FORGE_CONFIG", value: "/etc/trm-forge/config.yaml" },
        {
          name: "MINIO_ACCESS_KEY",
          valueFrom: { secretKeyRef: { name: "trm-forge-minio", key: "access-key" } },
        },
      ]),
    );
    expect(c.volumeMounts.map((m: any) => m.mountPath).sort()).toEqual(["/data", "/etc/trm-forge", "/tmp"]);
    api.startPod(pod);
    api.endPod(pod, 0);
    expect((await running).status).toBe("succeeded");
  });

  it("refuses a local store, and turns missing permissions into a config error", async () => {
    const local = { ...makeConfig(), store: { kind: "fs" as const } };
    await expect(runTrainStageInKubernetes(options(local))).rejects.toThrow(/needs store.kind: minio/);
    const config = makeConfig({ kubeconfig: writeKubeconfig(api.url, "wrong-token") });
    const err = await runTrainStageInKubernetes(options(config)).catch((e) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.message).toMatch(/401.*service account needs the Role/);
  });

  it("uses the pod's service account in the cluster (HTTPS, CA, token file, namespace)", async () => {
    const root = join(dir, "root");
    const sa = join(root, "var/run/secrets/kubernetes.io/serviceaccount");
    mkdirSync(sa, { recursive: true });
    execFileSync(
      "openssl",
      [
        ...["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=kubernetes"],
        ...[
          "-addext",
          "subjectAltName=IP:127.0.0.1",
          "-keyout",
          join(dir, "key.pem"),
          "-out",
          join(sa, "ca.crt"),
        ],
      ],
      { stdio: "ignore" },
    );
    writeFileSync(join(sa, "token"), TOKEN);
    writeFileSync(join(sa, "namespace"), NS);
    const { readFileSync } = await import("node:fs");
    const tls = new FakeKubeApi({
      token: TOKEN,
      tls: {
        key: readFileSync(join(dir, "key.pem"), "utf8"),
        cert: readFileSync(join(sa, "ca.crt"), "utf8"),
      },
    });
    await tls.start();
    try {
      tls.addPod(serverPod());
      const config = makeConfig({ kubeconfig: undefined });
      const env = {
        KUBERNETES_SERVICE_HOST: "127.0.0.1",
        KUBERNETES_SERVICE_PORT: tls.url.split(":").at(-1)!,
        HOSTNAME: SERVER_POD,
      };
      const kube = loadKube(config.kubernetes, { env, rootDir: root });
      expect(kube.source).toBe("in-cluster");
      expect(kube.namespace).toBe(NS);
      const o = options(config, { kube, env });
      const running = runTrainStageInKubernetes(o);
      const job = await waitFor(() => [...tls.jobs.values()][0], "the Job");
      expect(job.spec.template.spec.containers[0].image).toBe(IMAGE); // inherited via HOSTNAME
      const pod = await waitFor(() => tls.podsOf(job.metadata.name)[0], "the pod");
      tls.startPod(pod.metadata.name);
      tls.print(pod.metadata.name, ["over TLS"]);
      await waitFor(() => podLines(o.seen).length === 1, "a line over TLS");
      tls.endPod(pod.metadata.name, 0);
      expect((await running).status).toBe("succeeded");
      expect(tls.requests.every((q) => q.authorization === `Bearer ${TOKEN}`)).toBe(true);
    } finally {
      await tls.stop();
    }
  });

  it("falls back to kubeconfig outside the cluster and says so when there is none", () => {
    const config = makeConfig({ kubeconfig: undefined });
    expect(() => loadKube(config.kubernetes, { env: { HOME: dir } })).toThrow(/needs a cluster/);
    const path = writeKubeconfig(api.url, TOKEN);
    const kube = loadKube(config.kubernetes, { env: { KUBECONFIG: path } });
    expect(kube.source).toBe("kubeconfig");
    expect(kube.namespace).toBe(NS);
    expect(() => loadKube({ ...config.kubernetes, kubeconfig: path, context: "nope" })).toThrow(
      /context "nope"/,
    );
  });
});
