import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { configFor } from "../../src/bench/quality.js";
import { loadConfig, parseConfig } from "../../src/config/index.js";
import type { Config } from "../../src/config/schema.js";
import { demoConfig, FULL } from "../../src/demo/config.js";
import { CUDA_CACHE_MAX_BYTES } from "../../src/model/gpu.js";
import { buildTrainJob, inheritFromPod } from "../../src/pipeline/runner/job-spec.js";
import {
  BUILDS,
  built,
  filesUnder,
  find,
  K8S,
  one,
  podTemplate,
  selects,
  validateObject,
} from "./helpers.js";
import { type K8sObject, readYamlDocs } from "./kustomize.js";

const yamlFiles = filesUnder(K8S).filter((f) => /\.ya?ml$/.test(f));
const secretsExample = readYamlDocs(join(K8S, "secrets.example.yaml")) as K8sObject[];

/** The trm-forge config in a build's ConfigMap, validated by the project's own schema. */
function configOf(objects: K8sObject[]): { raw: any; config: Config; cm: K8sObject } {
  const cm = one(
    objects.filter((o) => o.metadata.name.startsWith("trm-forge-config")),
    "ConfigMap",
  );
  const raw = parseYaml(cm.data["config.yaml"]);
  return { raw, config: parseConfig(raw, `${cm.metadata.name}/config.yaml`), cm };
}

function serverContainer(objects: K8sObject[]) {
  return one(objects, "Deployment", "trm-forge").spec.template.spec.containers.find(
    (c: any) => c.name === "trm-forge",
  );
}

describe("k8s manifests", () => {
  it("every YAML file parses, and every document is an object", () => {
    expect(yamlFiles.length).toBeGreaterThan(15);
    for (const f of yamlFiles) {
      const docs = readYamlDocs(join(K8S, f));
      expect(docs.length, f).toBeGreaterThan(0);
      for (const d of docs)
        expect(typeof d === "object" && !Array.isArray(d) ? "object" : d, f).toBeDefined();
    }
    expect(() =>
      JSON.parse(readFileSync(join(K8S, "base/grafana/trm-forge-dashboard.json"), "utf8")),
    ).not.toThrow();
  });

  it.each(BUILDS)(
    "every object of %s validates against the Kubernetes schemas, with no unknown field",
    (dir) => {
      const objects = built(dir);
      const kinds = new Set(objects.map((o) => o.kind));
      for (const k of [
        "Namespace",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ConfigMap",
        "Service",
        "PersistentVolumeClaim",
        "Deployment",
        "NetworkPolicy",
        "ServiceMonitor",
      ]) {
        expect(kinds, `${dir} has a ${k}`).toContain(k);
      }
      expect(objects.flatMap(validateObject)).toEqual([]);
      for (const o of objects)
        if (o.kind !== "Namespace")
          expect(o.metadata.namespace, `${o.kind} ${o.metadata.name}`).toBe("trm-forge");
    },
  );

  it("the validation catches what it should (a typo, a wrong type)", () => {
    const d = one(built("overlays/cpu"), "Deployment");
    d.spec.template.spec.containers[0].readinessprobe = {};
    expect(validateObject(d).join()).toMatch(/unknown field "readinessprobe"/);
    const svc = one(built("overlays/cpu"), "Service");
    svc.spec.ports[0].port = "8750";
    expect(validateObject(svc).join()).toMatch(/must be integer/);
  });

  it("the Secrets example and the Flux objects validate, and hold no secret values", () => {
    expect(secretsExample.flatMap(validateObject)).toEqual([]);
    for (const s of secretsExample) {
      expect(s.data).toBeUndefined();
      for (const v of Object.values(s.stringData ?? {})) expect(v).toBe("");
    }
    const flux = readYamlDocs(join(K8S, "flux/trm-forge.yaml")) as K8sObject[];
    expect(flux.flatMap(validateObject)).toEqual([]);
    const ks = one(flux, "Kustomization");
    const repo = one(flux, "GitRepository");
    expect(ks.spec.sourceRef).toEqual({ kind: "GitRepository", name: repo.metadata.name });
    expect(existsSync(join(K8S, "..", ks.spec.path, "kustomization.yaml"))).toBe(true);
  });

  it.each(BUILDS)("references in %s resolve: config, secrets, claims, accounts, ports, selectors", (dir) => {
    const objects = built(dir);
    const secrets = new Map(secretsExample.map((s) => [s.metadata.name, Object.keys(s.stringData ?? {})]));
    const problems: string[] = [];
    for (const w of objects) {
      const tpl = podTemplate(w);
      if (!tpl) continue;
      const where = `${w.kind} ${w.metadata.name}`;
      const spec = tpl.spec;
      if (spec.serviceAccountName && !find(objects, "ServiceAccount", spec.serviceAccountName).length) {
        problems.push(`${where}: no ServiceAccount ${spec.serviceAccountName}`);
      }
      const volumes = new Map<string, any>((spec.volumes ?? []).map((v: any) => [v.name, v]));
      for (const v of volumes.values()) {
        if (v.configMap && !find(objects, "ConfigMap", v.configMap.name).length)
          problems.push(`${where}: no ConfigMap ${v.configMap.name}`);
        if (v.secret && !secrets.has(v.secret.secretName))
          problems.push(`${where}: no Secret ${v.secret.secretName}`);
        if (
          v.persistentVolumeClaim &&
          !find(objects, "PersistentVolumeClaim", v.persistentVolumeClaim.claimName).length
        ) {
          problems.push(`${where}: no PVC ${v.persistentVolumeClaim.claimName}`);
        }
      }
      for (const c of spec.containers) {
        for (const m of c.volumeMounts ?? [])
          if (!volumes.has(m.name)) problems.push(`${where}: mount of unknown volume ${m.name}`);
        for (const e of c.env ?? []) {
          const ref = e.valueFrom?.secretKeyRef;
          if (ref && !secrets.get(ref.name)?.includes(ref.key))
            problems.push(`${where}: env ${e.name} -> no Secret key ${ref.name}/${ref.key}`);
          const cmRef = e.valueFrom?.configMapKeyRef;
          if (cmRef && !find(objects, "ConfigMap", cmRef.name)[0]?.data?.[cmRef.key])
            problems.push(`${where}: env ${e.name} -> no ConfigMap key`);
        }
        const portNames = new Set((c.ports ?? []).map((p: any) => p.name));
        for (const probe of [c.livenessProbe, c.readinessProbe, c.startupProbe].filter(Boolean)) {
          if (typeof probe.httpGet.port === "string" && !portNames.has(probe.httpGet.port))
            problems.push(`${where}: probe port ${probe.httpGet.port}`);
          if (probe.httpGet.path !== "/healthz") problems.push(`${where}: probe path ${probe.httpGet.path}`);
        }
      }
    }
    // The config mount's key is the file TRM_FORGE_CONFIG names.
    const c = serverContainer(objects);
    const configPath = c.env.find((e: any) => e.name === "TRM_FORGE_CONFIG").value;
    const mount = c.volumeMounts.find((m: any) => configPath.startsWith(`${m.mountPath}/`));
    const vol = one(objects, "Deployment").spec.template.spec.volumes.find((v: any) => v.name === mount.name);
    expect(find(objects, "ConfigMap", vol.configMap.name)[0].data).toHaveProperty(
      configPath.slice(mount.mountPath.length + 1),
    );

    // Deployment, Service, ServiceMonitor and NetworkPolicy agree on labels and ports.
    const deploy = one(objects, "Deployment");
    const podLabels = deploy.spec.template.metadata.labels;
    expect(selects(deploy.spec.selector, podLabels)).toBe(true);
    const svc = one(objects, "Service");
    expect(selects({ matchLabels: svc.spec.selector }, podLabels)).toBe(true);
    const portNames = new Set(c.ports.map((p: any) => p.name));
    for (const p of svc.spec.ports)
      expect(portNames.has(p.targetPort) || c.ports.some((x: any) => x.containerPort === p.targetPort)).toBe(
        true,
      );
    const sm = one(objects, "ServiceMonitor");
    expect(selects(sm.spec.selector, svc.metadata.labels)).toBe(true);
    for (const e of sm.spec.endpoints) expect(svc.spec.ports.map((p: any) => p.name)).toContain(e.port);
    const np = one(objects, "NetworkPolicy");
    expect(selects(np.spec.podSelector, podLabels)).toBe(true);
    for (const rule of np.spec.ingress)
      for (const p of rule.ports)
        expect(portNames.has(p.port) || p.port === c.ports[0].containerPort).toBe(true);
    // The metrics scrape is let in: Prometheus' rule exists and uses the ServiceMonitor's port.
    expect(
      np.spec.ingress.some((r: any) =>
        r.from.some(
          (f: any) => f.namespaceSelector?.matchLabels?.["kubernetes.io/metadata.name"] === "monitoring",
        ),
      ),
    ).toBe(true);
    const rb = one(objects, "RoleBinding");
    expect(find(objects, "Role", rb.roleRef.name)).toHaveLength(1);
    for (const s of rb.subjects) expect(find(objects, "ServiceAccount", s.name)).toHaveLength(1);
    expect(rb.subjects[0].namespace).toBe("trm-forge");
    expect(problems).toEqual([]);
  });

  it("the server runs as non-root with a read-only root filesystem, probes on /healthz and resource bounds", () => {
    for (const dir of BUILDS) {
      const d = one(built(dir), "Deployment");
      const spec = d.spec.template.spec;
      const c = serverContainer(built(dir));
      expect(spec.securityContext.runAsNonRoot).toBe(true);
      expect(spec.securityContext.runAsUser).toBeGreaterThanOrEqual(10000);
      expect(c.securityContext).toMatchObject({
        readOnlyRootFilesystem: true,
        allowPrivilegeEscalation: false,
      });
      expect(c.resources.requests).toHaveProperty("memory");
      expect(c.resources.limits).toHaveProperty("memory");
      expect(c.livenessProbe.httpGet.path).toBe("/healthz");
      expect(c.readinessProbe.httpGet.path).toBe("/healthz");
      // Writable paths are volumes: data_dir and /tmp.
      const { config } = configOf(built(dir));
      const mounts = c.volumeMounts.filter((m: any) => !m.readOnly).map((m: any) => m.mountPath);
      expect(mounts).toEqual(expect.arrayContaining([config.data_dir, "/tmp"]));
      // The tokens Secret is readable by the pod's group only (0440), not world-readable.
      const tokens = spec.volumes.find((v: any) => v.secret?.secretName === "trm-forge-tokens");
      expect(tokens.secret.defaultMode).toBe(0o440);
      // Images are pinned: a registry name and a version tag, never latest.
      for (const w of built(dir).filter((o) => podTemplate(o))) {
        for (const ct of podTemplate(w)!.spec.containers)
          expect(ct.image).toMatch(/^ghcr\.io\/homelab\/trm-forge:\d+\.\d+\.\d+-(cpu|gpu)$/);
      }
    }
  });

  it("gives the server an API token only where the Job runner needs one", () => {
    const token = (dir: string) =>
      one(built(dir), "Deployment").spec.template.spec.automountServiceAccountToken !== false;
    expect(token("overlays/gpu")).toBe(true);
    expect(configOf(built("overlays/gpu")).config.runner).toBe("kubernetes");
    for (const dir of ["overlays/cpu", "alternatives/cronjob"]) {
      expect(token(dir), dir).toBe(false);
      expect(configOf(built(dir)).config.runner).toBe("in-process");
    }
  });

  it("the Role grants exactly the Job runner's verbs", () => {
    const role = one(built("overlays/gpu"), "Role");
    const rules = Object.fromEntries(
      role.rules.map((r: any) => [`${r.apiGroups[0]}/${r.resources[0]}`, [...r.verbs].sort()]),
    );
    expect(rules).toEqual({
      "batch/jobs": ["create", "delete", "get", "list", "watch"],
      "/pods": ["get", "list", "watch"],
      "/pods/log": ["get"],
    });
  });
});

describe("the config in the ConfigMap", () => {
  const tmp = mkdtempSync(join(tmpdir(), "trm-k8s-config-"));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it.each(BUILDS)("passes the project's config schema (%s)", (dir) => {
    const { config, raw } = configOf(built(dir));
    expect(config.store.kind).toBe("minio");
    expect(config.data_dir).toBe("/data");
    expect(Object.keys(config.agents).length).toBeGreaterThan(0);
    // Every credential is a reference, and the server container provides every env it names.
    const env = new Set(serverContainer(built(dir)).env.map((e: any) => e.name));
    const refs = JSON.stringify(raw).match(/"env":"[^"]+"/g) ?? [];
    expect(refs.length).toBeGreaterThan(0);
    for (const r of refs) expect(env).toContain(r.slice(7, -1));
  });

  it.each(BUILDS)("points only at services the NetworkPolicy lets the pod reach (%s)", (dir) => {
    const objects = built(dir);
    const { config } = configOf(objects);
    const np = one(objects, "NetworkPolicy");
    const urls: string[] = [];
    for (const a of Object.values(config.agents)) {
      for (const s of [a.sources.prometheus, a.sources.loki, a.sources.tempo]) if (s) urls.push(s.url);
    }
    if (config.ollama.enabled) urls.push(config.ollama.base_url);
    if (config.store.kind === "minio") urls.push(`http://${config.store.endpoint}:${config.store.port}`);
    expect(urls.length).toBeGreaterThan(4);
    for (const u of urls) {
      const url = new URL(u);
      const m = /^[^.]+\.([^.]+)\.svc(\.cluster\.local)?$/.exec(url.hostname);
      expect(m, `${u} is an in-cluster service`).not.toBeNull();
      const port = Number(url.port || (url.protocol === "https:" ? 443 : 80));
      const allowed = np.spec.egress.some(
        (r: any) =>
          r.to.some(
            (t: any) => t.namespaceSelector?.matchLabels?.["kubernetes.io/metadata.name"] === m![1],
          ) && r.ports.some((p: any) => p.port === port),
      );
      expect(allowed, `egress to ${u}`).toBe(true);
    }
    // DNS is allowed, or none of the names above would resolve.
    expect(
      np.spec.egress.some((r: any) => r.ports.some((p: any) => p.port === 53 && p.protocol === "UDP")),
    ).toBe(true);
  });

  it.each(BUILDS)(
    "serves on the pod's address with a token per agent, read from the mounted Secret (%s)",
    (dir) => {
      const objects = built(dir);
      const { config } = configOf(objects);
      const c = serverContainer(objects);
      // The server refuses a non-loopback bind without tokens: the pod listens on all interfaces.
      expect(c.args).toEqual(expect.arrayContaining(["--host", config.server.host]));
      expect(config.server.host).toBe("0.0.0.0");
      expect(config.server.allowed_hosts).toContain("trm-forge.trm-forge.svc.cluster.local");
      const mount = c.volumeMounts.find((m: any) => m.name === "tokens").mountPath;
      const secret = one(secretsExample, "Secret", "trm-forge-tokens");
      const identities = config.tokens.map((t) => t.identity);
      for (const agent of Object.keys(config.agents)) expect(identities).toContain(agent);
      for (const t of config.tokens) {
        expect("file" in t.token && t.token.file).toBe(`${mount}/${t.identity}`);
        expect(Object.keys(secret.stringData)).toContain(t.identity);
      }
      const admins = config.tokens.filter((t) => t.scopes.includes("admin")).map((t) => t.identity);
      expect(admins).toEqual(["admin"]);
    },
  );

  it("the cpu pod's BLAS and kernel threads follow its CPU limit, not the node's processors", () => {
    const c = serverContainer(built("overlays/cpu"));
    const threads = c.env.find((e: any) => e.name === "OPENBLAS_NUM_THREADS");
    expect(threads.valueFrom.resourceFieldRef).toEqual({
      containerName: c.name,
      resource: "limits.cpu",
      divisor: "1",
    });
    expect(Number(c.resources.limits.cpu)).toBeGreaterThanOrEqual(Number(c.resources.requests.cpu));
  });

  it("the gpu config is the base config plus the Kubernetes runner and the 7m preset", () => {
    const base = configOf(built("overlays/cpu")).raw;
    const gpu = configOf(built("overlays/gpu")).raw;
    const { runner, kubernetes, model, ...gpuRest } = gpu;
    // The cpu config's model, dataset shape and training are the CPU's (the next test).
    const { runner: baseRunner, model: baseModel, dataset: _d, train: _t, ...baseRest } = base;
    expect(gpuRest).toEqual(baseRest);
    // CPU pods train `small` (7m takes about half a day on 2 cores), the GPU trains 7m.
    expect(baseModel.preset).toBe("small");
    expect(model).toEqual({ preset: "7m" });
    expect(baseRunner).toBe("in-process");
    expect(runner).toBe("kubernetes");
    expect(kubernetes.job.resources.limits["nvidia.com/gpu"]).toBe(1);
  });

  it("the cpu config trains `small` as the quality bench measured it at 2,400 steps (README)", () => {
    const shipped = configOf(built("overlays/cpu")).config;
    const dir = mkdtempSync(join(tmpdir(), "trm-k8s-quality-"));
    const tokenFile = join(dir, "token");
    writeFileSync(tokenFile, "quality-bench-token-0123456789abcdef\n", { mode: 0o600 });
    const base = demoConfig({
      dataDir: join(dir, "data"),
      simulatorUrl: "http://127.0.0.1:9",
      settings: FULL,
      tokenFile,
      serverPort: 8750,
    });
    const measured = configFor(base, { preset: "small", T: 1, n: 1, N_sup: 1 }, 2400, dir);
    rmSync(dir, { recursive: true, force: true });
    expect(shipped.model).toEqual({ ...measured.model, backend: shipped.model.backend });
    expect(shipped.dataset.seq_len).toBe(measured.dataset.seq_len);
    // What decides what is learnt, and when validation picks the best model or stops early; the
    // simulator-tuned task weights and the checkpoint cadence are the cluster's own.
    const learning = [
      "max_steps",
      "batch_size",
      "lr",
      "warmup_steps",
      "lr_min_ratio",
      "weight_decay",
      "ema_decay",
      "head_init",
      "seed",
      "eval_interval",
      "patience",
    ] as const;
    for (const k of learning) expect(shipped.train[k], `train.${k}`).toEqual(measured.train[k]);
  });

  it("the gpu overlay's training Job: the server's image and mounts, one GPU, on the GPU pool, let out by the NetworkPolicy", () => {
    const objects = built("overlays/gpu");
    const { config } = configOf(objects);
    const deploy = one(objects, "Deployment");
    // The pod as the API returns it: the Deployment's template under a pod name.
    const pod = {
      metadata: {
        name: "trm-forge-abc",
        namespace: "trm-forge",
        labels: deploy.spec.template.metadata.labels,
      },
      spec: deploy.spec.template.spec,
    };
    const job = buildTrainJob({
      runId: "r20300101-020000-000-ab12",
      agent: "agent-sre",
      attempt: 1,
      namespace: "trm-forge",
      job: config.kubernetes.job,
      inherited: inheritFromPod(pod as any, config.kubernetes.job.container_name),
      dataDir: config.data_dir,
    }) as K8sObject;
    expect(validateObject(job)).toEqual([]);
    const spec = job.spec.template.spec;
    const c = spec.containers[0];
    expect(c.image).toBe(serverContainer(objects).image);
    expect(c.image).toMatch(/-gpu$/);
    expect(c.resources.limits["nvidia.com/gpu"]).toBe("1");
    expect(spec.nodeSelector).toEqual({ "nvidia.com/gpu.present": "true" });
    expect(spec.tolerations).toEqual([{ key: "nvidia.com/gpu", operator: "Exists", effect: "NoSchedule" }]);
    expect(job.spec.ttlSecondsAfterFinished).toBeGreaterThan(0);
    expect(spec.volumes.find((v: any) => v.name === "config").configMap.name).toMatch(/^trm-forge-config-/);
    // The server's data volume becomes scratch; the one claim is the CUDA compute cache, a claim of
    // this overlay that only the Jobs mount, at CUDA_CACHE_PATH, with the cache raised to CUDA's maximum.
    const claims = spec.volumes.filter((v: any) => v.persistentVolumeClaim);
    expect(claims.map((v: any) => v.persistentVolumeClaim.claimName)).toEqual(["trm-forge-cuda-cache"]);
    const pvc = one(objects, "PersistentVolumeClaim", "trm-forge-cuda-cache");
    expect(pvc.spec.resources.requests.storage).toMatch(/^\d+Gi$/);
    expect(Number.parseInt(pvc.spec.resources.requests.storage, 10) * 1024 ** 3).toBeGreaterThan(
      CUDA_CACHE_MAX_BYTES,
    );
    const cacheMount = c.volumeMounts.find((m: any) => m.name === claims[0].name);
    const envOf = (name: string) => c.env.find((e: any) => e.name === name)?.value;
    expect(cacheMount.readOnly).toBeFalsy();
    expect(envOf("CUDA_CACHE_PATH")).toBe(cacheMount.mountPath);
    expect(Number(envOf("CUDA_CACHE_MAXSIZE"))).toBe(CUDA_CACHE_MAX_BYTES);
    expect(envOf("CUDA_CACHE_DISABLE")).toBeUndefined();
    const serverVolumes = deploy.spec.template.spec.volumes;
    expect(
      serverVolumes.some((v: any) => v.persistentVolumeClaim?.claimName === "trm-forge-cuda-cache"),
    ).toBe(false);
    // The cpu overlay has no such claim.
    expect(built("overlays/cpu").some((o) => o.metadata.name === "trm-forge-cuda-cache")).toBe(false);
    expect(c.env.find((e: any) => e.name === "TRM_FORGE_RUNNER").value).toBe("in-process");
    // The pod trains with the same config, which must load with the Job's env override.
    writeFileSync(join(tmp, "config.yaml"), configOf(objects).cm.data["config.yaml"]);
    const inPod = loadConfig({
      path: join(tmp, "config.yaml"),
      env: { TRM_FORGE_RUNNER: "in-process" },
    }).config;
    expect(inPod.runner).toBe("in-process");
    const np = one(objects, "NetworkPolicy");
    expect(selects(np.spec.podSelector, job.spec.template.metadata.labels)).toBe(true);
    // The server reaches the API server to run the Job (the overlay's JSON 6902 patch).
    expect(np.spec.egress.some((r: any) => r.ports.some((p: any) => p.port === 6443))).toBe(true);
    expect(
      one(built("overlays/cpu"), "NetworkPolicy").spec.egress.some((r: any) =>
        r.ports.some((p: any) => p.port === 6443),
      ),
    ).toBe(false);
  });

  it("a Job volume that clashes with one the Job inherits is a config error, not a broken pod", () => {
    const objects = built("overlays/gpu");
    const { config } = configOf(objects);
    const deploy = one(objects, "Deployment");
    const pod = { metadata: { name: "trm-forge-abc" }, spec: deploy.spec.template.spec };
    const inherited = inheritFromPod(pod as any, config.kubernetes.job.container_name);
    const input = {
      runId: "r1",
      agent: "agent-sre",
      attempt: 1,
      namespace: "trm-forge",
      inherited,
      dataDir: "/data",
    };
    for (const clash of [
      { name: "data", claim: "trm-forge-cuda-cache", mount_path: "/var/cache/cuda" },
      { name: "cuda-cache", claim: "trm-forge-cuda-cache", mount_path: "/data" },
    ]) {
      const job = { ...config.kubernetes.job, volumes: [clash] };
      expect(() => buildTrainJob({ ...input, job })).toThrow(/kubernetes\.job\.volumes: .* clashes/);
    }
  });

  it("the CronJob alternative switches the in-process schedule off (never both), and the others keep it on", () => {
    for (const dir of BUILDS) {
      const objects = built(dir);
      writeFileSync(join(tmp, "config.yaml"), configOf(objects).cm.data["config.yaml"]);
      const env = Object.fromEntries(
        serverContainer(objects)
          .env.filter((e: any) => e.value !== undefined)
          .map((e: any) => [e.name, e.value]),
      );
      const config = loadConfig({ path: join(tmp, "config.yaml"), env }).config;
      const cronJobs = find(objects, "CronJob");
      expect(config.schedule.enabled, dir).toBe(cronJobs.length === 0);
    }
    const cron = find(built("alternatives/cronjob"), "CronJob");
    expect(cron.map((c) => c.spec.jobTemplate.spec.template.spec.containers[0].args.slice(0, 3))).toEqual(
      expect.arrayContaining([
        ["run", "--agent", "agent-sre"],
        ["run", "--agent", "agent-bruno"],
      ]),
    );
    for (const c of cron) expect(c.spec.concurrencyPolicy).toBe("Forbid");
    const np = one(built("alternatives/cronjob"), "NetworkPolicy");
    for (const c of cron)
      expect(selects(np.spec.podSelector, c.spec.jobTemplate.spec.template.metadata.labels)).toBe(true);
    expect(readFileSync(join(K8S, "alternatives/cronjob/kustomization.yaml"), "utf8")).toMatch(
      /never beside a server whose schedule is on/,
    );
  });
});

describe("the kustomizations", () => {
  it("use every manifest file, and the overlays' patches change what they target", () => {
    const baseK = readYamlDocs(join(K8S, "base/kustomization.yaml"))[0];
    const used = new Set<string>([
      "kustomization.yaml",
      ...baseK.resources,
      ...baseK.configMapGenerator.flatMap((g: any) => g.files.map((f: string) => f.split("=").at(-1))),
    ]);
    expect(filesUnder(join(K8S, "base")).filter((f) => !used.has(f))).toEqual([]);
    const base = one(built("base"), "Deployment");
    const cpu = one(built("overlays/cpu"), "Deployment");
    expect(cpu.spec.template.spec.containers[0].resources).not.toEqual(
      base.spec.template.spec.containers[0].resources,
    );
    expect(cpu.spec.template.spec.containers[0].volumeMounts).toEqual(
      base.spec.template.spec.containers[0].volumeMounts,
    );
    const gpuNp = one(built("overlays/gpu"), "NetworkPolicy");
    expect(gpuNp.spec.egress.length).toBe(one(built("base"), "NetworkPolicy").spec.egress.length + 1);
    // A config change renames the ConfigMap, so the Deployment rolls.
    expect(configOf(built("overlays/gpu")).cm.metadata.name).not.toBe(
      configOf(built("overlays/cpu")).cm.metadata.name,
    );
  });

  it("label the dashboard ConfigMap for the Grafana sidecar with the dashboard file as data", () => {
    const cm = one(built("overlays/cpu"), "ConfigMap", "trm-forge-dashboard");
    expect(cm.metadata.labels).toEqual({ grafana_dashboard: "1" });
    expect(cm.data["trm-forge.json"]).toBe(
      readFileSync(join(K8S, "base/grafana/trm-forge-dashboard.json"), "utf8"),
    );
  });
});
