// code_infill: a window of a source file with one to three spans masked (about 15% of its
// bytes, identifiers and values first); the labels are the masked bytes.
import type { CodeFileRecord } from "../collect/records.js";
import {
  answerWith,
  argmaxTokens,
  checkPredictions,
  ignoreLabels,
  readAt,
  tokensToText,
  utf8,
} from "./common.js";
import { hash53, hashParts, hashText, rng } from "./hash.js";
import {
  type Answer,
  type Baseline,
  type BuildContext,
  type DraftSink,
  type Encoded,
  type Example,
  PUZZLE_IDS,
  type Readout,
  type RecordConsumer,
  TaskInputError,
  type TaskModule,
} from "./types.js";
import { BYTE_BASE, IGNORE, MASK, type Vocab } from "./vocab.js";

export interface CodeInfillQuery {
  /** The code, at most seq_len UTF-8 bytes. */
  text: string;
  /** Spans to fill, as UTF-8 byte offsets into text (the bytes there are ignored). */
  spans: { start: number; length: number }[];
}

export interface CodeInfillAnswer {
  spans: { start: number; length: number; text: string; confidence: number }[];
}

export interface CodeInfillSettings {
  mask_fraction: number;
  max_spans: number;
  max_windows_per_file: number;
}

const DEFAULTS: CodeInfillSettings = { mask_fraction: 0.15, max_spans: 3, max_windows_per_file: 16 };

function isWordByte(b: number): boolean {
  return (
    (b >= 0x30 && b <= 0x39) ||
    (b >= 0x41 && b <= 0x5a) ||
    (b >= 0x61 && b <= 0x7a) ||
    b === 0x5f ||
    b === 0x24 ||
    b >= 0x80
  );
}

function isSpace(b: number): boolean {
  return b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d;
}

/** Line-aligned windows spread over the file, at most `max` of them. */
export function codeWindows(bytes: Uint8Array, seqLen: number, max: number): [number, number][] {
  const total = bytes.length;
  if (!total) return [];
  const n = Math.min(max, Math.ceil(total / seqLen));
  const out: [number, number][] = [];
  let prevEnd = 0;
  for (let k = 0; k < n; k++) {
    let start = Math.max(prevEnd, Math.floor((k * total) / n));
    if (start > 0 && bytes[start - 1] !== 0x0a) {
      const nl = bytes.indexOf(0x0a, start);
      if (nl >= 0 && nl - start < seqLen / 2) start = nl + 1;
    }
    if (start >= total) break;
    let end = Math.min(start + seqLen, total);
    if (end < total) {
      const nl = bytes.lastIndexOf(0x0a, end - 1);
      if (nl >= start + (seqLen * 3) / 4) end = nl + 1;
    }
    out.push([start, end]);
    prevEnd = end;
  }
  return out;
}

/**
 * Spans to mask in a window: word runs (identifiers, numbers) in a seeded random order, added
 * until about mask_fraction of the bytes are covered or max_spans are chosen. Spans never
 * touch, so each is a separate span for exact-span scoring.
 */
export function chooseMask(window: Uint8Array, seed: number, s: CodeInfillSettings): [number, number][] {
  const n = window.length;
  const budget = Math.max(1, Math.round(s.mask_fraction * n));
  const runs: [number, number][] = [];
  for (let i = 0; i < n; ) {
    if (!isWordByte(window[i])) {
      i++;
      continue;
    }
    let j = i;
    while (j < n && isWordByte(window[j])) j++;
    runs.push([i, j]);
    i = j;
  }
  const random = rng(hashParts(seed, hash53(window)));
  if (!runs.length) {
    // No identifiers or values: mask a stretch of non-blank bytes instead.
    const solid: number[] = [];
    for (let i = 0; i < n; i++) if (!isSpace(window[i])) solid.push(i);
    if (!solid.length) return [];
    const a = solid[Math.floor(random() * solid.length)];
    let b = a;
    while (b < n && b - a < budget && !isSpace(window[b])) b++;
    return [[a, b]];
  }
  for (let i = runs.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [runs[i], runs[j]] = [runs[j], runs[i]];
  }
  const chosen: [number, number][] = [];
  let left = budget;
  for (const [a, b] of runs) {
    if (chosen.length >= s.max_spans || left <= 0) break;
    const end = Math.min(b, a + left);
    if (chosen.some(([x, y]) => a <= y && end >= x)) continue;
    chosen.push([a, end]);
    left -= end - a;
  }
  return chosen.sort((x, y) => x[0] - y[0]);
}

function encodeWindow(window: Uint8Array, spans: [number, number][], seqLen: number) {
  const inputs = new Int32Array(seqLen);
  const labels = ignoreLabels(seqLen);
  for (let i = 0; i < window.length; i++) inputs[i] = BYTE_BASE + window[i];
  for (const [a, b] of spans) {
    for (let i = a; i < b; i++) {
      labels[i] = inputs[i];
      inputs[i] = MASK;
    }
  }
  return { inputs, labels };
}

function settingsOf(raw: Record<string, unknown>): CodeInfillSettings {
  return { ...DEFAULTS, ...(raw as Partial<CodeInfillSettings>) };
}

function builder(ctx: BuildContext, sink: DraftSink): RecordConsumer<CodeFileRecord> {
  const S = ctx.vocabSpec.seqLen;
  const s = settingsOf(ctx.settings);
  // The build feeds code newest first: the first version of a path seen is its newest.
  const seen = new Set<string>();
  return {
    add(rec, ref) {
      const time = Date.parse(rec.collected_at);
      if (!Number.isFinite(time)) return sink.invalid("collected_at is not a date", ref);
      if (time >= ctx.window.end) return sink.skipped("collected after the window");
      if (seen.has(rec.path)) return sink.skipped("older version of a file");
      seen.add(rec.path);
      if (!rec.content.length) return sink.skipped("empty file");
      let bad = 0;
      const scan = Math.min(rec.content.length, 65536);
      for (let i = 0; i < scan; i++) {
        const c = rec.content.charCodeAt(i);
        if (c === 0 || c === 0xfffd) bad++;
      }
      if (bad / scan > 0.05) return sink.invalid("binary or undecodable content", ref);
      const bytes = utf8.encode(rec.content);
      const group = hashText(rec.path);
      let made = 0;
      for (const [a, b] of codeWindows(bytes, S, s.max_windows_per_file)) {
        const w = bytes.subarray(a, b);
        let solid = 0;
        for (const x of w) if (!isSpace(x)) solid++;
        if (solid < 16) {
          sink.skipped("window is nearly blank");
          continue;
        }
        const spans = chooseMask(w, ctx.seed, s);
        if (!spans.length) {
          sink.skipped("nothing to mask");
          continue;
        }
        const { inputs, labels } = encodeWindow(w, spans, S);
        made++;
        sink.example({
          inputs,
          labels,
          classes: [],
          time,
          aux: new Float64Array(0),
          // Masks follow from the bytes, so the window's hash identifies the input.
          key: hash53(w, 0xc0de),
          uid: hashParts(group, a),
          group,
        });
      }
      if (!made) sink.skipped("file gave no window");
    },
    finish() {},
  };
}

/** Maximal runs [start, end) of the positions where `inRun` holds. */
function runsWhere(values: Int32Array, inRun: (v: number) => boolean): [number, number][] {
  const out: [number, number][] = [];
  for (let i = 0; i < values.length; ) {
    if (!inRun(values[i])) {
      i++;
      continue;
    }
    let j = i;
    while (j < values.length && inRun(values[j])) j++;
    out.push([i, j]);
    i = j;
  }
  return out;
}

/** Masked spans of an example: maximal runs of supervised positions. */
export function labelSpans(labels: Int32Array): [number, number][] {
  return runsWhere(labels, (l) => l !== IGNORE);
}

function originalByte(ex: Example, i: number): number {
  const t = ex.labels[i] !== IGNORE ? ex.labels[i] : ex.inputs[i];
  return t >= BYTE_BASE && t < BYTE_BASE + 256 ? t - BYTE_BASE : -1;
}

/** The byte bigram, the 6-gram and the window's frequent identifier: the model has to beat the best. */
function baselines(train: readonly Example[]): Baseline[] {
  return [bigramBaseline(train), ngramBaseline(train), frequentIdentifier];
}

function bigramBaseline(train: readonly Example[]): Baseline {
  // counts[prev * 256 + next]; prev 256 stands for "no byte before".
  const counts = new Uint32Array(257 * 256);
  for (const ex of train) {
    let prev = 256;
    for (let i = 0; i < ex.inputs.length; i++) {
      const b = originalByte(ex, i);
      if (b < 0) {
        prev = 256;
        continue;
      }
      counts[prev * 256 + b]++;
      prev = b;
    }
  }
  const best = new Int32Array(257);
  const overall = new Float64Array(256);
  for (let p = 0; p < 257; p++) for (let b = 0; b < 256; b++) overall[b] += counts[p * 256 + b];
  const globalBest = argmax(overall);
  for (let p = 0; p < 257; p++) {
    let top = -1;
    let topN = 0;
    for (let b = 0; b < 256; b++) {
      if (counts[p * 256 + b] > topN) {
        topN = counts[p * 256 + b];
        top = b;
      }
    }
    best[p] = top < 0 ? globalBest : top;
  }
  return {
    name: "byte_bigram",
    predict(ex) {
      const out = new Int32Array(ex.inputs.length);
      let prev = 256;
      for (let i = 0; i < ex.inputs.length; i++) {
        const t = ex.inputs[i];
        if (t === MASK) {
          const b = best[prev];
          out[i] = BYTE_BASE + b;
          prev = b;
        } else if (t >= BYTE_BASE && t < BYTE_BASE + 256) {
          out[i] = t;
          prev = t - BYTE_BASE;
        } else {
          out[i] = t;
          prev = 256;
        }
      }
      return out;
    },
  };
}

/** Longest context of the n-gram baseline (order 6: five bytes before the one guessed). */
const NGRAM_CONTEXT = 5;

/**
 * Most (context, next byte) pairs the 6-gram counts (about 60 bytes each; a Map holds under 2^24),
 * so a large train set stays bounded: pairs first seen after the cap are not counted.
 */
const NGRAM_MAX_PAIRS = 2_000_000;

/** Key of the last `len` bytes before position `end` of `bytes` (len <= 5: 40 bits plus the length). */
function contextKey(bytes: ArrayLike<number>, end: number, len: number): number {
  let k = 0;
  for (let j = end - len; j < end; j++) k = k * 256 + bytes[j];
  return len * 2 ** 40 + k;
}

/**
 * A byte 6-gram with backoff, fitted on train's original bytes: each masked byte is filled,
 * left to right, with the most frequent next byte after the longest context seen in train (its
 * own earlier guesses are part of the context, as a left-to-right filler has nothing else).
 */
export function ngramBaseline(train: readonly Example[]): Baseline {
  const pairs = new Map<number, number>();
  const buf = new Int32Array(NGRAM_CONTEXT + 1);
  for (const ex of train) {
    let run = 0;
    for (let i = 0; i < ex.inputs.length; i++) {
      const b = originalByte(ex, i);
      if (b < 0) {
        run = 0;
        continue;
      }
      buf.copyWithin(0, 1);
      buf[NGRAM_CONTEXT] = b;
      run++;
      for (let len = 0; len <= Math.min(NGRAM_CONTEXT, run - 1); len++) {
        const key = contextKey(buf, NGRAM_CONTEXT, len) * 256 + b;
        const n = pairs.get(key);
        if (n !== undefined) pairs.set(key, n + 1);
        else if (pairs.size < NGRAM_MAX_PAIRS) pairs.set(key, 1);
      }
    }
  }
  // The most frequent next byte per context (ties: the smaller byte).
  const best = new Map<number, number>();
  const bestN = new Map<number, number>();
  for (const [key, n] of pairs) {
    const ctx = Math.floor(key / 256);
    const b = key % 256;
    const m = bestN.get(ctx) ?? 0;
    if (n > m || (n === m && b < best.get(ctx)!)) {
      best.set(ctx, b);
      bestN.set(ctx, n);
    }
  }
  pairs.clear();
  return {
    name: "byte_6gram",
    predict(ex) {
      const out = Int32Array.from(ex.inputs);
      const bytes = new Int32Array(ex.inputs.length);
      let run = 0;
      for (let i = 0; i < ex.inputs.length; i++) {
        const t = ex.inputs[i];
        let b = -1;
        if (t === MASK) {
          for (let len = Math.min(NGRAM_CONTEXT, run); len >= 0 && b < 0; len--)
            b = best.get(contextKey(bytes, i, len)) ?? -1;
          if (b >= 0) out[i] = BYTE_BASE + b;
        } else if (t >= BYTE_BASE && t < BYTE_BASE + 256) b = t - BYTE_BASE;
        if (b < 0) {
          run = 0;
          continue;
        }
        bytes[i] = b;
        run++;
      }
      return out;
    },
  };
}

/** The masked spans of an encoded window, [start, end) each. */
function maskedSpans(inputs: Int32Array): [number, number][] {
  return runsWhere(inputs, (t) => t === MASK);
}

/**
 * The identifiers of a window's visible text with how often each occurs, in order of first
 * occurrence. Identifiers touching a mask are partly hidden: not counted.
 */
function windowIdentifiers(inputs: Int32Array): Map<string, number> {
  const n = inputs.length;
  const byte = (i: number) => {
    const t = inputs[i];
    return t >= BYTE_BASE && t < BYTE_BASE + 256 ? t - BYTE_BASE : -1;
  };
  const counts = new Map<string, number>();
  for (let i = 0; i < n; ) {
    const b = byte(i);
    if (b < 0 || !isWordByte(b)) {
      i++;
      continue;
    }
    let j = i;
    let word = "";
    while (j < n && byte(j) >= 0 && isWordByte(byte(j))) word += String.fromCharCode(byte(j++));
    const hidden = (i > 0 && inputs[i - 1] === MASK) || (j < n && inputs[j] === MASK);
    if (!hidden) counts.set(word, (counts.get(word) ?? 0) + 1);
    i = j;
  }
  return counts;
}

/**
 * What a span of `len` bytes may be copied from: the window's identifiers of that length; when
 * there are none, the first `len` bytes of the longer ones (counts of a shared start add up).
 * Words are byte strings (one char per byte).
 */
function copyCandidates(counts: Map<string, number>, len: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const [w, c] of counts) if (w.length === len) out.set(w, c);
  if (out.size) return out;
  for (const [w, c] of counts)
    if (w.length > len) out.set(w.slice(0, len), (out.get(w.slice(0, len)) ?? 0) + c);
  return out;
}

/**
 * Each masked span filled with the identifier seen most often in the window's visible text
 * whose length is the span's (ties: the first seen); else the start of the most frequent
 * longer one; else left unanswered.
 */
export const frequentIdentifier: Baseline = {
  name: "frequent_identifier",
  predict(ex) {
    const out = Int32Array.from(ex.inputs);
    const counts = windowIdentifiers(ex.inputs);
    const ranked = [...counts].sort((x, y) => y[1] - x[1]);
    for (const [i, j] of maskedSpans(ex.inputs)) {
      const len = j - i;
      const pick = ranked.find(([w]) => w.length === len) ?? ranked.find(([w]) => w.length > len);
      if (pick) for (let k = 0; k < len; k++) out[i + k] = BYTE_BASE + pick[0].charCodeAt(k);
    }
    return out;
  },
};

/**
 * How much a candidate's count weighs against the model's log-likelihood of its bytes. 1 would
 * be the prior of copying from a random occurrence; the model's byte probabilities are too
 * confident for that, so the count leads and the model settles ties and near-ties. Chosen on the
 * quality bench's held-out days with four 600-step models: 1 gave 0.243-0.245 masked-byte
 * accuracy, 2 0.245-0.249, 4 0.246-0.251, 8 0.247-0.250, the count alone with the model breaking
 * exact ties 0.247-0.250 (the count alone, first seen first: 0.225).
 */
const COUNT_WEIGHT = 8;

/**
 * The model's answer, copied from the window where it can be (a pointer network's decision,
 * made at decode time): each masked span takes the candidate of copyCandidates with the highest
 * log P_model(its bytes) + COUNT_WEIGHT * log(its count). A span with no candidate takes the
 * model's most likely byte at each position.
 */
function chooseSpans(inputs: Int32Array, probs: Float32Array, vocab: Vocab): Int32Array {
  const V = vocab.size;
  const out = argmaxTokens(probs, inputs.length, V);
  const counts = windowIdentifiers(inputs);
  const topByte = (pos: number) => {
    let b = 0;
    for (let x = 1; x < 256; x++) if (probs[pos * V + BYTE_BASE + x] > probs[pos * V + BYTE_BASE + b]) b = x;
    return b;
  };
  // Byte probabilities renormalised over the bytes; each position's sum is taken once.
  const byteMass = new Map<number, number>();
  const logP = (pos: number, b: number) => {
    const row = pos * V + BYTE_BASE;
    let sum = byteMass.get(pos);
    if (sum === undefined) {
      sum = 0;
      for (let x = 0; x < 256; x++) sum += probs[row + x];
      byteMass.set(pos, sum);
    }
    return Math.log(Math.max(probs[row + b], 1e-30) / Math.max(sum, 1e-30));
  };
  for (const [i, j] of maskedSpans(inputs)) {
    let best: string | null = null;
    let bestScore = Number.NEGATIVE_INFINITY;
    for (const [w, c] of copyCandidates(counts, j - i)) {
      let score = COUNT_WEIGHT * Math.log(c);
      for (let k = 0; k < w.length; k++) score += logP(i + k, w.charCodeAt(k));
      if (score > bestScore) {
        bestScore = score;
        best = w;
      }
    }
    for (let k = 0; k < j - i; k++)
      out[i + k] = BYTE_BASE + (best !== null ? best.charCodeAt(k) : topByte(i + k));
  }
  return out;
}

function argmax(v: ArrayLike<number>): number {
  let bi = 0;
  for (let i = 1; i < v.length; i++) if (v[i] > v[bi]) bi = i;
  return bi;
}

export const codeInfill: TaskModule<CodeInfillQuery, CodeInfillAnswer> = {
  name: "code_infill",
  source: "code",
  puzzleId: PUZZLE_IDS.code_infill,
  slots: [],
  metrics: { masked_token_accuracy: "higher", exact_span_accuracy: "higher" },
  primary: "masked_token_accuracy",
  builder: builder as TaskModule["builder"],
  encode(query, vocab) {
    const S = vocab.encoding.seq_len;
    if (typeof query?.text !== "string" || !Array.isArray(query.spans))
      throw new TaskInputError("code_infill needs { text: string, spans: [{ start, length }] }");
    const bytes = utf8.encode(query.text);
    if (bytes.length > S)
      throw new TaskInputError(`code_infill: the text is ${bytes.length} bytes, over the ${S}-byte window`);
    if (!query.spans.length) throw new TaskInputError("code_infill: no span to fill");
    const spans: [number, number][] = [];
    for (const sp of [...query.spans].sort((x, y) => x.start - y.start)) {
      if (!Number.isInteger(sp.start) || !Number.isInteger(sp.length) || sp.length < 1 || sp.start < 0)
        throw new TaskInputError("code_infill: a span needs an integer start >= 0 and length >= 1");
      if (sp.start + sp.length > bytes.length)
        throw new TaskInputError(`code_infill: span ${sp.start}+${sp.length} runs past the text`);
      if (spans.length && sp.start < spans[spans.length - 1][1])
        throw new TaskInputError("code_infill: spans overlap");
      // Touching spans would read as one masked run, and be filled as one.
      if (spans.length && sp.start === spans[spans.length - 1][1])
        throw new TaskInputError("code_infill: spans touch; send them as one span");
      spans.push([sp.start, sp.start + sp.length]);
    }
    const { inputs } = encodeWindow(bytes, spans, S);
    const readouts: Readout[] = [];
    spans.forEach(([a, b], k) => {
      for (let i = a; i < b; i++) readouts.push({ position: i, kind: "byte", name: `span${k}` });
    });
    return {
      task: "code_infill",
      puzzleId: PUZZLE_IDS.code_infill,
      inputs,
      readouts,
      aux: new Float64Array(0),
    };
  },
  choose: chooseSpans,
  decode(output, encoded: Encoded, vocab: Vocab): CodeInfillAnswer {
    const chosen = "probs" in output ? chooseSpans(encoded.inputs, output.probs, vocab) : null;
    const spans: CodeInfillAnswer["spans"] = [];
    let cur: { start: number; bytes: number[]; conf: number[]; name: string } | null = null;
    const flush = () => {
      if (!cur) return;
      const known = cur.bytes.filter((b) => b >= 0);
      spans.push({
        start: cur.start,
        length: cur.bytes.length,
        text: Buffer.from(known).toString("utf8"),
        confidence: cur.conf.reduce((a, b) => a + b, 0) / cur.conf.length,
      });
    };
    for (const r of encoded.readouts) {
      if (!cur || cur.name !== r.name) {
        flush();
        cur = { start: r.position, bytes: [], conf: [], name: r.name };
      }
      const a: Answer<number> =
        chosen && "probs" in output
          ? answerWith(output.probs, r, vocab, chosen[r.position])
          : readAt(output, r, vocab);
      cur.bytes.push(a.value === null ? -1 : a.value - BYTE_BASE);
      cur.conf.push(a.confidence);
    }
    flush();
    return { spans };
  },
  baselines,
  score(examples, predictions) {
    checkPredictions(examples, predictions);
    let tokens = 0;
    let right = 0;
    let spans = 0;
    let exact = 0;
    examples.forEach((ex, k) => {
      const pred = predictions[k];
      for (const [a, b] of labelSpans(ex.labels)) {
        spans++;
        let all = true;
        for (let i = a; i < b; i++) {
          tokens++;
          if (pred[i] === ex.labels[i]) right++;
          else all = false;
        }
        if (all) exact++;
      }
    });
    return {
      task: "code_infill",
      examples: examples.length,
      primary: "masked_token_accuracy",
      metrics: {
        masked_token_accuracy: tokens ? right / tokens : 0,
        exact_span_accuracy: spans ? exact / spans : 0,
      },
    };
  },
  describe(ex, vocab) {
    const spans = labelSpans(ex.labels).map(([a, b]) =>
      Buffer.from(Array.from(ex.labels.subarray(a, b), (t) => t - BYTE_BASE)).toString("utf8"),
    );
    const labels: Record<string, string> = {};
    spans.forEach((s, i) => {
      labels[`span${i}`] = s;
    });
    return { input: tokensToText(ex.inputs, vocab), labels };
  },
};
