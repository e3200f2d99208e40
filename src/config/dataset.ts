// The dataset build: its window, the tasks and the incident join.
import * as z from "zod";
import { DurationSchema, positiveInt } from "./fields.js";

/**
 * Drop train examples whose input also occurs in validation. On by default where an input fixes
 * its answer (code windows); off where inputs repeat by nature (log templates, call paths, flat
 * series) and dropping them would leave train with only the rare cases. Validation marks the
 * examples whose input train holds, either way.
 */
const dropShared = (on: boolean) => z.boolean().default(on);

const taskBase = {
  enabled: z.boolean().default(true),
  /** Examples kept per task (train + validation; train only with max_val_examples), sampled with the seed. */
  max_examples: positiveInt.default(20000),
  /**
   * Validation examples kept per task, in place of max_examples' val_fraction share: a larger
   * validation set narrows the evaluation's intervals and keeps the same training examples (the
   * vocabulary, counted over both splits, may gain classes).
   */
  max_val_examples: positiveInt.optional(),
  /** The build fails when an enabled task with data ends up with fewer examples. */
  min_examples: z.number().int().min(0).default(50),
};

/** The incident join: when a (service, time) counts as "in incident" (log_triage labels, knowledge card). */
export const IncidentsSchema = z
  .object({
    /** Signals are counted per bucket of this width. */
    bucket: DurationSchema.prefault("5m"),
    /** A time within this distance of a flagged bucket is in incident. */
    window: DurationSchema.prefault("15m"),
    /** Share of a service's traces in a bucket with an error span. */
    trace_error_ratio: z.number().gt(0).max(1).default(0.2),
    min_traces: positiveInt.default(3),
    /** `up == 0` for the service's target. */
    up_down: z.boolean().default(true),
    /** Error-log count above median + k * 1.4826 * MAD of the service's own buckets. */
    log_error_mad_k: z.number().positive().default(3),
    min_error_logs: positiveInt.default(5),
  })
  .strict();

/** The dataset build (tasks, split, quality gate). */
export const DatasetSchema = z
  .object({
    window: DurationSchema.prefault("30d"),
    seq_len: z.number().int().min(64).max(4096).default(128),
    seed: z.number().int().min(0).default(0),
    /** The newest share of the window that is validation. */
    val_fraction: z.number().gt(0).lt(1).default(0.2),
    min_valid_ratio: z.number().min(0).max(1).default(0.9),
    num_bins: z.number().int().min(4).max(1024).default(64),
    /** Services beyond this many (least frequent first) share one class. */
    max_services: positiveInt.default(256),
    /** Labels that name a service, first match wins (logs, `up` series). */
    service_labels: z
      .array(z.string().min(1))
      .min(1)
      .default(["service_name", "service", "app", "app_kubernetes_io_name", "job", "container"]),
    tasks: z
      .object({
        code_infill: z
          .object({
            ...taskBase,
            drop_shared_inputs: dropShared(true),
            mask_fraction: z.number().gt(0).max(0.5).default(0.15),
            max_spans: z.number().int().min(1).max(8).default(3),
            max_windows_per_file: positiveInt.default(16),
          })
          .strict()
          .prefault({}),
        log_triage: z
          .object({ ...taskBase, drop_shared_inputs: dropShared(false) })
          .strict()
          .prefault({}),
        metric_forecast: z
          .object({
            ...taskBase,
            drop_shared_inputs: dropShared(false),
            /** K: points in (history) and points out (forecast). */
            points: z.number().int().min(2).max(256).default(24),
            step: DurationSchema.prefault("1h"),
            /** Points between successive forecast origins. */
            stride: positiveInt.default(6),
            /** Largest |value - median| / IQR that still has its own bin. */
            z_max: z.number().positive().default(20),
            /** Largest share of missing history points. */
            max_missing: z.number().min(0).max(1).default(0.25),
          })
          .strict()
          .prefault({}),
        trace_outcome: z
          .object({ ...taskBase, drop_shared_inputs: dropShared(false) })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    incidents: IncidentsSchema.prefault({}),
  })
  .strict();

export type DatasetSection = z.infer<typeof DatasetSchema>;
export type IncidentsSection = z.infer<typeof IncidentsSchema>;
