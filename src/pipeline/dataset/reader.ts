// Reading a built dataset: what training, evaluation and serving use. Every file is checked
// against the sha256 in the manifest before it is parsed.
import { WorkError } from "../../errors.js";
import { NotFoundError, type ObjectStore } from "../../store/index.js";
import { datasetsPrefix, latestDatasetKey } from "../../store/layout.js";
import { sha256 } from "../../util/fs.js";
import type { IncidentWindow } from "../incidents.js";
import { asMemory, buildMemory, type MemoryFile, type ModelMemory } from "../tasks/memory.js";
import { TASKS } from "../tasks/modules.js";
import { type Example, PUZZLE_IDS, TASK_NAMES, type TaskName } from "../tasks/types.js";
import { Vocab } from "../tasks/vocab.js";
import { datasetPrefix } from "./build.js";
import { decodeSplit, type SplitArrays } from "./format.js";
import { Manifest } from "./manifest.js";

export type SplitName = "train" | "val";

export interface Batch {
  /** [B * seq_len] token ids. */
  inputs: Int32Array;
  /** [B * seq_len] labels, -100 where ignored. */
  labels: Int32Array;
  /** [B] TRM puzzle identifiers (the task ids). */
  puzzleIds: Int32Array;
}

export class DatasetSplit {
  readonly size: number;
  readonly seqLen: number;
  /** Task of each example. */
  readonly tasks: readonly TaskName[];
  readonly puzzleIds: Int32Array;

  constructor(
    readonly name: SplitName,
    private readonly a: SplitArrays,
  ) {
    this.size = a.header.count;
    this.seqLen = a.header.seq_len;
    const names = a.header.tasks.map((t) => {
      if (!(TASK_NAMES as readonly string[]).includes(t))
        throw new WorkError(`dataset split ${name}: unknown task ${t}`);
      return t as TaskName;
    });
    this.tasks = Array.from(a.task, (i) => names[i]);
    this.puzzleIds = Int32Array.from(this.tasks, (t) => PUZZLE_IDS[t]);
  }

  /** Flat [size * seq_len] token ids. */
  get inputs(): Int32Array {
    return this.a.inputs;
  }

  /** Flat [size * seq_len] labels, -100 where ignored. */
  get labels(): Int32Array {
    return this.a.labels;
  }

  get times(): Float64Array {
    return this.a.time;
  }

  /** Example i; its arrays are views into the split (do not write to them). */
  example(i: number): Example {
    if (!(i >= 0 && i < this.size)) throw new RangeError(`example ${i} of ${this.size}`);
    const S = this.seqLen;
    return {
      task: this.tasks[i],
      inputs: this.a.inputs.subarray(i * S, (i + 1) * S),
      labels: this.a.labels.subarray(i * S, (i + 1) * S),
      time: this.a.time[i],
      aux: this.a.aux.subarray(this.a.auxOffsets[i], this.a.auxOffsets[i + 1]),
      ...(this.name === "val" ? { inputSeenInTrain: (this.a.flags[i] & 1) === 1 } : {}),
    };
  }

  /**
   * Indices of one task's examples, in stored order (by time). With newInputsOnly, only those
   * whose input train does not hold (validation; the score on inputs never seen).
   */
  indicesOf(task: TaskName, opts: { newInputsOnly?: boolean } = {}): number[] {
    const out: number[] = [];
    this.tasks.forEach((t, i) => {
      if (t === task && !(opts.newInputsOnly && this.a.flags[i] & 1)) out.push(i);
    });
    return out;
  }

  /** All examples, or one task's. */
  examples(task?: TaskName): Example[] {
    const idx = task ? this.indicesOf(task) : [...Array(this.size).keys()];
    return idx.map((i) => this.example(i));
  }

  /** Gathers examples into the flat arrays a training or evaluation step takes. */
  batch(indices: ArrayLike<number>): Batch {
    const S = this.seqLen;
    const B = indices.length;
    const inputs = new Int32Array(B * S);
    const labels = new Int32Array(B * S);
    const puzzleIds = new Int32Array(B);
    for (let b = 0; b < B; b++) {
      const i = indices[b];
      if (!(i >= 0 && i < this.size)) throw new RangeError(`example ${i} of ${this.size}`);
      inputs.set(this.a.inputs.subarray(i * S, (i + 1) * S), b * S);
      labels.set(this.a.labels.subarray(i * S, (i + 1) * S), b * S);
      puzzleIds[b] = this.puzzleIds[i];
    }
    return { inputs, labels, puzzleIds };
  }
}

export interface Dataset {
  id: string;
  agent: string;
  prefix: string;
  manifest: Manifest;
  vocab: Vocab;
  train: DatasetSplit;
  val: DatasetSplit;
  /** The incident windows the build found (for log_triage labels and the knowledge card). */
  incidents: IncidentWindow[];
}

/**
 * What a model trained on this dataset remembers of it (tasks/memory.ts): deploy registers it as
 * the version's memory.json; training's validation and the evaluation recall it for the candidate.
 */
export function datasetMemory(ds: Dataset): MemoryFile {
  return buildMemory(Object.values(TASKS), (t) => ds.train.examples(t), ds.vocab);
}

/** datasetMemory as the candidate trained on this dataset recalls it. */
export function candidateMemory(ds: Dataset): ModelMemory {
  return asMemory(datasetMemory(ds));
}

/** The id of the newest dataset built for the agent, or null when none was. */
export async function latestDatasetId(store: ObjectStore, agent: string): Promise<string | null> {
  try {
    const v = JSON.parse((await store.get(latestDatasetKey(agent))).toString("utf8")) as {
      id?: unknown;
    };
    return typeof v.id === "string" ? v.id : null;
  } catch (err) {
    if (err instanceof NotFoundError) return null;
    throw err;
  }
}

/** The complete datasets of an agent (those with a manifest), oldest window first. */
export async function listDatasets(store: ObjectStore, agent: string): Promise<Manifest[]> {
  const out: Manifest[] = [];
  for (const o of await store.list(datasetsPrefix(agent))) {
    if (!o.key.endsWith("/manifest.json")) continue;
    out.push(await readManifest(store, o.key));
  }
  return out.sort((a, b) =>
    a.window.end < b.window.end ? -1 : a.window.end > b.window.end ? 1 : a.id < b.id ? -1 : 1,
  );
}

async function readManifest(store: ObjectStore, key: string): Promise<Manifest> {
  let value: unknown;
  try {
    value = JSON.parse((await store.get(key)).toString("utf8"));
  } catch (err) {
    if (err instanceof NotFoundError) throw err;
    throw new WorkError(`${key} is not JSON`);
  }
  const res = Manifest.safeParse(value);
  if (!res.success) {
    const i = res.error.issues[0];
    throw new WorkError(`${key}: ${i.path.join(".")}: ${i.message}`);
  }
  return res.data;
}

/** Reads a dataset's manifest only. */
export async function readDatasetManifest(store: ObjectStore, agent: string, id?: string): Promise<Manifest> {
  const which = id ?? (await latestDatasetId(store, agent));
  if (!which)
    throw new WorkError(`agent ${agent} has no dataset: run \`trm-forge dataset build --agent ${agent}\``);
  try {
    return await readManifest(store, `${datasetPrefix(agent, which)}manifest.json`);
  } catch (err) {
    if (err instanceof NotFoundError) throw new WorkError(`dataset ${which} of agent ${agent} not found`);
    throw err;
  }
}

/** Opens a dataset (the newest when id is omitted), verifying every file's checksum. */
export async function openDataset(store: ObjectStore, agent: string, id?: string): Promise<Dataset> {
  const manifest = await readDatasetManifest(store, agent, id);
  const prefix = datasetPrefix(agent, manifest.id);
  const file = async (name: string): Promise<Buffer> => {
    const entry = manifest.files[name];
    if (!entry) throw new WorkError(`dataset ${manifest.id}: manifest lists no ${name}`);
    let body: Buffer;
    try {
      body = await store.get(`${prefix}${name}`);
    } catch (err) {
      if (err instanceof NotFoundError) throw new WorkError(`dataset ${manifest.id}: ${name} is missing`);
      throw err;
    }
    if (body.length !== entry.bytes || sha256(body) !== entry.sha256)
      throw new WorkError(
        `dataset ${manifest.id}: ${name} does not match its checksum (truncated or altered)`,
      );
    return body;
  };
  const vocab = Vocab.parse(await file("vocab.json"));
  const train = new DatasetSplit("train", decodeSplit(await file("train.bin"), `${manifest.id}/train.bin`));
  const val = new DatasetSplit("val", decodeSplit(await file("val.bin"), `${manifest.id}/val.bin`));
  for (const s of [train, val]) {
    if (s.seqLen !== manifest.seq_len)
      throw new WorkError(
        `dataset ${manifest.id}: ${s.name} has seq_len ${s.seqLen}, manifest says ${manifest.seq_len}`,
      );
    for (const t of s.inputs)
      if (t >= vocab.size) throw new WorkError(`dataset ${manifest.id}: token ${t} outside the vocabulary`);
  }
  const inc = JSON.parse((await file("incidents.json")).toString("utf8")) as {
    incidents: (Omit<IncidentWindow, "start" | "end"> & { start: string; end: string })[];
  };
  const incidents = inc.incidents.map((w) => ({ ...w, start: Date.parse(w.start), end: Date.parse(w.end) }));
  return { id: manifest.id, agent, prefix, manifest, vocab, train, val, incidents };
}
