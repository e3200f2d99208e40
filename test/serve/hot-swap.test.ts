import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ModelServer } from "../../src/serve/server.js";
import { registerVersion, sleep, testServeEnv, testVocab } from "./helpers.js";

const AGENT = "agent-sre";
const LINES = ["ERROR db timeout after 30s", "GET /api/users 200 12ms", "WARN cache miss ratio high"];

describe("hot swap under load", () => {
  let server: ModelServer | null = null;
  afterEach(async () => {
    await server?.stop();
    server = null;
  });

  it("serves a steady stream through three swaps and a rollback without a failed request or a leaked tensor", async () => {
    const env = testServeEnv();
    const v1 = await registerVersion(env.registry, AGENT, { seed: 1 });
    await env.registry.promote(AGENT, v1, { actor: "test", reason: "first" });
    server = new ModelServer({
      config: env.config,
      store: env.store,
      registry: env.registry,
      agents: [AGENT],
    });
    await server.start();
    expect(server.status()[0].champion?.version).toBe(v1);

    // Warm the kernels once so lazily created helper tensors are part of the baseline.
    await server.predict(AGENT, "log_triage", LINES[0]);
    const before = await server.tensors();
    expect(before).toBeGreaterThan(0); // counted in the inference worker, where the models live

    let stop = false;
    let ok = 0;
    const failures: string[] = [];
    const seen = new Set<string>();
    const caller = async (i: number) => {
      while (!stop) {
        try {
          const r = await server!.predict(AGENT, "log_triage", LINES[(ok + i) % LINES.length]);
          seen.add(r.version);
          expect(r.steps).toBeGreaterThanOrEqual(1);
          ok++;
        } catch (err) {
          failures.push(String(err));
        }
        await sleep(1);
      }
    };
    const callers = Array.from({ length: 4 }, (_, i) => caller(i));

    const versions = [v1];
    for (let i = 2; i <= 4; i++) {
      const v = await registerVersion(env.registry, AGENT, { seed: i });
      versions.push(v);
      await env.registry.promote(AGENT, v, { actor: "test", reason: `swap ${i}` });
      const recs = await server.reconcile(AGENT);
      const done = server.swaps().at(-1)!;
      expect(done).toMatchObject({ alias: "champion", to: v, ok: true });
      expect(recs.every((r) => r.ok)).toBe(true);
      await sleep(60); // traffic on the new model
    }
    const move = await env.registry.rollback(AGENT, { actor: "test", reason: "rollback" });
    expect(move.to).toBe(versions[2]);
    await server.reconcile(AGENT);
    expect(server.status()[0].champion?.version).toBe(versions[2]);
    await sleep(60);

    stop = true;
    await Promise.all(callers);
    expect(failures).toEqual([]);
    expect(ok).toBeGreaterThan(20);
    // Every version served some of the stream.
    for (const v of versions) expect(seen.has(v)).toBe(true);
    expect(server.swaps().filter((s) => s.ok)).toHaveLength(1 + 3 + 1);
    // Old models were freed once their requests finished: one model's worth of tensors remains.
    expect(await server.tensors()).toBe(before);
  }, 300_000);

  it("keeps serving the old model when a new version fails to load or fails its smoke test", async () => {
    const env = testServeEnv();
    const v1 = await registerVersion(env.registry, AGENT, { seed: 1 });
    await env.registry.promote(AGENT, v1, { actor: "test", reason: "first" });
    server = new ModelServer({
      config: env.config,
      store: env.store,
      registry: env.registry,
      agents: [AGENT],
    });
    await server.start();
    await server.predict(AGENT, "log_triage", LINES[0]);
    const before = await server.tensors();
    expect(before).toBeGreaterThan(0); // counted in the inference worker, where the models live

    // 1. Loads, but its output is not finite: refused by the smoke test.
    const hot = await registerVersion(env.registry, AGENT, { seed: 2, hugeHead: true });
    await env.registry.promote(AGENT, hot, { actor: "test", reason: "bad head" });
    await server.reconcile(AGENT);
    const r1 = server.swaps().at(-1)!;
    expect(r1).toMatchObject({ alias: "champion", from: v1, to: hot, ok: false });
    expect(r1.error).toMatch(/^smoke test failed: /);
    expect(server.status()[0].champion?.version).toBe(v1);
    expect(server.status()[0].last_failure?.to).toBe(hot);
    expect((await server.predict(AGENT, "log_triage", LINES[1])).version).toBe(v1);
    // The failed version is not retried on every poll.
    const swaps = server.swaps().length;
    await server.reconcile(AGENT);
    expect(server.swaps()).toHaveLength(swaps);

    // 2. Its vocabulary does not fit its weights: the load fails.
    const big = testVocab().extend(Array.from({ length: 50 }, (_, i) => `service:s${i}`));
    const misfit = await registerVersion(env.registry, AGENT, { seed: 3, vocab: big });
    await env.registry.promote(AGENT, misfit, { actor: "test", reason: "misfit" });
    await server.reconcile(AGENT);
    const r2 = server.swaps().at(-1)!;
    expect(r2.ok).toBe(false);
    expect(r2.error).toMatch(/^load failed: .*token ids but vocab.json has/);

    // 3. Its weights were changed on disk after registration: the checksum refuses it.
    const tampered = await registerVersion(env.registry, AGENT, { seed: 4 });
    writeFileSync(join(env.dir, "store", "models", AGENT, tampered, "model.safetensors"), "not the weights");
    await env.registry.promote(AGENT, tampered, { actor: "test", reason: "tampered" });
    await server.reconcile(AGENT);
    const r3 = server.swaps().at(-1)!;
    expect(r3.ok).toBe(false);
    expect(r3.error).toMatch(/load failed: .*model\.safetensors is \d+ bytes but the manifest recorded/);

    expect(server.status()[0].champion?.version).toBe(v1);
    expect((await server.predict(AGENT, "log_triage", LINES[2])).version).toBe(v1);
    expect(await server.tensors()).toBe(before);

    // A good version after the bad ones is switched to as usual.
    const good = await registerVersion(env.registry, AGENT, { seed: 5 });
    await env.registry.promote(AGENT, good, { actor: "test", reason: "good" });
    await server.reconcile(AGENT);
    const r4 = server.swaps().at(-1)!;
    expect(r4).toMatchObject({ to: good, ok: true, smoke: { source: "smoke.json", task: "log_triage" } });
    // The stored example has one supervised position (the level): the smoke test scored it.
    expect([0, 1]).toContain(r4.smoke?.label_accuracy);
    expect(server.status()[0].last_failure).toBeNull();
    expect((await server.predict(AGENT, "log_triage", LINES[0])).version).toBe(good);
  });
});
