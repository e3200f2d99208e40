// The Kubernetes Job runner: with `runner: kubernetes`, the train stage runs as a Job on the
// cluster (the GPU pool), with the server's image and the same store. Kubernetes does the
// scheduling, retries (backoffLimit), deadlines and clean-up (ttlSecondsAfterFinished); this
// module creates the Job, follows its pods' logs and progress, and reports how it ended.
//
// A run has at most one live Job: lookups go by the run's label, so a restarted server that
// resumes the run finds the running Job and follows it instead of starting another.
import type { V1Job, V1Pod } from "@kubernetes/client-node";
import type { Config } from "../../config/schema.js";
import { ConfigError, WorkError } from "../../errors.js";
import { log } from "../../log.js";
import { within } from "../../util/turn.js";
import { TransientError } from "../common/retry.js";
import {
  ANNOTATION,
  buildTrainJob,
  type Inherited,
  inheritFromPod,
  jobName,
  LABEL,
  trainJobSelector,
} from "./job-spec.js";
import { apiMessage, isTransient, type Kube, loadKube, openPodLog, statusOf } from "./kube.js";
import { PodLogFollower } from "./pod-logs.js";
import { parsePodLine, splitTimestamp, type TrainProgress } from "./progress-line.js";

export interface LogMeta {
  /** "runner" for this module's own notices (Job created, pod scheduled...), else the pod's name. */
  source: string;
  /** The line's time as the kubelet recorded it (RFC3339, nanoseconds), when it came from a pod. */
  time: string | null;
}

export interface TrainJobOptions {
  runId: string;
  agent: string;
  config: Config;
  /** The stage attempt (1 for the first); a retry after a failed Job gets a new Job. */
  attempt?: number;
  /** Cancels the run: the Job is deleted (its pods get SIGTERM and checkpoint). */
  signal?: AbortSignal;
  /** Stops following but leaves the Job running (server shutdown); a later call re-attaches. */
  detach?: AbortSignal;
  onLog?: (line: string, meta: LogMeta) => void;
  onProgress?: (progress: TrainProgress) => void;
  /** Pod log lines at or before this time are not delivered again (see TrainJobResult.lastLogTime). */
  logsSince?: string | null;
  /** Clients to use; by default built from config.kubernetes (in-cluster, else kubeconfig). */
  kube?: Kube;
  /** Where POD_NAME/POD_NAMESPACE (the server's own pod, for inheritance) are read. */
  env?: NodeJS.ProcessEnv;
}

export type TrainJobStatus = "succeeded" | "failed" | "cancelled" | "detached";

export interface TrainJobResult {
  status: TrainJobStatus;
  jobName: string;
  namespace: string;
  /** True when an existing Job was followed instead of creating one. */
  reattached: boolean;
  pods: string[];
  /** One line for the run record. */
  message: string;
  /** Kubernetes' reason on failure: BackoffLimitExceeded, DeadlineExceeded, OOMKilled, ... */
  reason?: string;
  exitCode?: number;
  /** The last lines the pod printed (most useful on failure). */
  logTail: string[];
  /** Time of the last delivered pod log line: pass as logsSince when re-attaching. */
  lastLogTime: string | null;
  startedAt?: string;
  finishedAt?: string;
}

export interface TrainJobInfo {
  jobName: string;
  namespace: string;
  runId: string;
  agent: string;
  attempt: number;
  state: "active" | "succeeded" | "failed" | "deleting";
  startedAt?: string;
  finishedAt?: string;
}

const LOG_TAIL = 50;

/**
 * Runs the train stage of `runId` as a Kubernetes Job and resolves when it ends. When a live Job of
 * the run already exists (a server restart, a race), it is followed instead; when this attempt's Job
 * already finished while nobody watched, its outcome is returned without running it again.
 */
export async function runTrainStageInKubernetes(opts: TrainJobOptions): Promise<TrainJobResult> {
  const kube = prepare(opts);
  const attempt = opts.attempt ?? 1;
  const existing = await listRunJobs(kube, opts.runId);
  const live = existing.find((j) => jobState(j) === "active");
  if (live) return follow(kube, live, opts, true);
  const name = jobName(opts.config.kubernetes.job.name_prefix, opts.runId, attempt);
  const same = existing.find((j) => j.metadata?.name === name);
  if (same && jobState(same) !== "deleting") return follow(kube, same, opts, true);
  if (opts.signal?.aborted) return cancelledBeforeStart(kube, name);

  const inherited = await ownPod(kube, opts);
  const body = buildTrainJob({
    runId: opts.runId,
    agent: opts.agent,
    attempt,
    namespace: kube.namespace,
    job: opts.config.kubernetes.job,
    inherited,
    dataDir: opts.config.data_dir,
  });
  let created: V1Job;
  try {
    created = await kube.batch.createNamespacedJob({ namespace: kube.namespace, body });
  } catch (err) {
    if (statusOf(err) === 409) {
      // Someone created it between our list and create: follow theirs.
      const theirs = await kube.batch.readNamespacedJob({ name, namespace: kube.namespace });
      return follow(kube, theirs, opts, true);
    }
    throw apiFailure(err, `cannot create Job ${name} in namespace ${kube.namespace}`);
  }
  note(
    opts,
    `created Job ${name} in namespace ${kube.namespace} (image ${body.spec?.template.spec?.containers[0]?.image})`,
  );
  return follow(kube, created, opts, false);
}

/**
 * Follows the run's Job if there is one (the newest live Job, else the newest finished one).
 * Resolves null when the run has no Job, so the caller knows to start the stage afresh.
 */
export async function reattachTrainJob(opts: TrainJobOptions): Promise<TrainJobResult | null> {
  const kube = prepare(opts);
  const jobs = await listRunJobs(kube, opts.runId);
  const live = jobs.find((j) => jobState(j) === "active");
  const pick = live ?? jobs.find((j) => jobState(j) !== "deleting");
  return pick ? follow(kube, pick, opts, true) : null;
}

/** Every training Job in the namespace, newest first (for jobs lists and start-up recovery). */
export async function listTrainJobs(config: Config, kube?: Kube): Promise<TrainJobInfo[]> {
  const k = kube ?? loadKube(config.kubernetes);
  const res = await k.batch.listNamespacedJob({ namespace: k.namespace, labelSelector: trainJobSelector() });
  return sortNewest(res.items).map((j) => ({
    jobName: j.metadata?.name ?? "",
    namespace: k.namespace,
    runId: j.metadata?.annotations?.[ANNOTATION.runId] ?? "",
    agent: j.metadata?.annotations?.[ANNOTATION.agent] ?? "",
    attempt: Number(j.metadata?.labels?.[LABEL.attempt] ?? 0),
    state: jobState(j),
    startedAt: iso(j.status?.startTime),
    finishedAt: iso(j.status?.completionTime),
  }));
}

/** Deletes the run's Jobs (and, through propagation, their pods). Returns the names deleted. */
export async function cancelTrainJobs(config: Config, runId: string, kube?: Kube): Promise<string[]> {
  const k = kube ?? loadKube(config.kubernetes);
  const deleted: string[] = [];
  for (const j of await listRunJobs(k, runId)) {
    const name = j.metadata?.name;
    if (name && (await deleteJob(k, name))) deleted.push(name);
  }
  return deleted;
}

function prepare(opts: TrainJobOptions): Kube {
  if (opts.config.store.kind !== "minio") {
    throw new ConfigError(
      "runner: kubernetes needs store.kind: minio, so that the training Job and the server share the store",
    );
  }
  return opts.kube ?? loadKube(opts.config.kubernetes);
}

async function listRunJobs(kube: Kube, runId: string): Promise<V1Job[]> {
  try {
    const res = await kube.batch.listNamespacedJob({
      namespace: kube.namespace,
      labelSelector: trainJobSelector(runId),
    });
    return sortNewest(res.items);
  } catch (err) {
    throw apiFailure(err, `cannot list Jobs in namespace ${kube.namespace}`);
  }
}

function sortNewest(jobs: V1Job[]): V1Job[] {
  const t = (j: V1Job) => new Date(j.metadata?.creationTimestamp ?? 0).getTime();
  return [...jobs].sort((a, b) => t(b) - t(a));
}

type JobState = TrainJobInfo["state"];

/** Complete/Failed are the terminal conditions (SuccessCriteriaMet/FailureTarget only precede them). */
function jobState(job: V1Job): JobState {
  if (job.metadata?.deletionTimestamp) return "deleting";
  const conds = job.status?.conditions ?? [];
  if (conds.some((c) => c.type === "Complete" && c.status === "True")) return "succeeded";
  if (conds.some((c) => c.type === "Failed" && c.status === "True")) return "failed";
  return "active";
}

async function ownPod(kube: Kube, opts: TrainJobOptions): Promise<Inherited | null> {
  const section = opts.config.kubernetes.job;
  if (!section.inherit_from_pod) return null;
  const env = opts.env ?? process.env;
  const name = env.POD_NAME || (kube.source === "in-cluster" ? env.HOSTNAME : undefined);
  if (!name) return null;
  const namespace = env.POD_NAMESPACE || kube.namespace;
  try {
    const pod = await kube.core.readNamespacedPod({ name, namespace });
    return inheritFromPod(pod, section.container_name);
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    note(
      opts,
      `cannot read the server pod ${namespace}/${name} (${apiMessage(err)}); using kubernetes.job only`,
    );
    return null;
  }
}

async function deleteJob(kube: Kube, name: string): Promise<boolean> {
  try {
    // Background propagation: the API's default for Jobs orphans their pods.
    await kube.batch.deleteNamespacedJob({
      name,
      namespace: kube.namespace,
      propagationPolicy: "Background",
    });
    return true;
  } catch (err) {
    if (statusOf(err) === 404) return false;
    throw apiFailure(err, `cannot delete Job ${name}`);
  }
}

function cancelledBeforeStart(kube: Kube, name: string): TrainJobResult {
  return {
    status: "cancelled",
    jobName: name,
    namespace: kube.namespace,
    reattached: false,
    pods: [],
    message: "cancelled before the training Job was created",
    logTail: [],
    lastLogTime: null,
  };
}

interface FollowState {
  followers: Map<string, PodLogFollower>;
  podNotes: Map<string, string>;
  tail: string[];
  lastLogTime: string | null;
}

async function follow(
  kube: Kube,
  job: V1Job,
  opts: TrainJobOptions,
  reattached: boolean,
): Promise<TrainJobResult> {
  const name = job.metadata?.name ?? "";
  const uid = job.metadata?.uid;
  const k8s = opts.config.kubernetes;
  const pollMs = k8s.poll_interval_s * 1000;
  if (reattached) note(opts, `following existing Job ${name} in namespace ${kube.namespace}`);
  const st: FollowState = {
    followers: new Map(),
    podNotes: new Map(),
    tail: [],
    lastLogTime: opts.logsSince ?? null,
  };
  const container = k8s.job.container_name;
  const base = { jobName: name, namespace: kube.namespace, reattached };
  let pods: V1Pod[] = [];
  let outageSince: number | null = null;
  const outageLimitMs = Math.max(60_000, 120 * pollMs);

  const stopFollowers = async (drainMs: number) => {
    const all = [...st.followers.values()];
    const drained = Promise.all(all.map((f) => f.done));
    await within(drained, drainMs, undefined);
    for (const f of all) f.stop();
    await drained;
  };
  const result = (
    status: TrainJobStatus,
    message: string,
    extra: Partial<TrainJobResult> = {},
  ): TrainJobResult => ({
    ...base,
    status,
    message,
    pods: pods.map((p) => p.metadata?.name ?? ""),
    logTail: st.tail.slice(-LOG_TAIL),
    lastLogTime: st.lastLogTime,
    startedAt: iso(job.status?.startTime),
    finishedAt: iso(job.status?.completionTime),
    ...extra,
  });

  for (;;) {
    if (opts.signal?.aborted) {
      await deleteJob(kube, name);
      note(opts, `cancelled: deleted Job ${name}`);
      await stopFollowers(0);
      await waitForPodsGone(kube, name, uid, k8s.cancel_grace_s * 1000, pollMs);
      return result("cancelled", `cancelled: training Job ${name} deleted`);
    }
    if (opts.detach?.aborted) {
      await stopFollowers(0);
      return result(
        "detached",
        `stopped following Job ${name}; it keeps running and is re-attached on resume`,
      );
    }
    try {
      job = await kube.batch.readNamespacedJob({ name, namespace: kube.namespace });
      pods = await jobPods(kube, name, uid);
      outageSince = null;
    } catch (err) {
      if (statusOf(err) === 404) {
        await stopFollowers(0);
        return result("failed", `training Job ${name} was deleted outside trm-forge`, {
          reason: "JobDeleted",
        });
      }
      if (!isTransient(err)) throw apiFailure(err, `cannot read Job ${name}`);
      outageSince ??= Date.now();
      if (Date.now() - outageSince > outageLimitMs) {
        await stopFollowers(0);
        return result(
          "failed",
          `lost contact with the Kubernetes API (${apiMessage(err)}); Job ${name} may still run`,
          {
            reason: "APIUnreachable",
          },
        );
      }
      await sleep(pollMs, opts);
      continue;
    }
    for (const pod of pods) {
      notePod(opts, st, pod, container);
      const podName = pod.metadata?.name ?? "";
      if (!st.followers.has(podName) && containerStarted(pod, container)) {
        st.followers.set(
          podName,
          new PodLogFollower({
            kube,
            namespace: kube.namespace,
            pod: podName,
            container,
            since: opts.logsSince ?? null,
            idleReconnectMs: k8s.log_idle_reconnect_s * 1000,
            retryMs: Math.min(pollMs, 2000),
            onLine: (text, time) => deliver(opts, st, podName, text, time),
            onNotice: (text) => note(opts, text),
          }),
        );
      }
    }
    const state = jobState(job);
    if (state === "succeeded" || state === "failed") {
      await stopFollowers(Math.max(2000, 3 * pollMs));
      if (state === "succeeded") {
        note(opts, `Job ${name} completed`);
        return result("succeeded", `training Job ${name} completed`);
      }
      if (st.tail.length === 0) await readTail(kube, pods, container, st);
      return failure(job, pods, container, result);
    }
    await sleep(pollMs, opts);
  }
}

function failure(
  job: V1Job,
  pods: V1Pod[],
  container: string,
  result: (s: TrainJobStatus, m: string, e?: Partial<TrainJobResult>) => TrainJobResult,
): TrainJobResult {
  const cond = job.status?.conditions?.find((c) => c.type === "Failed" && c.status === "True");
  const last = [...pods].reverse().find((p) => terminatedOf(p, container));
  const term = last ? terminatedOf(last, container) : undefined;
  const parts = [`training Job ${job.metadata?.name} failed`];
  if (cond) parts.push(`${cond.reason ?? "Failed"}${cond.message ? `: ${cond.message}` : ""}`);
  if (term && last) {
    parts.push(`pod ${last.metadata?.name} exited ${term.exitCode}${term.reason ? ` (${term.reason})` : ""}`);
  }
  const r = result("failed", parts.join("; "), {
    reason: term?.reason === "OOMKilled" ? "OOMKilled" : (cond?.reason ?? term?.reason ?? "Failed"),
    exitCode: term?.exitCode,
  });
  const lastLine = r.logTail.at(-1);
  if (lastLine) r.message += `; last log line: ${lastLine.slice(0, 300)}`;
  return r;
}

function terminatedOf(pod: V1Pod, container: string) {
  return pod.status?.containerStatuses?.find((c) => c.name === container)?.state?.terminated;
}

function containerStarted(pod: V1Pod, container: string): boolean {
  const s = pod.status?.containerStatuses?.find((c) => c.name === container)?.state;
  return Boolean(s?.running || s?.terminated);
}

/** Pods of this Job (by the job-name label every Job controller sets, and by owner uid). */
async function jobPods(kube: Kube, name: string, uid: string | undefined): Promise<V1Pod[]> {
  const res = await kube.core.listNamespacedPod({
    namespace: kube.namespace,
    labelSelector: `job-name=${name}`,
  });
  const mine = res.items.filter(
    (p) => !uid || (p.metadata?.ownerReferences ?? []).some((o) => o.uid === uid),
  );
  const t = (p: V1Pod) => new Date(p.metadata?.creationTimestamp ?? 0).getTime();
  return mine.sort((a, b) => t(a) - t(b));
}

async function waitForPodsGone(
  kube: Kube,
  name: string,
  uid: string | undefined,
  graceMs: number,
  pollMs: number,
) {
  const until = Date.now() + graceMs;
  while (Date.now() < until) {
    try {
      if ((await jobPods(kube, name, uid)).length === 0) return;
    } catch {
      return;
    }
    await new Promise((r) => setTimeout(r, Math.min(pollMs, 1000)));
  }
}

/** A Job that failed while nobody followed it: fetch the end of its last pod's log. */
async function readTail(kube: Kube, pods: V1Pod[], container: string, st: FollowState): Promise<void> {
  const last = pods.at(-1)?.metadata?.name;
  if (!last) return;
  try {
    const res = await openPodLog(kube, {
      namespace: kube.namespace,
      pod: last,
      container,
      follow: false,
      tailLines: LOG_TAIL,
    });
    let text = "";
    for await (const chunk of res) text += chunk;
    for (const line of text.split("\n")) if (line) st.tail.push(splitTimestamp(line).text);
  } catch {
    // The pod may be gone already; the failure is reported without its log.
  }
}

function deliver(
  opts: TrainJobOptions,
  st: FollowState,
  pod: string,
  text: string,
  time: string | null,
): void {
  st.tail.push(text);
  if (st.tail.length > 4 * LOG_TAIL) st.tail.splice(0, st.tail.length - LOG_TAIL);
  if (time) st.lastLogTime = time;
  opts.onLog?.(text, { source: pod, time });
  const parsed = parsePodLine(text);
  if (parsed.kind === "progress") opts.onProgress?.(parsed.progress);
}

/** Says once per change where a pod stands: scheduled, pulling, running, crashed. */
function notePod(opts: TrainJobOptions, st: FollowState, pod: V1Pod, container: string): void {
  const name = pod.metadata?.name ?? "";
  const cs = pod.status?.containerStatuses?.find((c) => c.name === container);
  const waiting = cs?.state?.waiting;
  const term = cs?.state?.terminated;
  const unschedulable = pod.status?.conditions?.find(
    (c) => c.type === "PodScheduled" && c.status === "False",
  );
  let text = `pod ${name}: ${pod.status?.phase ?? "Pending"}`;
  if (unschedulable) text += ` (${unschedulable.reason ?? "Unschedulable"}: ${unschedulable.message ?? ""})`;
  else if (waiting)
    text += ` (${waiting.reason ?? "waiting"}${waiting.message ? `: ${waiting.message}` : ""})`;
  else if (term) text += ` (exit ${term.exitCode}${term.reason ? `, ${term.reason}` : ""})`;
  if (pod.spec?.nodeName) text += ` on ${pod.spec.nodeName}`;
  if (st.podNotes.get(name) !== text) {
    st.podNotes.set(name, text);
    note(opts, text);
  }
}

function note(opts: TrainJobOptions, text: string): void {
  log.info({ run: opts.runId, agent: opts.agent }, `kubernetes runner: ${text}`);
  opts.onLog?.(`[kubernetes] ${text}`, { source: "runner", time: null });
}

function apiFailure(err: unknown, what: string): Error {
  const status = statusOf(err);
  // The pipeline retries transient failures with backoff; a retry re-attaches to the run's Job.
  if (isTransient(err)) return new TransientError(`${what}: ${apiMessage(err)}`);
  if (status === 401 || status === 403) {
    return new ConfigError(
      `${what}: ${apiMessage(err)} (the service account needs the Role in k8s/base: jobs create/get/list/watch/delete, pods get/list/watch, pods/log get)`,
    );
  }
  return new WorkError(`${what}: ${apiMessage(err)}`);
}

function sleep(ms: number, opts: TrainJobOptions): Promise<void> {
  return new Promise((resolve) => {
    const signals = [opts.signal, opts.detach].filter((s): s is AbortSignal => Boolean(s));
    const done = () => {
      clearTimeout(t);
      for (const s of signals) s.removeEventListener("abort", done);
      resolve();
    };
    const t = setTimeout(done, ms);
    for (const s of signals) s.addEventListener("abort", done, { once: true });
  });
}

function iso(d: Date | string | undefined): string | undefined {
  if (!d) return undefined;
  return d instanceof Date ? d.toISOString() : d;
}
