// Store gc for one agent: plan and apply (unless a dry run) under the agent's lease in the store,
// the one its runs take, so no run of the agent and no other gc touch its objects meanwhile on any
// host; record the outcome in runs/<agent>/gc.json, and publish the store's size. Also run at the
// end of every run, under that run's lease, where a failure is logged and counted but never fails
// the run.
import type { Config } from "../../config/index.js";
import { log } from "../../log.js";
import { gcDeletedBytes, gcFailures, storeBytes } from "../../metrics.js";
import { FsStore, type ObjectStore } from "../../store/index.js";
import { peekRunLease, withGcLease } from "../common/lease.js";
import type { ModelRegistry } from "../deploy/registry.js";
import { applyPlan } from "./apply.js";
import { AGENT_PREFIXES, listAgentObjects, readGcState, readPlanInput, writeGcState } from "./inventory.js";
import { type Kept, type PlanItem, planGc } from "./plan.js";
import { type AgentUsage, summarizeUsage } from "./usage.js";

export interface GcOptions {
  store: ObjectStore;
  registry: ModelRegistry;
  config: Config;
  agent: string;
  dryRun?: boolean;
  now?: Date;
  /** Who runs it, for the registry's pruned entries: "cli:<user>", "run:<id>". */
  actor: string;
  /** The run that calls gc at its end, holding the agent's lease; without it gc takes the lease. */
  runId?: string;
  onDeleted?: (key: string, bytes: number) => void;
}

export interface GcResult {
  agent: string;
  dry_run: boolean;
  at: string;
  items: (Omit<PlanItem, "keys"> & { objects: number; keys: string[] })[];
  kept: Kept;
  planned_bytes: number;
  planned_objects: number;
  deleted_bytes: number;
  deleted_objects: number;
  duration_ms: number;
}

export async function runGc(opts: GcOptions): Promise<GcResult> {
  const { store, registry, config, agent } = opts;
  const now = opts.now ?? new Date();
  const started = performance.now();
  const work = async (signal?: AbortSignal): Promise<GcResult> => {
    const state = await readGcState(store, agent);
    const input = await readPlanInput(store, registry, agent, state.pending);
    const plan = planGc(input, {
      retention: config.retention,
      datasetWindowMs: config.dataset.window,
      now,
    });
    let applied = { deleted_bytes: 0, deleted_objects: 0 };
    if (!opts.dryRun) {
      applied = await applyPlan(store, registry, plan, {
        actor: opts.actor,
        onDeleted: opts.onDeleted,
        signal,
      });
      const swept = await sweepLeftovers(store, agent);
      applied = {
        deleted_bytes: applied.deleted_bytes + swept.bytes,
        deleted_objects: applied.deleted_objects + swept.files,
      };
      gcDeletedBytes.inc({ agent }, applied.deleted_bytes);
      await recordLast(store, agent, now, null, applied, plan.items.length);
      publishUsage(summarizeUsage(await listAgentObjects(store, agent)), [agent]);
    }
    return {
      agent,
      dry_run: !!opts.dryRun,
      at: now.toISOString(),
      items: plan.items.map((i) => ({ ...i, objects: i.keys.length })),
      kept: plan.kept,
      planned_bytes: plan.bytes,
      planned_objects: plan.objects,
      ...applied,
      duration_ms: Math.round(performance.now() - started),
    };
  };
  if (opts.dryRun) return work();
  if (opts.runId) {
    if ((await peekRunLease(store, agent))?.holder !== opts.runId)
      throw new Error(`store gc ${agent}: run ${opts.runId} no longer holds the agent's lease`);
    return work();
  }
  return withGcLease(store, agent, config.runs.lease, work);
}

/** A write is done long before this: what is older was left by a killed writer. */
const LEFTOVER_AGE_MS = 60 * 60_000;

/** Temporary files killed writers left in the agent's prefixes (a store that can have them). */
async function sweepLeftovers(store: ObjectStore, agent: string): Promise<{ files: number; bytes: number }> {
  const total = { files: 0, bytes: 0 };
  if (!(store instanceof FsStore)) return total; // MinIO: a bucket lifecycle rule aborts stale uploads
  for (const p of AGENT_PREFIXES) {
    const r = await store.sweepLeftovers(`${p}/${agent}/`, LEFTOVER_AGE_MS);
    total.files += r.files;
    total.bytes += r.bytes;
  }
  return total;
}

async function recordLast(
  store: ObjectStore,
  agent: string,
  now: Date,
  error: string | null,
  applied: { deleted_bytes: number; deleted_objects: number },
  items: number,
): Promise<void> {
  const state = await readGcState(store, agent);
  state.last = { at: now.toISOString(), ok: error === null, error, ...applied, items };
  await writeGcState(store, state);
}

/** gc after a run or a scheduled collection: never throws; a failure is logged, counted and recorded. */
export async function gcAfterRun(opts: Omit<GcOptions, "dryRun">): Promise<GcResult | null> {
  if (!opts.config.retention.auto) return null;
  try {
    const r = await runGc(opts);
    if (r.items.length)
      log.info(
        { agent: opts.agent, items: r.items.length, deleted_bytes: r.deleted_bytes, ms: r.duration_ms },
        "store gc",
      );
    return r;
  } catch (err) {
    gcFailures.inc({ agent: opts.agent });
    log.error({ err, agent: opts.agent }, "store gc failed (the run is not affected)");
    await recordLast(
      opts.store,
      opts.agent,
      opts.now ?? new Date(),
      (err as Error).message ?? String(err),
      { deleted_bytes: 0, deleted_objects: 0 },
      0,
    ).catch(() => undefined);
    return null;
  }
}

/** Usage of the whole store (or of the named agents), by agent and prefix. */
export async function storeUsage(store: ObjectStore, agents?: string[]): Promise<AgentUsage[]> {
  const objects = [];
  if (agents) for (const a of agents) objects.push(...(await listAgentObjects(store, a)));
  else for (const p of AGENT_PREFIXES) objects.push(...(await store.list(p)));
  return summarizeUsage(objects);
}

/** Sets trm_forge_store_bytes from a usage; prefixes an agent no longer has are set to 0. */
export function publishUsage(usage: AgentUsage[], agents: string[] = usage.map((u) => u.agent)): void {
  for (const agent of agents) {
    const u = usage.find((x) => x.agent === agent);
    for (const p of ["datasets", "runs", "checkpoints", "models", "other"])
      storeBytes.set({ agent, prefix: p }, u?.prefixes.find((x) => x.prefix === p)?.bytes ?? 0);
    for (const p of u?.prefixes ?? []) storeBytes.set({ agent, prefix: p.prefix }, p.bytes);
  }
}
