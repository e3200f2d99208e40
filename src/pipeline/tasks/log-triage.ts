// log_triage: a normalised log line in; its level, its service and whether it falls in an
// incident window out. Layout: [level][service][incident] slots, a separator, then the line.
import type { LogEntryRecord } from "../collect/records.js";
import type { IncidentIndex } from "../incidents.js";
import {
  bump,
  decodeSlots,
  ignoreLabels,
  inputKey,
  majority,
  putText,
  scoreSlots,
  serviceOf,
  slotLabels,
  slotQuery,
  slotReadouts,
  tokensToText,
} from "./common.js";

export { type LogFacts, nsToMs } from "./facts.js";

import { type LogFacts, nsToMs } from "./facts.js";
import { hashText } from "./hash.js";
import { garbageShare, LEVELS, logLevel, normaliseLogLine, statedLevel } from "./log-normalize.js";
import {
  type Answer,
  type Baseline,
  type BuildContext,
  type Draft,
  type DraftSink,
  type Encoded,
  type Example,
  type LabelSlot,
  type ModelOutput,
  PUZZLE_IDS,
  type RecordConsumer,
  TaskInputError,
  type TaskModule,
} from "./types.js";
import { SEP, type Vocab } from "./vocab.js";

export interface LogTriageQuery {
  /** The raw line, as Loki returns it (already redacted). */
  line: string;
}

export interface LogTriageAnswer {
  level: Answer<string>;
  service: Answer<string>;
  incident: Answer<boolean>;
  /**
   * Present when the line states its level in a field (level=error, "level":"error"): the level
   * is then the stated one ("input"), and model_level what the model answered.
   */
  level_source?: "input";
  model_level?: string | null;
}

const SLOTS: readonly LabelSlot[] = [
  { name: "level", position: 0, namespace: "level" },
  { name: "service", position: 1, namespace: "service" },
  { name: "incident", position: 2, namespace: "incident" },
];
const TEXT_FROM = SLOTS.length + 1;
/** Longer lines are cut before normalising: only the first seq_len bytes survive anyway. */
const MAX_SCAN = 16;

export function logFacts(rec: LogEntryRecord, serviceLabels: readonly string[]): LogFacts {
  return {
    time: nsToMs(rec.ts_ns),
    service:
      serviceOf(rec.labels, serviceLabels) ?? (rec.metadata ? serviceOf(rec.metadata, serviceLabels) : null),
    level: logLevel(rec.line, rec.labels, rec.metadata),
  };
}

function encodeLine(line: string, seqLen: number): Int32Array {
  const inputs = new Int32Array(seqLen);
  for (const s of SLOTS) inputs[s.position] = slotQuery(s);
  inputs[SLOTS.length] = SEP;
  const text = normaliseLogLine(line.length > seqLen * MAX_SCAN ? line.slice(0, seqLen * MAX_SCAN) : line);
  putText(inputs, TEXT_FROM, text, seqLen - TEXT_FROM);
  return inputs;
}

function statedIndex(line: string): number {
  const l = statedLevel(line);
  return l ? LEVELS.indexOf(l) : -1;
}

function builder(ctx: BuildContext, sink: DraftSink): RecordConsumer<LogEntryRecord> {
  const S = ctx.vocabSpec.seqLen;
  return {
    add(rec, ref) {
      const facts = logFacts(rec, ctx.serviceLabels);
      if (!(facts.time >= ctx.window.start && facts.time < ctx.window.end)) {
        sink.skipped("outside the window");
        return;
      }
      if (!rec.line.trim()) return sink.invalid("empty line", ref);
      if (garbageShare(rec.line) > 0.3) return sink.invalid("not text (undecodable or control bytes)", ref);
      if (!facts.service)
        return sink.invalid(`no service label (looked for ${ctx.serviceLabels.join(", ")})`, ref);
      const inputs = encodeLine(rec.line, S);
      if (inputs[TEXT_FROM] === 0) return sink.invalid("nothing left after normalising", ref);
      const draft: Draft = {
        inputs,
        labels: ignoreLabels(S),
        classes: [`level:${facts.level}`, `service:${facts.service}`, null],
        time: facts.time,
        aux: new Float64Array(0),
        key: inputKey(inputs),
        uid: hashText(`${rec.ts_ns}\u0000${facts.service}\u0000${rec.line}`),
        incident: { service: facts.service, time: facts.time },
      };
      sink.example(draft);
    },
    finish() {},
  };
}

function baselines(train: readonly Example[]): Baseline[] {
  const counts = SLOTS.map(() => new Map<number, number>());
  for (const ex of train) {
    SLOTS.forEach((s, j) => {
      bump(counts[j], ex.labels[s.position]);
    });
  }
  const picks = counts.map((c) => majority(c));
  return [
    {
      name: "majority",
      predict(ex) {
        const out = new Int32Array(ex.inputs.length);
        SLOTS.forEach((s, j) => {
          out[s.position] = picks[j] ?? -1;
        });
        return out;
      },
    },
  ];
}

export const logTriage: TaskModule<LogTriageQuery, LogTriageAnswer> = {
  name: "log_triage",
  source: "loki",
  puzzleId: PUZZLE_IDS.log_triage,
  slots: SLOTS,
  metrics: {
    level_accuracy: "higher",
    service_accuracy: "higher",
    incident_accuracy: "higher",
    exact_all: "higher",
    mean_accuracy: "higher",
  },
  primary: "exact_all",
  builder: builder as TaskModule["builder"],
  resolve(draft: Draft, incidents: IncidentIndex) {
    const { service, time } = draft.incident!;
    draft.classes[2] = incidents.inIncident(service, time) ? "incident:yes" : "incident:no";
  },
  encode(query, vocab) {
    if (typeof query?.line !== "string") throw new TaskInputError("log_triage needs { line: string }");
    if (!query.line.trim()) throw new TaskInputError("log_triage: the line is empty");
    return {
      task: "log_triage",
      puzzleId: PUZZLE_IDS.log_triage,
      inputs: encodeLine(query.line, vocab.encoding.seq_len),
      readouts: slotReadouts(SLOTS),
      // The whole line's stated level (index into LEVELS, -1: none); the inputs may be cut short.
      aux: Float64Array.of(statedIndex(query.line)),
    };
  },
  decode(output: ModelOutput, encoded: Encoded, vocab: Vocab): LogTriageAnswer {
    const a = decodeSlots(output, encoded, vocab);
    const inc = a.incident;
    const answer: LogTriageAnswer = {
      level: a.level,
      service: a.service,
      incident: { value: inc.value === null ? null : inc.value === "yes", confidence: inc.confidence },
    };
    // A level the line states outright is not the model's to guess (encode kept it in aux).
    const k = encoded.aux[0];
    const stated = k >= 0 ? LEVELS[k] : null;
    if (stated) {
      answer.level = { value: stated, confidence: 1 };
      answer.level_source = "input";
      answer.model_level = a.level.value;
    }
    return answer;
  },
  baselines,
  score(examples, predictions) {
    return {
      task: "log_triage",
      examples: examples.length,
      primary: "exact_all",
      metrics: scoreSlots(SLOTS, examples, predictions),
    };
  },
  describe(ex, vocab) {
    return { input: tokensToText(ex.inputs, vocab, TEXT_FROM), labels: slotLabels(SLOTS, ex, vocab) };
  },
};
