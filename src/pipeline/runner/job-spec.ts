// The training Job's manifest: built from the `kubernetes.job` template, and by default from the
// server's own pod, so the Job runs the same image with the same config and store credentials.
import { createHash } from "node:crypto";
import type {
  V1Container,
  V1EnvVar,
  V1Job,
  V1LocalObjectReference,
  V1Pod,
  V1PodSecurityContext,
  V1Volume,
  V1VolumeMount,
} from "@kubernetes/client-node";
import type { KubernetesSection } from "../../config/schema.js";
import { ConfigError } from "../../errors.js";
import { SERVICE_ACCOUNT_DIR } from "./kube.js";

type JobSection = KubernetesSection["job"];

/** Labels and annotations on every training Job and its pods. */
export const LABEL = {
  name: "app.kubernetes.io/name",
  component: "app.kubernetes.io/component",
  managedBy: "app.kubernetes.io/managed-by",
  runKey: "trm-forge.dev/run-key",
  agent: "trm-forge.dev/agent",
  attempt: "trm-forge.dev/attempt",
} as const;
export const ANNOTATION = { runId: "trm-forge.dev/run-id", agent: "trm-forge.dev/agent" } as const;

/** Selects every training Job trm-forge made, optionally of one run. */
export function trainJobSelector(runId?: string): string {
  const base = `${LABEL.managedBy}=trm-forge,${LABEL.component}=train`;
  return runId ? `${base},${LABEL.runKey}=${runKey(runId)}` : base;
}

/** Run ids may hold characters a label value cannot; the label carries a hash, the annotation the id. */
export function runKey(runId: string): string {
  return createHash("sha256").update(runId).digest("hex").slice(0, 16);
}

/** A DNS-1123 name of at most 63 characters (Job names become pod label values). */
export function jobName(prefix: string, runId: string, attempt: number): string {
  const slug = runId
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, "-")
    .replace(/^-+|-+$/g, "");
  const tail = `-${runKey(runId).slice(0, 6)}-${attempt}`;
  const room = 63 - prefix.length - 1 - tail.length;
  const part = slug.slice(0, Math.max(0, room)).replace(/-+$/, "");
  return `${prefix}${part ? `-${part}` : ""}${tail}`;
}

/** What a training Job takes from the server's own pod. */
export interface Inherited {
  image: string;
  imagePullPolicy?: string;
  command?: string[];
  env: V1EnvVar[];
  envFrom: NonNullable<V1Container["envFrom"]>;
  volumeMounts: V1VolumeMount[];
  volumes: V1Volume[];
  securityContext?: V1Container["securityContext"];
  podSecurityContext?: V1PodSecurityContext;
  imagePullSecrets?: V1LocalObjectReference[];
}

/**
 * Reads the container's image, env and mounts from the server pod. Persistent volumes become
 * emptyDirs (the Job runs on another node and keeps its scratch to itself; the store is MinIO), and
 * the service account token is not carried over (the training pod never calls the API).
 */
export function inheritFromPod(pod: V1Pod, containerName: string): Inherited {
  const spec = pod.spec;
  const container = spec?.containers.find((c) => c.name === containerName) ?? spec?.containers[0];
  if (!spec || !container?.image) {
    throw new ConfigError(
      `pod ${pod.metadata?.name ?? "?"} has no container "${containerName}" with an image`,
    );
  }
  const byName = new Map((spec.volumes ?? []).map((v) => [v.name, v]));
  const volumes: V1Volume[] = [];
  const volumeMounts: V1VolumeMount[] = [];
  for (const mount of container.volumeMounts ?? []) {
    if (mount.mountPath.startsWith(SERVICE_ACCOUNT_DIR)) continue;
    const vol = byName.get(mount.name);
    if (!vol) continue;
    let copy: V1Volume | null = null;
    if (vol.configMap || vol.secret || vol.projected || vol.downwardAPI || vol.emptyDir) copy = vol;
    else if (vol.persistentVolumeClaim || vol.ephemeral) copy = { name: vol.name, emptyDir: {} };
    if (!copy) continue;
    if (!volumes.some((v) => v.name === copy.name)) volumes.push(copy);
    volumeMounts.push(mount);
  }
  return {
    image: container.image,
    imagePullPolicy: container.imagePullPolicy,
    command: container.command,
    env: container.env ?? [],
    envFrom: container.envFrom ?? [],
    volumeMounts,
    volumes,
    securityContext: container.securityContext,
    podSecurityContext: spec.securityContext,
    imagePullSecrets: spec.imagePullSecrets,
  };
}

export interface TrainJobInput {
  runId: string;
  agent: string;
  attempt: number;
  namespace: string;
  job: JobSection;
  /** The server pod's container, when inheriting. */
  inherited: Inherited | null;
  /** Where the config puts data_dir; the Job gets a scratch emptyDir there when nothing is inherited. */
  dataDir: string;
}

export function buildTrainJob(input: TrainJobInput): V1Job {
  const { job, inherited } = input;
  const image = job.image ?? inherited?.image;
  if (!image) {
    throw new ConfigError(
      "kubernetes.job.image is not set and the server pod's image could not be read " +
        "(set it, or run the server in a pod with POD_NAME/POD_NAMESPACE from the downward API)",
    );
  }
  const name = jobName(job.name_prefix, input.runId, input.attempt);
  const labels: Record<string, string> = {
    ...job.labels,
    [LABEL.name]: "trm-forge",
    [LABEL.component]: "train",
    [LABEL.managedBy]: "trm-forge",
    [LABEL.runKey]: runKey(input.runId),
    [LABEL.agent]: labelValue(input.agent),
    [LABEL.attempt]: String(input.attempt),
  };
  const annotations = {
    ...job.annotations,
    [ANNOTATION.runId]: input.runId,
    [ANNOTATION.agent]: input.agent,
  };

  const env = new Map<string, V1EnvVar>();
  for (const e of inherited?.env ?? []) env.set(e.name, e);
  const volumes: V1Volume[] = [...(inherited?.volumes ?? [])];
  const volumeMounts: V1VolumeMount[] = [...(inherited?.volumeMounts ?? [])];
  if (!inherited) {
    if (job.config_map) {
      volumes.push({ name: "config", configMap: { name: job.config_map.name } });
      volumeMounts.push({ name: "config", mountPath: job.config_map.mount_path, readOnly: true });
      env.set("TRM_FORGE_CONFIG", {
        name: "TRM_FORGE_CONFIG",
        value: `${job.config_map.mount_path.replace(/\/+$/, "")}/${job.config_map.key}`,
      });
    }
    volumes.push({ name: "data", emptyDir: {} }, { name: "tmp", emptyDir: {} });
    volumeMounts.push({ name: "data", mountPath: input.dataDir }, { name: "tmp", mountPath: "/tmp" });
  }
  for (const v of job.volumes) {
    if (volumes.some((x) => x.name === v.name) || volumeMounts.some((m) => m.mountPath === v.mount_path))
      throw new ConfigError(
        `kubernetes.job.volumes: "${v.name}" at ${v.mount_path} clashes with a volume the Job already has`,
      );
    volumes.push({ name: v.name, persistentVolumeClaim: { claimName: v.claim } });
    volumeMounts.push({ name: v.name, mountPath: v.mount_path });
  }
  for (const e of job.env) {
    env.set(
      e.name,
      "value" in e
        ? { name: e.name, value: e.value }
        : { name: e.name, valueFrom: { secretKeyRef: e.secret } },
    );
  }
  // The pod trains in its own process: with the inherited config it would otherwise start a Job itself.
  // kubernetes.job.env may ask for TRM_FORGE_RUNNER=external instead: the pod then runs
  // external.command (e.g. PyTorch in a GPU image) and imports its weights.
  const asked = job.env.find((e) => e.name === "TRM_FORGE_RUNNER");
  if (!(asked && "value" in asked && asked.value === "external"))
    env.set("TRM_FORGE_RUNNER", { name: "TRM_FORGE_RUNNER", value: "in-process" });

  const args = job.args.map((a) =>
    a
      .replaceAll("{run_id}", input.runId)
      .replaceAll("{agent}", input.agent)
      .replaceAll("{attempt}", String(input.attempt)),
  );
  const container: V1Container = {
    name: job.container_name,
    image,
    args,
    env: [...env.values()],
    resources: {
      ...(job.resources.requests ? { requests: quantities(job.resources.requests) } : {}),
      ...(job.resources.limits ? { limits: quantities(job.resources.limits) } : {}),
    },
    volumeMounts,
  };
  const pullPolicy = job.image_pull_policy ?? (job.image ? undefined : inherited?.imagePullPolicy);
  if (pullPolicy) container.imagePullPolicy = pullPolicy;
  if (inherited?.command?.length && !job.image) container.command = inherited.command;
  if (inherited?.envFrom.length) container.envFrom = inherited.envFrom;
  container.securityContext = inherited?.securityContext ?? {
    allowPrivilegeEscalation: false,
    readOnlyRootFilesystem: true,
    capabilities: { drop: ["ALL"] },
  };

  return {
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: { name, namespace: input.namespace, labels, annotations },
    spec: {
      backoffLimit: job.backoff_limit,
      activeDeadlineSeconds: job.active_deadline_s,
      ttlSecondsAfterFinished: job.ttl_after_finished_s,
      template: {
        metadata: { labels, annotations },
        spec: {
          restartPolicy: "Never",
          automountServiceAccountToken: false,
          ...(job.service_account_name ? { serviceAccountName: job.service_account_name } : {}),
          ...(Object.keys(job.node_selector).length ? { nodeSelector: job.node_selector } : {}),
          ...(job.tolerations.length
            ? {
                tolerations: job.tolerations.map((t) =>
                  defined({
                    key: t.key,
                    operator: t.operator,
                    value: t.value,
                    effect: t.effect,
                    tolerationSeconds: t.toleration_seconds,
                  }),
                ),
              }
            : {}),
          ...(job.priority_class_name ? { priorityClassName: job.priority_class_name } : {}),
          ...(job.runtime_class_name ? { runtimeClassName: job.runtime_class_name } : {}),
          ...(inherited?.imagePullSecrets?.length ? { imagePullSecrets: inherited.imagePullSecrets } : {}),
          securityContext: inherited?.podSecurityContext ?? {
            runAsNonRoot: true,
            seccompProfile: { type: "RuntimeDefault" },
          },
          containers: [container],
          volumes,
        },
      },
    },
  };
}

function defined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

function quantities(q: Record<string, string | number>): Record<string, string> {
  return Object.fromEntries(Object.entries(q).map(([k, v]) => [k, String(v)]));
}

/** Agent names are already label-safe; anything else is squeezed into the label value alphabet. */
function labelValue(v: string): string {
  const s = v
    .replace(/[^A-Za-z0-9._-]+/g, "-")
    .slice(0, 63)
    .replace(/^[^A-Za-z0-9]+|[^A-Za-z0-9]+$/g, "");
  return s || "unknown";
}
