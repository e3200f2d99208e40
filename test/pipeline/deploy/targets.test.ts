import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { parseConfig } from "../../../src/config/index.js";
import type { Config } from "../../../src/config/schema.js";
import { writeSegment } from "../../../src/pipeline/collect/raw-store.js";
import { ModelRegistry } from "../../../src/pipeline/deploy/registry.js";
import { deployStageHook, deployTargets, readTargetState } from "../../../src/pipeline/deploy/targets.js";
import { FsStore } from "../../../src/store/index.js";
import { closedPort, FakeOllama } from "./fake-ollama.js";

const AGENT = "agent-sre";
const LINEAGE = {
  run_id: null,
  dataset_id: null,
  raw_segments: [],
  code_version: "test",
  parent_version: null,
};

async function version(registry: ModelRegistry, card?: string): Promise<string> {
  const artifacts = [{ name: "vocab.json", data: "{}" }];
  if (card) artifacts.push({ name: "knowledge.md", data: card });
  const m = await registry.register(AGENT, {
    artifacts,
    lineage: LINEAGE,
    gate: { passed: true, reasons: [] },
    createdBy: "test",
  });
  await registry.promote(AGENT, m.version, { actor: "test", reason: "test" });
  return m.version;
}

describe("deploy targets (the deploy stage's hook)", () => {
  let fake: FakeOllama;
  let store: FsStore;
  let registry: ModelRegistry;
  let config: Config;
  beforeEach(async () => {
    fake = new FakeOllama();
    await fake.start();
    const dir = mkdtempSync(join(tmpdir(), "trm-targets-"));
    store = new FsStore(join(dir, "store"));
    registry = new ModelRegistry(store);
    config = parseConfig({ data_dir: dir, ollama: { enabled: true, base_url: fake.url } });
  });
  afterEach(async () => {
    await fake.stop();
  });

  it("publishes the champion's card, skips a version already published, and re-points on rollback without a new create", async () => {
    const v1 = await version(registry, "# card one\n");
    const out1 = await deployStageHook({ config, store, registry, agent: AGENT });
    expect(out1).toMatchObject({ status: "succeeded", partial_reason: null, published_version: v1 });
    expect(fake.calls("/api/create")[0].body.system).toBe("# card one\n");
    expect((await readTargetState(store, AGENT, "ollama")).current).toBe(v1);
    // vLLM is off in this config.
    expect(
      (out1.targets as { target: string; status: string }[]).find((t) => t.target === "vllm")?.status,
    ).toBe("skipped");

    const again = await deployTargets({ config, store, registry, agent: AGENT });
    expect(again.status).toBe("skipped");
    expect(again.targets[0]).toMatchObject({
      target: "ollama",
      status: "skipped",
      reason: `already serves ${v1}`,
    });

    const v2 = await version(registry, "# card two\n");
    expect((await deployTargets({ config, store, registry, agent: AGENT })).version).toBe(v2);
    expect(fake.models.get("agent-sre-homelab:latest")?.system).toBe("# card two\n");

    await registry.rollback(AGENT, { actor: "test", reason: "v2 misbehaves" });
    const creates = fake.calls("/api/create").length;
    const back = await deployTargets({ config, store, registry, agent: AGENT });
    expect(back.targets[0]).toMatchObject({ status: "ok", version: v1 });
    expect(fake.calls("/api/create")).toHaveLength(creates);
    expect(fake.models.get("agent-sre-homelab:latest")?.system).toBe("# card one\n");
    const state = await readTargetState(store, AGENT, "ollama");
    expect(state.current).toBe(v1);
    expect(state.history.map((h) => `${h.action}:${h.version === v1 ? "v1" : "v2"}`)).toEqual([
      "deploy:v1",
      "deploy:v2",
      "rollback:v1",
    ]);
  });

  it("marks the stage partial when Ollama is unreachable and publishes on the next run", async () => {
    const v1 = await version(registry, "# card\n");
    const down = parseConfig({
      data_dir: config.data_dir,
      ollama: { enabled: true, base_url: `http://127.0.0.1:${await closedPort()}` },
    });
    const out = await deployStageHook({ config: down, store, registry, agent: AGENT });
    expect(out.status).toBe("partial");
    expect(out.partial_reason).toMatch(/^ollama: ollama create: Ollama unreachable at .*ECONNREFUSED/);
    const state = await readTargetState(store, AGENT, "ollama");
    expect(state.current).toBeNull();
    expect(state.last).toMatchObject({ version: v1, ok: false });

    // Ollama is back: the next run publishes what the failed one could not.
    const next = await deployStageHook({ config, store, registry, agent: AGENT });
    expect(next.status).toBe("succeeded");
    expect((await readTargetState(store, AGENT, "ollama")).current).toBe(v1);
  });

  it("builds a card from the raw store for a version registered without one", async () => {
    const t = Date.now() - 3600_000;
    await writeSegment(store, AGENT, "loki", new Date(t).toISOString().slice(0, 10), "s1", [
      {
        kind: "log_entry",
        query: "{}",
        ts_ns: `${BigInt(t) * 1_000_000n}`,
        labels: { service_name: "checkout", level: "error" },
        line: "payment failed for order 42",
      },
    ]);
    const v = await version(registry);
    const out = await deployTargets({ config, store, registry, agent: AGENT, targets: ["ollama"] });
    expect(out.status).toBe("ok");
    const system = fake.calls("/api/create")[0].body.system as string;
    expect(system).toContain(`for model version ${v}`);
    expect(system).toContain("- 1× `payment failed for order <num>`");
    expect((await store.get(`deploy/${AGENT}/${v}/knowledge.md`)).toString()).toBe(system);
  });
});
