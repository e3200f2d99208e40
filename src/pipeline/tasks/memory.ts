// What a version remembers of its training split beside its weights: for a task that declares a
// memory key (trace_outcome: the call path), the classes seen at each slot per key. Recalling it
// turns the model's probabilities at those slots into a posterior in which the model's answer
// weighs as much as STRENGTH training examples, so a path seen often is answered by what it did,
// and an unseen one by the model alone. Evaluation, serving and the scan all answer through it.
import * as z from "zod";
import { getOrAdd } from "./common.js";
import type { Example, TaskModule, TaskName } from "./types.js";
import type { Vocab } from "./vocab.js";

/** The version artifact that holds it. */
export const MEMORY_ARTIFACT = "memory.json";

/**
 * How many training examples the model's answer counts as. At 1, a path seen once in train is
 * answered by that example; two examples that disagree are decided by the model. Measured on the
 * demo's dataset of 2026-12-07 (README, "The path memory"): 1 and 0.25 +0.003 over the per-path
 * majority, 2 +0.000, 4 −0.006, the model alone −0.006.
 */
export const STRENGTH = 1;

// Class names are the vocabulary's, which bounds neither their length nor their number: the
// artifact is bounded by the training split it counts (one entry per example at most).
const Counts = z.record(z.string(), z.number().int().positive());
export const MemoryFile = z.object({
  schema: z.literal(1),
  strength: z.number().positive().max(1e6),
  /** The newest event time of the examples it counts (ISO); null when it counts none. */
  until: z.string().datetime().nullable(),
  /** Task → key → one {class name: count} per slot, in the task's slot order. */
  tasks: z.record(z.string(), z.record(z.string().max(64), z.array(Counts).max(16))),
});
export type MemoryFile = z.infer<typeof MemoryFile>;

/** A parsed memory: per task and key, the counts per slot. */
export interface ModelMemory {
  strength: number;
  /** The newest event time it counts (ms since the epoch), or null. */
  until: number | null;
  tasks: Map<string, Map<string, Map<string, number>[]>>;
}

/** The memory of a training split: every task with a memory key, from its train examples. */
export function buildMemory(
  modules: readonly TaskModule[],
  train: (task: TaskName) => readonly Example[],
  vocab: Vocab,
): MemoryFile {
  const tasks: MemoryFile["tasks"] = {};
  let until = Number.NEGATIVE_INFINITY;
  for (const t of modules) {
    if (!t.memoryKey) continue;
    const byKey = new Map<string, Record<string, number>[]>();
    for (const ex of train(t.name)) {
      until = Math.max(until, ex.time);
      const counts = getOrAdd(byKey, t.memoryKey(ex.inputs), () =>
        t.slots.map((): Record<string, number> => ({})),
      );
      t.slots.forEach((s, j) => {
        const name = vocab.className(ex.labels[s.position]);
        if (name) counts[j][name] = (counts[j][name] ?? 0) + 1;
      });
    }
    tasks[t.name] = Object.fromEntries(byKey);
  }
  return {
    schema: 1,
    strength: STRENGTH,
    until: Number.isFinite(until) ? new Date(until).toISOString() : null,
    tasks,
  };
}

export function serializeMemory(m: MemoryFile): string {
  return `${JSON.stringify(m)}\n`;
}

export class MemoryError extends Error {
  override name = "MemoryError";
}

/** A memory.json read back (zod-checked). */
export function parseMemory(body: string | Uint8Array, source = MEMORY_ARTIFACT): ModelMemory {
  let value: unknown;
  try {
    value = JSON.parse(typeof body === "string" ? body : Buffer.from(body).toString("utf8"));
  } catch {
    throw new MemoryError(`${source}: not JSON`);
  }
  const res = MemoryFile.safeParse(value);
  if (!res.success) {
    const i = res.error.issues[0];
    throw new MemoryError(`${source}: ${i.path.join(".") || "(top level)"}: ${i.message}`);
  }
  return asMemory(res.data);
}

/** A built memory in the form recall reads. */
export function asMemory(m: MemoryFile): ModelMemory {
  const tasks = new Map<string, Map<string, Map<string, number>[]>>();
  for (const [task, byKey] of Object.entries(m.tasks))
    tasks.set(
      task,
      new Map(Object.entries(byKey).map(([k, slots]) => [k, slots.map((c) => new Map(Object.entries(c)))])),
    );
  return { strength: m.strength, until: m.until ? Date.parse(m.until) : null, tasks };
}

/**
 * Recalls what training saw of this input: at each remembered slot, the probabilities over the
 * slot's classes become (count + strength x model) / (seen + strength), and every other id 0.
 * `probs` holds rows [position * vocab.size ...]; it is changed in place. Returns how many
 * training examples had this input (0: the model's answer is left as it is).
 */
export function recall(
  memory: ModelMemory | null,
  t: TaskModule,
  inputs: Int32Array,
  probs: Float32Array,
  vocab: Vocab,
): number {
  const entry = t.memoryKey ? memory?.tasks.get(t.name)?.get(t.memoryKey(inputs)) : undefined;
  if (!memory || !entry) return 0;
  const V = vocab.size;
  let seen = 0;
  t.slots.forEach((s, j) => {
    const counts = entry[j];
    if (!counts?.size) return;
    const ids = vocab.namespaceIds(s.namespace);
    // Classes this vocabulary lacks (a memory from another version) count for nothing.
    const n = ids.map((id) => counts.get(vocab.className(id)!) ?? 0);
    const N = n.reduce((a, c) => a + c, 0);
    if (!N) return;
    seen = Math.max(seen, N);
    const row = probs.subarray(s.position * V, (s.position + 1) * V);
    let total = 0;
    for (const id of ids) total += row[id];
    const k = memory.strength;
    const posterior = ids.map(
      (id, i) => (n[i] + k * (total > 0 ? row[id] / total : 1 / ids.length)) / (N + k),
    );
    row.fill(0);
    ids.forEach((id, i) => {
      row[id] = posterior[i];
    });
  });
  return seen;
}
