import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { writeRawHomelab } from "../../src/bench/homelab-raw.js";
import { type Config, parseConfig } from "../../src/config/index.js";
import { initBackend } from "../../src/model/backend.js";
import { resolveModelConfig } from "../../src/model/config.js";
import { Trainer } from "../../src/model/trainer.js";
import { stageOutput } from "../../src/pipeline/contract.js";
import { createPipeline } from "../../src/pipeline/create.js";
import {
  buildDataset,
  candidateMemory,
  type Dataset,
  openDataset,
} from "../../src/pipeline/dataset/index.js";
import { compareVersions } from "../../src/pipeline/evaluate/compare.js";
import { evaluationRunKey } from "../../src/pipeline/evaluate/stage.js";
import { evaluateVersion, evaluationTarget } from "../../src/pipeline/evaluate/version.js";
import { evaluateModels, runGate, type TaskEvaluation } from "../../src/pipeline/evaluate.js";
import { scoreBaselines, traceOutcome } from "../../src/pipeline/tasks/index.js";
import { FsStore } from "../../src/store/index.js";
import { logTraceDataset, tinyModel } from "../helpers/tiny-config.js";

const gate = (extra: Record<string, unknown> = {}) => parseConfig({ gate: extra }).gate;

function task(
  name: string,
  c: number,
  b: number | null,
  champ: number | null,
  extra: Partial<TaskEvaluation> = {},
): TaskEvaluation {
  return {
    task: name,
    enabled: true,
    examples: 100,
    primary: "acc",
    direction: "higher",
    candidate: { metrics: { acc: c }, score: c },
    champion: champ === null ? null : { metrics: { acc: champ }, score: champ },
    baselines: b === null ? {} : { majority: { metrics: { acc: b }, score: b } },
    best_baseline: b === null ? null : "majority",
    judged: true,
    floor: null,
    ...extra,
  };
}

describe("the gate", () => {
  it("passes a candidate that beats every baseline and does not regress, and says so", () => {
    const v = runGate([task("a", 0.9, 0.5, 0.88), task("b", 0.7, 0.6, null)], gate());
    expect(v.passed).toBe(true);
    expect(v.reasons).toEqual([
      "a: acc 0.900 beats the best baseline (majority, 0.500) by 0.400",
      "a: 0.900 vs champion 0.880 (+0.020)",
      "b: acc 0.700 beats the best baseline (majority, 0.600) by 0.100",
    ]);
  });

  it("fails on a task below its baseline, a regression beyond the tolerance, or a missed floor", () => {
    expect(runGate([task("a", 0.5, 0.5, null)], gate()).reasons).toEqual([
      "a: acc 0.500 does not beat the best baseline (majority, 0.500)",
    ]);
    expect(runGate([task("a", 0.55, 0.5, null)], gate({ baseline_margin: 0.1 })).passed).toBe(false);
    const reg = runGate([task("a", 0.85, 0.5, 0.9)], gate({ max_regression: 0.02 }));
    expect(reg.passed).toBe(false);
    expect(reg.reasons).toEqual([
      "a: regresses against the champion: 0.850 vs 0.900 (-0.050, tolerance 0.020)",
    ]);
    expect(runGate([task("a", 0.89, 0.5, 0.9)], gate({ max_regression: 0.02 })).passed).toBe(true);
    const floor = runGate([task("a", 0.75, 0.5, null, { floor: 0.8 })], gate());
    expect(floor.reasons).toEqual(["a: 0.750 is below the floor of 0.800"]);
  });

  it("compares lower-is-better metrics the other way round", () => {
    const lower = (c: number, b: number) => task("m", c, b, null, { direction: "lower" });
    expect(runGate([lower(0.2, 0.3)], gate()).passed).toBe(true);
    expect(runGate([lower(0.3, 0.2)], gate()).passed).toBe(false);
  });

  it("ignores disabled tasks, reports thin ones unjudged, and fails when nothing can be judged", () => {
    const v = runGate(
      [
        task("a", 0.9, 0.1, null),
        task("off", 0, 0.9, null, { enabled: false }),
        task("thin", 0, 0.9, null, { judged: false, examples: 3 }),
      ],
      gate(),
    );
    expect(v.passed).toBe(true);
    expect(v.checks.some((c) => c.task === "off")).toBe(false);
    expect(v.reasons).toContain("thin: not judged, only 3 validation examples (gate.min_examples is 20)");
    const none = runGate([task("thin", 0.9, 0.1, null, { judged: false, examples: 3 })], gate());
    expect(none.passed).toBe(false);
    expect(none.reasons).toEqual(["no enabled task had enough validation examples to judge the candidate"]);
    const floorThin = runGate(
      [task("a", 0.9, 0.1, null), task("thin", 0.9, 0.1, null, { judged: false, examples: 3, floor: 0.8 })],
      gate(),
    );
    expect(floorThin.passed).toBe(false);
  });
});

describe("evaluateModels on a dataset", () => {
  const dir = mkdtempSync(join(tmpdir(), "trm-eval-"));
  const store = new FsStore(join(dir, "store"));
  let config: Config;
  let ds: Dataset;
  const weights = (seed: number, over: { vocab?: number; seq?: number } = {}) => {
    const cfg = resolveModelConfig(tinyModel({ halt_max_steps: 3 }), {
      vocab_size: over.vocab ?? ds.vocab.size,
      seq_len: over.seq ?? ds.manifest.seq_len,
      num_puzzle_identifiers: ds.manifest.num_puzzle_identifiers,
    });
    const t = Trainer.create(cfg, {}, seed);
    const bytes = t.exportModel();
    t.dispose();
    return bytes;
  };

  beforeAll(async () => {
    await initBackend("auto");
    config = parseConfig({
      data_dir: join(dir, "data"),
      agents: { sre: {} },
      dataset: logTraceDataset(100),
      gate: { min_examples: 5, floors: { log_triage: 0.5 } },
    });
    await writeRawHomelab({
      store,
      agent: "sre",
      days: 4,
      files: 10,
      logLines: 600,
      traces: 300,
      series: 6,
      end: Date.parse("2026-11-29T00:00:00Z"),
    });
    await buildDataset({ store, agent: "sre", config: config.dataset });
    ds = await openDataset(store, "sre");
  });

  it("scores the candidate, the champion and the baselines on the same validation examples", async () => {
    const w = weights(1);
    const r = await evaluateModels({
      agent: "sre",
      config,
      dataset: ds,
      candidate: { label: "candidate", version: null, weights: w, memory: null },
      champion: { label: "v-champ", version: "v-champ", weights: w, memory: null },
    });
    expect(Object.keys(r.tasks).sort()).toEqual(["log_triage", "trace_outcome"]);
    for (const [name, t] of Object.entries(r.tasks)) {
      const idx = ds.val.indicesOf(name as never);
      expect(t.examples).toBe(idx.length);
      expect(t.examples).toBeGreaterThan(0);
      // The same weights on the same examples score the same.
      expect(t.champion!.metrics).toEqual(t.candidate.metrics);
      const b = scoreBaselines(
        name as never,
        ds.train.examples(name as never),
        ds.val.examples(name as never),
        ds.vocab,
      );
      expect(t.best_baseline).toBe(b.best);
      expect(t.baselines[b.best].metrics).toEqual(b.scores[b.best].metrics);
      // Paired intervals on the same examples: the point difference inside its interval; the
      // same weights as the champion differ on no example, so that interval is exactly 0.
      const iv = t.intervals!;
      expect(iv.baseline!.against).toBe(b.best);
      expect(iv.baseline!.diff).toBeCloseTo(t.candidate.score - t.baselines[b.best].score, 12);
      expect(iv.baseline!.low).toBeLessThanOrEqual(iv.baseline!.diff + 1e-12);
      expect(iv.baseline!.high).toBeGreaterThanOrEqual(iv.baseline!.diff - 1e-12);
      expect(iv.champion).toMatchObject({ against: "v-champ", diff: 0, low: 0, high: 0, resamples: 1000 });
    }
    expect(r.examples).toBe(ds.val.size);
    // The stronger baselines are scored too, and the one the gate holds the candidate to is the
    // best of them all.
    const trace = r.tasks.trace_outcome;
    expect(Object.keys(trace.baselines)).toEqual(["majority_per_root_operation", "majority_per_path"]);
    const top = Math.max(...Object.values(trace.baselines).map((b) => b.score));
    expect(trace.baselines[trace.best_baseline!].score).toBe(top);
    expect(r.gate.checks.find((c) => c.check === "baseline" && c.task === "trace_outcome")?.detail).toContain(
      `(${trace.best_baseline}, `,
    );
    // The robustness probe: log lines rewritten, each variant beside the same lines clean.
    expect(r.probe?.task).toBe("log_triage");
    expect(r.probe!.lines).toBeGreaterThan(0);
    expect(r.probe!.variants.length).toBeGreaterThan(0);
    for (const v of r.probe!.variants) {
      expect(v.examples).toBeGreaterThan(0);
      for (const x of [v.clean.exact_all, v.probe.exact_all, v.served_level_accuracy]) {
        expect(x).toBeGreaterThanOrEqual(0);
        expect(x).toBeLessThanOrEqual(1);
      }
    }
    expect(r.halting.candidate.histogram.reduce((a, b) => a + b, 0)).toBe(ds.val.size);
    expect(r.halting.champion!.histogram).toEqual(r.halting.candidate.histogram);
    expect(r.gate.checks.filter((c) => c.check === "regression").every((c) => c.passed)).toBe(true);
    expect(r.tasks.log_triage.floor).toBe(0.5);
    expect(r.gate.checks.some((c) => c.check === "floor" && c.task === "log_triage")).toBe(true);
  });

  it("recalls the candidate's path memory on trace_outcome, and nothing changes elsewhere", async () => {
    const w = weights(3);
    const memory = candidateMemory(ds);
    const r = await evaluateModels({
      agent: "sre",
      config,
      dataset: ds,
      candidate: { label: "candidate", version: null, weights: w, memory },
      champion: { label: "v-plain", version: "v-plain", weights: w, memory: null },
    });
    const trace = r.tasks.trace_outcome;
    // An untrained model alone is below the per-path majority. Recalling the training outcomes
    // answers every seen path as that baseline does (ties aside), so it falls short of it by at
    // most the share of paths not seen in train.
    const path = trace.baselines.majority_per_path.score;
    expect(trace.champion!.score).toBeLessThan(path);
    const val = ds.val.examples("trace_outcome");
    const key = (ex: (typeof val)[number]) => traceOutcome.memoryKey!(ex.inputs);
    const seen = val.filter((ex) => memory.tasks.get("trace_outcome")!.has(key(ex))).length;
    expect(seen).toBeGreaterThan(val.length / 2);
    expect(trace.candidate.score).toBeGreaterThan(trace.champion!.score);
    expect(trace.candidate.score).toBeGreaterThanOrEqual(path - (val.length - seen) / val.length - 1e-9);
    expect(trace.intervals!.champion!.low).toBeGreaterThan(0);
    // log_triage keeps no memory: the same weights answer the same.
    expect(r.tasks.log_triage.candidate.metrics).toEqual(r.tasks.log_triage.champion!.metrics);
    expect(r.notes).toBeUndefined();
    // A memory that counts validation days (a version trained on newer data) would answer those
    // very traces: it is set aside, and the evaluation says so.
    const late = await evaluateModels({
      agent: "sre",
      config,
      dataset: ds,
      candidate: {
        label: "candidate",
        version: null,
        weights: w,
        memory: { ...memory, until: Date.parse("2030-01-01") },
      },
      champion: null,
    });
    expect(late.tasks.trace_outcome.candidate.metrics).toEqual(trace.champion!.metrics);
    expect(late.notes).toEqual([
      "candidate's path memory counts traces up to 2030-01-01T00:00:00.000Z, inside these validation days: it answered trace_outcome from its weights alone",
    ]);
  });

  it("lets a champion with an older, smaller vocabulary answer, and refuses one of another shape", async () => {
    const grown = await evaluateModels({
      agent: "sre",
      config,
      dataset: ds,
      candidate: { label: "candidate", version: null, weights: weights(1), memory: null },
      champion: {
        label: "v-old",
        version: "v-old",
        weights: weights(2, { vocab: ds.vocab.size - 3 }),
        memory: null,
      },
    });
    expect(grown.champion_note).toBeNull();
    expect(grown.tasks.trace_outcome.champion).not.toBeNull();
    const other = await evaluateModels({
      agent: "sre",
      config,
      dataset: ds,
      candidate: { label: "candidate", version: null, weights: weights(1), memory: null },
      champion: { label: "v-wide", version: "v-wide", weights: weights(2, { seq: 80 }), memory: null },
    });
    expect(other.champion_note).toMatch(
      /v-wide cannot answer this dataset: its sequence length is 80, the dataset's 64/,
    );
    expect(other.gate.passed).toBe(false);
    expect(other.gate.reasons).toContain(other.champion_note);
  });

  it("evaluates a registered version against the champion in a run of the evaluate stage alone, stored in that run", async () => {
    const pipeline = createPipeline(config, { store, report: false });
    const registry = pipeline.registry;
    const lineage = {
      run_id: null,
      dataset_id: ds.id,
      raw_segments: [],
      code_version: "t",
      parent_version: null,
    };
    const champ = await registry.register("sre", {
      artifacts: [{ name: "model.safetensors", data: weights(5) }],
      lineage,
      gate: { passed: true, reasons: [] },
      createdBy: "test",
    });
    await registry.promote("sre", champ.version, { actor: "test", reason: "seed" });
    const cand = await registry.register("sre", {
      artifacts: [{ name: "model.safetensors", data: weights(6) }],
      lineage,
      gate: null,
      createdBy: "test",
    });
    const target = await evaluationTarget(registry, "sre", cand.version);
    expect(target).toEqual({ version: cand.version, against: champ.version });
    const { result, key, runId } = await evaluateVersion(pipeline, { agent: "sre", target });
    expect(result.candidate.version).toBe(cand.version);
    expect(result.champion?.version).toBe(champ.version);
    expect(result.candidate.run_id).toBe(runId);
    expect(key).toBe(`runs/sre/${runId}/evaluation.json`);
    expect(JSON.parse((await store.get(key)).toString())).toEqual(result);
    // The run: the evaluate stage alone, its output what a job shows.
    const run = await pipeline.getRun(runId, "sre");
    expect(run.status).toBe("succeeded");
    expect(run.options.evaluate).toEqual(target);
    expect(run.stages.filter((s) => s.requested).map((s) => s.name)).toEqual(["evaluate"]);
    const out = stageOutput(run, "evaluate")!;
    expect(out).toMatchObject({
      evaluation: key,
      version: cand.version,
      champion: champ.version,
      dataset_id: ds.id,
      examples: result.examples,
    });
    expect(Object.keys(out.tasks!).sort()).toEqual(Object.keys(result.tasks).sort());
    for (const [task, t] of Object.entries(out.tasks!))
      expect(t.intervals?.champion).toEqual({
        against: champ.version,
        diff: result.tasks[task].intervals!.champion!.diff,
        low: result.tasks[task].intervals!.champion!.low,
        high: result.tasks[task].intervals!.champion!.high,
      });
    // Nothing lands in the immutable version folder, nor anywhere but the run.
    expect((await registry.getManifest("sre", cand.version)).artifacts.map((a) => a.name)).toEqual([
      "model.safetensors",
    ]);
    expect(await store.list("models/sre/evaluations")).toEqual([]);
    // The comparison finds it: both versions on the same examples.
    const index = await registry.read("sre");
    const cmp = await compareVersions({ store, agent: "sre", index, a: champ.version, b: cand.version });
    expect(cmp.basis).toBe("same_examples");
    expect(cmp.dataset_id).toBe(ds.id);
    const row = cmp.tasks.find((t) => t.task === "log_triage")!;
    expect(row.b).toBe(result.tasks.log_triage.candidate.score);
    expect(row.a).toBe(result.tasks.log_triage.champion!.score);
    // The paired interval of b - a; asked the other way round, it turns over.
    const iv = result.tasks.log_triage.intervals!.champion!;
    expect(row.interval).toEqual({ low: iv.low, high: iv.high });
    const back = await compareVersions({ store, agent: "sre", index, a: cand.version, b: champ.version });
    expect(back.tasks.find((t) => t.task === "log_triage")!.interval).toEqual({
      low: -iv.high,
      high: -iv.low,
    });

    const alone = await evaluateVersion(pipeline, {
      agent: "sre",
      target: await evaluationTarget(registry, "sre", "champion", "none"),
    });
    expect(alone.result.champion).toBeNull();
    // A stage list other than the evaluate stage alone is refused.
    await expect(
      pipeline.startRun({ agent: "sre", stages: ["train", "evaluate"], evaluate: target }),
    ).rejects.toThrow(/evaluate stage only/);
  });

  it("compares a version with the champion it was trained against, from its training run's evaluation", async () => {
    const pipeline = createPipeline(config, { store, report: false });
    const registry = pipeline.registry;
    const champion = (await registry.read("sre")).aliases.champion!;
    // What a training run's evaluate stage stores: its candidate has no version yet.
    const runId = "r20261201-020000-000-beef";
    const ev = await evaluateModels({
      agent: "sre",
      config,
      dataset: ds,
      candidate: { label: "candidate", version: null, weights: weights(8), memory: null },
      champion: {
        label: champion,
        version: champion,
        weights: await registry.readArtifact("sre", champion, "model.safetensors"),
        memory: null,
      },
      runId,
    });
    await store.put(evaluationRunKey("sre", runId), JSON.stringify(ev));
    const trained = await registry.register("sre", {
      artifacts: [{ name: "model.safetensors", data: weights(8) }],
      lineage: {
        run_id: runId,
        dataset_id: ds.id,
        raw_segments: [],
        code_version: "t",
        parent_version: champion,
      },
      gate: { passed: ev.gate.passed, reasons: ev.gate.reasons },
      createdBy: "test",
    });
    const index = await registry.read("sre");
    const cmp = await compareVersions({ store, agent: "sre", index, a: champion, b: trained.version });
    expect(cmp.basis).toBe("same_examples");
    const row = cmp.tasks.find((t) => t.task === "trace_outcome")!;
    expect(row.b).toBe(ev.tasks.trace_outcome.candidate.score);
    expect(row.a).toBe(ev.tasks.trace_outcome.champion!.score);
    // Asked the other way round, the sides swap.
    const back = await compareVersions({ store, agent: "sre", index, a: trained.version, b: champion });
    expect(back.tasks.find((t) => t.task === "trace_outcome")!.a).toBe(row.b);
  });
});
