// Helpers the four tasks share: text to byte tokens and back, reading an answer at a position,
// and the class-slot machinery of the two classification tasks.
export { getOrAdd, serviceOf } from "./facts.js";

import { hash53 } from "./hash.js";
import type { Answer, Encoded, Example, LabelSlot, ModelOutput, Readout, TaskName } from "./types.js";
import { BYTE_BASE, IGNORE, MASK, PAD, SEP, type Vocab } from "./vocab.js";

export const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8", { fatal: false });

/**
 * The input token at a class slot: the byte of the slot name's first letter. Three identical mask
 * tokens differ only by position, and a small model spends its first hundred steps telling them
 * apart (measured on the demo: token accuracy sat at "one class everywhere" until step ~110);
 * a token that names the question separates them from the first layer on.
 */
export function slotQuery(slot: LabelSlot): number {
  return BYTE_BASE + slot.name.charCodeAt(0);
}

/** Writes the UTF-8 bytes of text as byte tokens at out[from..], at most `max` of them; returns the count. */
export function putText(out: Int32Array, from: number, text: string | Uint8Array, max: number): number {
  const bytes = typeof text === "string" ? utf8.encode(text) : text;
  const n = Math.min(bytes.length, max, out.length - from);
  for (let i = 0; i < n; i++) out[from + i] = BYTE_BASE + bytes[i];
  return n;
}

/** The text of a run of byte tokens; other tokens show as ⟨name⟩ (pads are dropped). */
export function tokensToText(tokens: ArrayLike<number>, vocab: Vocab, from = 0, to = tokens.length): string {
  let out = "";
  let bytes: number[] = [];
  const flush = () => {
    if (bytes.length) out += utf8Decoder.decode(Uint8Array.from(bytes));
    bytes = [];
  };
  for (let i = from; i < to; i++) {
    const t = tokens[i];
    if (vocab.isByte(t)) bytes.push(t - BYTE_BASE);
    else {
      flush();
      if (t === PAD) continue;
      if (t === MASK) out += "⟨mask⟩";
      else if (t === SEP) out += "⟨sep⟩";
      else out += `⟨${vocab.tokenName(t)}⟩`;
    }
  }
  flush();
  return out;
}

export function ignoreLabels(seqLen: number): Int32Array {
  return new Int32Array(seqLen).fill(IGNORE);
}

export function inputKey(inputs: Int32Array): number {
  return hash53(inputs, 0x1eaf);
}

/** Ids a valid answer may take at a readout. */
export function allowedIds(readout: Readout, vocab: Vocab): readonly number[] | { from: number; to: number } {
  if (readout.kind === "byte") return { from: BYTE_BASE, to: BYTE_BASE + 256 };
  if (readout.kind === "bin") return { from: vocab.bin(0), to: vocab.bin(0) + vocab.numBins };
  return vocab.namespaceIds(readout.namespace ?? "");
}

/** allowedIds as a list. */
function allowedList(readout: Readout, vocab: Vocab): readonly number[] {
  const allowed = allowedIds(readout, vocab);
  return Array.isArray(allowed)
    ? (allowed as readonly number[])
    : range((allowed as { from: number }).from, (allowed as { to: number }).to);
}

/**
 * The answer at one position. With probabilities: the most likely allowed id, and its
 * probability renormalised over the allowed ids. With token ids: the id if it is allowed
 * (confidence 1), else null.
 */
export function readAt(output: ModelOutput, readout: Readout, vocab: Vocab): Answer<number> {
  const ids = allowedList(readout, vocab);
  if ("tokens" in output) {
    const t = output.tokens[readout.position];
    return ids.includes(t) ? { value: t, confidence: 1 } : { value: null, confidence: 0 };
  }
  const V = vocab.size;
  if (output.probs.length < (readout.position + 1) * V)
    throw new Error(`probabilities hold ${output.probs.length} values, fewer than seq_len x vocab_size`);
  const row = readout.position * V;
  let best = -1;
  let bestP = -1;
  let sum = 0;
  for (const id of ids) {
    const p = output.probs[row + id];
    sum += p;
    if (p > bestP) {
      bestP = p;
      best = id;
    }
  }
  if (best < 0) return { value: null, confidence: 0 };
  return { value: best, confidence: sum > 0 ? bestP / sum : 0 };
}

/** The chosen id at a readout, with its probability renormalised over the allowed ids. */
export function answerWith(probs: Float32Array, readout: Readout, vocab: Vocab, id: number): Answer<number> {
  const ids = allowedList(readout, vocab);
  if (!ids.includes(id)) return { value: null, confidence: 0 };
  const row = readout.position * vocab.size;
  let sum = 0;
  for (const x of ids) sum += probs[row + x];
  return { value: id, confidence: sum > 0 ? probs[row + id] / sum : 0 };
}

/** The most likely id at every position of probabilities [L * V]. */
export function argmaxTokens(probs: Float32Array, L: number, V: number): Int32Array {
  const out = new Int32Array(L);
  for (let p = 0; p < L; p++) {
    let best = 0;
    for (let v = 1; v < V; v++) if (probs[p * V + v] > probs[p * V + best]) best = v;
    out[p] = best;
  }
  return out;
}

function range(from: number, to: number): number[] {
  const out: number[] = [];
  for (let i = from; i < to; i++) out.push(i);
  return out;
}

/** The class value after the namespace ("service:api" -> "api"). */
export function classValue(name: string | undefined): string | null {
  if (!name) return null;
  const i = name.indexOf(":");
  return i < 0 ? name : name.slice(i + 1);
}

/** Readouts of class slots, in slot order. */
export function slotReadouts(slots: readonly LabelSlot[]): Readout[] {
  return slots.map((s) => ({ position: s.position, kind: "class", namespace: s.namespace, name: s.name }));
}

/** Decodes every slot of a classification task to {value, confidence}. */
export function decodeSlots(
  output: ModelOutput,
  encoded: Encoded,
  vocab: Vocab,
): Record<string, Answer<string>> {
  const out: Record<string, Answer<string>> = {};
  for (const r of encoded.readouts) {
    const a = readAt(output, r, vocab);
    out[r.name] = {
      value: a.value === null ? null : classValue(vocab.className(a.value)),
      confidence: a.confidence,
    };
  }
  return out;
}

/** Per-slot accuracy and exact-all of a classification task. */
export function scoreSlots(
  slots: readonly LabelSlot[],
  examples: readonly Example[],
  predictions: readonly Int32Array[],
): Record<string, number> {
  checkPredictions(examples, predictions);
  const correct = slots.map(() => 0);
  const seen = slots.map(() => 0);
  let exact = 0;
  examples.forEach((ex, i) => {
    const pred = predictions[i];
    let all = true;
    slots.forEach((s, j) => {
      const label = ex.labels[s.position];
      if (label === IGNORE) return;
      seen[j]++;
      if (pred[s.position] === label) correct[j]++;
      else all = false;
    });
    if (all) exact++;
  });
  const metrics: Record<string, number> = {};
  slots.forEach((s, j) => {
    metrics[`${s.name}_accuracy`] = seen[j] ? correct[j] / seen[j] : 0;
  });
  metrics.exact_all = examples.length ? exact / examples.length : 0;
  metrics.mean_accuracy = slots.length
    ? slots.reduce((acc, s) => acc + metrics[`${s.name}_accuracy`], 0) / slots.length
    : 0;
  return metrics;
}

export function checkPredictions(examples: readonly Example[], predictions: readonly Int32Array[]): void {
  if (examples.length !== predictions.length)
    throw new Error(`${predictions.length} predictions for ${examples.length} examples`);
  for (let i = 0; i < examples.length; i++) {
    if (predictions[i].length !== examples[i].labels.length)
      throw new Error(
        `prediction ${i} has ${predictions[i].length} positions, expected ${examples[i].labels.length}`,
      );
  }
}

/** Most frequent key (ties: the smallest key), or undefined for an empty count. */
export function majority<K extends string | number>(counts: Map<K, number>): K | undefined {
  let best: K | undefined;
  let bestN = -1;
  for (const [k, n] of counts) {
    if (n > bestN || (n === bestN && best !== undefined && k < best)) {
      best = k;
      bestN = n;
    }
  }
  return best;
}

export function bump<K>(counts: Map<K, number>, key: K, n = 1): void {
  counts.set(key, (counts.get(key) ?? 0) + n);
}

/** Class labels of a classification example, slot by slot, for reports. */
export function slotLabels(slots: readonly LabelSlot[], ex: Example, vocab: Vocab): Record<string, string> {
  const out: Record<string, string> = {};
  for (const s of slots) out[s.name] = classValue(vocab.className(ex.labels[s.position])) ?? "?";
  return out;
}

/** Sets the class label of every slot from its name; throws when the vocabulary lacks one. */
export function fillSlots(
  task: TaskName,
  slots: readonly LabelSlot[],
  labels: Int32Array,
  classes: readonly (string | null)[],
  vocab: Vocab,
  fallback: (slot: LabelSlot, name: string) => string,
): void {
  slots.forEach((s, j) => {
    const name = classes[j];
    if (name === null) throw new Error(`${task}: class of slot ${s.name} was never decided`);
    let id = vocab.classId(name);
    if (id === undefined) id = vocab.classId(fallback(s, name));
    if (id === undefined) throw new Error(`${task}: vocabulary has no class ${name}`);
    labels[s.position] = id;
  });
}
