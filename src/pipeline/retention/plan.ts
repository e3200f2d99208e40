// The gc plan: from one agent's store listing, registry index and run records to the list of
// what to delete, each item with the rule that chose it and its bytes. Pure: no store access, so
// `store gc --dry-run` and gc itself show the same plan, and the rules are tested on plain data.
//
// Never deleted, whatever the settings: the champion, the challenger, the previous champion, a
// version an alias pointed to within protect_alias_days, a run that can still be resumed (with
// its checkpoints, its dataset and the raw days of that dataset's window), the dataset of a kept
// version, and the newest dataset.
import type { RetentionSection } from "../../config/schema.js";
import type { ObjectInfo } from "../../store/index.js";
import {
  datasetPrefix,
  deployFileKey,
  jobKey,
  runPrefix,
  versionPrefix,
  vllmPrefix,
} from "../../store/layout.js";
import { dayOf } from "../collect/raw-store.js";
import { timeOfId } from "../common/ids.js";
import { championStack, prunedEntry, type RegistryIndex } from "../deploy/registry.js";
import type { RunRecord } from "../record.js";
import { getOrAdd } from "../tasks/facts.js";

const DAY_MS = 86_400_000;

export const ITEM_KINDS = [
  "version",
  "evaluation",
  "run",
  "checkpoints",
  "dataset",
  "raw",
  "job",
  "leftover",
] as const;
export type ItemKind = (typeof ITEM_KINDS)[number];

export interface PlanItem {
  kind: ItemKind;
  /** The version, run id, dataset id, "<source>/<day>" or key prefix the item stands for. */
  id: string;
  rule: string;
  /** In deletion order: the object that makes the rest readable (manifest, run.json) first. */
  keys: string[];
  bytes: number;
  /**
   * A dataset build that never finished may be run again between plan and delete: then a key goes
   * only if unchanged since `before` (ms), and none goes once `absent` (its manifest) exists.
   */
  guard?: { before: number; absent: string };
}

/** What the plan keeps on purpose, and why (for --dry-run readers and the tests). */
export interface Kept {
  versions: Record<string, string[]>;
  datasets: Record<string, string[]>;
  runs: Record<string, string[]>;
  /** Raw days past the age rule that stay (yyyy-mm-dd). */
  raw: Record<string, string[]>;
}

export interface Plan {
  agent: string;
  items: PlanItem[];
  kept: Kept;
  bytes: number;
  objects: number;
}

/** The part of a run record the rules read. */
export type RunSummary = Pick<RunRecord, "id" | "status" | "dataset_id" | "model_version"> & {
  /** Whether the run asked for the train stage (only such runs hold checkpoints worth resuming). */
  trains: boolean;
};

export interface PlanInput {
  agent: string;
  /** Every object under raw/, datasets/, runs/, models/, deploy/ and jobs/ of the agent. */
  objects: ObjectInfo[];
  index: RegistryIndex;
  runs: RunSummary[];
  /** Complete datasets (with a manifest): id and window (ISO). */
  datasets: { id: string; window_start: string; window_end: string }[];
  latestDataset: string | null;
  /** The dataset each unpruned version was trained on (from its manifest's lineage). */
  versionDatasets: Record<string, string | null>;
  /** Items an interrupted gc had started; those whose first key is gone are finished. */
  journal: PlanItem[];
}

export interface PlanSettings {
  retention: RetentionSection;
  datasetWindowMs: number;
  now: Date;
}

export function summarizeRun(r: RunRecord): RunSummary {
  return {
    id: r.id,
    status: r.status,
    dataset_id: r.dataset_id,
    model_version: r.model_version,
    trains: r.stages.some((s) => s.name === "train" && s.requested),
  };
}

/** Runs that `run --resume` (or a start-up resume) may still continue. */
export function resumableRuns(runs: RunSummary[]): Set<string> {
  const out = new Set<string>();
  for (const r of runs) if (r.status === "running") out.add(r.id);
  // The newest training run, when it failed or was cancelled: its checkpoints let it go on.
  const lastTrain = [...runs].filter((r) => r.trains).sort((a, b) => (a.id < b.id ? 1 : -1))[0];
  if (lastTrain && (lastTrain.status === "failed" || lastTrain.status === "cancelled")) out.add(lastTrain.id);
  return out;
}

export function planGc(input: PlanInput, settings: PlanSettings): Plan {
  const { agent, index } = input;
  const ret = settings.retention;
  const now = settings.now.getTime();
  const size = new Map(input.objects.map((o) => [o.key, o.size]));
  const items: PlanItem[] = [];
  const claimed = new Set<string>();
  const add = (kind: ItemKind, id: string, rule: string, keys: string[], guard?: PlanItem["guard"]) => {
    const own = keys.filter((k) => size.has(k) && !claimed.has(k));
    if (!own.length) return;
    for (const k of own) claimed.add(k);
    const bytes = own.reduce((n, k) => n + (size.get(k) ?? 0), 0);
    items.push({ kind, id, rule, keys: own, bytes, ...(guard ? { guard } : {}) });
  };
  const under = (prefix: string) => input.objects.filter((o) => o.key.startsWith(prefix)).map((o) => o.key);
  // A version's files, then what deploy made for it (its knowledge card, its vLLM files).
  const versionKeys = (v: string) => [
    ...under(`${versionPrefix(agent, v)}/`),
    ...under(`${deployFileKey(agent, v, "")}`),
    ...under(`${vllmPrefix(agent, v)}/`),
  ];
  const kept: Kept = { versions: {}, datasets: {}, runs: {}, raw: {} };
  const keep = (m: Record<string, string[]>, id: string | null | undefined, why: string) => {
    if (!id) return;
    m[id] ??= [];
    m[id].push(why);
  };

  // An interrupted gc: an item whose reference is already gone is unreadable, so it is finished.
  for (const j of input.journal) {
    // A partial build that finished since (its manifest is there) is no longer gc's.
    if (j.guard && size.has(j.guard.absent)) continue;
    if (j.keys.length && !size.has(j.keys[0]))
      add("leftover", j.id, `finishing an interrupted gc (${j.rule})`, j.keys.slice(1), j.guard);
  }

  // ---- versions
  keep(kept.versions, index.aliases.champion, "champion");
  keep(kept.versions, index.aliases.challenger, "challenger");
  const stack = championStack(index.history);
  keep(
    kept.versions,
    stack.length >= 2 ? stack[stack.length - 2] : null,
    "previous champion (rollback target)",
  );
  const aliasCutoff = now - ret.protect_alias_days * DAY_MS;
  for (const m of index.history) {
    if (Date.parse(m.at) < aliasCutoff) continue;
    const why = `${m.alias} within ${ret.protect_alias_days} days`;
    keep(kept.versions, m.from, why);
    keep(kept.versions, m.to, why);
  }
  const live = index.versions.filter((v) => !prunedEntry(index, v.version));
  for (const v of live.slice(-ret.versions)) keep(kept.versions, v.version, `newest ${ret.versions}`);
  const pruneNow = live.filter((v) => !kept.versions[v.version]).map((v) => v.version);
  const gone = new Set([...(index.pruned ?? []).map((p) => p.version), ...pruneNow]);
  for (const v of pruneNow) {
    const prefix = `${versionPrefix(agent, v)}/`;
    const keys = versionKeys(v);
    // The manifest first: without it no reader takes the rest for a version.
    keys.sort((a, b) => Number(b === `${prefix}manifest.json`) - Number(a === `${prefix}manifest.json`));
    items.push({
      kind: "version",
      id: v,
      rule: `versions: older than the newest ${ret.versions} and not protected`,
      keys,
      bytes: keys.reduce((n, k) => n + (size.get(k) ?? 0), 0),
    });
    for (const k of keys) claimed.add(k);
  }
  for (const p of index.pruned ?? []) {
    add("leftover", p.version, `pruned at ${p.at}: finishing the delete`, versionKeys(p.version));
  }
  for (const o of input.objects) {
    const m = /^models\/[^/]+\/evaluations\/[^/]+-(v\d{8}-\d{6}-\d{3}-[0-9a-f]{4})\.json$/.exec(o.key);
    if (m && gone.has(m[1])) add("evaluation", o.key, `evaluation of pruned version ${m[1]}`, [o.key]);
  }

  // ---- runs
  const resumable = resumableRuns(input.runs);
  const keptVersions = new Set(Object.keys(kept.versions));
  const versionRuns = new Set(
    index.versions.filter((v) => keptVersions.has(v.version) && v.run_id).map((v) => v.run_id!),
  );
  const newestFirst = [...input.runs].sort((a, b) => (a.id < b.id ? 1 : -1));
  const finished = newestFirst.filter((r) => !resumable.has(r.id));
  for (const r of newestFirst) {
    if (resumable.has(r.id)) keep(kept.runs, r.id, "can be resumed");
    if (versionRuns.has(r.id)) keep(kept.runs, r.id, "made a kept version");
  }
  for (const r of finished.slice(0, ret.runs)) keep(kept.runs, r.id, `newest ${ret.runs} finished`);
  for (const r of finished) {
    const prefix = `${runPrefix(agent, r.id)}/`;
    if (!kept.runs[r.id]) {
      const keys = under(prefix);
      keys.sort((a, b) => Number(b === `${prefix}run.json`) - Number(a === `${prefix}run.json`));
      add("run", r.id, `runs: older than the newest ${ret.runs} finished runs`, [
        ...keys,
        jobKey(agent, r.id),
      ]);
    } else {
      const keys = under(`${prefix}checkpoints/`);
      keys.sort((a, b) => Number(b.endsWith("/manifest.json")) - Number(a.endsWith("/manifest.json")));
      add("checkpoints", r.id, `run ${r.status}: checkpoints are dropped once a run ends`, keys);
    }
  }

  // ---- datasets
  keep(kept.datasets, input.latestDataset, "newest");
  const byEnd = [...input.datasets].sort((a, b) => (a.window_end < b.window_end ? 1 : -1));
  for (const d of byEnd.slice(0, ret.datasets)) keep(kept.datasets, d.id, `newest ${ret.datasets}`);
  for (const v of keptVersions) keep(kept.datasets, input.versionDatasets[v], `trained ${v}`);
  for (const r of input.runs)
    if (resumable.has(r.id)) keep(kept.datasets, r.dataset_id, `run ${r.id} can be resumed`);
  for (const d of byEnd) {
    if (kept.datasets[d.id]) continue;
    const prefix = datasetPrefix(agent, d.id);
    const keys = under(prefix);
    keys.sort((a, b) => Number(b === `${prefix}manifest.json`) - Number(a === `${prefix}manifest.json`));
    add(
      "dataset",
      d.id,
      `datasets: older than the newest ${ret.datasets} and not used by a kept version`,
      keys,
    );
  }

  // ---- a build stopped before its manifest: no reader takes its objects for a dataset, and the
  // same build run again writes them anew. They go once the newest is a day old (a build takes
  // minutes; `dataset build` from the CLI holds no lease that would tell it is still going).
  const complete = new Set(input.datasets.map((d) => d.id));
  const partial = new Map<string, ObjectInfo[]>();
  for (const o of input.objects) {
    const id = /^datasets\/[^/]+\/([^/]+)\//.exec(o.key)?.[1];
    if (id && !complete.has(id) && id !== input.latestDataset) getOrAdd(partial, id, () => []).push(o);
  }
  for (const [id, objs] of partial) {
    if (objs.some((o) => o.key.endsWith("/manifest.json"))) continue; // unreadable, not partial: left alone
    const before = now - DAY_MS;
    if (Math.max(...objs.map((o) => o.mtimeMs)) >= before) continue;
    add(
      "dataset",
      id,
      "datasets: a build that never finished (no manifest), untouched for a day",
      objs.map((o) => o.key),
      { before, absent: `${datasetPrefix(agent, id)}manifest.json` },
    );
  }

  // ---- job records of runs that are gone (a server writes one per run it starts, scheduled
  // collections included): one whose run has no object left, once a newer run has begun.
  const runsWithObjects = new Set(
    input.objects.map((o) => /^runs\/[^/]+\/([^/]+)\//.exec(o.key)?.[1]).filter((id) => id !== undefined),
  );
  const newestRun = newestFirst[0] ? timeOfId(newestFirst[0].id)?.getTime() : undefined;
  for (const o of input.objects) {
    const id = /^jobs\/[^/]+\/(r[^/]+)\.json$/.exec(o.key)?.[1];
    if (!id || runsWithObjects.has(id)) continue;
    const at = timeOfId(id)?.getTime();
    if (at !== undefined && newestRun !== undefined && at < newestRun)
      add("job", id, "jobs: the run is gone", [o.key]);
  }

  // ---- raw segments and collection reports
  const windowDays = Math.round(settings.datasetWindowMs / DAY_MS);
  const horizon = dayOf(now - settings.datasetWindowMs - ret.raw_days_beyond_window * DAY_MS);
  const rule = `raw: before ${horizon} (dataset.window ${windowDays}d + ${ret.raw_days_beyond_window} days)`;
  // A run that can be resumed keeps the raw days of its dataset's window, and a day either side:
  // its deploy stage builds the version's knowledge card from them.
  for (const r of input.runs) {
    const d = resumable.has(r.id) ? input.datasets.find((x) => x.id === r.dataset_id) : undefined;
    if (!d) continue;
    const last = dayOf(Date.parse(d.window_end) - 1 + DAY_MS);
    for (
      let t = Date.parse(`${dayOf(Date.parse(d.window_start) - DAY_MS)}T00:00:00Z`);
      dayOf(t) <= last;
      t += DAY_MS
    )
      if (dayOf(t) < horizon) keep(kept.raw, dayOf(t), `window of ${d.id}, run ${r.id} can be resumed`);
  }
  const rawGroups = new Map<string, string[]>();
  for (const o of input.objects) {
    const seg = /^raw\/[^/]+\/([^/]+)\/(\d{4}-\d{2}-\d{2})\/[^/]+$/.exec(o.key);
    const rep = /^raw\/[^/]+\/_reports\/([^/]+)\.json$/.exec(o.key);
    let group: string | null = null;
    if (seg && seg[2] < horizon && !kept.raw[seg[2]]) group = `${seg[1]}/${seg[2]}`;
    else if (rep) {
      const at = timeOfId(rep[1]) ?? reportTime(rep[1]);
      const day = at && dayOf(at.getTime());
      if (day && day < horizon && !kept.raw[day]) group = `_reports/${day}`;
    }
    if (group) rawGroups.set(group, [...(rawGroups.get(group) ?? []), o.key]);
  }
  for (const [group, keys] of [...rawGroups].sort()) add("raw", group, rule, keys);

  const bytes = items.reduce((n, i) => n + i.bytes, 0);
  const objects = items.reduce((n, i) => n + i.keys.length, 0);
  return { agent, items, kept, bytes, objects };
}

/** A collection report's id ("20250101T030000Z-3b9829"): when it was collected. */
function reportTime(id: string): Date | null {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z-/.exec(id);
  return m ? new Date(Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6])) : null;
}
