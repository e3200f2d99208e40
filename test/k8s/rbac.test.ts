// The Role in k8s/base must allow every API call the Job runner makes, and nothing else is needed:
// run the runner (create, follow, fail, cancel, list) against the local API and authorise each
// recorded request against the Role's rules, as the API server's RBAC authoriser would.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config/index.js";
import {
  cancelTrainJobs,
  listTrainJobs,
  runTrainStageInKubernetes,
} from "../../src/pipeline/runner/index.js";
import { FakeKubeApi, type RecordedRequest } from "../pipeline/runner/fake-kube-api.js";
import { built, one } from "./helpers.js";

/** RBAC attributes of a request (k8s.io/apiserver RequestInfo): verb, API group, resource[/subresource]. */
function attributes(r: RecordedRequest): { verb: string; group: string; resource: string } {
  const p = r.path.split("/").filter(Boolean);
  const [group, rest] = p[0] === "api" ? ["", p.slice(2)] : [p[1], p.slice(3)];
  // rest: namespaces/{ns}/{resource}[/{name}[/{subresource}]]
  const resource = rest[2] + (rest[4] ? `/${rest[4]}` : "");
  const named = rest.length > 3;
  const verb = {
    GET: named ? "get" : r.query.watch === "true" ? "watch" : "list",
    POST: "create",
    DELETE: "delete",
    PUT: "update",
    PATCH: "patch",
  }[r.method]!;
  return { verb, group, resource };
}

describe("the Job runner's Role", () => {
  let api: FakeKubeApi;
  let dir: string;
  beforeAll(async () => {
    api = new FakeKubeApi();
    await api.start();
    dir = mkdtempSync(join(tmpdir(), "trm-rbac-"));
  });
  afterAll(async () => {
    await api.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("allows every request the runner makes, in the runner's namespace", async () => {
    const objects = built("overlays/gpu");
    const deploy = one(objects, "Deployment");
    api.addPod({
      metadata: { name: "trm-forge-0", namespace: "trm-forge", labels: deploy.spec.template.metadata.labels },
      spec: deploy.spec.template.spec,
      status: {},
    });
    const kubeconfig = join(dir, "kubeconfig");
    writeFileSync(
      kubeconfig,
      `apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "${api.url}", insecure-skip-tls-verify: true}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u, namespace: trm-forge}}]\ncurrent-context: x\n`,
    );
    const config = parseConfig({
      store: {
        kind: "minio",
        endpoint: "minio",
        bucket: "bkt",
        access_key: { env: "A" },
        secret_key: { env: "S" },
      },
      runner: "kubernetes",
      kubernetes: { kubeconfig, poll_interval_s: 0.02, cancel_grace_s: 1, job: { backoff_limit: 0 } },
    });
    const env = { POD_NAME: "trm-forge-0", POD_NAMESPACE: "trm-forge" };
    const waitPod = async (job: number) => {
      for (;;) {
        const j = [...api.jobs.values()][job];
        const pod = j && api.podsOf(j.metadata.name)[0];
        if (pod) return pod.metadata.name as string;
        await new Promise((r) => setTimeout(r, 5));
      }
    };
    // A Job that fails with a log...
    const failing = runTrainStageInKubernetes({ runId: "r1", agent: "agent-sre", config, env });
    const p1 = await waitPod(0);
    api.startPod(p1);
    api.print(p1, ["boom"]);
    api.endPod(p1, 1);
    expect((await failing).status).toBe("failed");
    // ...one that is cancelled, and the listing and clean-up calls.
    const ac = new AbortController();
    const cancelled = runTrainStageInKubernetes({
      runId: "r2",
      agent: "agent-sre",
      config,
      env,
      signal: ac.signal,
    });
    api.startPod(await waitPod(1));
    ac.abort();
    expect((await cancelled).status).toBe("cancelled");
    await listTrainJobs(config);
    await cancelTrainJobs(config, "r1");

    const role = one(objects, "Role");
    const used = new Set<string>();
    for (const r of api.requests) {
      const a = attributes(r);
      used.add(`${a.verb} ${a.group}/${a.resource}`);
      expect(r.path, "namespaced to the Role's namespace").toContain("/namespaces/trm-forge/");
      const allowed = role.rules.some(
        (rule: any) =>
          rule.apiGroups.includes(a.group) &&
          rule.resources.includes(a.resource) &&
          rule.verbs.includes(a.verb),
      );
      expect(allowed, `${a.verb} ${a.group}/${a.resource}`).toBe(true);
    }
    expect([...used].sort()).toEqual(
      [
        "get /pods/log",
        "create batch/jobs",
        "delete batch/jobs",
        "get /pods",
        "get batch/jobs",
        "list /pods",
        "list batch/jobs",
      ].sort(),
    );
  });
});
