// The gauges that describe the store, computed from the store when a process starts (events in
// this process update them later): last success per agent, gate results and validation scores of
// the registered versions, the alias targets, the newest dataset's size, the newest anomaly scan's
// scores, and the store's bytes.
// So a restart does not empty them, and an alert on "no successful run in 35 days" keeps working.
import { log } from "../log.js";
import { datasetExamples, gateResult, runLastSuccess, servedModelInfo, validationScore } from "../metrics.js";
import type { ObjectStore } from "../store/index.js";
import { latestDatasetId, listDatasets } from "./dataset/reader.js";
import { ALIASES, type ModelRegistry, prunedEntry } from "./deploy/registry.js";
import { listRunIds, readRun } from "./record.js";
import { publishUsage, storeUsage } from "./retention/gc.js";
import { publishScanGauge, readLatestScan } from "./scan/index.js";

export async function restoreStoreGauges(
  store: ObjectStore,
  registry: ModelRegistry,
  agents: string[],
): Promise<void> {
  for (const agent of agents) {
    try {
      await restoreAgent(store, registry, agent);
    } catch (err) {
      log.warn({ err, agent }, "could not compute the store's gauges at start");
    }
  }
  try {
    publishUsage(await storeUsage(store, agents), agents);
  } catch (err) {
    log.warn({ err }, "could not measure the store at start");
  }
}

async function restoreAgent(store: ObjectStore, registry: ModelRegistry, agent: string): Promise<void> {
  for (const id of await listRunIds(store, agent)) {
    const r = await readRun(store, agent, id).catch(() => null);
    if (r?.status === "succeeded" && r.ended_at) {
      runLastSuccess.set({ agent }, Date.parse(r.ended_at) / 1000);
      break;
    }
  }
  const index = await registry.read(agent);
  for (const v of index.versions) {
    if (prunedEntry(index, v.version)) continue;
    if (v.gate_passed !== null) gateResult.set({ agent, version: v.version }, v.gate_passed ? 1 : 0);
    for (const [task, score] of Object.entries(v.scores))
      if (Number.isFinite(score)) validationScore.set({ agent, task, version: v.version }, score);
  }
  for (const alias of ALIASES) {
    const version = index.aliases[alias];
    if (version) servedModelInfo.set({ agent, alias, version }, 1);
  }
  const latest = await latestDatasetId(store, agent);
  const manifest = latest ? (await listDatasets(store, agent)).find((d) => d.id === latest) : undefined;
  for (const [task, n] of Object.entries(manifest?.counts.by_task ?? {})) {
    datasetExamples.set({ agent, task, split: "train" }, n.train);
    datasetExamples.set({ agent, task, split: "val" }, n.val);
  }
  const scan = await readLatestScan(store, agent);
  if (scan) publishScanGauge(scan);
}
