// The stage contract: outputs read back through their schemas, run-level facts taken from
// outputs only, and the run's dataset decided once by the pipeline before a stage needs it.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config/index.js";
import { runFacts, stageOutput } from "../../src/pipeline/contract.js";
import { Pipeline, type RunRecord, type StageFn, type StageFns } from "../../src/pipeline/run.js";
import { FsStore } from "../../src/store/index.js";

function setup(stages: Partial<StageFns>) {
  const dir = mkdtempSync(join(tmpdir(), "trm-contract-"));
  const config = parseConfig({ data_dir: join(dir, "data"), agents: { alpha: {} } });
  const store = new FsStore(join(dir, "store"));
  const none: StageFn = async () => ({});
  const pipeline = new Pipeline({
    config,
    store,
    stages: { collect: none, build: none, train: none, evaluate: none, deploy: none, ...stages },
    sleep: async () => {},
  });
  return { pipeline, store };
}

/** The agent's newest dataset, as build leaves it. */
async function newest(store: FsStore, id: string) {
  await store.put("datasets/alpha/latest.json", JSON.stringify({ id }));
}

describe("the stage contract", () => {
  it("reads an output back typed, skips a stage that did not run and an output of another shape", async () => {
    const { pipeline } = setup({
      evaluate: async () => ({
        evaluation: "runs/alpha/x/evaluation.json",
        gate: { passed: false, reasons: ["worse than the champion"] },
        scores: { log_triage: 0.5, trace_outcome: Number.NaN },
        champion: null,
      }),
      deploy: async () => ({ version: 42 }),
    });
    const run = await (await pipeline.startRun({ agent: "alpha", stages: ["evaluate", "deploy"] })).done;
    expect(run.status).toBe("succeeded");
    const ev = stageOutput(run, "evaluate");
    expect(ev?.gate).toEqual({ passed: false, reasons: ["worse than the champion"] });
    expect(ev?.scores).toEqual({ log_triage: 0.5, trace_outcome: Number.NaN });
    // NaN went to run.json as null: the stored record still reads.
    const stored = await pipeline.getRun(run.id, "alpha");
    expect(stageOutput(stored, "evaluate")?.scores).toEqual({ log_triage: 0.5, trace_outcome: null });
    expect(stageOutput(run, "train")).toBeNull();
    // A version that is not a string is not a deploy output, and no model version is recorded.
    expect(stageOutput(run, "deploy")).toBeNull();
    expect(run.model_version).toBeNull();
  });

  it("takes the run-level facts from the stages' outputs only", () => {
    expect(runFacts("build", { dataset_id: "d1" })).toEqual({ dataset_id: "d1" });
    expect(runFacts("train", { parent_version: "v1" })).toEqual({ parent_version: "v1" });
    expect(runFacts("deploy", { version: "v2" })).toEqual({ model_version: "v2" });
    expect(runFacts("collect", { dataset_id: "d1", version: "v2" })).toEqual({});
  });

  it("decides the dataset once, before the first stage that uses one: build's, else the named one, else the newest", async () => {
    const seen: (string | null)[] = [];
    const train: StageFn = async (ctx) => {
      seen.push(ctx.record.dataset_id);
      return {};
    };
    const { pipeline, store } = setup({ train, evaluate: train });
    await newest(store, "d20260102-000000-000-bbbb");
    let run: RunRecord = await (await pipeline.startRun({ agent: "alpha", stages: ["train", "evaluate"] }))
      .done;
    expect(seen).toEqual(["d20260102-000000-000-bbbb", "d20260102-000000-000-bbbb"]);
    expect(run.dataset_id).toBe("d20260102-000000-000-bbbb");

    seen.length = 0;
    run = await (
      await pipeline.startRun({ agent: "alpha", stages: ["train"], datasetId: "d20260101-000000-000-aaaa" })
    ).done;
    expect(seen).toEqual(["d20260101-000000-000-aaaa"]);

    seen.length = 0;
    const built = setup({ build: async () => ({ dataset_id: "d-built" }), train });
    await newest(built.store, "d20260102-000000-000-bbbb");
    run = await (await built.pipeline.startRun({ agent: "alpha", stages: ["build", "train"] })).done;
    expect(seen).toEqual(["d-built"]);
    expect(run.dataset_id).toBe("d-built");
  });
});
