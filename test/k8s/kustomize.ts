// A small `kustomize build` for the tests (Debian packages no kustomize). It covers what k8s/ uses:
// resources (files and directories), namespace, images, patches (strategic merge for the fields
// below, and JSON 6902), and configMapGenerator (files, literals, behavior create/replace/merge,
// labels/annotations, the content-hash name suffix with references updated, as kustomize does).
// Anything else in a kustomization is refused, so a new feature cannot be silently ignored.
import { createHash } from "node:crypto";
import { existsSync, readFileSync, statSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { parseAllDocuments } from "yaml";

export type K8sObject = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string } & Obj;
} & Obj;
type Obj = Record<string, any>;

const SUPPORTED = new Set([
  "apiVersion",
  "kind",
  "metadata",
  "resources",
  "namespace",
  "images",
  "patches",
  "configMapGenerator",
  "generatorOptions",
]);

/** Kinds without a namespace among those a kustomization here may hold. */
const CLUSTER_SCOPED = new Set([
  "Namespace",
  "ClusterRole",
  "ClusterRoleBinding",
  "CustomResourceDefinition",
  "PriorityClass",
]);

/** Internal marks on generated ConfigMaps, removed before output. */
const GEN = Symbol("generated");
interface GenMark {
  hash: boolean;
}

export class KustomizeError extends Error {}

/** Reads every YAML document of a file; empty documents are skipped. */
export function readYamlDocs(path: string): Obj[] {
  const docs = parseAllDocuments(readFileSync(path, "utf8"));
  const out: Obj[] = [];
  for (const d of docs) {
    if (d.errors.length) throw new KustomizeError(`${path}: ${d.errors[0].message}`);
    const v = d.toJS();
    if (v !== null && v !== undefined) out.push(v);
  }
  return out;
}

/** Builds the kustomization in `dir` and returns the objects, as `kustomize build dir` would. */
export function build(dir: string): K8sObject[] {
  const objects = buildLevel(resolve(dir), []);
  applyHashSuffixes(objects);
  return objects;
}

function kustomizationFile(dir: string): string {
  for (const n of ["kustomization.yaml", "kustomization.yml", "Kustomization"]) {
    const p = join(dir, n);
    if (existsSync(p)) return p;
  }
  throw new KustomizeError(`no kustomization file in ${dir}`);
}

function buildLevel(dir: string, stack: string[]): K8sObject[] {
  if (stack.includes(dir)) throw new KustomizeError(`cycle: ${[...stack, dir].join(" -> ")}`);
  const file = kustomizationFile(dir);
  const k = readYamlDocs(file)[0] ?? {};
  for (const key of Object.keys(k)) {
    if (!SUPPORTED.has(key)) throw new KustomizeError(`${file}: unsupported field "${key}"`);
  }
  if (k.kind !== "Kustomization" || k.apiVersion !== "kustomize.config.k8s.io/v1beta1") {
    throw new KustomizeError(
      `${file}: expected apiVersion kustomize.config.k8s.io/v1beta1, kind Kustomization`,
    );
  }
  const objects: K8sObject[] = [];
  for (const r of k.resources ?? []) {
    const p = resolve(dir, r);
    if (!existsSync(p)) throw new KustomizeError(`${file}: resource ${r} does not exist`);
    const loaded = statSync(p).isDirectory()
      ? buildLevel(p, [...stack, dir])
      : readYamlDocs(p).map(asObject(p));
    for (const o of loaded) add(objects, o, file);
  }
  for (const g of k.configMapGenerator ?? [])
    generateConfigMap(objects, g, dir, file, k.generatorOptions ?? {});
  for (const p of k.patches ?? []) applyPatch(objects, p, dir, file);
  if (k.namespace) {
    for (const o of objects) {
      if (!CLUSTER_SCOPED.has(o.kind)) o.metadata.namespace = k.namespace;
      if (o.kind === "RoleBinding" || o.kind === "ClusterRoleBinding") {
        for (const s of o.subjects ?? []) if (s.kind === "ServiceAccount") s.namespace = k.namespace;
      }
    }
  }
  for (const img of k.images ?? []) setImages(objects, img);
  return objects;
}

function asObject(path: string) {
  return (o: Obj): K8sObject => {
    if (
      typeof o.apiVersion !== "string" ||
      typeof o.kind !== "string" ||
      typeof o.metadata?.name !== "string"
    ) {
      throw new KustomizeError(`${path}: every document needs apiVersion, kind and metadata.name`);
    }
    return o as K8sObject;
  };
}

function id(o: K8sObject): string {
  return `${o.apiVersion.split("/").length > 1 ? o.apiVersion.split("/")[0] : ""}/${o.kind}/${o.metadata.namespace ?? ""}/${o.metadata.name}`;
}

function add(objects: K8sObject[], o: K8sObject, file: string): void {
  if (objects.some((x) => id(x) === id(o))) throw new KustomizeError(`${file}: ${id(o)} is defined twice`);
  objects.push(o);
}

// ---- configMapGenerator ---------------------------------------------------------------------------

function generateConfigMap(objects: K8sObject[], g: Obj, dir: string, file: string, gen: Obj): void {
  if (!g.name) throw new KustomizeError(`${file}: configMapGenerator needs a name`);
  const data: Record<string, string> = {};
  for (const f of g.files ?? []) {
    const [key, rel] = f.includes("=") ? f.split(/=(.*)/s, 2) : [basename(f), f];
    const p = resolve(dir, rel);
    if (!existsSync(p)) throw new KustomizeError(`${file}: configMapGenerator file ${rel} does not exist`);
    data[key] = readFileSync(p, "utf8");
  }
  for (const l of g.literals ?? []) {
    const [key, value] = l.split(/=(.*)/s, 2);
    data[key] = value;
  }
  const opts = { ...gen, ...(g.options ?? {}) };
  const behavior = g.behavior ?? "create";
  const existing = objects.find(
    (o) => o.kind === "ConfigMap" && o.metadata.name === g.name && (o as any)[GEN],
  );
  if (behavior === "create") {
    if (existing)
      throw new KustomizeError(`${file}: ConfigMap ${g.name} already exists (use behavior: replace/merge)`);
    const cm: K8sObject = { apiVersion: "v1", kind: "ConfigMap", metadata: { name: g.name }, data };
    if (g.namespace) cm.metadata.namespace = g.namespace;
    if (opts.labels) cm.metadata.labels = { ...opts.labels };
    if (opts.annotations) cm.metadata.annotations = { ...opts.annotations };
    (cm as any)[GEN] = { hash: !opts.disableNameSuffixHash } satisfies GenMark;
    objects.push(cm);
    return;
  }
  if (!existing)
    throw new KustomizeError(`${file}: behavior ${behavior} needs an existing generated ConfigMap ${g.name}`);
  existing.data = behavior === "replace" ? data : { ...existing.data, ...data };
  if (opts.labels) existing.metadata.labels = { ...existing.metadata.labels, ...opts.labels };
  if (opts.annotations)
    existing.metadata.annotations = { ...existing.metadata.annotations, ...opts.annotations };
  if (g.options?.disableNameSuffixHash !== undefined)
    (existing as any)[GEN].hash = !g.options.disableNameSuffixHash;
}

/**
 * kustomize's hash: sha256 of the Go JSON encoding of {data, kind, name}, the first 10 hex digits
 * re-lettered. The name is always "": kustomize looks up "metadata/name" as one field name, which
 * never exists (api/hasher/hasher.go), and its output is what clusters see.
 */
export function configMapHash(cm: K8sObject): string {
  const m: Obj = { data: cm.data ?? {}, kind: "ConfigMap", name: "" };
  if (cm.immutable) m.immutable = true;
  if (cm.binaryData && Object.keys(cm.binaryData).length) m.binaryData = cm.binaryData;
  const hex = createHash("sha256").update(goJson(m)).digest("hex");
  const swap: Record<string, string> = { "0": "g", "1": "h", "3": "k", a: "m", e: "t" };
  return [...hex.slice(0, 10)].map((c) => swap[c] ?? c).join("");
}

/** encoding/json.Marshal: sorted map keys, HTML characters and U+2028/9 escaped. */
function goJson(v: unknown): string {
  if (v === null || typeof v !== "object") {
    return JSON.stringify(v)
      .replace(/</g, "\\u003c")
      .replace(/>/g, "\\u003e")
      .replace(/&/g, "\\u0026")
      .replace(/\u2028/g, "\\u2028")
      .replace(/\u2029/g, "\\u2029");
  }
  if (Array.isArray(v)) return `[${v.map(goJson).join(",")}]`;
  const keys = Object.keys(v as Obj).sort();
  return `{${keys.map((k) => `${goJson(k)}:${goJson((v as Obj)[k])}`).join(",")}}`;
}

function applyHashSuffixes(objects: K8sObject[]): void {
  const renamed = new Map<string, string>();
  for (const o of objects) {
    const mark = (o as any)[GEN] as GenMark | undefined;
    if (!mark) continue;
    delete (o as any)[GEN];
    if (!mark.hash) continue;
    const to = `${o.metadata.name}-${configMapHash(o)}`;
    renamed.set(`${o.metadata.namespace ?? ""}/${o.metadata.name}`, to);
    o.metadata.name = to;
  }
  if (!renamed.size) return;
  for (const o of objects) {
    const spec = podSpecOf(o);
    if (!spec) continue;
    const ns = o.metadata.namespace ?? "";
    const ref = (r: Obj | undefined) => {
      if (r?.name && renamed.has(`${ns}/${r.name}`)) r.name = renamed.get(`${ns}/${r.name}`);
    };
    for (const v of spec.volumes ?? []) {
      ref(v.configMap);
      for (const s of v.projected?.sources ?? []) ref(s.configMap);
    }
    for (const c of [...(spec.containers ?? []), ...(spec.initContainers ?? [])]) {
      for (const e of c.env ?? []) ref(e.valueFrom?.configMapKeyRef);
      for (const e of c.envFrom ?? []) ref(e.configMapRef);
    }
  }
}

/** The pod spec inside a workload, or null. */
export function podSpecOf(o: Obj): Obj | null {
  switch (o.kind) {
    case "Pod":
      return o.spec ?? null;
    case "Deployment":
    case "StatefulSet":
    case "DaemonSet":
    case "ReplicaSet":
    case "Job":
      return o.spec?.template?.spec ?? null;
    case "CronJob":
      return o.spec?.jobTemplate?.spec?.template?.spec ?? null;
    default:
      return null;
  }
}

// ---- images -----------------------------------------------------------------------------------------

function setImages(objects: K8sObject[], img: Obj): void {
  for (const o of objects) {
    const spec = podSpecOf(o);
    for (const c of [...(spec?.containers ?? []), ...(spec?.initContainers ?? [])]) {
      const { name, tag, digest } = splitImage(c.image);
      if (name !== img.name) continue;
      const newName = img.newName ?? name;
      if (img.digest) c.image = `${newName}@${img.digest}`;
      else if (img.newTag) c.image = `${newName}:${img.newTag}`;
      else c.image = `${newName}${digest ? `@${digest}` : tag ? `:${tag}` : ""}`;
    }
  }
}

export function splitImage(image: string): { name: string; tag?: string; digest?: string } {
  const [rest, digest] = image.split("@");
  const slash = rest.lastIndexOf("/");
  const colon = rest.lastIndexOf(":");
  if (colon > slash) return { name: rest.slice(0, colon), tag: rest.slice(colon + 1), digest };
  return { name: rest, digest };
}

// ---- patches ----------------------------------------------------------------------------------------

function applyPatch(objects: K8sObject[], p: Obj, dir: string, file: string): void {
  let text: string;
  if (p.path) {
    const path = resolve(dir, p.path);
    if (!existsSync(path)) throw new KustomizeError(`${file}: patch ${p.path} does not exist`);
    text = readFileSync(path, "utf8");
  } else if (typeof p.patch === "string") text = p.patch;
  else throw new KustomizeError(`${file}: a patch needs path or patch`);
  const docs = parseAllDocuments(text).map((d) => d.toJS());
  const where = `${file}: patch ${p.path ?? "(inline)"}`;
  if (docs.length === 1 && Array.isArray(docs[0])) {
    if (!p.target) throw new KustomizeError(`${where}: a JSON 6902 patch needs a target`);
    const targets = select(objects, p.target);
    if (!targets.length) throw new KustomizeError(`${where}: no object matches the target`);
    for (const t of targets) for (const op of docs[0]) json6902(t, op, where);
    return;
  }
  for (const patch of docs) {
    const targets = p.target
      ? select(objects, p.target)
      : objects.filter(
          (o) =>
            o.kind === patch.kind &&
            o.apiVersion === patch.apiVersion &&
            o.metadata.name === patch.metadata?.name &&
            (!patch.metadata?.namespace || o.metadata.namespace === patch.metadata.namespace),
        );
    if (!targets.length) {
      throw new KustomizeError(`${where}: no ${patch.kind} ${patch.metadata?.name} to patch`);
    }
    for (const t of targets) {
      const { apiVersion: _a, kind: _k, ...rest } = patch;
      if (rest.metadata) {
        const { name: _n, namespace: _ns, ...meta } = rest.metadata;
        rest.metadata = meta;
      }
      strategicMerge(t, rest, [t.kind]);
    }
  }
}

function select(objects: K8sObject[], t: Obj): K8sObject[] {
  return objects.filter((o) => {
    const [group, version] = o.apiVersion.includes("/") ? o.apiVersion.split("/") : ["", o.apiVersion];
    if (t.kind && t.kind !== o.kind) return false;
    if (t.name && t.name !== o.metadata.name) return false;
    if (t.namespace && t.namespace !== o.metadata.namespace) return false;
    if (t.group !== undefined && t.group !== group) return false;
    if (t.version && t.version !== version) return false;
    if (t.labelSelector) {
      for (const term of String(t.labelSelector).split(",")) {
        const [k, v] = term.split("=");
        if (o.metadata.labels?.[k] !== v) return false;
      }
    }
    return true;
  });
}

/** Merge keys of the lists patched here (k8s.io/api patchMergeKey tags). */
function mergeKey(path: string[], field: string): string | null {
  switch (field) {
    case "containers":
    case "initContainers":
    case "volumes":
    case "env":
    case "imagePullSecrets":
      return "name";
    case "volumeMounts":
      return "mountPath";
    case "ports":
      return path[0] === "Service" ? "port" : "containerPort";
    default:
      return null;
  }
}

export function strategicMerge(target: Obj, patch: Obj, path: string[]): void {
  if (patch.$patch === "replace") {
    for (const k of Object.keys(target)) delete target[k];
    const { $patch: _p, ...rest } = patch;
    Object.assign(target, structuredClone(rest));
    return;
  }
  for (const [key, value] of Object.entries(patch)) {
    if (key === "$patch") continue;
    if (value === null) {
      delete target[key];
      continue;
    }
    const cur = target[key];
    if (Array.isArray(value)) {
      const mk = mergeKey(path, key);
      if (!mk || !Array.isArray(cur)) {
        target[key] = structuredClone(value.filter((v) => v?.$patch !== "delete"));
        continue;
      }
      // kustomize (kyaml merge2) orders the result: the patch's items first, in its order, then
      // the target's other items in theirs.
      const merged: Obj[] = [];
      const deleted = new Set<unknown>();
      for (const item of value) {
        const found = cur.find((c: Obj) => c?.[mk] === item?.[mk]);
        if (item?.$patch === "delete") {
          deleted.add(item?.[mk]);
          continue;
        }
        if (found) strategicMerge(found, item, [...path, key]);
        merged.push(found ?? structuredClone(item));
      }
      const patched = new Set(value.map((v: Obj) => v?.[mk]));
      target[key] = [...merged, ...cur.filter((c: Obj) => !patched.has(c?.[mk]) && !deleted.has(c?.[mk]))];
      continue;
    }
    if (value && typeof value === "object" && cur && typeof cur === "object" && !Array.isArray(cur)) {
      strategicMerge(cur, value as Obj, [...path, key]);
    } else {
      target[key] = structuredClone(value);
    }
  }
}

function pointer(p: string): string[] {
  if (!p.startsWith("/")) throw new KustomizeError(`bad JSON pointer ${p}`);
  return p
    .slice(1)
    .split("/")
    .map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"));
}

function json6902(doc: Obj, op: Obj, where: string): void {
  const parts = pointer(op.path);
  const last = parts.pop()!;
  let parent: any = doc;
  for (const seg of parts) {
    parent = Array.isArray(parent) ? parent[Number(seg)] : parent?.[seg];
    if (parent === undefined) throw new KustomizeError(`${where}: path ${op.path} does not exist`);
  }
  const isArr = Array.isArray(parent);
  const idx = last === "-" ? parent.length : Number(last);
  switch (op.op) {
    case "add":
      if (isArr) parent.splice(idx, 0, structuredClone(op.value));
      else parent[last] = structuredClone(op.value);
      return;
    case "replace":
    case "remove":
    case "test": {
      const exists = isArr ? idx < parent.length : last in parent;
      if (!exists) throw new KustomizeError(`${where}: path ${op.path} does not exist`);
      if (op.op === "test") {
        const cur = isArr ? parent[idx] : parent[last];
        if (JSON.stringify(cur) !== JSON.stringify(op.value))
          throw new KustomizeError(`${where}: test ${op.path} failed`);
      } else if (op.op === "remove") {
        if (isArr) parent.splice(idx, 1);
        else delete parent[last];
      } else if (isArr) parent[idx] = structuredClone(op.value);
      else parent[last] = structuredClone(op.value);
      return;
    }
    default:
      throw new KustomizeError(`${where}: unsupported op ${op.op}`);
  }
}
