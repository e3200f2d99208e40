// End to end: collect a homelab over the Loki and Tempo HTTP APIs (the collection issue's test
// servers, serving a synthetic homelab whose incidents show in logs and traces), build the
// dataset, train a small TRM for a bounded number of steps, and check that on the validation days
// it beats the baselines of log_triage and trace_outcome, scored by the same code on the same
// examples.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { homelabDays } from "../../../src/bench/homelab-raw.js";
import { parseConfig } from "../../../src/config/index.js";
import { initBackend } from "../../../src/model/backend.js";
import { resolveModelConfig } from "../../../src/model/config.js";
import { Trainer } from "../../../src/model/trainer.js";
import { collect } from "../../../src/pipeline/collect/index.js";
import { buildAgentDataset, type Dataset, openDataset } from "../../../src/pipeline/dataset/index.js";
import { rng } from "../../../src/pipeline/tasks/hash.js";
import {
  NUM_PUZZLE_IDENTIFIERS,
  scoreBaselines,
  scoreTask,
  type TaskName,
  type TaskScore,
} from "../../../src/pipeline/tasks/index.js";
import { openStore } from "../../../src/store/index.js";
import { FakeLoki, FakeTempo, type FakeTrace, type LogEntry } from "../../helpers/observability-fakes.js";

const END = Date.parse("2026-03-01T00:00:00Z");
const TASKS: TaskName[] = ["log_triage", "trace_outcome"];
const STEPS = 700;
const BATCH = 24;

describe("collect, build, train, beat the baselines", () => {
  let loki: FakeLoki | undefined;
  let tempo: FakeTempo | undefined;
  let ds: Dataset;

  beforeAll(async () => {
    const logs: LogEntry[] = [];
    const traces: FakeTrace[] = [];
    const homelab = homelabDays({
      days: 10,
      end: END,
      seed: 5,
      files: 0,
      logLines: 3000,
      traces: 3000,
      series: 0,
      incidents: 7,
    });
    for (const day of homelab.days) {
      for (const l of day.logs) logs.push({ ts: BigInt(l.ts_ns), labels: l.labels, line: l.line });
      for (const t of day.traces)
        traces.push({
          traceId: t.trace_id,
          spans: t.spans.map((sp) => ({
            spanId: sp.span_id,
            parentSpanId: sp.parent_span_id ?? undefined,
            service: sp.service,
            namespace: "homelab",
            name: sp.name,
            kind: sp.kind === "server" ? 2 : 3,
            startNs: BigInt(sp.start_ns),
            durationNs: BigInt(sp.duration_ns),
            status: { code: sp.status === "error" ? 2 : sp.status === "ok" ? 1 : 0 },
          })),
        });
    }
    loki = new FakeLoki(logs);
    tempo = new FakeTempo(traces);
    const [lokiUrl, tempoUrl] = [await loki.start(), await tempo.start()];
    const config = parseConfig({
      data_dir: mkdtempSync(join(tmpdir(), "trm-e2e-")),
      agents: {
        sre: {
          lookback: "10d",
          sources: {
            loki: { url: lokiUrl, queries: [{ name: "homelab", logql: '{namespace="homelab"}' }] },
            tempo: {
              url: tempoUrl,
              search_window: "6h",
              queries: [{ name: "homelab", traceql: '{ resource.k8s.namespace.name = "homelab" }' }],
            },
          },
        },
      },
      dataset: {
        window: "10d",
        tasks: { log_triage: { max_examples: 4000 }, trace_outcome: { max_examples: 4000 } },
      },
    });
    const report = await collect(config, { agent: "sre", now: END + 10 * 60_000 });
    expect(report.status).toBe("ok");
    const built = await buildAgentDataset(config, "sre");
    ds = await openDataset(openStore(config), "sre", built.id);
  });

  afterAll(async () => {
    await loki?.stop();
    await tempo?.stop();
  });

  it("trains a small TRM that beats log_triage's and trace_outcome's baselines on the validation days", async () => {
    await initBackend("auto");
    for (const t of TASKS) {
      expect(ds.train.indicesOf(t).length, t).toBeGreaterThan(200);
      expect(ds.val.indicesOf(t).length, t).toBeGreaterThan(100);
    }
    const cfg = resolveModelConfig(
      { preset: "demo", H_cycles: 2, L_cycles: 2, halt_max_steps: 4, loss_type: "softmax" },
      { vocab_size: ds.vocab.size, seq_len: ds.train.seqLen, num_puzzle_identifiers: NUM_PUZZLE_IDENTIFIERS },
    );
    const trainer = Trainer.create(
      cfg,
      {
        lr: 2e-3,
        warmup_steps: 30,
        total_steps: STEPS,
        lr_min_ratio: 0.1,
        weight_decay: 0.1,
        puzzle_emb_lr: 1e-2,
        puzzle_emb_weight_decay: 0.1,
        ema_decay: 0.95,
      },
      1,
    );
    // Batches alternate the two tasks' examples, drawn with a fixed seed.
    const pools = TASKS.map((t) => ds.train.indicesOf(t));
    const draw = rng(7);
    for (let step = 0; step < STEPS; step++) {
      const idx = Array.from({ length: BATCH }, (_, k) => {
        const pool = pools[k % pools.length];
        return pool[Math.floor(draw() * pool.length)];
      });
      const b = ds.train.batch(idx);
      trainer.trainStep({ tokens: b.inputs, labels: b.labels, puzzleIds: b.puzzleIds });
    }

    const S = ds.val.seqLen;
    const results: Record<string, { model: TaskScore; baseline: TaskScore }> = {};
    for (const t of TASKS) {
      const idx = ds.val.indicesOf(t);
      const predictions: Int32Array[] = [];
      for (let i = 0; i < idx.length; i += 64) {
        const b = ds.val.batch(idx.slice(i, i + 64));
        const r = trainer.evaluate({ tokens: b.inputs, labels: b.labels, puzzleIds: b.puzzleIds });
        for (let k = 0; k < b.puzzleIds.length; k++)
          predictions.push(r.predictions.slice(k * S, (k + 1) * S));
      }
      const examples = idx.map((i) => ds.val.example(i));
      const baselines = scoreBaselines(t, ds.train.examples(t), examples, ds.vocab);
      results[t] = {
        model: scoreTask(t, examples, predictions, ds.vocab),
        baseline: baselines.scores[baselines.best],
      };
    }
    trainer.dispose();
    for (const t of TASKS) {
      const { model, baseline } = results[t];
      expect(
        model.metrics[model.primary],
        `${t}: model ${JSON.stringify(model.metrics)} vs baseline ${JSON.stringify(baseline.metrics)}`,
      ).toBeGreaterThan(baseline.metrics[baseline.primary]);
    }
  }, 3_600_000);
});
