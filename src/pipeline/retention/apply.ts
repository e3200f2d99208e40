// Carries out a gc plan so that a crash at any point leaves nothing half-readable:
//   1. versions are marked pruned in the registry (they stop resolving before a file goes);
//   2. the plan is written as a journal (runs/<agent>/gc.json), so the next gc finishes an item
//      whose reference it had already deleted;
//   3. each item's keys go in order, the reference (manifest.json, run.json) first;
//   4. the journal is cleared.
import type { ObjectStore } from "../../store/index.js";
import type { ModelRegistry } from "../deploy/registry.js";
import { readGcState, writeGcState } from "./inventory.js";
import type { Plan } from "./plan.js";

export interface ApplyOptions {
  actor: string;
  /** Called after each deleted object (tests use it to stop at chosen points). */
  onDeleted?: (key: string, bytes: number) => void;
  /** Aborts between deletes (the agent's lease was lost); the next gc finishes from the journal. */
  signal?: AbortSignal;
}

export interface Applied {
  deleted_bytes: number;
  deleted_objects: number;
}

export async function applyPlan(
  store: ObjectStore,
  registry: ModelRegistry,
  plan: Plan,
  opts: ApplyOptions,
): Promise<Applied> {
  const versions = plan.items.filter((i) => i.kind === "version");
  if (versions.length)
    await registry.markPruned(
      plan.agent,
      versions.map((v) => ({ version: v.id, rule: v.rule })),
      opts.actor,
    );
  const state = await readGcState(store, plan.agent);
  state.pending = plan.items;
  await writeGcState(store, state);
  let bytes = 0;
  let objects = 0;
  for (const item of plan.items) {
    // A build that finished since the plan keeps every file.
    if (item.guard && (await store.stat(item.guard.absent))) continue;
    for (const key of item.keys) {
      // A missing key is fine: it went in an earlier, interrupted gc.
      opts.signal?.throwIfAborted();
      const info = await store.stat(key);
      if (!info) continue;
      // Written again since the plan (the same build, run again): it stays.
      if (item.guard && info.mtimeMs >= item.guard.before) continue;
      await store.delete(key);
      bytes += info.size;
      objects += 1;
      opts.onDeleted?.(key, info.size);
    }
  }
  state.pending = [];
  await writeGcState(store, state);
  return { deleted_bytes: bytes, deleted_objects: objects };
}
