// The dataset's quality report: per task what was read, what was invalid and why, the examples
// and label spread of each split, the baselines' scores; and the failures that refuse the build.
import type { DatasetSection } from "../../config/schema.js";
import type { RecordOf, SourceName } from "../collect/records.js";
import { scoreBaselines } from "../tasks/index.js";
import type { Draft, Example, RecordConsumer, TaskModule, TaskName } from "../tasks/types.js";
import { BIN_BASE, IGNORE, type Vocab } from "../tasks/vocab.js";
import type { QualityReport, TaskQuality } from "./manifest.js";
import type { BottomK } from "./sample.js";

export type Split = "train" | "val";

/** What the build keeps per task while it reads the window. */
export interface TaskState {
  task: TaskModule;
  enabled: boolean;
  skipReason?: string;
  consumer?: RecordConsumer<RecordOf<SourceName>>;
  records: number;
  invalid: Map<string, { count: number; examples: string[] }>;
  skipped: Map<string, number>;
  notes: Map<string, number>;
  candidates: Record<Split, number>;
  heaps: Record<Split, BottomK<Draft>>;
  valKeys: Set<number>;
  leaks: number;
}

/** The build's quality verdict over every task's state and examples. */
export function qualityReport(
  states: Map<TaskName, TaskState>,
  byTask: Map<TaskName, Record<Split, Example[]>>,
  vocab: Vocab,
  config: DatasetSection,
): QualityReport {
  const failures: string[] = [];
  const tasks: Record<string, TaskQuality> = {};
  let read = 0;
  let valid = 0;
  for (const [name, st] of states) {
    const ex = byTask.get(name);
    const invalidCount = [...st.invalid.values()].reduce((a, e) => a + e.count, 0);
    const q: TaskQuality = {
      status: ex ? "built" : "skipped",
      split_by: name === "code_infill" ? "file path" : "time",
      records_read: st.records,
      records_valid: st.records - invalidCount,
      invalid: [...st.invalid.entries()]
        .map(([reason, e]) => ({ reason, count: e.count, examples: e.examples }))
        .sort((a, b) => b.count - a.count || (a.reason < b.reason ? -1 : 1)),
      skipped: Object.fromEntries([...st.skipped.entries()].sort()),
      notes: Object.fromEntries([...st.notes.entries()].sort()),
      candidates: st.candidates,
      examples: { train: ex?.train.length ?? 0, val: ex?.val.length ?? 0 },
      dropped_as_leaks: st.leaks,
      val_inputs_seen_in_train: ex?.val.filter((e) => e.inputSeenInTrain).length ?? 0,
      label_distribution: ex ? labelDistribution(st.task, [...ex.train, ...ex.val], vocab) : {},
      baselines: {},
      best_baseline: null,
      primary_metric: st.task.primary,
    };
    if (!ex) q.reason = st.skipReason;
    else if (!st.records) {
      q.status = "skipped";
      q.reason = `no ${st.task.source} records in the window`;
    }
    if (q.status === "built" && ex) {
      read += st.records;
      valid += q.records_valid;
      const total = ex.train.length + ex.val.length;
      const min = config.tasks[name].min_examples;
      const leaks = st.leaks
        ? ` (${st.leaks} train examples were dropped because their input also occurs in validation; see dataset.tasks.${name}.drop_shared_inputs)`
        : "";
      if (total < min)
        failures.push(
          `${name} has ${total} examples, fewer than its minimum ${min} (dataset.tasks.${name}.min_examples)${leaks}`,
        );
      else if (!ex.train.length) failures.push(`${name} has no training examples${leaks}`);
      else if (!ex.val.length)
        failures.push(
          `${name} has no validation examples (nothing in the newest ${pct(config.val_fraction)} of the window)`,
        );
      if (ex.train.length && ex.val.length) {
        const b = scoreBaselines(name, ex.train, ex.val, vocab);
        for (const [bn, s] of Object.entries(b.scores)) q.baselines[bn] = s.metrics;
        q.best_baseline = b.best;
      }
    }
    tasks[name] = q;
  }
  const built = Object.values(tasks).filter((t) => t.status === "built");
  if (!built.length)
    failures.push(
      `no task has data (${Object.entries(tasks)
        .map(([n, t]) => `${n}: ${t.reason}`)
        .join("; ")})`,
    );
  const validRatio = read ? valid / read : 1;
  if (built.length && validRatio < config.min_valid_ratio) {
    const worst = built
      .flatMap((t) => t.invalid.slice(0, 2).map((i) => `${i.count} × ${i.reason}`))
      .slice(0, 4)
      .join(", ");
    failures.push(
      `only ${pct(validRatio)} of records are valid, below ${pct(config.min_valid_ratio)} (dataset.min_valid_ratio): ${worst}`,
    );
  }
  return { passed: !failures.length, failures, valid_ratio: validRatio, tasks };
}

function labelDistribution(
  task: TaskModule,
  examples: Example[],
  vocab: Vocab,
): Record<string, Record<string, number>> {
  const out: Record<string, Record<string, number>> = {};
  if (task.slots.length) {
    for (const s of task.slots) {
      const m = new Map<string, number>();
      for (const ex of examples)
        bump(m, vocab.className(ex.labels[s.position])?.replace(/^[^:]*:/, "") ?? "?");
      out[s.name] = Object.fromEntries(
        [...m.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)),
      );
    }
    return out;
  }
  if (task.name === "code_infill") {
    const spans = new Map<string, number>();
    const masked = new Map<string, number>();
    for (const ex of examples) {
      let n = 0;
      let runs = 0;
      for (let i = 0; i < ex.labels.length; i++) {
        if (ex.labels[i] === IGNORE) continue;
        n++;
        if (i === 0 || ex.labels[i - 1] === IGNORE) runs++;
      }
      bump(spans, String(runs));
      bump(masked, `${Math.min(50, Math.floor((100 * n) / ex.labels.length / 5) * 5)}%`);
    }
    return {
      spans_per_example: Object.fromEntries([...spans].sort()),
      masked_share: Object.fromEntries([...masked].sort()),
    };
  }
  // metric_forecast: label bins in eight groups.
  const groups = new Map<string, number>();
  const width = Math.ceil(vocab.numBins / 8);
  for (const ex of examples) {
    for (const l of ex.labels) {
      if (!vocab.isBin(l)) continue;
      const g = Math.floor((l - BIN_BASE) / width);
      bump(groups, `bins ${g * width}-${Math.min(vocab.numBins, (g + 1) * width) - 1}`);
    }
  }
  return {
    label_bins: Object.fromEntries(
      [...groups].sort((a, b) => parseInt(a[0].slice(5), 10) - parseInt(b[0].slice(5), 10)),
    ),
  };
}

export function bump(m: Map<string, number>, k: string, n = 1): void {
  m.set(k, (m.get(k) ?? 0) + n);
}

function pct(x: number): string {
  return `${Math.round(x * 1000) / 10}%`;
}
