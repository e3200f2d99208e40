import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { OllamaSchema, type OllamaSection } from "../../../src/config/schema.js";
import {
  deployToOllama,
  OllamaStepError,
  ollamaStatus,
  rollbackOllama,
} from "../../../src/pipeline/deploy/ollama.js";
import { closedPort, FakeOllama } from "./fake-ollama.js";

const CARD = "# agent-sre knowledge\n\nfrontend -> checkout: 1200 calls, 2.1% errors, p95 180 ms\n";

function cfg(url: string, over: Partial<OllamaSection> = {}): OllamaSection {
  return OllamaSchema.parse({ enabled: true, base_url: url, ...over });
}

function digestOf(fake: FakeOllama, name: string): string | undefined {
  return fake.models.get(name)?.digest;
}

describe("Ollama deploy against a local Ollama", () => {
  let fake: FakeOllama;
  beforeEach(async () => {
    fake = new FakeOllama({ "llama3.2:3b": "llama-weights", "qwen2.5:7b": "qwen-weights" });
    await fake.start();
  });
  afterEach(async () => {
    await fake.stop();
  });

  it("creates the versioned tag with the card as SYSTEM, smoke-tests, copies over the alias and preloads", async () => {
    const progress: string[] = [];
    const r = await deployToOllama({
      agent: "agent-sre",
      version: "v20250101-0300",
      card: CARD,
      config: cfg(fake.url, { parameters: { temperature: 0.1, num_ctx: 4096 } }),
      onProgress: (p) => progress.push(`${p.step}:${p.status}`),
    });
    expect(r.tag).toBe("agent-sre-homelab:v20250101-0300");
    expect(r.alias).toBe("agent-sre-homelab:latest");

    // The order of the procedure, as the server saw it.
    const seq = fake.requests.map((q) =>
      q.path === "/api/generate"
        ? `generate(${q.body.prompt ? "prompt" : `keep_alive=${q.body.keep_alive}`})`
        : q.path,
    );
    expect(seq.slice(0, 4)).toEqual(["/api/create", "generate(prompt)", "/api/copy", "/api/tags"]);
    expect(seq).toContain("generate(keep_alive=30m)");
    expect(seq.indexOf("generate(keep_alive=30m)")).toBeGreaterThan(seq.indexOf("/api/copy"));

    const create = fake.calls("/api/create")[0].body;
    expect(create).toEqual({
      model: "agent-sre-homelab:v20250101-0300",
      from: "llama3.2:3b",
      system: CARD,
      parameters: { temperature: 0.1, num_ctx: 4096 },
      stream: true,
    });
    expect(fake.calls("/api/generate")[0].body).toMatchObject({
      model: r.tag,
      stream: true,
      options: { num_predict: 16 },
    });
    expect(fake.calls("/api/copy")[0].body).toEqual({ source: r.tag, destination: r.alias });

    // Progress of the streamed create is relayed line by line, ending in success.
    expect(progress).toContain("create:reading model metadata");
    expect(progress).toContain("create:writing manifest");
    expect(progress.filter((p) => p.startsWith("create:")).at(-1)).toBe("create:success");

    expect(r.smoke).toBe(`I know about ${CARD.length} chars.`);
    expect(fake.models.get(r.alias)?.system).toBe(CARD);
    expect(digestOf(fake, r.alias)).toBe(digestOf(fake, r.tag));
    expect(r.digest).toBe(digestOf(fake, r.tag));
    expect([...fake.loaded.values()].map((l) => l.name)).toEqual([r.alias]);
    expect(r.warnings).toEqual([]);
    expect(r.steps.map((s) => s.step)).toEqual(["create", "smoke", "copy", "preload", "prune"]);

    const status = await ollamaStatus("agent-sre", cfg(fake.url));
    expect(status).toMatchObject({ reachable: true, aliasTarget: r.tag, tags: [r.tag], loaded: [r.alias] });
  });

  it("keeps the shared runner when the previous version has the same weights, unloads it when they differ", async () => {
    const c = cfg(fake.url);
    await deployToOllama({ agent: "agent-sre", version: "v1", card: "card one", config: c });
    const r2 = await deployToOllama({
      agent: "agent-sre",
      version: "v2",
      card: "card two",
      previousVersion: "v1",
      config: c,
    });
    // Same base: one runner serves both tags, so an unload would drop the alias just preloaded.
    expect(r2.unloaded).toBeNull();
    expect(r2.steps.find((s) => s.step === "unload")?.detail).toMatch(/shares its weights/);
    expect(fake.calls("/api/generate").some((q) => q.body.keep_alive === 0)).toBe(false);
    expect([...fake.loaded.values()].map((l) => l.name)).toEqual(["agent-sre-homelab:latest"]);

    // A new base model: the old runner is a different one and is unloaded with keep_alive 0.
    const r3 = await deployToOllama({
      agent: "agent-sre",
      version: "v3",
      card: "card three",
      previousVersion: "v2",
      config: cfg(fake.url, { base_model: "qwen2.5:7b" }),
    });
    expect(r3.unloaded).toBe("agent-sre-homelab:v2");
    const unload = fake.calls("/api/generate").find((q) => q.body.keep_alive === 0);
    expect(unload?.body).toMatchObject({ model: "agent-sre-homelab:v2", prompt: "" });
    expect([...fake.loaded.values()].map((l) => l.name)).toEqual(["agent-sre-homelab:latest"]);
    expect(fake.models.get("agent-sre-homelab:latest")?.system).toBe("card three");
  });

  it("keeps the newest tags up to keep_versions and deletes older ones", async () => {
    const c = cfg(fake.url, { keep_versions: 2 });
    let prev: string | null = null;
    for (const v of ["v20250101", "v20250201", "v20250301", "v20250401"]) {
      await deployToOllama({
        agent: "agent-sre",
        version: v,
        card: `card ${v}`,
        previousVersion: prev,
        config: c,
      });
      prev = v;
    }
    const names = [...fake.models.keys()].filter((n) => n.startsWith("agent-sre-homelab:")).sort();
    expect(names).toEqual([
      "agent-sre-homelab:latest",
      "agent-sre-homelab:v20250301",
      "agent-sre-homelab:v20250401",
    ]);
    expect(fake.calls("/api/delete").map((q) => q.body.model ?? q.body.name)).toEqual([
      "agent-sre-homelab:v20250101",
      "agent-sre-homelab:v20250201",
    ]);
  });

  it("retries a failed copy once", async () => {
    fake.faults.copyFailures = 1;
    const r = await deployToOllama({ agent: "a", version: "v1", card: "c", config: cfg(fake.url) });
    expect(fake.calls("/api/copy")).toHaveLength(2);
    expect(r.steps.find((s) => s.step === "copy")?.detail).toMatch(/second attempt/);
    expect(digestOf(fake, r.alias)).toBe(digestOf(fake, r.tag));
  });

  it("leaves the alias on the old version when the copy fails twice", async () => {
    const c = cfg(fake.url);
    await deployToOllama({ agent: "a", version: "v1", card: "old", config: c });
    fake.faults.copyFailures = 2;
    const err = await deployToOllama({
      agent: "a",
      version: "v2",
      card: "new",
      previousVersion: "v1",
      config: c,
    }).catch((e) => e);
    expect(err).toBeInstanceOf(OllamaStepError);
    expect(err.step).toBe("copy");
    expect(err.message).toMatch(/HTTP 500.*resource temporarily unavailable/);
    expect(fake.models.get("a-homelab:latest")?.system).toBe("old");
    expect(digestOf(fake, "a-homelab:latest")).toBe(digestOf(fake, "a-homelab:v1"));
  });

  it("fails the smoke test on an empty answer, deletes the new tag and does not move the alias", async () => {
    const c = cfg(fake.url);
    await deployToOllama({ agent: "a", version: "v1", card: "old", config: c });
    fake.faults.emptyGenerate = true;
    const err = await deployToOllama({ agent: "a", version: "v2", card: "new", config: c }).catch((e) => e);
    expect(err).toBeInstanceOf(OllamaStepError);
    expect(err.step).toBe("smoke");
    expect(fake.models.has("a-homelab:v2")).toBe(false);
    expect(fake.models.get("a-homelab:latest")?.system).toBe("old");
    expect(fake.calls("/api/copy")).toHaveLength(1);
  });

  it("reports an error line in the create stream", async () => {
    fake.faults.createError = "unsupported architecture";
    const err = await deployToOllama({ agent: "a", version: "v1", card: "c", config: cfg(fake.url) }).catch(
      (e) => e,
    );
    expect(err).toBeInstanceOf(OllamaStepError);
    expect(err.step).toBe("create");
    expect(err.message).toContain("unsupported architecture");
    expect(fake.calls("/api/copy")).toHaveLength(0);
  });

  it("reports a missing base model", async () => {
    const err = await deployToOllama({
      agent: "a",
      version: "v1",
      card: "c",
      config: cfg(fake.url, { base_model: "nope:1b" }),
    }).catch((e) => e);
    expect(err.step).toBe("create");
    expect(err.message).toContain("model 'nope:1b' not found");
  });

  it("relays a slow create's progress as it streams, and times out a create slower than the limit", async () => {
    fake.faults.createDelayMs = 40;
    const times: number[] = [];
    const t0 = Date.now();
    await deployToOllama({
      agent: "a",
      version: "v1",
      card: "c",
      config: cfg(fake.url),
      onProgress: (p) => p.step === "create" && times.push(Date.now() - t0),
    });
    expect(times.length).toBeGreaterThanOrEqual(4);
    // Lines arrived one by one, not in a single burst at the end.
    expect(times.at(-1)! - times[0]).toBeGreaterThanOrEqual(80);

    fake.faults.createDelayMs = 300;
    const err = await deployToOllama({
      agent: "a",
      version: "v2",
      card: "c",
      config: cfg(fake.url, { timeout_s: 0.2 }),
    }).catch((e) => e);
    expect(err).toBeInstanceOf(OllamaStepError);
    expect(err.step).toBe("create");
    expect(err.message).toMatch(/timed out|within the time limit/);
  });

  it("says Ollama is unreachable when the connection is refused", async () => {
    const url = `http://127.0.0.1:${await closedPort()}`;
    const err = await deployToOllama({ agent: "a", version: "v1", card: "c", config: cfg(url) }).catch(
      (e) => e,
    );
    expect(err).toBeInstanceOf(OllamaStepError);
    expect(err.step).toBe("create");
    expect(err.message).toContain(`Ollama unreachable at ${url}`);
    expect(err.message).toContain("ECONNREFUSED");
    const status = await ollamaStatus("a", cfg(url));
    expect(status.reachable).toBe(false);
    expect(status.error).toContain("ECONNREFUSED");
  });

  it("rolls the alias back to the previous version's tag, recreating a pruned tag from its card", async () => {
    const c = cfg(fake.url, { keep_versions: 1 });
    await deployToOllama({ agent: "a", version: "v1", card: "card v1", config: c });
    await deployToOllama({ agent: "a", version: "v2", card: "card v2", previousVersion: "v1", config: c });
    expect(fake.models.has("a-homelab:v1")).toBe(false); // pruned

    let asked = 0;
    const r = await rollbackOllama({
      agent: "a",
      version: "v1",
      config: c,
      card: async () => {
        asked++;
        return "card v1";
      },
    });
    expect(asked).toBe(1);
    expect(r.recreated).toBe(true);
    expect(fake.models.get("a-homelab:latest")?.system).toBe("card v1");
    expect(digestOf(fake, "a-homelab:latest")).toBe(digestOf(fake, "a-homelab:v1"));

    // Forward again to v2, whose tag still exists: no create, just the copy.
    const creates = fake.calls("/api/create").length;
    const back = await rollbackOllama({ agent: "a", version: "v2", config: c, card: async () => "unused" });
    expect(back.recreated).toBe(false);
    expect(fake.calls("/api/create")).toHaveLength(creates);
    expect(fake.models.get("a-homelab:latest")?.system).toBe("card v2");
  });
});
