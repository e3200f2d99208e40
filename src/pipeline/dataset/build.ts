// The dataset build: raw segments in, datasets/<agent>/<id>/ out. One pass over the window's
// segments, one segment in memory at a time; each task keeps a seeded bottom-k sample per split,
// so memory is bounded by the caps, not by the data. The same segments and config always give
// the same id and the same bytes.
import * as z from "zod";
import { type Config, DatasetSchema, type DatasetSection } from "../../config/schema.js";
import { WorkError } from "../../errors.js";
import { log } from "../../log.js";
import { datasetExamples } from "../../metrics.js";
import { type ObjectStore, openStore } from "../../store/index.js";
import { datasetPrefix, latestDatasetKey } from "../../store/layout.js";
import { sha256 } from "../../util/fs.js";
import { agentConfig, enabledSources } from "../collect/index.js";
import {
  CorruptSegmentError,
  dayOf,
  listSegments,
  readSegment,
  type SegmentRef,
} from "../collect/raw-store.js";
import { type RecordOf, SOURCES, type SourceName } from "../collect/records.js";
import { IncidentIndex, IncidentJoin, incidentSettings } from "../incidents.js";
import { fillSlots, getOrAdd } from "../tasks/common.js";
import { hashParts } from "../tasks/hash.js";
import { TASKS } from "../tasks/index.js";
import { logFacts } from "../tasks/log-triage.js";
import { lagsFor } from "../tasks/metric-forecast.js";
import {
  type BuildContext,
  type Draft,
  type DraftSink,
  type Example,
  NUM_PUZZLE_IDENTIFIERS,
  PUZZLE_IDENTIFIER_NAMES,
  TASK_NAMES,
  type TaskName,
} from "../tasks/types.js";
import { type EncodingSpec, IGNORE, Vocab } from "../tasks/vocab.js";
import { encodeSplit } from "./format.js";
import { DATASET_FORMAT, DATASET_VERSION, Manifest, type QualityReport } from "./manifest.js";
import { bump, qualityReport, type Split, type TaskState } from "./quality.js";
import { BottomK } from "./sample.js";

const DAY = 86_400_000;
const HOUR = 3_600_000;

/**
 * The newest telemetry event (ms) in the segments of `day`, and when the code snapshots in the
 * code segments of `day` and the day after were taken (a collection just after midnight files
 * the day before's telemetry under that day, and its snapshot under its own).
 */
async function newestTimes(
  store: ObjectStore,
  all: Map<SourceName, SegmentRef[]>,
  day: string,
): Promise<{ events?: number; snapshots: number[] }> {
  const next = dayOf(Date.parse(`${day}T00:00:00Z`) + DAY);
  let events: number | undefined;
  const snapshots = new Set<number>();
  const see = (ms: number) => {
    if (Number.isFinite(ms) && !((events ?? Number.NEGATIVE_INFINITY) >= ms)) events = ms;
  };
  for (const seg of [...all.values()].flat()) {
    if (seg.day !== day && !(seg.source === "code" && seg.day === next)) continue;
    let records: RecordOf<SourceName>[];
    try {
      records = (await readSegment(store, seg)).records;
    } catch (err) {
      if (err instanceof CorruptSegmentError) continue; // reported when the build reads it
      throw err;
    }
    for (const r of records) {
      if (r.kind === "log_entry") see(Number(BigInt(r.ts_ns) / 1_000_000n));
      else if (r.kind === "trace") see(Number(BigInt(r.start_ns) / 1_000_000n) + r.duration_ms);
      else if (r.kind === "metric_series") for (const [t] of r.points) see(t * 1000);
      else if (r.kind === "code_file") {
        const t = Date.parse(r.collected_at);
        if (Number.isFinite(t)) snapshots.add(t);
      }
    }
  }
  return { events, snapshots: [...snapshots] };
}
/** Segments a day either side of the window are read too: a segment's day need not be its records' day. */
const MARGIN_DAYS = 1;
const MAX_REASON_EXAMPLES = 5;
/** Part of every dataset id: bump it whenever the same raw data would give other examples. */
const BUILDER_VERSION = 6;

export interface BuildOptions {
  store: ObjectStore;
  agent: string;
  config: DatasetSection;
  /** Overrides config.window (ms). */
  windowMs?: number;
  /** Window end (ms, exclusive). Default: the hour after the newest record of the newest day collected. */
  end?: number;
  /** Sources switched off in the agent's config (false); unset means on. */
  sources?: Partial<Record<SourceName, boolean>>;
  /** The served model's vocabulary when fine-tuning: every old id is kept. */
  baseVocab?: Vocab;
  signal?: AbortSignal;
  onProgress?: (p: { source: SourceName; done: number; total: number }) => void;
}

export interface BuildResult {
  id: string;
  /** Store prefix of the dataset, ending in "/". */
  prefix: string;
  manifest: Manifest;
  vocab: Vocab;
  /** True when a dataset with this id already existed and was kept as it was. */
  reused: boolean;
}

/** The build refused the data; `report` says why, task by task. */
export class DatasetQualityError extends WorkError {
  override name = "DatasetQualityError";
  constructor(
    message: string,
    readonly report: QualityReport,
  ) {
    super(message);
  }
}

function taskSettings(config: DatasetSection, name: TaskName): Record<string, unknown> {
  const s = { ...config.tasks[name] } as Record<string, unknown>;
  if (name === "metric_forecast") s.stepMs = config.tasks.metric_forecast.step;
  return s;
}

export function encodingSpecOf(config: DatasetSection): EncodingSpec {
  const m = config.tasks.metric_forecast;
  return {
    seq_len: config.seq_len,
    metric_forecast: {
      points: m.points,
      step_ms: m.step,
      z_max: m.z_max,
      lag_days: lagsFor(config.seq_len, m.points),
    },
  };
}

export { datasetPrefix };

/** How many examples of a task each split keeps: max_examples split by val_fraction, or max_val_examples held out. */
export function splitCaps(
  task: { max_examples: number; max_val_examples?: number },
  valFraction: number,
): Record<Split, number> {
  const train = Math.round(task.max_examples * (1 - valFraction));
  return { train, val: task.max_val_examples ?? task.max_examples - train };
}

export async function buildDataset(opts: BuildOptions): Promise<BuildResult> {
  const { store, agent, config } = opts;
  const windowMs = opts.windowMs ?? config.window;
  const enabledSource = (s: SourceName) => opts.sources?.[s] !== false;

  const all = new Map<SourceName, SegmentRef[]>();
  for (const s of SOURCES) all.set(s, enabledSource(s) ? await listSegments(store, agent, s) : []);
  let end = opts.end;
  if (end === undefined) {
    // Telemetry decides the newest day; code alone only for an agent that collects nothing else.
    const segs = [...all.values()].flat();
    const telemetry = segs.filter((r) => r.source !== "code");
    const days = (telemetry.length ? telemetry : segs).map((r) => r.day);
    if (!days.length)
      throw new WorkError(
        `no raw data for agent "${agent}": run \`trm-forge collect --agent ${agent}\` first`,
      );
    end = Date.parse(`${days.sort()[days.length - 1]}T00:00:00Z`) + DAY;
    // A collection that ran today ends at its own time, not at midnight: a window that ended at
    // midnight would put the newest val_fraction of it in the future, empty. Its code snapshot
    // is stamped with the collection's start, after the newest event it read (by the settle, or
    // more where the sources were quiet): the window takes in the first snapshot after that
    // event, the one of the same collection, and no later one (a rerun's, days on).
    const newest = await newestTimes(store, all, dayOf(end - DAY));
    if (newest.events !== undefined && newest.events < end) {
      const after = newest.snapshots.filter((t) => t > newest.events!);
      const last = after.length ? Math.min(...after) : newest.events;
      end = Math.ceil((last + 1) / HOUR) * HOUR;
    }
  }
  const start = end - windowMs;
  const splitAt = end - config.val_fraction * windowMs;
  const fromDay = dayOf(start - MARGIN_DAYS * DAY);
  const toDay = dayOf(end - 1 + MARGIN_DAYS * DAY);
  const inWindow = (s: SourceName) =>
    (all.get(s) ?? []).filter((r) => r.day <= toDay && (s === "code" || r.day >= fromDay));

  const numBins = opts.baseVocab?.numBins ?? config.num_bins;
  const spec = encodingSpecOf(config);
  const seed = config.seed;
  const cap = (t: TaskName) => splitCaps(config.tasks[t], config.val_fraction);

  const states = new Map<TaskName, TaskState>();
  for (const name of TASK_NAMES) {
    const task = TASKS[name];
    const caps = cap(name);
    const st: TaskState = {
      task,
      enabled: config.tasks[name].enabled,
      records: 0,
      invalid: new Map(),
      skipped: new Map(),
      notes: new Map(),
      candidates: { train: 0, val: 0 },
      heaps: { train: new BottomK(caps.train), val: new BottomK(caps.val) },
      valKeys: new Set(),
      leaks: 0,
    };
    if (!st.enabled) st.skipReason = `disabled in the config (dataset.tasks.${name}.enabled)`;
    else if (!enabledSource(task.source))
      st.skipReason = `the ${task.source} source is disabled for agent ${agent}`;
    else if (!inWindow(task.source).length) st.skipReason = `no ${task.source} data in the window`;
    else {
      const ctx: BuildContext = {
        window: { start, end },
        vocabSpec: { seqLen: config.seq_len, numBins },
        seed,
        serviceLabels: config.service_labels,
        settings: taskSettings(config, name),
      };
      st.consumer = task.builder(ctx, sinkFor(st, name));
    }
    states.set(name, st);
  }

  function sinkFor(st: TaskState, name: TaskName): DraftSink {
    const byPath = name === "code_infill";
    const dropShared = config.tasks[name].drop_shared_inputs;
    return {
      example(d) {
        let split: Split;
        if (byPath)
          split =
            (hashParts(seed, d.group ?? 0) % 1_000_000) / 1_000_000 < config.val_fraction ? "val" : "train";
        else if (d.time >= splitAt) split = "val";
        else if ((d.until ?? d.time) < splitAt) split = "train";
        else {
          bump(st.skipped, "straddles the train/validation boundary");
          return;
        }
        st.candidates[split]++;
        if (split === "val") st.valKeys.add(d.key);
        else if (dropShared && st.valKeys.has(d.key)) {
          st.leaks++;
          return;
        }
        const priority = hashParts(seed, d.uid);
        const heap = st.heaps[split];
        if (heap.accepts(priority, d.key)) heap.offer(priority, d.key, pack(d));
        else heap.seen++;
      },
      invalid(reason, ref) {
        const e = getOrAdd(st.invalid, reason, () => ({ count: 0, examples: [] as string[] }));
        e.count++;
        if (ref && e.examples.length < MAX_REASON_EXAMPLES) e.examples.push(`${ref.segment}#${ref.line}`);
      },
      skipped(reason, n = 1) {
        bump(st.skipped, reason, n);
      },
      note(what, n = 1) {
        bump(st.notes, what, n);
      },
    };
  }

  const incidentCfg = incidentSettings(config.incidents);
  const join = new IncidentJoin(incidentCfg, { start, end }, config.service_labels);
  const segmentsRead: Manifest["segments"] = [];
  const sourceInfo: Manifest["sources"] = {};

  // Event sources newest first: validation keys are then known before most train candidates
  // arrive, so a leaking train input is dropped before it takes a place in the sample.
  // Code newest first too: the first version of a path seen is the one used.
  for (const source of ["loki", "tempo", "prometheus", "code"] as const) {
    const segs = inWindow(source).reverse();
    sourceInfo[source] = { enabled: enabledSource(source), segments: segs.length };
    const consumers = [...states.values()].filter((s) => s.task.source === source && s.consumer);
    let done = 0;
    for (const seg of segs) {
      opts.signal?.throwIfAborted();
      let records: RecordOf<typeof source>[];
      try {
        const read = await readSegment(store, seg as SegmentRef & { source: typeof source });
        records = read.records;
        segmentsRead.push({ key: seg.key, sha256: read.sha256, records: records.length });
      } catch (err) {
        if (!(err instanceof CorruptSegmentError)) throw err;
        const body = await store.get(seg.key);
        segmentsRead.push({ key: seg.key, sha256: sha256(body), records: 0 });
        for (const st of consumers) {
          st.records++;
          sinkFor(st, st.task.name).invalid(`unreadable segment (${err.message.slice(seg.key.length + 2)})`, {
            segment: seg.key,
            line: 0,
          });
        }
        continue;
      }
      for (let i = 0; i < records.length; i++) {
        const rec = records[i];
        if (rec.kind === "trace") join.addTrace(rec);
        else if (rec.kind === "metric_series") join.addSeries(rec);
        else if (rec.kind === "log_entry") join.addLog(logFacts(rec, config.service_labels));
        for (const st of consumers) {
          st.records++;
          st.consumer!.add(rec, { segment: seg.key, line: i + 1 });
        }
      }
      opts.onProgress?.({ source, done: ++done, total: segs.length });
    }
    for (const st of consumers) st.consumer!.finish();
  }

  const incidents = join.windows();
  const index = new IncidentIndex(incidents, incidentCfg.windowMs);

  // Take the samples, drop train inputs that validation holds, settle deferred classes.
  const kept = new Map<TaskName, Record<Split, Draft[]>>();
  for (const [name, st] of states) {
    if (!st.consumer) continue;
    const val = st.heaps.val.items();
    const train = st.heaps.train.items().filter((d) => {
      if (!config.tasks[name].drop_shared_inputs || !st.valKeys.has(d.key)) return true;
      st.leaks++;
      return false;
    });
    if (st.task.resolve) for (const d of [...train, ...val]) st.task.resolve(d, index);
    kept.set(name, { train, val });
  }

  const vocab = buildVocab(opts.baseVocab, spec, numBins, config.max_services, kept);
  const examples: Record<Split, Example[]> = { train: [], val: [] };
  const byTask = new Map<TaskName, Record<Split, Example[]>>();
  for (const name of TASK_NAMES) {
    const k = kept.get(name);
    if (!k) continue;
    const task = TASKS[name];
    const out: Record<Split, Example[]> = { train: [], val: [] };
    const trainKeys = new Set(k.train.map((d) => d.key));
    for (const split of ["train", "val"] as const) {
      const ds = [...k[split]].sort((a, b) => a.time - b.time || a.uid - b.uid || a.key - b.key);
      for (const d of ds) {
        const ex = unpack(d, name, config.seq_len);
        if (split === "val") ex.inputSeenInTrain = trainKeys.has(d.key);
        if (task.slots.length)
          fillSlots(name, task.slots, ex.labels, d.classes, vocab, (slot, cls) => {
            if (slot.namespace === "service") return "service:<other>";
            throw new Error(`${name}: no class ${cls}`);
          });
        out[split].push(ex);
      }
      examples[split].push(...out[split]);
    }
    byTask.set(name, out);
  }

  const quality = qualityReport(states, byTask, vocab, config);
  if (!quality.passed) {
    throw new DatasetQualityError(
      `dataset build for ${agent} refused: ${quality.failures.join("; ")}`,
      quality,
    );
  }

  const idInput = {
    format: DATASET_VERSION,
    builder: BUILDER_VERSION,
    agent,
    window: { start, end },
    config: { ...z.encode(DatasetSchema, config), window_ms: windowMs },
    sources: sourceInfo,
    segments: segmentsRead.map((s) => [s.key, s.sha256]).sort(),
    base_vocab: opts.baseVocab?.sha256() ?? null,
  };
  const id = `ds-${dayOf(end - 1).replaceAll("-", "")}-${sha256(JSON.stringify(idInput)).slice(0, 12)}`;
  const prefix = datasetPrefix(agent, id);

  const existing = await store.stat(`${prefix}manifest.json`);
  if (existing) {
    const manifest = Manifest.parse(JSON.parse((await store.get(`${prefix}manifest.json`)).toString("utf8")));
    await store.put(latestDatasetKey(agent), `${JSON.stringify({ id }, null, 2)}\n`);
    log.info({ agent, id }, "dataset already built; reusing it");
    return { id, prefix, manifest, vocab, reused: true };
  }

  const files: Record<string, Uint8Array | string> = {
    "train.bin": encodeSplit("train", examples.train, config.seq_len, TASK_NAMES),
    "val.bin": encodeSplit("val", examples.val, config.seq_len, TASK_NAMES),
    "vocab.json": vocab.serialize(),
    "incidents.json": `${JSON.stringify(
      {
        window: { start: iso(start), end: iso(end) },
        settings: config.incidents,
        incidents: incidents.map((w) => ({ ...w, start: iso(w.start), end: iso(w.end) })),
      },
      null,
      2,
    )}\n`,
  };
  const fileEntries: Manifest["files"] = {};
  for (const [name, body] of Object.entries(files)) {
    const put = await store.put(`${prefix}${name}`, body);
    fileEntries[name] = { sha256: put.sha256, bytes: put.size };
  }
  const countsByTask: Manifest["counts"]["by_task"] = {};
  const splitBy: Manifest["split"]["by_task"] = {};
  for (const name of TASK_NAMES) {
    const t = byTask.get(name);
    countsByTask[name] = { train: t?.train.length ?? 0, val: t?.val.length ?? 0 };
    splitBy[name] = name === "code_infill" ? "file path" : "time";
  }
  const manifest: Manifest = Manifest.parse({
    format: DATASET_FORMAT,
    version: DATASET_VERSION,
    id,
    agent,
    window: { start: iso(start), end: iso(end), split_at: iso(splitAt), days: windowMs / DAY },
    seq_len: config.seq_len,
    tasks: [...TASK_NAMES],
    puzzle_identifiers: [...PUZZLE_IDENTIFIER_NAMES],
    num_puzzle_identifiers: NUM_PUZZLE_IDENTIFIERS,
    config: { ...z.encode(DatasetSchema, config), window_ms: windowMs },
    sources: sourceInfo,
    segments: [...segmentsRead].sort((a, b) => (a.key < b.key ? -1 : 1)),
    vocab: { size: vocab.size, revision: vocab.revision, sha256: vocab.sha256() },
    counts: { train: examples.train.length, val: examples.val.length, by_task: countsByTask },
    split: { val_fraction: config.val_fraction, split_at: iso(splitAt), by_task: splitBy },
    incidents: incidents.length,
    files: fileEntries,
    quality,
  });
  // The manifest goes last: a dataset without one is incomplete and never read.
  await store.put(`${prefix}manifest.json`, `${JSON.stringify(manifest, null, 2)}\n`);
  await store.put(latestDatasetKey(agent), `${JSON.stringify({ id }, null, 2)}\n`);
  for (const name of TASK_NAMES) {
    datasetExamples.set({ agent, task: name, split: "train" }, countsByTask[name].train);
    datasetExamples.set({ agent, task: name, split: "val" }, countsByTask[name].val);
  }
  log.info({ agent, id, train: examples.train.length, val: examples.val.length }, "dataset built");
  return { id, prefix, manifest, vocab, reused: false };
}

/** A sampled draft keeps its tokens in one 16-bit array (labels: 0xFFFF for ignored): half the memory. */
function pack(d: Draft): Draft {
  const S = d.inputs.length;
  const packed = new Uint16Array(2 * S);
  packed.set(d.inputs);
  for (let i = 0; i < S; i++) packed[S + i] = d.labels[i] === IGNORE ? 0xffff : d.labels[i];
  d.packed = packed;
  d.inputs = EMPTY;
  d.labels = EMPTY;
  return d;
}

const EMPTY = new Int32Array(0);

function unpack(d: Draft, task: TaskName, S: number): Example {
  const p = d.packed!;
  const inputs = Int32Array.from(p.subarray(0, S));
  const labels = new Int32Array(S);
  for (let i = 0; i < S; i++) labels[i] = p[S + i] === 0xffff ? IGNORE : p[S + i];
  return { task, inputs, labels, time: d.time, aux: d.aux };
}

function buildVocab(
  base: Vocab | undefined,
  spec: EncodingSpec,
  numBins: number,
  maxServices: number,
  kept: Map<TaskName, Record<Split, Draft[]>>,
): Vocab {
  const counts = new Map<string, number>();
  for (const k of kept.values())
    for (const d of [...k.train, ...k.val]) for (const c of d.classes) if (c) bump(counts, c);
  const start = base ? base.withEncoding(spec) : Vocab.create({ numBins, encoding: spec });
  const known = (c: string) => start.classId(c) !== undefined;
  const newServices = [...counts.entries()]
    .filter(([c]) => c.startsWith("service:") && !known(c))
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
  const room = Math.max(0, maxServices - start.namespaceIds("service").length + 1);
  const add = [
    ...[...counts.keys()].filter((c) => !c.startsWith("service:") && !known(c)),
    ...newServices.slice(0, room).map(([c]) => c),
  ];
  return base ? start.extend(add) : Vocab.create({ numBins, encoding: spec, classes: add });
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

/**
 * Builds the dataset of a configured agent: its store, its enabled sources, the dataset
 * section of the config. What the CLI, the pipeline runner and the MCP tools call.
 */
export async function buildAgentDataset(
  config: Config,
  agent: string,
  opts: Omit<BuildOptions, "store" | "agent" | "config" | "sources"> & { store?: ObjectStore } = {},
): Promise<BuildResult> {
  const enabled = enabledSources(agentConfig(config, agent));
  const sources = Object.fromEntries(SOURCES.map((s) => [s, enabled.includes(s)])) as Record<
    SourceName,
    boolean
  >;
  return buildDataset({
    ...opts,
    store: opts.store ?? openStore(config),
    agent,
    config: config.dataset,
    sources,
  });
}
