// A store with half a year of one agent's history, for the gc tests: raw days, four datasets,
// seven registered versions with alias moves spread over the months, finished, failed and
// interrupted runs with checkpoints, and evaluations. Everything is written by the real writers.
import { writeRawHomelab } from "../../../src/bench/homelab-raw.js";
import { type Config, parseConfig } from "../../../src/config/index.js";
import { timeId } from "../../../src/pipeline/common/ids.js";
import { buildDataset } from "../../../src/pipeline/dataset/build.js";
import { ModelRegistry } from "../../../src/pipeline/deploy/registry.js";
import { RunRecord, writeRun } from "../../../src/pipeline/record.js";
import { saveCheckpoint } from "../../../src/pipeline/train/checkpoint.js";
import type { ObjectStore } from "../../../src/store/index.js";

export const AGENT = "sre";
const DAY = 86_400_000;
/** The gc's "now": day 200 of 2026. */
export const NOW = new Date("2026-07-20T00:00:00Z");
const START = Date.parse("2026-01-01T00:00:00Z");

export function gcConfig(dataDir: string): Config {
  return parseConfig(gcConfigInput(dataDir));
}

/** The config file's contents (JSON is YAML), for the CLI. */
export function gcConfigInput(dataDir: string) {
  return {
    data_dir: dataDir,
    agents: { [AGENT]: {} },
    dataset: {
      window: "2d",
      seq_len: 64,
      tasks: {
        code_infill: { enabled: false },
        metric_forecast: { enabled: false },
        log_triage: { max_examples: 40, min_examples: 0 },
        trace_outcome: { max_examples: 40, min_examples: 0 },
      },
    },
    retention: { raw_days_beyond_window: 1, datasets: 1, runs: 2, versions: 2, protect_alias_days: 90 },
  };
}

export interface Fixture {
  registry: ModelRegistry;
  /** v[1]..v[7] (v[0] unused). */
  v: string[];
  ds: string[];
  runs: Record<"a" | "b" | "c" | "d" | "e" | "f" | "g", string>;
  /** Job records with no run: one from before the newest run (its run is gone), one after it. */
  jobs: { orphan: string; starting: string };
  /** A dataset build stopped before its manifest: split files, no manifest.json. */
  partial: string;
}

/** A valid run record of AGENT (extra may name another agent). */
export function runRecord(
  id: string,
  status: RunRecord["status"],
  trains: boolean,
  at: Date,
  extra: Partial<RunRecord> = {},
) {
  const iso = at.toISOString();
  const stage = (name: "collect" | "train", requested: boolean) => ({
    name,
    requested,
    status: requested
      ? status === "running"
        ? "pending"
        : status === "failed"
          ? "failed"
          : "succeeded"
      : "skipped",
    started_at: null,
    ended_at: null,
    attempts: [],
    error: null,
    output: {},
  });
  return RunRecord.parse({
    schema: 1,
    id,
    agent: AGENT,
    status,
    trigger: { kind: "schedule", actor: "schedule", reason: null },
    created_at: iso,
    updated_at: iso,
    ended_at: status === "running" ? null : iso,
    options: { from_scratch: false, dataset_id: null },
    stages: [stage("collect", true), stage("train", trains)],
    config: {},
    code_version: { id: "test", package: "test", git: null, dist_sha256: null },
    dataset_id: null,
    parent_version: null,
    model_version: null,
    progress: null,
    resumes: [],
    log: [],
    error: status === "failed" ? "boom" : null,
    ...extra,
  });
}

async function checkpoints(store: ObjectStore, runId: string): Promise<void> {
  const prefix = `runs/${AGENT}/${runId}`;
  for (const step of [10, 20])
    await saveCheckpoint(
      store,
      prefix,
      {
        kind: "state",
        step,
        data: { epoch: 0, cursor: step },
        early_stop: { best_step: 0, best_score: null, evals_since_best: 0 },
        score: null,
      },
      [{ name: "state.safetensors", data: new Uint8Array(4096).fill(step) }],
    );
  await store.put(`${prefix}/metrics.jsonl`, '{"step":10}\n');
  await store.put(`${prefix}/report.html`, "<html></html>\n");
}

export async function writeFixture(store: ObjectStore, config: Config): Promise<Fixture> {
  let clock = START;
  const registry = new ModelRegistry(store, { dataDir: config.data_dir, now: () => new Date(clock) });
  const end = NOW.getTime();
  await writeRawHomelab({
    store,
    agent: AGENT,
    days: 10,
    end,
    files: 2,
    logLines: 80,
    traces: 40,
    series: 2,
  });
  const ds: string[] = [];
  for (const back of [6, 4, 2, 0])
    ds.push((await buildDataset({ store, agent: AGENT, config: config.dataset, end: end - back * DAY })).id);

  const runs = {} as Fixture["runs"];
  const runAt = (day: number) => new Date(START + day * DAY);
  runs.a = timeId("r", runAt(55));
  runs.b = timeId("r", runAt(100));
  runs.c = timeId("r", runAt(110));
  runs.d = timeId("r", runAt(170));
  runs.e = timeId("r", runAt(180));
  runs.f = timeId("r", runAt(190));
  runs.g = timeId("r", runAt(192));

  const v: string[] = [""];
  const datasetOf = [null, ds[2], ds[2], ds[0], ds[2], ds[1], ds[3], ds[3]];
  for (let i = 1; i <= 7; i++) {
    clock = START + (i - 1) * 30 * DAY;
    const m = await registry.register(AGENT, {
      artifacts: [
        { name: "model.safetensors", data: new Uint8Array(2048).fill(i) },
        { name: "card.md", data: `# v${i}\n` },
      ],
      lineage: {
        run_id: i === 3 ? runs.a : null,
        dataset_id: datasetOf[i],
        raw_segments: [],
        code_version: "test",
        parent_version: null,
      },
      gate: { passed: true, reasons: [] },
      createdBy: "test",
    });
    v.push(m.version);
    await store.put(`models/${AGENT}/evaluations/${timeId("e", new Date(clock))}-${m.version}.json`, "{}\n");
  }
  const at = async (day: number, fn: () => Promise<unknown>) => {
    clock = START + day * DAY;
    await fn();
  };
  await at(1, () => registry.promote(AGENT, v[1], { actor: "test", reason: "first" }));
  await at(61, () => registry.promote(AGENT, v[3], { actor: "test", reason: "better" }));
  await at(121, () => registry.promote(AGENT, v[5], { actor: "test", reason: "better" }));
  await at(151, () => registry.promote(AGENT, v[6], { alias: "challenger", actor: "test", reason: "try" }));

  await writeRun(
    store,
    runRecord(runs.a, "succeeded", true, runAt(55), { model_version: v[3], dataset_id: ds[0] }),
  );
  await checkpoints(store, runs.a);
  await writeRun(store, runRecord(runs.b, "succeeded", false, runAt(100)));
  await writeRun(store, runRecord(runs.c, "failed", false, runAt(110)));
  await writeRun(store, runRecord(runs.d, "succeeded", true, runAt(170)));
  await checkpoints(store, runs.d);
  await writeRun(store, runRecord(runs.e, "succeeded", false, runAt(180)));
  await writeRun(store, runRecord(runs.f, "running", true, runAt(190), { dataset_id: ds[3] }));
  await checkpoints(store, runs.f);
  // The newest training run failed on an older dataset: it can be resumed, on that dataset's days.
  await writeRun(store, runRecord(runs.g, "failed", true, runAt(192), { dataset_id: ds[1] }));
  // A server's job records: one per run it started, and one whose run record is not written yet.
  const jobs = { orphan: timeId("r", runAt(50)), starting: timeId("r", runAt(195)) };
  for (const id of [...Object.values(runs), ...Object.values(jobs)])
    await store.put(`jobs/${AGENT}/${id}.json`, `{"id":"${id}"}\n`);
  // What deploy made: knowledge cards and vLLM files of a pruned and a kept version, a target's state.
  for (const i of [1, 5]) {
    await store.put(`deploy/${AGENT}/${v[i]}/knowledge.md`, `# v${i}\n`);
    await store.put(`deploy/${AGENT}/vllm/${v[i]}/tokenizer_config.json`, "{}\n");
  }
  await store.put(`deploy/${AGENT}/ollama.json`, "{}\n");
  const partial = "ds-20260712-0123456789ab";
  for (const f of ["train.bin", "val.bin"])
    await store.put(`datasets/${AGENT}/${partial}/${f}`, "half a build\n");
  return { registry, v, ds, runs, jobs, partial };
}
