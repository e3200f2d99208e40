// trace_outcome: a trace's call path in (root first, then service:operation in start order);
// its status, latency bucket and culprit service out. Layout: three class slots, a separator,
// then the path text.
import type { SpanRecord, TraceRecord } from "../collect/records.js";
import {
  bump,
  decodeSlots,
  getOrAdd,
  ignoreLabels,
  inputKey,
  majority,
  putText,
  scoreSlots,
  slotLabels,
  slotQuery,
  slotReadouts,
  tokensToText,
} from "./common.js";
import { hash53, hashText } from "./hash.js";
import { nsToMs } from "./log-triage.js";
import {
  type Answer,
  type Baseline,
  type BuildContext,
  type DraftSink,
  type Example,
  type LabelSlot,
  PUZZLE_IDS,
  type RecordConsumer,
  TaskInputError,
  type TaskModule,
} from "./types.js";
import { BYTE_BASE, SEP, type Vocab } from "./vocab.js";

export interface TraceOutcomeQuery {
  /** "service:operation" entries, root first, then in start order (see tracePath). */
  path: string[];
}

export interface TraceOutcomeAnswer {
  status: Answer<"ok" | "error">;
  latency: Answer<LatencyBucket>;
  culprit: Answer<string>;
}

export const LATENCY_BUCKETS = ["<100ms", "<1s", "<5s", ">=5s"] as const;
export type LatencyBucket = (typeof LATENCY_BUCKETS)[number];

export function latencyBucket(ms: number): LatencyBucket {
  if (ms < 100) return "<100ms";
  if (ms < 1000) return "<1s";
  if (ms < 5000) return "<5s";
  return ">=5s";
}

const SLOTS: readonly LabelSlot[] = [
  { name: "status", position: 0, namespace: "status" },
  { name: "latency", position: 1, namespace: "latency" },
  { name: "culprit", position: 2, namespace: "service" },
];
const TEXT_FROM = SLOTS.length + 1;
const HOP = ";";

type SpanLike = Pick<
  SpanRecord,
  "span_id" | "parent_span_id" | "service" | "name" | "start_ns" | "duration_ns" | "status"
>;

export interface TraceFacts {
  /** Path entries, root first; consecutive repeats collapsed as "svc:op*N". */
  path: string[];
  rootOperation: string;
  status: "ok" | "error";
  durationMs: number;
  culprit: string;
  /** Spans whose parent is not in the trace (the trace was cut): they count as roots. */
  orphans: number;
}

function cmpNs(a: string, b: string): number {
  const x = a.replace(/^0+(?=\d)/, "");
  const y = b.replace(/^0+(?=\d)/, "");
  if (x.length !== y.length) return x.length - y.length;
  return x < y ? -1 : x > y ? 1 : 0;
}

// The separator and control characters inside names would blur hop boundaries.
const clean = (v: string) => v.replace(/[;\p{Cc}]/gu, " ").trim();

function entryOf(s: Pick<SpanRecord, "service" | "name">): string {
  return `${clean(s.service) || "unknown"}:${clean(s.name) || "?"}`;
}

/**
 * A path as a query states it, written as the build writes a trace's: each part trimmed, and
 * consecutive repeats of a hop ("a:x", "a:x" or "a:x*2", "a:x") collapsed into "a:x*N".
 */
export function normalisePath(path: readonly string[]): string[] {
  const out: { entry: string; n: number }[] = [];
  for (const part of path) {
    const raw = clean(part);
    // A count of more than 9 digits is no count the build writes: it stays part of the name.
    const star = /^(.*)\*(\d{1,9})$/s.exec(raw);
    const base = star ? star[1] : raw;
    const n = star ? Math.max(1, Number(star[2])) : 1;
    const i = base.indexOf(":");
    const entry =
      i < 0 ? clean(base) : `${clean(base.slice(0, i)) || "unknown"}:${clean(base.slice(i + 1)) || "?"}`;
    const last = out.at(-1);
    if (last?.entry === entry) last.n += n;
    else out.push({ entry, n });
  }
  return out.map((e) => (e.n > 1 ? `${e.entry}*${e.n}` : e.entry));
}

/** The call path of spans, root first then start order, repeats collapsed. */
export function tracePath(spans: readonly SpanLike[]): string[] {
  const facts = analyseTrace(spans);
  if (typeof facts === "string") throw new TaskInputError(`trace: ${facts}`);
  return facts.path;
}

/** Status, latency, culprit and path of a trace, or the reason it has none. */
export function analyseTrace(spans: readonly SpanLike[], recordDurationMs = 0): TraceFacts | string {
  if (!spans.length) return "trace has no spans";
  const index = new Map<string, number>();
  spans.forEach((s, i) => {
    if (!index.has(s.span_id)) index.set(s.span_id, i);
  });
  const n = spans.length;
  const parentOf = new Int32Array(n).fill(-1);
  let orphans = 0;
  for (let i = 0; i < n; i++) {
    const p = spans[i].parent_span_id;
    if (p === null) continue;
    const j = index.get(p);
    if (j === undefined || j === i) {
      if (j === i) return "span is its own parent";
      orphans++;
    } else parentOf[i] = j;
  }
  // Depth along parent links; a link back into the walk is a cycle.
  const depth = new Int32Array(n).fill(-1);
  const state = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    if (state[i] === 2) continue;
    const stack: number[] = [];
    let j = i;
    while (j >= 0 && state[j] === 0) {
      state[j] = 1;
      stack.push(j);
      j = parentOf[j];
    }
    if (j >= 0 && state[j] === 1) return "span parents form a cycle";
    let d = j >= 0 ? depth[j] : -1;
    for (let k = stack.length - 1; k >= 0; k--) {
      d++;
      depth[stack[k]] = d;
      state[stack[k]] = 2;
    }
  }
  const order = [...spans.keys()].sort((a, b) => cmpNs(spans[a].start_ns, spans[b].start_ns) || a - b);
  let root = order.find((i) => spans[i].parent_span_id === null);
  if (root === undefined) root = order.find((i) => parentOf[i] < 0)!;

  const t0 = BigInt(spans[order[0]].start_ns);
  const start = new Float64Array(n);
  const end = new Float64Array(n);
  let maxEnd = 0;
  for (let i = 0; i < n; i++) {
    start[i] = Number(BigInt(spans[i].start_ns) - t0);
    end[i] = start[i] + spans[i].duration_ns;
    if (end[i] > maxEnd) maxEnd = end[i];
  }

  let status: "ok" | "error" = "ok";
  let culprit = -1;
  for (const i of order) {
    if (spans[i].status !== "error") continue;
    status = "error";
    if (culprit < 0 || depth[i] > depth[culprit]) culprit = i;
  }
  if (culprit < 0) {
    const children: number[][] = Array.from({ length: n }, () => []);
    for (let i = 0; i < n; i++) if (parentOf[i] >= 0) children[parentOf[i]].push(i);
    let best = -1;
    for (const i of order) {
      const self = selfTime(
        start[i],
        end[i],
        children[i].map((c) => [start[c], end[c]] as [number, number]),
      );
      if (self > best) {
        best = self;
        culprit = i;
      }
    }
  }

  const entries = [root, ...order.filter((i) => i !== root)].map((i) => entryOf(spans[i]));
  const path: string[] = [];
  for (let i = 0; i < entries.length; ) {
    let j = i + 1;
    while (j < entries.length && entries[j] === entries[i]) j++;
    path.push(j - i > 1 ? `${entries[i]}*${j - i}` : entries[i]);
    i = j;
  }
  const durationMs = recordDurationMs > 0 ? recordDurationMs : maxEnd / 1e6;
  return {
    path,
    rootOperation: entries[0],
    status,
    durationMs,
    culprit: spans[culprit].service.trim() || "unknown",
    orphans,
  };
}

/** A span's duration minus the time covered by its children (clipped to the span). */
function selfTime(s: number, e: number, kids: [number, number][]): number {
  const iv = kids
    .map(([a, b]) => [Math.max(a, s), Math.min(b, e)] as [number, number])
    .filter(([a, b]) => b > a)
    .sort((x, y) => x[0] - y[0]);
  let covered = 0;
  let curA = -1;
  let curB = -1;
  for (const [a, b] of iv) {
    if (a > curB) {
      if (curB > curA) covered += curB - curA;
      curA = a;
      curB = b;
    } else if (b > curB) curB = b;
  }
  if (curB > curA) covered += curB - curA;
  return e - s - covered;
}

/**
 * The path as text: hops joined by ";", and a hop in the same service as the one before it
 * written as ",operation" (the service once), so more of a long trace fits the sequence.
 */
export function pathText(path: readonly string[]): string {
  let out = "";
  let prev: string | null = null;
  for (const entry of path) {
    const i = entry.indexOf(":");
    const service = i < 0 ? entry : entry.slice(0, i);
    if (prev !== null && service === prev && i >= 0) out += `,${entry.slice(i + 1)}`;
    else out += `${out ? HOP : ""}${entry}`;
    prev = service;
  }
  return out;
}

/** Operations that hand a message to a queue or take it from one. */
const QUEUE_OP = /\b(publish|deliver|receive|consume)\b/i;
/** GenAI semantic conventions name an LLM call's span "chat <model>". */
const LLM_OP = /^(?:chat|text_completion|generate_content) (.+)$/;

/**
 * What drives a trace's latency, read off its path and written before it, so that a long path
 * cut at seq_len still shows it: the LLMs called, how many calls were repeats of an earlier one
 * (retries and redeliveries), how many queue hops, how many spans. E.g.
 * "llm qwen2.5:32b r1 q2 n17".
 */
export function latencyDrivers(path: readonly string[]): string {
  const llms: string[] = [];
  const seen = new Set<string>();
  let repeats = 0;
  let queue = 0;
  let spans = 0;
  for (const raw of path) {
    const star = /^(.*)\*(\d+)$/.exec(raw);
    const entry = star ? star[1] : raw;
    const times = star ? Number(star[2]) : 1;
    spans += times;
    repeats += seen.has(entry) ? times : times - 1;
    seen.add(entry);
    const op = entry.slice(entry.indexOf(":") + 1);
    if (QUEUE_OP.test(op)) queue += times;
    const llm = LLM_OP.exec(op)?.[1];
    if (llm && !llms.includes(llm)) llms.push(llm);
  }
  return `llm ${llms.length ? llms.join(",") : "-"} r${repeats} q${queue} n${spans}`;
}

/** Layout after the slots and their separator: [drivers][SEP][path text], PAD-filled. */
function encodePath(path: readonly string[], seqLen: number): Int32Array {
  const inputs = new Int32Array(seqLen);
  for (const s of SLOTS) inputs[s.position] = slotQuery(s);
  inputs[SLOTS.length] = SEP;
  const n = putText(inputs, TEXT_FROM, latencyDrivers(path), seqLen - TEXT_FROM - 1);
  inputs[TEXT_FROM + n] = SEP;
  const from = TEXT_FROM + n + 1;
  putText(inputs, from, pathText(path), seqLen - from);
  return inputs;
}

/** Where the path text starts: after the separator that ends the drivers. */
function pathFrom(ex: Example): number {
  const i = ex.inputs.indexOf(SEP, TEXT_FROM);
  return i < 0 ? TEXT_FROM : i + 1;
}

function builder(ctx: BuildContext, sink: DraftSink): RecordConsumer<TraceRecord> {
  const S = ctx.vocabSpec.seqLen;
  return {
    add(rec, ref) {
      const time = nsToMs(rec.start_ns);
      if (!(time >= ctx.window.start && time < ctx.window.end)) return sink.skipped("outside the window");
      const facts = analyseTrace(rec.spans, rec.duration_ms);
      if (typeof facts === "string") return sink.invalid(facts, ref);
      if (facts.orphans) sink.note("spans whose parent is missing (counted as roots)", facts.orphans);
      const inputs = encodePath(facts.path, S);
      sink.example({
        inputs,
        labels: ignoreLabels(S),
        classes: [
          `status:${facts.status}`,
          `latency:${latencyBucket(facts.durationMs)}`,
          `service:${facts.culprit}`,
        ],
        time,
        aux: new Float64Array(0),
        key: inputKey(inputs),
        uid: hashText(rec.trace_id),
      });
    },
    finish() {},
  };
}

/** The root operation of an encoded example: the path text up to the second hop. */
function rootOf(ex: Example): string {
  let s = "";
  for (let i = pathFrom(ex); i < ex.inputs.length; i++) {
    const b = ex.inputs[i] - BYTE_BASE;
    if (b < 0 || b > 255 || b === 0x3b || b === 0x2c) break;
    s += String.fromCharCode(b);
  }
  return s;
}

/** A hash of the whole encoded path: the path signature (operations, order, repeat counts). */
function signatureOf(inputs: Int32Array): number {
  return hash53(inputs.subarray(TEXT_FROM), 0x9a7);
}

/** The trace baselines: the majority per root operation and per path signature. */
export function traceBaselines(train: readonly Example[]): Baseline[] {
  const global = SLOTS.map(() => new Map<number, number>());
  const byRoot = new Map<string, Map<number, number>[]>();
  const byPath = new Map<number, Map<number, number>[]>();
  const slotCounts = () => SLOTS.map(() => new Map<number, number>());
  for (const ex of train) {
    const r = getOrAdd(byRoot, rootOf(ex), slotCounts);
    const p = getOrAdd(byPath, signatureOf(ex.inputs), slotCounts);
    SLOTS.forEach((s, j) => {
      bump(r[j], ex.labels[s.position]);
      bump(p[j], ex.labels[s.position]);
      bump(global[j], ex.labels[s.position]);
    });
  }
  const fallback = global.map((c) => majority(c) ?? -1);
  const picksOf = <K>(m: Map<K, Map<number, number>[]>) =>
    new Map([...m].map(([k, c]) => [k, c.map((x, j) => majority(x) ?? fallback[j])] as const));
  const byRootPicks = picksOf(byRoot);
  const byPathPicks = picksOf(byPath);
  const answer = (ex: Example, p: number[]) => {
    const out = new Int32Array(ex.inputs.length);
    SLOTS.forEach((s, j) => {
      out[s.position] = p[j];
    });
    return out;
  };
  const root: Baseline = {
    name: "majority_per_root_operation",
    predict: (ex) => answer(ex, byRootPicks.get(rootOf(ex)) ?? fallback),
  };
  return [
    root,
    {
      // A path never seen in train backs off to its root operation, then to the overall majority.
      name: "majority_per_path",
      predict: (ex) =>
        answer(ex, byPathPicks.get(signatureOf(ex.inputs)) ?? byRootPicks.get(rootOf(ex)) ?? fallback),
    },
  ];
}

export const traceOutcome: TaskModule<TraceOutcomeQuery, TraceOutcomeAnswer> = {
  name: "trace_outcome",
  source: "tempo",
  puzzleId: PUZZLE_IDS.trace_outcome,
  slots: SLOTS,
  metrics: {
    status_accuracy: "higher",
    latency_accuracy: "higher",
    culprit_accuracy: "higher",
    exact_all: "higher",
    mean_accuracy: "higher",
  },
  primary: "mean_accuracy",
  builder: builder as TaskModule["builder"],
  // The same signature the per-path baseline groups by: a path answers from its training outcomes.
  memoryKey: (inputs) => signatureOf(inputs).toString(36),
  encode(query, vocab) {
    if (!Array.isArray(query?.path) || !query.path.length || query.path.some((p) => typeof p !== "string"))
      throw new TaskInputError('trace_outcome needs { path: ["service:operation", ...] } (root first)');
    return {
      task: "trace_outcome",
      puzzleId: PUZZLE_IDS.trace_outcome,
      inputs: encodePath(normalisePath(query.path), vocab.encoding.seq_len),
      readouts: slotReadouts(SLOTS),
      aux: new Float64Array(0),
    };
  },
  decode(output, encoded, vocab: Vocab): TraceOutcomeAnswer {
    const a = decodeSlots(output, encoded, vocab);
    return {
      status: a.status as Answer<"ok" | "error">,
      latency: a.latency as Answer<LatencyBucket>,
      culprit: a.culprit,
    };
  },
  baselines: traceBaselines,
  score(examples, predictions) {
    return {
      task: "trace_outcome",
      examples: examples.length,
      primary: "mean_accuracy",
      metrics: scoreSlots(SLOTS, examples, predictions),
    };
  },
  describe(ex, vocab) {
    const from = pathFrom(ex);
    return {
      input: `${tokensToText(ex.inputs, vocab, from)} [${tokensToText(ex.inputs, vocab, TEXT_FROM, from - 1)}]`,
      labels: slotLabels(SLOTS, ex, vocab),
    };
  },
};
