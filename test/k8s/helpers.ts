// Shared by the k8s tests: the builds, schema validation per kind, and small lookups.
import { readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { Deployment } from "kubernetes-models/apps/v1/Deployment";
import { CronJob } from "kubernetes-models/batch/v1/CronJob";
import { Job } from "kubernetes-models/batch/v1/Job";
import { NetworkPolicy } from "kubernetes-models/networking.k8s.io/v1/NetworkPolicy";
import { Role } from "kubernetes-models/rbac.authorization.k8s.io/v1/Role";
import { RoleBinding } from "kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding";
import { ConfigMap } from "kubernetes-models/v1/ConfigMap";
import { Namespace } from "kubernetes-models/v1/Namespace";
import { PersistentVolumeClaim } from "kubernetes-models/v1/PersistentVolumeClaim";
import { Secret } from "kubernetes-models/v1/Secret";
import { Service } from "kubernetes-models/v1/Service";
import { ServiceAccount } from "kubernetes-models/v1/ServiceAccount";
import * as z from "zod";
import { build, type K8sObject } from "./kustomize.js";
import { modelName, unknownFields } from "./strict-fields.js";

export const REPO = join(import.meta.dirname, "../..");
export const K8S = join(REPO, "k8s");
export const BUILDS = ["overlays/cpu", "overlays/gpu", "alternatives/cronjob"] as const;

const cache = new Map<string, K8sObject[]>();
/** The objects of a kustomization under k8s/ (built once per test file). */
export function built(dir: string): K8sObject[] {
  if (!cache.has(dir)) cache.set(dir, build(join(K8S, dir)));
  return structuredClone(cache.get(dir)!);
}

export function find(objects: K8sObject[], kind: string, name?: string): K8sObject[] {
  return objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
}

export function one(objects: K8sObject[], kind: string, name?: string): K8sObject {
  const found = find(objects, kind, name);
  if (found.length !== 1)
    throw new Error(`expected one ${kind}${name ? ` ${name}` : ""}, found ${found.length}`);
  return found[0];
}

/** Every file under a directory, relative to it. */
export function filesUnder(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d)) {
      const p = join(d, e);
      if (statSync(p).isDirectory()) walk(p);
      else out.push(relative(dir, p));
    }
  };
  walk(dir);
  return out.sort();
}

type Validatable = { validate(): void };
const BUILT_IN: Record<string, new (data: any) => Validatable> = {
  "v1/Namespace": Namespace,
  "v1/ServiceAccount": ServiceAccount,
  "v1/ConfigMap": ConfigMap,
  "v1/Secret": Secret,
  "v1/Service": Service,
  "v1/PersistentVolumeClaim": PersistentVolumeClaim,
  "apps/v1/Deployment": Deployment,
  "batch/v1/CronJob": CronJob,
  "batch/v1/Job": Job,
  "networking.k8s.io/v1/NetworkPolicy": NetworkPolicy,
  "rbac.authorization.k8s.io/v1/Role": Role,
  "rbac.authorization.k8s.io/v1/RoleBinding": RoleBinding,
};

// CRDs: the structure their API references require, and only the fields documented there.
const Duration = z.string().regex(/^(\d+(ms|s|m|h))+$/, "a Go duration such as 30s or 5m");
const LabelSelector = z
  .object({
    matchLabels: z.record(z.string(), z.string()).optional(),
    matchExpressions: z
      .array(
        z
          .object({
            key: z.string(),
            operator: z.enum(["In", "NotIn", "Exists", "DoesNotExist"]),
            values: z.array(z.string()).optional(),
          })
          .strict(),
      )
      .optional(),
  })
  .strict();
const Meta = z
  .object({
    name: z.string().min(1),
    namespace: z.string().optional(),
    labels: z.record(z.string(), z.string()).optional(),
  })
  .strict();

/** monitoring.coreos.com/v1 ServiceMonitor (prometheus-operator API reference). */
export const ServiceMonitorSchema = z
  .object({
    apiVersion: z.literal("monitoring.coreos.com/v1"),
    kind: z.literal("ServiceMonitor"),
    metadata: Meta,
    spec: z
      .object({
        selector: LabelSelector,
        namespaceSelector: z
          .object({ any: z.boolean().optional(), matchNames: z.array(z.string()).optional() })
          .strict()
          .optional(),
        jobLabel: z.string().optional(),
        endpoints: z
          .array(
            z
              .object({
                port: z.string().optional(),
                targetPort: z.union([z.string(), z.number()]).optional(),
                path: z.string().startsWith("/").optional(),
                scheme: z.enum(["http", "https"]).optional(),
                interval: Duration.optional(),
                scrapeTimeout: Duration.optional(),
                honorLabels: z.boolean().optional(),
                authorization: z
                  .object({
                    type: z.string().optional(),
                    credentials: z.object({ name: z.string(), key: z.string() }).strict(),
                  })
                  .strict()
                  .optional(),
              })
              .strict()
              .refine((e) => e.port || e.targetPort, "an endpoint needs port or targetPort"),
          )
          .min(1),
      })
      .strict(),
  })
  .strict();

/** source.toolkit.fluxcd.io/v1 GitRepository. */
export const GitRepositorySchema = z
  .object({
    apiVersion: z.literal("source.toolkit.fluxcd.io/v1"),
    kind: z.literal("GitRepository"),
    metadata: Meta,
    spec: z
      .object({
        interval: Duration,
        url: z.string().regex(/^(https?|ssh):\/\//),
        ref: z
          .object({
            branch: z.string(),
            tag: z.string(),
            semver: z.string(),
            name: z.string(),
            commit: z.string(),
          })
          .partial()
          .strict()
          .optional(),
        secretRef: z.object({ name: z.string() }).strict().optional(),
        timeout: Duration.optional(),
      })
      .strict(),
  })
  .strict();

/** kustomize.toolkit.fluxcd.io/v1 Kustomization: interval, sourceRef and prune are required. */
export const FluxKustomizationSchema = z
  .object({
    apiVersion: z.literal("kustomize.toolkit.fluxcd.io/v1"),
    kind: z.literal("Kustomization"),
    metadata: Meta,
    spec: z
      .object({
        interval: Duration,
        retryInterval: Duration.optional(),
        timeout: Duration.optional(),
        sourceRef: z
          .object({
            kind: z.enum(["GitRepository", "OCIRepository", "Bucket"]),
            name: z.string(),
            namespace: z.string().optional(),
          })
          .strict(),
        path: z.string().optional(),
        prune: z.boolean(),
        wait: z.boolean().optional(),
        targetNamespace: z.string().optional(),
        decryption: z
          .object({
            provider: z.literal("sops"),
            secretRef: z.object({ name: z.string() }).strict().optional(),
          })
          .strict()
          .optional(),
      })
      .strict(),
  })
  .strict();

const CRDS: Record<string, z.ZodType> = {
  "monitoring.coreos.com/v1/ServiceMonitor": ServiceMonitorSchema,
  "source.toolkit.fluxcd.io/v1/GitRepository": GitRepositorySchema,
  "kustomize.toolkit.fluxcd.io/v1/Kustomization": FluxKustomizationSchema,
};

/** Schema problems of one object: [] when it is valid for its kind. */
export function validateObject(o: K8sObject): string[] {
  const gvk = `${o.apiVersion}/${o.kind}`;
  const Model = BUILT_IN[gvk];
  if (Model) {
    const errors: string[] = [];
    try {
      new Model(o).validate();
    } catch (err) {
      errors.push(`${gvk} ${o.metadata.name}: ${(err as Error).message}`);
    }
    return [
      ...errors,
      ...unknownFields(o, modelName(o.apiVersion, o.kind)).map((e) => `${gvk} ${o.metadata.name} ${e}`),
    ];
  }
  const schema = CRDS[gvk];
  if (!schema) return [`${gvk}: no schema to validate this kind against`];
  const r = schema.safeParse(o);
  return r.success
    ? []
    : r.error.issues.map((i) => `${gvk} ${o.metadata.name} ${i.path.join(".")}: ${i.message}`);
}

/** The pod template's spec and metadata inside a workload. */
export function podTemplate(o: K8sObject): { metadata: any; spec: any } | null {
  if (o.kind === "Deployment" || o.kind === "Job") return o.spec.template;
  if (o.kind === "CronJob") return o.spec.jobTemplate.spec.template;
  return null;
}

export function selects(selector: any, labels: Record<string, string> | undefined): boolean {
  const l = labels ?? {};
  for (const [k, v] of Object.entries(selector?.matchLabels ?? {})) if (l[k] !== v) return false;
  for (const e of selector?.matchExpressions ?? []) {
    const has = e.key in l;
    if (e.operator === "In" && !e.values.includes(l[e.key])) return false;
    if (e.operator === "NotIn" && has && e.values.includes(l[e.key])) return false;
    if (e.operator === "Exists" && !has) return false;
    if (e.operator === "DoesNotExist" && has) return false;
  }
  return true;
}
