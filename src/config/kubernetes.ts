// The kubernetes runner: where the train stage runs when `runner: kubernetes`.
import * as z from "zod";
import { positiveInt } from "./fields.js";

const K8sName = z
  .string()
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, "use lowercase letters, digits and -")
  .max(63);
/** A resource quantity such as 500m, 8Gi or 1 (YAML numbers are accepted). */
const K8sQuantity = z.union([
  z.string().regex(/^[0-9.]+[a-zA-Z]*$/, "a quantity such as 500m, 8Gi or 1"),
  z.number(),
]);

/** The training Job that `runner: kubernetes` creates: same image and store, with its own resources. */
export const KubernetesJobSchema = z
  .object({
    /** Job names are <name_prefix>-<run>-<attempt>. */
    name_prefix: K8sName.max(30).default("trm-forge-train"),
    /** Default: the server pod's own image (read through the API), so the Job runs the same code. */
    image: z.string().min(1).optional(),
    image_pull_policy: z.enum(["Always", "IfNotPresent", "Never"]).optional(),
    /** Copy env, envFrom and the config/secret volumes of the server's own container into the Job. */
    inherit_from_pod: z.boolean().default(true),
    /** The server container whose image/env/volumes are inherited, and the Job's container name. */
    container_name: K8sName.default("trm-forge"),
    /** "{run_id}", "{agent}" and "{attempt}" are replaced. */
    args: z
      .array(z.string())
      .min(1)
      .default(["run", "--agent", "{agent}", "--resume", "{run_id}", "--stages", "train"]),
    service_account_name: K8sName.optional(),
    env: z
      .array(
        z.union([
          z.object({ name: z.string().min(1), value: z.string() }).strict(),
          z
            .object({
              name: z.string().min(1),
              secret: z.object({ name: K8sName, key: z.string().min(1) }).strict(),
            })
            .strict(),
        ]),
      )
      .default([]),
    /**
     * PersistentVolumeClaims the Job mounts besides what it inherits, e.g. the CUDA compute cache, so
     * a GPU that runs tfjs-node-gpu's kernels from PTX pays the JIT once rather than every month.
     */
    volumes: z
      .array(z.object({ name: K8sName, claim: K8sName, mount_path: z.string().startsWith("/") }).strict())
      .default([]),
    /** When nothing is inherited: the ConfigMap with the config file (TRM_FORGE_CONFIG names it). */
    config_map: z
      .object({
        name: K8sName,
        key: z.string().min(1).default("config.yaml"),
        mount_path: z.string().startsWith("/").default("/etc/trm-forge"),
      })
      .strict()
      .optional(),
    resources: z
      .object({
        requests: z.record(z.string(), K8sQuantity).optional(),
        limits: z.record(z.string(), K8sQuantity).optional(),
      })
      .strict()
      .default({}),
    node_selector: z.record(z.string(), z.string()).default({}),
    tolerations: z
      .array(
        z
          .object({
            key: z.string().optional(),
            operator: z.enum(["Exists", "Equal"]).optional(),
            value: z.string().optional(),
            effect: z.enum(["NoSchedule", "PreferNoSchedule", "NoExecute"]).optional(),
            toleration_seconds: z.number().int().optional(),
          })
          .strict(),
      )
      .default([]),
    priority_class_name: z.string().min(1).optional(),
    /** e.g. "nvidia" where the NVIDIA container runtime is not the node's default (k3s). */
    runtime_class_name: K8sName.optional(),
    labels: z.record(z.string(), z.string()).default({}),
    annotations: z.record(z.string(), z.string()).default({}),
    /** Pod retries by Kubernetes; training resumes from its last checkpoint in the store. */
    backoff_limit: z.number().int().min(0).default(1),
    active_deadline_s: positiveInt.default(86_400),
    /** Finished Jobs (and their pods' logs) are deleted by Kubernetes this long after they end. */
    ttl_after_finished_s: z.number().int().min(0).default(86_400),
  })
  .strict();

export const KubernetesSchema = z
  .object({
    /** Default: the server pod's namespace in the cluster, else the kubeconfig context's, else "default". */
    namespace: K8sName.optional(),
    /** Out of the cluster only: default $KUBECONFIG or ~/.kube/config. In a pod, the service account. */
    kubeconfig: z.string().min(1).optional(),
    context: z.string().min(1).optional(),
    /** How often the Job and its pods are read. */
    poll_interval_s: z.number().positive().default(5),
    /** A log stream silent this long while the pod runs is reopened (dropped connections stay silent). */
    log_idle_reconnect_s: z.number().positive().default(120),
    /** After a cancel, how long to wait for the Job's pods to go before returning. */
    cancel_grace_s: z.number().min(0).default(60),
    job: KubernetesJobSchema.prefault({}),
  })
  .strict();

export type KubernetesSection = z.infer<typeof KubernetesSchema>;
