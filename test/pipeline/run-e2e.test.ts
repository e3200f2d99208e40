// The whole pipeline with the real stages: collect from the simulated homelab over HTTP, build,
// train a tiny model, evaluate, register and deploy; then a second run that fine-tunes the
// champion with a grown vocabulary. Checks the store, the registry, the report and the metrics.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Config, parseConfig } from "../../src/config/index.js";
import { registry as metrics } from "../../src/metrics.js";
import { createPipeline } from "../../src/pipeline/create.js";
import { openDataset, readDatasetManifest } from "../../src/pipeline/dataset/index.js";
import type { DeployHook } from "../../src/pipeline/deploy/stage.js";
import { reportKey } from "../../src/pipeline/report.js";
import type { Pipeline, RunRecord } from "../../src/pipeline/run.js";
import { parseMemory } from "../../src/pipeline/tasks/index.js";
import { agentConfigFor, createSimulator, type Simulator } from "../../src/simulator/index.js";
import { tinyModel } from "../helpers/tiny-config.js";

/** A sample's value from the process's metrics registry (histograms by their _count, _sum names). */
async function metric(name: string, labels: Record<string, string>): Promise<number> {
  for (const m of await metrics.getMetricsAsJSON())
    for (const v of m.values as { value: number; labels: Record<string, string>; metricName?: string }[])
      if (
        (v.metricName ?? m.name) === name &&
        Object.entries(labels).every(([k, val]) => v.labels[k] === val)
      )
        return Number(v.value);
  return 0;
}

describe("the pipeline end to end", () => {
  let sim: Simulator;
  let config: Config;
  let pipeline: Pipeline;
  const hookCalls: string[] = [];
  const hook: DeployHook = {
    name: "recorder",
    async artifacts(ctx) {
      hookCalls.push(`artifacts ${ctx.datasetId} gate=${ctx.evaluation?.gate.passed}`);
      return [{ name: "extra.txt", data: `made for ${ctx.runId}` }];
    },
    async deploy(ctx) {
      hookCalls.push(`deploy ${ctx.version} ${ctx.promotedTo}`);
      return { status: "ok", detail: ctx.manifest.artifacts.length };
    },
  };

  beforeAll(async () => {
    sim = await createSimulator({ seed: 3, days: 6, logsPerDay: 800, tracesPerDay: 300 });
    const dir = mkdtempSync(join(tmpdir(), "trm-e2e-"));
    const agent = agentConfigFor(sim.url, { lookback: "6d" });
    const few = { max_examples: 150, min_examples: 1 };
    config = parseConfig({
      data_dir: join(dir, "data"),
      log_level: "silent",
      agents: { sre: { ...agent, sources: { ...agent.sources, code: { path: resolve("src/pipeline") } } } },
      model: tinyModel(),
      dataset: {
        window: "6d",
        seq_len: 64,
        tasks: { code_infill: few, log_triage: few, metric_forecast: few, trace_outcome: few },
      },
      train: {
        max_steps: 20,
        batch_size: 8,
        eval_interval: 10,
        checkpoint_interval: 10,
        log_interval: 5,
        eval_examples: 16,
        warmup_steps: 2,
        lr: 0.003,
        ema_decay: 0.8,
      },
      gate: { min_examples: 5 },
    });
    pipeline = createPipeline(config, { deployHooks: [hook] });
  });
  afterAll(async () => {
    await sim?.close();
  });

  let first: RunRecord;

  it("collects, builds, trains, evaluates, registers and reports in one run", {
    timeout: 600_000,
  }, async () => {
    const before = await metric("trm_forge_runs_total", { agent: "sre", result: "succeeded" });
    first = await (await pipeline.startRun({ agent: "sre", trigger: { kind: "cli", actor: "test" } })).done;
    expect(first.error).toBeNull();
    expect(first.status).toBe("succeeded");
    expect(first.stages.map((s) => s.status)).toEqual([
      "succeeded",
      "succeeded",
      "succeeded",
      "succeeded",
      "succeeded",
    ]);
    const [collect, build, train, evaluate, deploy] = first.stages.map((s) => s.output);
    expect(collect.records).toBeGreaterThan(1000);
    expect(collect.sources).toEqual({ code: "ok", prometheus: "ok", loki: "ok", tempo: "ok" });
    expect(build.dataset_id).toBe(first.dataset_id);
    expect(build.grew_from_champion).toBe(false);
    expect(train).toMatchObject({ steps: 20, parent_version: null, dataset_id: first.dataset_id });
    expect(first.model_version).toBe(deploy.version);

    // The registered version: every artifact, lineage back to the raw data, the gate's verdict.
    const version = first.model_version!;
    const manifest = await pipeline.registry.getManifest("sre", version);
    expect(manifest.artifacts.map((a) => a.name).sort()).toEqual(
      [
        "card.md",
        "config.json",
        "extra.txt",
        "memory.json",
        "metrics.json",
        "model.safetensors",
        "raw.safetensors",
        "smoke.json",
        "vocab.json",
      ].sort(),
    );
    const ds = await readDatasetManifest(pipeline.store, "sre", first.dataset_id!);
    expect(manifest.lineage).toEqual({
      run_id: first.id,
      dataset_id: ds.id,
      raw_segments: ds.segments.map((s) => ({ key: s.key, sha256: s.sha256 })),
      code_version: first.code_version.id,
      parent_version: null,
    });
    // The path memory holds every training trace of the dataset, once.
    const memory = parseMemory(await pipeline.registry.readArtifact("sre", version, "memory.json"));
    const trained = await openDataset(pipeline.store, "sre", ds.id);
    const paths = [...memory.tasks.get("trace_outcome")!.values()];
    expect(paths.reduce((n, slots) => n + [...slots[0].values()].reduce((a, b) => a + b, 0), 0)).toBe(
      trained.train.examples("trace_outcome").length,
    );
    expect([...memory.tasks.keys()]).toEqual(["trace_outcome"]);
    const gate = (evaluate as { gate: { passed: boolean; reasons: string[] } }).gate;
    expect(manifest.gate).toEqual(gate);
    const index = await pipeline.registry.read("sre");
    expect(index.aliases.champion).toBe(gate.passed ? version : null);
    expect(deploy.promoted_to).toBe(gate.passed ? "champion" : null);
    const card = (await pipeline.registry.readArtifact("sre", version, "card.md")).toString();
    expect(card).toContain(`# sre · TRM ${version}`);
    expect(card).toContain(`Gate **${gate.passed ? "passed" : "failed"}**`);
    const stored = JSON.parse(
      (await pipeline.registry.readArtifact("sre", version, "metrics.json")).toString(),
    );
    expect(stored.evaluation.gate).toEqual(
      JSON.parse(
        JSON.stringify(
          await pipeline.store
            .get(`runs/sre/${first.id}/evaluation.json`)
            .then((b) => JSON.parse(b.toString()).gate),
        ),
      ),
    );
    expect(hookCalls).toEqual([
      `artifacts ${ds.id} gate=${gate.passed}`,
      `deploy ${version} ${gate.passed ? "champion" : null}`,
    ]);

    // The report, and the metrics of every stage.
    const html = (await pipeline.store.get(reportKey("sre", first.id))).toString();
    for (const id of ["verdict", "curves", "tasks", "data", "halting", "stages"])
      expect(html).toContain(`<section id="${id}"`);
    expect(await metric("trm_forge_runs_total", { agent: "sre", result: "succeeded" })).toBe(before + 1);
    expect(await metric("trm_forge_run_last_success_timestamp_seconds", { agent: "sre" })).toBeCloseTo(
      Date.parse(first.ended_at!) / 1000,
      0,
    );
    for (const stage of ["collect", "build", "train", "evaluate", "deploy"])
      expect(
        await metric("trm_forge_run_stage_duration_seconds_count", {
          agent: "sre",
          stage,
          result: "succeeded",
        }),
      ).toBeGreaterThan(0);
    expect(
      await metric("trm_forge_dataset_examples", { agent: "sre", task: "log_triage", split: "val" }),
    ).toBe(ds.counts.by_task.log_triage.val);
    expect(await metric("trm_forge_gate_result", { agent: "sre", version })).toBe(gate.passed ? 1 : 0);
    expect(await metric("trm_forge_collect_records_total", { agent: "sre", source: "loki" })).toBeGreaterThan(
      0,
    );
  });

  it("fine-tunes the champion in the next run, growing its vocabulary, and compares against it", {
    timeout: 600_000,
  }, async () => {
    const v1 = first.model_version!;
    const index = await pipeline.registry.read("sre");
    if (index.aliases.champion !== v1) {
      const moves = await pipeline.registry.promote("sre", v1, {
        actor: "test",
        reason: "manual override",
        force: true,
      });
      expect(moves[0].forced).toBe(true);
    }
    const second = await (
      await pipeline.startRun({ agent: "sre", stages: ["build", "train", "evaluate", "deploy"] })
    ).done;
    expect(second.error).toBeNull();
    expect(second.status).toBe("succeeded");
    const build = second.stages[1].output;
    expect(build.grew_from_champion).toBe(true);
    expect(second.parent_version).toBe(v1);
    expect(second.stages[2].output.parent_version).toBe(v1);
    const ev = JSON.parse((await pipeline.store.get(`runs/sre/${second.id}/evaluation.json`)).toString());
    expect(ev.champion).toEqual({ version: v1 });
    expect(
      Object.values(ev.tasks as Record<string, { champion: unknown }>).every((t) => t.champion !== null),
    ).toBe(true);
    const v2 = await pipeline.registry.getManifest("sre", second.model_version!);
    expect(v2.lineage.parent_version).toBe(v1);
    expect(second.model_version! > v1).toBe(true);
    // A version never moves: v1's files still verify.
    expect((await pipeline.registry.load("sre", v1)).files.size).toBe(9);
  });
});
