// build(records, window) -> examples for one task, all in memory: for a handful of records
// (tests, tools). The dataset build streams the same builders over the whole raw store.
import type { RecordOf, SourceName } from "../collect/records.js";
import { IncidentIndex } from "../incidents.js";
import { fillSlots } from "./common.js";
import { lagsFor } from "./metric-forecast.js";
import type { Draft, Example, RecordRef, TaskModule, TaskWindow } from "./types.js";
import { type EncodingSpec, Vocab } from "./vocab.js";

export interface BuildExamplesOptions {
  window: TaskWindow;
  seqLen?: number;
  numBins?: number;
  seed?: number;
  serviceLabels?: readonly string[];
  /** The task's settings (dataset.tasks.<task> keys; metric_forecast also stepMs). */
  settings?: Record<string, unknown>;
  /** Class ids come from this vocabulary (grown with new classes); a fresh one otherwise. */
  vocab?: Vocab;
  /** Decides deferred labels (log_triage incident-linked); none means no incident. */
  incidents?: IncidentIndex;
}

export interface BuiltExamples {
  examples: Example[];
  vocab: Vocab;
  invalid: { reason: string; ref?: RecordRef }[];
  skipped: Record<string, number>;
  notes: Record<string, number>;
}

export const DEFAULT_SERVICE_LABELS = [
  "service_name",
  "service",
  "app",
  "app_kubernetes_io_name",
  "job",
  "container",
];

export function buildExamples<S extends SourceName>(
  task: TaskModule,
  records: Iterable<RecordOf<S>>,
  opts: BuildExamplesOptions,
): BuiltExamples {
  const seqLen = opts.vocab?.encoding.seq_len ?? opts.seqLen ?? 128;
  const numBins = opts.vocab?.numBins ?? opts.numBins ?? 64;
  const drafts: Draft[] = [];
  const invalid: BuiltExamples["invalid"] = [];
  const skipped: Record<string, number> = {};
  const notes: Record<string, number> = {};
  const consumer = task.builder(
    {
      window: opts.window,
      vocabSpec: { seqLen, numBins },
      seed: opts.seed ?? 0,
      serviceLabels: opts.serviceLabels ?? DEFAULT_SERVICE_LABELS,
      settings: opts.settings ?? {},
    },
    {
      example: (d) => drafts.push(d),
      invalid: (reason, ref) => invalid.push({ reason, ref }),
      skipped: (reason, n = 1) => {
        skipped[reason] = (skipped[reason] ?? 0) + n;
      },
      note: (what, n = 1) => {
        notes[what] = (notes[what] ?? 0) + n;
      },
    },
  );
  let line = 0;
  for (const r of records) consumer.add(r as RecordOf<SourceName>, { segment: "(memory)", line: ++line });
  consumer.finish();
  const index = opts.incidents ?? new IncidentIndex([], 0);
  if (task.resolve) for (const d of drafts) task.resolve(d, index);
  const classes = drafts.flatMap((d) => d.classes.filter((c): c is string => c !== null));
  const s = opts.settings ?? {};
  const points = (s.points as number) ?? 24;
  const encoding: EncodingSpec = {
    seq_len: seqLen,
    metric_forecast: {
      points,
      step_ms: (s.stepMs as number) ?? 3_600_000,
      z_max: (s.z_max as number) ?? 20,
      lag_days: lagsFor(seqLen, points),
    },
  };
  const vocab = opts.vocab ? opts.vocab.extend(classes) : Vocab.create({ numBins, encoding, classes });
  const examples = drafts.map((d): Example => {
    const labels = Int32Array.from(d.labels);
    fillSlots(task.name, task.slots, labels, d.classes, vocab, (_s, name) => name);
    return { task: task.name, inputs: d.inputs, labels, time: d.time, aux: d.aux };
  });
  return { examples, vocab, invalid, skipped, notes };
}
