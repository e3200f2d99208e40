// Reads what the gc plan needs from the store: one agent's objects, its registry index, its run
// records, its datasets and the journal of an interrupted gc.
import * as z from "zod";
import { NotFoundError, type ObjectInfo, type ObjectStore } from "../../store/index.js";
import { AGENT_AREAS, agentAreaPrefix, gcStateKey } from "../../store/layout.js";
import { latestDatasetId, listDatasets } from "../dataset/reader.js";
import type { ModelRegistry } from "../deploy/registry.js";
import { prunedEntry } from "../deploy/registry.js";
import { listRunIds, readRun } from "../record.js";
import { ITEM_KINDS, type PlanInput, type PlanItem, summarizeRun } from "./plan.js";

/** The top prefixes that hold an agent's data (each is "<prefix>/<agent>/..."). */
export const AGENT_PREFIXES = AGENT_AREAS;

export { gcStateKey };

const JournalItem = z
  .object({
    kind: z.enum(ITEM_KINDS),
    id: z.string(),
    rule: z.string(),
    keys: z.array(z.string()),
    bytes: z.number(),
    guard: z.object({ before: z.number(), absent: z.string() }).strict().optional(),
  })
  .strict();

export const GcState = z
  .object({
    agent: z.string(),
    /** The items of a gc in progress; empty once it finished. */
    pending: z.array(JournalItem),
    last: z
      .object({
        at: z.string(),
        ok: z.boolean(),
        error: z.string().nullable(),
        deleted_bytes: z.number(),
        deleted_objects: z.number(),
        items: z.number(),
      })
      .strict()
      .nullable(),
  })
  .strict();
export type GcState = z.infer<typeof GcState>;

export async function readGcState(store: ObjectStore, agent: string): Promise<GcState> {
  try {
    const r = GcState.safeParse(JSON.parse((await store.get(gcStateKey(agent))).toString("utf8")));
    if (r.success && r.data.agent === agent) return r.data;
  } catch (err) {
    if (!(err instanceof NotFoundError) && !(err instanceof SyntaxError)) throw err;
  }
  return { agent, pending: [], last: null };
}

export async function writeGcState(store: ObjectStore, state: GcState): Promise<void> {
  await store.put(gcStateKey(state.agent), `${JSON.stringify(GcState.parse(state), null, 2)}\n`, {
    contentType: "application/json",
  });
}

/** Every object of one agent, sorted by key. */
export async function listAgentObjects(store: ObjectStore, agent: string): Promise<ObjectInfo[]> {
  const out: ObjectInfo[] = [];
  for (const p of AGENT_PREFIXES) out.push(...(await store.list(agentAreaPrefix(p, agent))));
  return out.sort((a, b) => (a.key < b.key ? -1 : 1));
}

export async function readPlanInput(
  store: ObjectStore,
  registry: ModelRegistry,
  agent: string,
  journal: PlanItem[],
): Promise<PlanInput> {
  const objects = (await listAgentObjects(store, agent)).filter((o) => !/^state\//.test(o.key));
  const index = await registry.read(agent);
  const runs = [];
  for (const id of await listRunIds(store, agent)) {
    // A record that cannot be read is left alone: it is never chosen, so nothing of it is lost.
    const r = await readRun(store, agent, id).catch(() => null);
    if (r) runs.push(summarizeRun(r));
  }
  const datasets = (await listDatasets(store, agent)).map((m) => ({
    id: m.id,
    window_start: m.window.start,
    window_end: m.window.end,
  }));
  const versionDatasets: Record<string, string | null> = {};
  for (const v of index.versions) {
    if (prunedEntry(index, v.version)) continue;
    // A manifest that cannot be read fails the gc: its dataset might be the one it needs.
    versionDatasets[v.version] = (await registry.getManifest(agent, v.version, index)).lineage.dataset_id;
  }
  return {
    agent,
    objects,
    index,
    runs,
    datasets,
    latestDataset: await latestDatasetId(store, agent),
    versionDatasets,
    journal,
  };
}
