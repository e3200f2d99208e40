// A fine-tune across a vocabulary growth, end to end: a dataset with a service the served model
// never saw is built on the served vocabulary, the model's tables grow to match (old rows
// unchanged, new rows drawn as for a fresh model), and training continues on the new data.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { writeRawHomelab } from "../../../src/bench/homelab-raw.js";
import { parseConfig } from "../../../src/config/index.js";
import { initBackend } from "../../../src/model/backend.js";
import { resolveModelConfig } from "../../../src/model/config.js";
import { Trainer } from "../../../src/model/trainer.js";
import { writeSegment } from "../../../src/pipeline/collect/raw-store.js";
import { buildDataset, type Dataset, openDataset } from "../../../src/pipeline/dataset/index.js";
import { NUM_PUZZLE_IDENTIFIERS, vocabGrowth } from "../../../src/pipeline/tasks/index.js";
import { FsStore } from "../../../src/store/index.js";

const DAY = 86_400_000;
const END = Date.parse("2026-02-01T00:00:00Z");
const config = parseConfig({
  dataset: { window: "10d", tasks: { code_infill: { enabled: false } } },
}).dataset;

function batchOf(ds: Dataset, task: "log_triage" | "trace_outcome", n: number) {
  const b = ds.train.batch(ds.train.indicesOf(task).slice(0, n));
  return { tokens: b.inputs, labels: b.labels, puzzleIds: b.puzzleIds };
}

describe("vocabulary growth across a fine-tune", () => {
  it("keeps every old id and row, adds the new service, and trains on", async () => {
    await initBackend("auto");
    const store = new FsStore(mkdtempSync(join(tmpdir(), "trm-grow-")));
    const homelab = { store, agent: "sre", days: 10, files: 0, logLines: 1500, traces: 600, series: 8 };
    await writeRawHomelab(homelab);
    const first = await openDataset(store, "sre", (await buildDataset({ store, agent: "sre", config })).id);
    const v1 = first.vocab;

    const cfg = resolveModelConfig(
      { preset: "demo", hidden_size: 32, num_heads: 2, H_cycles: 1, L_cycles: 1, halt_max_steps: 2 },
      { vocab_size: v1.size, seq_len: first.train.seqLen, num_puzzle_identifiers: NUM_PUZZLE_IDENTIFIERS },
    );
    const trainer = Trainer.create(cfg, { lr: 1e-3, warmup_steps: 0, total_steps: 10 }, 3);
    for (let i = 0; i < 2; i++) trainer.trainStep(batchOf(first, "log_triage", 8));

    // A new service starts logging; the fine-tune builds on the served vocabulary.
    for (let d = 1; d <= 10; d++) {
      const t = END - d * DAY + 3_600_000;
      await writeSegment(
        store,
        "sre",
        "loki",
        new Date(t).toISOString().slice(0, 10),
        "billing",
        Array.from({ length: 30 }, (_, i) => ({
          kind: "log_entry" as const,
          query: "q",
          ts_ns: `${t + i * 60_000}000000`,
          labels: { service_name: "billing" },
          line: `level=info invoice ${String.fromCharCode(97 + (i % 26))}${d} settled for customer ${i}`,
        })),
      );
    }
    const second = await openDataset(
      store,
      "sre",
      (await buildDataset({ store, agent: "sre", config, baseVocab: v1 })).id,
    );
    const v2 = second.vocab;
    const growth = vocabGrowth(v1, v2);
    expect(growth.added.map((a) => a.name)).toEqual(["service:billing"]);
    const billing = v2.classId("service:billing")!;
    expect(billing).toBe(v1.size);

    const before = {
      emb: trainer.model.weights.get("embed_tokens.weight")!.arraySync() as number[][],
      head: trainer.model.weights.get("lm_head.weight")!.arraySync() as number[][],
    };
    trainer.growVocab(v2.size);
    expect(trainer.cfg.vocab_size).toBe(v2.size);
    const emb = trainer.model.weights.get("embed_tokens.weight")!;
    const head = trainer.model.weights.get("lm_head.weight")!;
    expect(emb.shape).toEqual([v2.size, cfg.hidden_size]);
    expect(head.shape).toEqual([cfg.hidden_size, v2.size]);
    const embNow = emb.arraySync() as number[][];
    const headNow = head.arraySync() as number[][];
    // Old rows bit for bit; the new row is drawn (not zero), at the fresh model's scale.
    expect(embNow.slice(0, v1.size)).toEqual(before.emb);
    expect(headNow.map((r) => r.slice(0, v1.size))).toEqual(before.head);
    const fresh = embNow[billing];
    expect(fresh.some((x) => x !== 0)).toBe(true);
    const std = Math.sqrt(fresh.reduce((a, x) => a + x * x, 0) / fresh.length);
    expect(std).toBeGreaterThan(0.3 / Math.sqrt(cfg.hidden_size));
    expect(std).toBeLessThan(3 / Math.sqrt(cfg.hidden_size));

    // Training goes on with batches that hold the new class.
    const idx = second.train
      .indicesOf("log_triage")
      .filter((i) => second.train.example(i).labels[1] === billing);
    expect(idx.length).toBeGreaterThan(0);
    const b = second.train.batch(idx.slice(0, 8));
    const m = trainer.trainStep({ tokens: b.inputs, labels: b.labels, puzzleIds: b.puzzleIds });
    expect(Number.isFinite(m.loss)).toBe(true);
    const r = trainer.evaluate(batchOf(second, "trace_outcome", 4));
    expect(r.logits.length).toBe(4 * second.train.seqLen * v2.size);
    trainer.dispose();
  });
});
