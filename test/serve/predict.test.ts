import { afterEach, describe, expect, it } from "vitest";
import { registry as metrics } from "../../src/metrics.js";
import { type MemoryFile, traceOutcome } from "../../src/pipeline/tasks/index.js";
import { ModelServer, readShadowReport } from "../../src/serve/index.js";
import { registerVersion, sleep, testServeEnv, testVocab, type VersionOptions } from "./helpers.js";

const AGENT = "agent-sre";
const LINES = [
  "ERROR db timeout after 30s",
  "GET /api/users 200 12ms",
  "WARN cache miss ratio high",
  "panic: runtime error: index out of range",
  "user 42 logged in from 10.0.0.7",
  "INFO checkout completed order=981",
];

async function started(
  serve: Record<string, unknown> = {},
  random?: () => number,
  version: VersionOptions = { seed: 1 },
) {
  const env = testServeEnv(serve);
  const v1 = await registerVersion(env.registry, AGENT, version);
  await env.registry.promote(AGENT, v1, { actor: "test", reason: "first" });
  const server = new ModelServer({
    config: env.config,
    store: env.store,
    registry: env.registry,
    agents: [AGENT],
    random,
  });
  await server.start();
  return { ...env, server, v1 };
}

describe("predict", () => {
  let server: ModelServer | null = null;
  afterEach(async () => {
    await server?.stop();
    server = null;
  });

  it("gives the typed answer with per-label confidence and the steps used, and batched answers equal one-by-one answers", async () => {
    const env = await started({ max_batch_size: 8, max_wait_ms: 30 });
    server = env.server;
    const alone: Awaited<ReturnType<typeof server.predict>>[] = [];
    for (const line of LINES) alone.push(await server.predict(AGENT, "log_triage", line));
    const r = alone[0];
    expect(r).toMatchObject({ agent: AGENT, task: "log_triage", version: env.v1, max_steps: 2 });
    expect(r.steps).toBeGreaterThanOrEqual(1);
    expect(r.steps).toBeLessThanOrEqual(2);
    const a = r.answer as Record<string, { value: unknown; confidence: number }>;
    expect(Object.keys(a).sort()).toEqual(["incident", "level", "service"]);
    for (const label of Object.values(a)) {
      expect(label.confidence).toBeGreaterThan(0);
      expect(label.confidence).toBeLessThanOrEqual(1);
    }
    expect(r.confidence).toBeCloseTo(Math.min(...Object.values(a).map((l) => l.confidence)), 12);
    expect(["debug", "info", "warn", "error", "fatal", "unknown"]).toContain(a.level.value);

    const model = server.model(AGENT)!;
    const before = model.batcher.sizes.length;
    const together = await Promise.all(LINES.map((line) => server!.predict(AGENT, "log_triage", line)));
    // All six waited for one another and ran as one batch...
    expect(model.batcher.sizes.slice(before)).toEqual([6]);
    // ...and got exactly the answers they get alone.
    together.forEach((t, i) => {
      expect(t.steps).toBe(alone[i].steps);
      const x = t.answer as Record<string, { value: unknown; confidence: number }>;
      const y = alone[i].answer as Record<string, { value: unknown; confidence: number }>;
      for (const k of Object.keys(y)) {
        expect(x[k].value).toEqual(y[k].value);
        expect(x[k].confidence).toBeCloseTo(y[k].confidence, 5);
      }
    });
  });

  it("answers a trace path the version remembers by its training outcomes, and says how often it saw it", async () => {
    const path = ["api:GET /x", "db:query"];
    const key = traceOutcome.memoryKey!(traceOutcome.encode({ path }, testVocab()).inputs);
    const memory: MemoryFile = {
      schema: 1,
      strength: 1,
      until: "2026-01-01T00:00:00.000Z",
      tasks: {
        trace_outcome: {
          [key]: [{ "status:error": 3 }, { "latency:>=5s": 3 }, { "service:db": 2, "service:api": 1 }],
        },
      },
    };
    server = (await started({}, undefined, { seed: 3, memory })).server;
    const seen = await server.predict(AGENT, "trace_outcome", { path });
    const a = seen.answer as Record<string, { value: unknown; confidence: number }>;
    // (count + model) / (seen + 1): three of three outvote any model.
    expect(a.status.value).toBe("error");
    expect(a.status.confidence).toBeGreaterThanOrEqual(0.75);
    expect(a.latency.value).toBe(">=5s");
    expect(a.culprit.value).toBe("db");
    expect(seen.seen_in_training).toBe(3);
    // 16 tokens hold the drivers' start only: a path with a repeated call differs there.
    const other = await server.predict(AGENT, "trace_outcome", "api:GET /x -> api:GET /x -> db:query");
    expect(other.seen_in_training).toBe(0);
    // Tasks it keeps no memory for say nothing about it.
    expect((await server.predict(AGENT, "log_triage", LINES[0])).seen_in_training).toBeUndefined();
  });

  it("says nothing of a memory for a version registered without one", async () => {
    const env = await started();
    server = env.server;
    const r = await server.predict(AGENT, "trace_outcome", "api:GET /x -> db:query");
    expect(r.seen_in_training).toBeUndefined();
  });

  it("refuses bad input with clear errors", async () => {
    const env = await started({ max_input_chars: 200 });
    server = env.server;
    await expect(server.predict(AGENT, "log_triage", "x".repeat(201))).rejects.toThrow(
      "input is 201 characters; the limit is 200 (serve.max_input_chars)",
    );
    await expect(server.predict(AGENT, "log_triage", { line: "y".repeat(300) })).rejects.toThrow(
      /limit is 200/,
    );
    await expect(server.predict(AGENT, "log_triage", 42)).rejects.toThrow(
      /input must be a text or a JSON object/,
    );
    await expect(server.predict(AGENT, "log_triage", { text: "no line" })).rejects.toThrow(
      "log_triage needs { line: string }",
    );
    await expect(server.predict(AGENT, "sudoku", "x")).rejects.toThrow(
      /unknown task "sudoku" \(tasks: code_infill/,
    );
    await expect(server.predict(AGENT, "metric_forecast", "1 2 3")).rejects.toThrow(/takes a JSON query/);
    await expect(server.predict("agent-x", "log_triage", "x")).rejects.toThrow(
      /agent "agent-x" is not served/,
    );
    const rendered = await metrics.getSingleMetricAsString("trm_forge_predictions_total");
    expect(rendered).toMatch(/trm_forge_predictions_total\{[^}]*result="error"[^}]*\} \d+/);
  });

  it("shadows a share of predictions on the challenger after answering, records agreement, and reuses the challenger when it is promoted", async () => {
    const picks = [0.1, 0.9, 0.1, 0.9, 0.1, 0.9];
    let i = 0;
    const env = await started({ shadow_fraction: 0.5 }, () => picks[i++ % picks.length]);
    server = env.server;
    const v2 = await registerVersion(env.registry, AGENT, { seed: 2 });
    await env.registry.promote(AGENT, v2, { alias: "challenger", actor: "test", reason: "try" });
    await server.reconcile(AGENT);
    expect(server.status()[0].challenger?.version).toBe(v2);
    const tensorsWithTwo = await server.tensors();

    for (const line of LINES) {
      const r = await server.predict(AGENT, "log_triage", line);
      // The caller always gets the champion, and gets it before the shadow run starts.
      expect(r.version).toBe(env.v1);
      const shadowed = server.compare(AGENT)?.tasks[0]?.shadowed ?? 0;
      expect(shadowed).toBeLessThan(LINES.filter((_, k) => picks[k] < 0.5).length);
    }
    for (let k = 0; k < 100 && (server.compare(AGENT)?.tasks[0]?.shadowed ?? 0) < 3; k++) await sleep(20);
    const live = server.compare(AGENT)!;
    expect(live).toMatchObject({ champion: env.v1, challenger: v2 });
    const t = live.tasks[0];
    expect(t.task).toBe("log_triage");
    expect(t.shadowed).toBe(3); // picks below 0.5
    expect(t.agreement).toBeGreaterThanOrEqual(0);
    expect(t.agreement).toBeLessThanOrEqual(1);
    expect(Object.keys(t.label_agreement).sort()).toEqual(["incident", "level", "service"]);
    expect(t.champion.version).toBe(env.v1);
    expect(t.challenger.mean_steps).toBeGreaterThanOrEqual(1);
    expect(t.challenger.p50_latency_ms).toBeGreaterThan(0);
    expect(await metrics.getSingleMetricAsString("trm_forge_shadow_agreement_ratio")).toContain(
      `agent="${AGENT}",task="log_triage"`,
    );
    expect(await metrics.getSingleMetricAsString("trm_forge_predict_duration_seconds")).toContain(
      'role="challenger"',
    );

    // The record survives in the store for `trm-forge models compare`.
    await server.stop();
    const stored = await readShadowReport(env.store, AGENT);
    expect(stored?.tasks[0].shadowed).toBe(3);
    expect(stored?.challenger).toBe(v2);
    server = new ModelServer({
      config: env.config,
      store: env.store,
      registry: env.registry,
      agents: [AGENT],
    });
    await server.start();

    // Promoting the challenger moves the loaded model over: no second load, one model's tensors.
    await env.registry.promote(AGENT, v2, { actor: "test", reason: "won" });
    await server.reconcile(AGENT);
    const last = server
      .swaps()
      .filter((s) => s.alias === "champion")
      .at(-1)!;
    expect(last).toMatchObject({ to: v2, ok: true });
    expect(last.smoke).toBeUndefined();
    expect(server.status()[0]).toMatchObject({ champion: { version: v2 }, challenger: null });
    expect((await server.predict(AGENT, "log_triage", LINES[0])).version).toBe(v2);
    expect(await server.tensors()).toBeLessThan(tensorsWithTwo);
  });
});

describe("agents", () => {
  it("serves every agent in the store when none are listed, including one whose first model arrives later", async () => {
    const env = testServeEnv();
    const a1 = await registerVersion(env.registry, "agent-a", { seed: 1 });
    await env.registry.promote("agent-a", a1, { actor: "test", reason: "first" });
    const server = new ModelServer({ config: env.config, store: env.store, registry: env.registry });
    await server.start();
    try {
      expect(server.agents()).toEqual(["agent-a"]);
      const b1 = await registerVersion(env.registry, "agent-b", { seed: 2 });
      await env.registry.promote("agent-b", b1, { actor: "test", reason: "first" });
      for (let k = 0; k < 100 && !server.status().find((s) => s.agent === "agent-b")?.champion; k++)
        await sleep(20);
      expect((await server.predict("agent-b", "log_triage", LINES[0])).version).toBe(b1);
    } finally {
      await server.stop();
    }
  });
});
