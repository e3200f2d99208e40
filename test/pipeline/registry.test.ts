import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  championStack,
  GateRefusedError,
  IntegrityError,
  type Lineage,
  ModelRegistry,
  RegistryError,
} from "../../src/pipeline/deploy/registry.js";
import { FsStore, type ObjectStore } from "../../src/store/index.js";
import { type StoreUnderTest, storesUnderTest } from "./helpers/stores.js";

const lineage: Lineage = {
  run_id: "r20261129-120000-000-abcd",
  dataset_id: "d1",
  raw_segments: [{ key: "raw/a/code/2026-11-28/s1.jsonl.gz", sha256: "a".repeat(64) }],
  code_version: "0.1.0+test",
  parent_version: null,
};

function weights(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

async function registerOne(reg: ModelRegistry, agent: string, passed: boolean | null, seed = 1) {
  return reg.register(agent, {
    artifacts: [
      { name: "model.safetensors", data: weights(4096, seed) },
      { name: "config.json", data: JSON.stringify({ hidden_size: 64 }) },
      { name: "card.md", data: "# card\n" },
    ],
    lineage,
    gate:
      passed === null
        ? null
        : { passed, reasons: [passed ? "all tasks beat baselines" : "log_triage below baseline"] },
    scores: { log_triage: 0.9 },
    createdBy: "test",
  });
}

for (const kind of storesUnderTest()) {
  describe(`ModelRegistry on ${kind.name}`, () => {
    let s: StoreUnderTest;
    let reg: ModelRegistry;
    let dataDir: string;
    beforeAll(async () => {
      s = await kind.open();
      dataDir = mkdtempSync(join(tmpdir(), "trm-reg-data-"));
      reg = new ModelRegistry(s.store, { dataDir });
    });
    afterAll(async () => s.close());

    it("registers immutable versions whose ids sort by time, with every sha256 recorded", async () => {
      const a = await registerOne(reg, "agent-a", true, 1);
      const b = await registerOne(reg, "agent-a", true, 2);
      expect(a.version < b.version).toBe(true);
      expect(a.version).toMatch(/^v\d{8}-\d{6}-\d{3}-[0-9a-f]{4}$/);
      const list = await reg.listVersions("agent-a");
      expect(list.map((v) => v.version)).toEqual([a.version, b.version]);
      const loaded = await reg.load("agent-a", a.version);
      expect(loaded.files.get("model.safetensors")!.equals(weights(4096, 1))).toBe(true);
      expect(loaded.manifest.artifacts.map((x) => x.name)).toEqual([
        "model.safetensors",
        "config.json",
        "card.md",
      ]);
      expect(loaded.manifest.lineage).toEqual(lineage);
      const keys = (await s.store.list(`models/agent-a/${a.version}`)).map((o) => o.key.split("/").at(-1));
      expect(keys.sort()).toEqual(["card.md", "config.json", "manifest.json", "model.safetensors"]);
      expect(await reg.resolve("agent-a", "latest")).toBe(b.version);
    });

    it("refuses to promote a version that failed its gate unless forced, and records who forced it", async () => {
      const bad = await registerOne(reg, "agent-g", false);
      const unevaluated = await registerOne(reg, "agent-g", null);
      await expect(
        reg.promote("agent-g", bad.version, { actor: "test", reason: "try" }),
      ).rejects.toBeInstanceOf(GateRefusedError);
      await expect(
        reg.promote("agent-g", unevaluated.version, { actor: "test", reason: "try" }),
      ).rejects.toThrow(/never evaluated/);
      expect((await reg.read("agent-g")).history).toEqual([]);
      const moves = await reg.promote("agent-g", bad.version, {
        actor: "cli:ops",
        reason: "hotfix",
        force: true,
      });
      expect(moves).toHaveLength(1);
      expect(moves[0]).toMatchObject({
        alias: "champion",
        from: null,
        to: bad.version,
        forced: true,
        actor: "cli:ops",
      });
    });

    it("moves aliases with an append-only history and rolls back to the previous champion", async () => {
      const v1 = (await registerOne(reg, "agent-r", true, 1)).version;
      const v2 = (await registerOne(reg, "agent-r", true, 2)).version;
      const v3 = (await registerOne(reg, "agent-r", true, 3)).version;
      await expect(reg.rollback("agent-r", { actor: "t", reason: "r" })).rejects.toThrow(
        /no previous champion/,
      );
      await reg.promote("agent-r", v1, { actor: "run:r1", reason: "gate passed" });
      await reg.promote("agent-r", v2, { alias: "challenger", actor: "run:r2", reason: "shadow first" });
      await reg.promote("agent-r", v2, { actor: "cli:ops", reason: "won the shadow" });
      let index = await reg.read("agent-r");
      // Promoting the challenger clears it.
      expect(index.aliases).toEqual({ champion: v2, challenger: null });
      await reg.promote("agent-r", v3, { actor: "run:r3", reason: "gate passed" });
      const before = (await reg.read("agent-r")).history;
      const back = await reg.rollback("agent-r", { actor: "cli:ops", reason: "v3 misbehaves" });
      expect(back).toMatchObject({ from: v3, to: v2, action: "rollback" });
      const back2 = await reg.rollback("agent-r", { actor: "cli:ops", reason: "v2 too" });
      expect(back2).toMatchObject({ from: v2, to: v1 });
      await expect(reg.rollback("agent-r", { actor: "t", reason: "r" })).rejects.toThrow(
        /no previous champion/,
      );
      index = await reg.read("agent-r");
      expect(index.history.slice(0, before.length)).toEqual(before);
      expect(index.history.map((h) => h.seq)).toEqual(index.history.map((_, i) => i + 1));
      expect(index.history.map((h) => [h.alias, h.action, h.to])).toEqual([
        ["champion", "promote", v1],
        ["challenger", "promote", v2],
        ["champion", "promote", v2],
        ["challenger", "clear", null],
        ["champion", "promote", v3],
        ["champion", "rollback", v2],
        ["champion", "rollback", v1],
      ]);
      // gc keeps one rollback target: one further back may have been pruned. Rolling back to it
      // is refused, and the champion stays.
      const v4 = (await registerOne(reg, "agent-r", true, 4)).version;
      await reg.promote("agent-r", v2, { actor: "t", reason: "again" });
      await reg.promote("agent-r", v4, { actor: "t", reason: "newer" });
      await reg.markPruned("agent-r", [{ version: v1, rule: "versions: older than the newest 4" }], "test");
      expect(await reg.rollback("agent-r", { actor: "t", reason: "v4 misbehaves" })).toMatchObject({
        to: v2,
      });
      await expect(reg.rollback("agent-r", { actor: "t", reason: "v2 too" })).rejects.toThrow(
        /previous champion: version v\d{8}-\d{6}-\d{3}-[0-9a-f]{4} of agent-r was pruned by retention .*promote a version that is kept/,
      );
      expect((await reg.read("agent-r")).aliases.champion).toBe(v2);
      // Promoting the current champion again is a no-op, not a new history entry.
      expect(await reg.promote("agent-r", v2, { actor: "t", reason: "again" })).toEqual([]);
      await expect(
        reg.promote("agent-r", "v20990101-000000-000-abcd", { actor: "t", reason: "x" }),
      ).rejects.toThrow(/no model version/);
    });

    it("leaves the registry unchanged and no objects behind when an upload fails", async () => {
      const failing = failOnPut(s.store, "config.json");
      const r = new ModelRegistry(failing, { dataDir });
      await expect(registerOne(r, "agent-f", true)).rejects.toThrow(/injected upload failure/);
      expect(await s.store.exists("models/agent-f/registry.json")).toBe(false);
      expect(await s.store.list("models/agent-f")).toEqual([]);
      const good = await registerOne(reg, "agent-f", true);
      const ac = new AbortController();
      ac.abort();
      await expect(
        reg.register("agent-f", {
          artifacts: [{ name: "x.bin", data: "x" }],
          lineage,
          gate: null,
          createdBy: "t",
          signal: ac.signal,
        }),
      ).rejects.toThrow();
      expect((await reg.listVersions("agent-f")).map((v) => v.version)).toEqual([good.version]);
      expect(
        (await s.store.list("models/agent-f")).every(
          (o) => o.key.includes(good.version) || o.key.endsWith("registry.json"),
        ),
      ).toBe(true);
    });

    it("refuses an artifact replaced or truncated behind its back", async () => {
      const v = (await registerOne(reg, "agent-x", true, 5)).version;
      const key = `models/agent-x/${v}/model.safetensors`;
      const good = await s.store.get(key);
      const bad = Buffer.from(good);
      bad[7] ^= 1;
      await s.store.put(key, bad);
      await expect(reg.load("agent-x", v)).rejects.toThrow(/model\.safetensors was modified/);
      await s.store.put(key, good.subarray(0, 100));
      await expect(reg.load("agent-x", v)).rejects.toThrow(/is 100 bytes but the manifest recorded 4096/);
      await s.store.delete(key);
      await expect(reg.load("agent-x", v)).rejects.toThrow(/is missing from the store/);
      await s.store.put(key, good);
      expect(
        (await reg.load("agent-x", v, ["model.safetensors"])).files.get("model.safetensors")!.equals(good),
      ).toBe(true);
    });

    it("rejects bad artifact names", async () => {
      await expect(
        reg.register("agent-n", {
          artifacts: [{ name: "../x", data: "x" }],
          lineage,
          gate: null,
          createdBy: "t",
        }),
      ).rejects.toBeInstanceOf(RegistryError);
      await expect(
        reg.register("agent-n", {
          artifacts: [{ name: "manifest.json", data: "x" }],
          lineage,
          gate: null,
          createdBy: "t",
        }),
      ).rejects.toThrow(/bad artifact name/);
    });
  });
}

describe("ModelRegistry integrity on the local store", () => {
  const root = mkdtempSync(join(tmpdir(), "trm-reg-int-"));
  const store = new FsStore(root);
  const reg = new ModelRegistry(store);

  it("refuses a tampered artifact, a truncated one and a tampered manifest, naming the file", async () => {
    const v = (await registerOne(reg, "agent-t", true)).version;
    const file = store.pathOf(`models/agent-t/${v}/model.safetensors`);
    const original = readFileSync(file);
    const tampered = Buffer.from(original);
    tampered[100] ^= 0xff;
    writeFileSync(file, tampered);
    await expect(reg.load("agent-t", v)).rejects.toThrow(IntegrityError);
    await expect(reg.load("agent-t", v)).rejects.toThrow(/model\.safetensors was modified: sha256/);
    writeFileSync(file, original);
    truncateSync(file, 1000);
    await expect(reg.readArtifact("agent-t", v, "model.safetensors")).rejects.toThrow(
      /1000 bytes but the manifest recorded 4096: the file is truncated/,
    );
    writeFileSync(file, original);
    expect((await reg.load("agent-t", v)).files.size).toBe(3);
    const mf = store.pathOf(`models/agent-t/${v}/manifest.json`);
    const m = JSON.parse(readFileSync(mf, "utf8"));
    m.artifacts[0].sha256 = "0".repeat(64);
    writeFileSync(mf, JSON.stringify(m));
    await expect(reg.load("agent-t", v)).rejects.toThrow(/manifest\.json was modified/);
  });

  it("refuses a damaged registry.json with a clear error", async () => {
    await store.put("models/agent-d/registry.json", "{ not json");
    await expect(reg.read("agent-d")).rejects.toThrow(/registry\.json is not valid JSON/);
    await store.put("models/agent-d/registry.json", JSON.stringify({ schema: 1 }));
    await expect(reg.read("agent-d")).rejects.toThrow(/not a valid registry/);
  });

  it("replays promotions and rollbacks into the champion stack", () => {
    const h = (action: "promote" | "rollback", to: string, seq: number) => ({
      seq,
      at: "",
      alias: "champion" as const,
      from: null,
      to,
      action,
      actor: "t",
      reason: "",
      forced: false,
    });
    expect(
      championStack([
        h("promote", "a", 1),
        h("promote", "b", 2),
        h("rollback", "a", 3),
        h("promote", "c", 4),
      ]),
    ).toEqual(["a", "c"]);
  });
});

describe("ModelRegistry across processes", () => {
  it("keeps every version when four processes register at once", async () => {
    const dist = resolve("dist/pipeline/deploy/registry.js");
    if (!existsSync(dist))
      throw new Error("build first: npx tsc -p tsconfig.json (npm test does it in pretest)");
    const root = mkdtempSync(join(tmpdir(), "trm-reg-mp-"));
    const dataDir = mkdtempSync(join(tmpdir(), "trm-reg-mpd-"));
    const script = `
      const { ModelRegistry } = await import(${JSON.stringify(dist)});
      const { FsStore } = await import(${JSON.stringify(resolve("dist/store/index.js"))});
      const reg = new ModelRegistry(new FsStore(${JSON.stringify(root)}), { dataDir: ${JSON.stringify(dataDir)} });
      for (let i = 0; i < 3; i++) {
        await reg.register("agent-mp", { artifacts: [{ name: "w.bin", data: String(process.pid) + ":" + i }],
          lineage: { run_id: null, dataset_id: null, raw_segments: [], code_version: "t", parent_version: null },
          gate: { passed: true, reasons: [] }, createdBy: "pid:" + process.pid });
      }`;
    const runs = Array.from({ length: 4 }, () => {
      const child = spawn(process.execPath, ["--input-type=module", "-e", script], {
        stdio: ["ignore", "ignore", "pipe"],
      });
      let err = "";
      child.stderr.on("data", (d) => {
        err += d;
      });
      return new Promise<void>((res, rej) =>
        child.on("exit", (code) => (code === 0 ? res() : rej(new Error(`child failed: ${err}`)))),
      );
    });
    await Promise.all(runs);
    const reg = new ModelRegistry(new FsStore(root));
    const versions = await reg.listVersions("agent-mp");
    expect(versions).toHaveLength(12);
    expect(new Set(versions.map((v) => v.version)).size).toBe(12);
    for (const v of versions) expect((await reg.load("agent-mp", v.version)).files.size).toBe(1);
  });
});

function failOnPut(store: ObjectStore, name: string): ObjectStore {
  return new Proxy(store, {
    get(target, prop, receiver) {
      if (prop === "put")
        return async (key: string, data: Uint8Array | string, opts?: unknown) => {
          if (key.endsWith(`/${name}`)) throw new Error("injected upload failure");
          return target.put(key, data, opts as never);
        };
      const v = Reflect.get(target, prop, receiver);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}
