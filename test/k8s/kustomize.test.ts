import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { build, configMapHash, KustomizeError, strategicMerge } from "./kustomize.js";

const K8S = join(import.meta.dirname, "../../k8s");
const BUILDS = ["base", "overlays/cpu", "overlays/gpu", "alternatives/cronjob"];

/** kubectl's embedded kustomize, when this machine has one (CI does not: the TS build stands alone). */
function kubectlKustomize(dir: string): unknown[] | null {
  const probe = spawnSync("kubectl", ["version", "--client"], { encoding: "utf8" });
  if (probe.status !== 0) return null;
  const out = execFileSync("kubectl", ["kustomize", dir], { encoding: "utf8" });
  return parseAllDocuments(out).map((d) => d.toJS());
}

const key = (o: any) => `${o.kind}/${o.metadata.namespace ?? ""}/${o.metadata.name}`;

describe("the TypeScript kustomize build", () => {
  const tmp = mkdtempSync(join(tmpdir(), "trm-kustomize-"));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it.each(BUILDS)("builds k8s/%s exactly as kubectl kustomize does (where kubectl exists)", (dir) => {
    const ours = build(join(K8S, dir));
    expect(ours.length).toBeGreaterThan(5);
    const theirs = kubectlKustomize(join(K8S, dir));
    if (!theirs) return;
    const byKey = (list: any[]) => Object.fromEntries(list.map((o) => [key(o), o]));
    expect(byKey(ours)).toEqual(byKey(theirs));
  });

  it("computes kustomize's ConfigMap name hash", () => {
    // Value from kustomize's own hasher tests (api/hasher/hasher_test.go, "one key").
    expect(
      configMapHash({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "" }, data: { one: "" } }),
    ).toBe("9g67k2htb6");
  });

  it("refuses what it does not implement and patches that match nothing", () => {
    const dir = join(tmp, "k");
    mkdirSync(dir, { recursive: true });
    writeFileSync(
      join(dir, "cm.yaml"),
      "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {x: '1'}\n",
    );
    const write = (extra: string) =>
      writeFileSync(
        join(dir, "kustomization.yaml"),
        `apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [cm.yaml]\n${extra}`,
      );
    write("namePrefix: x-\n");
    expect(() => build(dir)).toThrow(/unsupported field "namePrefix"/);
    write(
      "patches:\n  - patch: |\n      apiVersion: v1\n      kind: ConfigMap\n      metadata: {name: b}\n      data: {x: '2'}\n",
    );
    expect(() => build(dir)).toThrow(KustomizeError);
    write("");
    expect(build(dir)).toHaveLength(1);
    writeFileSync(
      join(dir, "kustomization.yaml"),
      "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [nope.yaml]\n",
    );
    expect(() => build(dir)).toThrow(/nope.yaml does not exist/);
  });

  it("merges lists by their merge keys and deletes with null", () => {
    const target = {
      spec: {
        containers: [
          { name: "a", image: "x", env: [{ name: "A", value: "1" }], args: ["1"] },
          { name: "b", image: "y" },
        ],
        nodeSelector: { old: "1" },
      },
    };
    strategicMerge(
      target,
      {
        spec: {
          containers: [{ name: "a", env: [{ name: "B", value: "2" }], args: ["2"] }],
          nodeSelector: null,
        },
      },
      ["Pod"],
    );
    // As kustomize orders it: the patch's items first, then the target's others.
    expect(target.spec.containers[0]).toEqual({
      name: "a",
      image: "x",
      env: [
        { name: "B", value: "2" },
        { name: "A", value: "1" },
      ],
      args: ["2"],
    });
    expect(target.spec.containers[1]).toEqual({ name: "b", image: "y" });
    expect("nodeSelector" in target.spec).toBe(false);
  });
});
