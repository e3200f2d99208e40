// Pipeline runs: training, the gate, the schedule, retries, retention and the anomaly scan.
import * as z from "zod";
import { DurationSchema, positiveInt } from "./fields.js";

const taskWeight = z.number().int().min(1).max(16);

/** The training loop. Steps are optimiser steps (one supervision step of one batch each). */
/** The precisions the built-in trainer's matrix products can run in (train.matmul). */
export const MATMUL_PRECISIONS = ["float32", "bf16"] as const;
export type MatmulPrecision = (typeof MATMUL_PRECISIONS)[number];

export const TrainSchema = z
  .object({
    seed: z.number().int().min(0).default(0),
    batch_size: positiveInt.max(4096).default(32),
    max_steps: positiveInt.default(2000),
    lr: z.number().positive().default(3e-4),
    /** Linear warm-up, then cosine down to lr * lr_min_ratio (1 keeps it constant, as the paper). */
    warmup_steps: z.number().int().min(0).default(100),
    lr_min_ratio: z.number().min(0).max(1).default(0.1),
    weight_decay: z.number().min(0).default(0.1),
    beta1: z.number().min(0).lt(1).default(0.9),
    beta2: z.number().min(0).lt(1).default(0.95),
    /** The task-embedding table (sign-SGD, as the reference trains its puzzle embeddings). */
    task_emb_lr: z.number().min(0).default(1e-2),
    task_emb_weight_decay: z.number().min(0).default(0.1),
    ema_decay: z.number().min(0).lt(1).default(0.999),
    /**
     * lm_head's init: "reference" is ref_trm.py's random init; "embeddings" starts it from twice
     * the transposed token embeddings, which the demo's runs learnt faster from (README).
     */
    head_init: z.enum(["reference", "embeddings"]).default("reference"),
    /**
     * How many times each epoch visits an example of a task (1 for a task not named): a task far
     * behind its baselines can get a larger share of the steps than one far ahead.
     */
    task_weights: z
      .object({
        code_infill: taskWeight,
        log_triage: taskWeight,
        metric_forecast: taskWeight,
        trace_outcome: taskWeight,
      })
      .partial()
      .strict()
      .default({}),
    /** Learning rate of a fine-tune from the champion, as a share of lr. */
    fine_tune_lr_scale: z.number().positive().max(1).default(0.3),
    /** Validation (with the EMA weights) every this many steps, on a fixed sample of the val split. */
    eval_interval: positiveInt.default(200),
    eval_examples: positiveInt.default(256),
    /** Evaluations without a better validation score before training stops early. */
    patience: positiveInt.default(5),
    checkpoint_interval: positiveInt.default(100),
    /** Checkpoints kept besides the best one. */
    keep_checkpoints: positiveInt.default(2),
    /** One metrics.jsonl line (and one progress event) every this many steps. */
    log_interval: positiveInt.default(10),
    /**
     * The precision of training's matrix products on the native backend. "bf16" rounds both
     * operands to bfloat16 and sums in float32 (weights, optimiser and attention stay float32);
     * it needs AVX-512 BF16, and elsewhere training runs in float32 and says so.
     */
    matmul: z.enum(MATMUL_PRECISIONS).default("float32"),
  })
  .strict();
export type TrainSection = z.infer<typeof TrainSchema>;

/** The evaluation gate a candidate must pass to be promoted automatically. */
export const GateSchema = z
  .object({
    /** Promote a candidate that passes to champion; off makes it the challenger instead. */
    auto_promote: z.boolean().default(true),
    /** Every enabled task must beat its baseline by more than this (score units, 0..1). */
    baseline_margin: z.number().min(0).max(1).default(0),
    /** No task may score more than this below the champion on the same examples. */
    max_regression: z.number().min(0).max(1).default(0.02),
    /** Optional absolute floors per task, e.g. { log_triage: 0.8 }. */
    floors: z.record(z.string(), z.number().min(0).max(1)).default({}),
    /** Tasks with fewer validation examples are reported but not judged (too few to tell). */
    min_examples: z.number().int().min(1).default(20),
    /**
     * What "beats" and "regresses" compare: the point difference, or the paired bootstrap 95%
     * interval's lower bound (above baseline_margin; not below -max_regression).
     */
    compare: z.enum(["point", "interval"]).default("interval"),
  })
  .strict();
export type GateSection = z.infer<typeof GateSchema>;

const CronPatternSchema = z.string().min(9).max(120);

/** croner jobs per agent; times are read in `timezone`. */
export const ScheduleSchema = z
  .object({
    enabled: z.boolean().default(true),
    timezone: z.string().min(1).default("UTC"),
    collect: CronPatternSchema.default("0 3 * * *"),
    train: CronPatternSchema.default("0 2 1 * *"),
    /** Agents' trainings start this far apart (in config order), so two never start together. */
    stagger: DurationSchema.prefault("1h"),
    /** At start, a job that was due while the process was down runs once. */
    catch_up: z.boolean().default(true),
    /** How far back a source keeps data: a catch-up collection cannot reach further. */
    retention: z
      .object({
        prometheus: DurationSchema.prefault("7d"),
        loki: DurationSchema.prefault("7d"),
        tempo: DurationSchema.prefault("1d"),
      })
      .strict()
      .prefault({}),
    /** Per-agent overrides; null turns a job off for that agent. */
    agents: z
      .record(
        z.string(),
        z
          .object({
            collect: CronPatternSchema.nullable().optional(),
            train: CronPatternSchema.nullable().optional(),
            timezone: z.string().min(1).optional(),
          })
          .strict(),
      )
      .default({}),
  })
  .strict();
export type ScheduleSection = z.infer<typeof ScheduleSchema>;

/** Run orchestration: retries of transient stage failures, resume. */
export const RunsSchema = z
  .object({
    /** Extra attempts of a stage that failed for a transient reason (timeout, connection, upload). */
    retries: z.number().int().min(0).max(10).default(2),
    backoff: DurationSchema.prefault("30s"),
    backoff_max: DurationSchema.prefault("10m"),
    /** Resume interrupted runs when the server (or scheduler) starts. */
    resume_on_start: z.boolean().default(true),
    /** How long an agent's run lease (in the store) outlives its last renewal: a crashed run's agent is free again after this. */
    lease: DurationSchema.prefault("60s"),
  })
  .strict();
export type RunsSection = z.infer<typeof RunsSchema>;

/**
 * What gc keeps (`trm-forge store gc`, and after every run). Whatever these say, gc never deletes
 * the champion, the challenger, the previous champion, a version an alias pointed to within
 * protect_alias_days, a run that can still be resumed, the dataset of a kept version, or the
 * newest dataset.
 */
export const RetentionSchema = z
  .object({
    /** Run gc after every run (scheduled collections included); a failure never fails the run. */
    auto: z.boolean().default(true),
    /** Raw days kept beyond `dataset.window`, so a rebuild after downtime still finds its window. */
    raw_days_beyond_window: z.number().int().min(0).max(3650).default(14),
    /** Newest datasets kept (the newest one and those of kept versions come on top). */
    datasets: z.number().int().min(1).max(1000).default(2),
    /** Newest finished runs kept; their checkpoints are dropped once they end. */
    runs: z.number().int().min(1).max(100_000).default(60),
    /** Newest model versions kept besides the protected ones. */
    versions: z.number().int().min(1).max(1000).default(4),
    /** A version an alias pointed to within this many days is kept. */
    protect_alias_days: z.number().int().min(0).max(3650).default(90),
  })
  .strict();
export type RetentionSection = z.infer<typeof RetentionSchema>;

/** The anomaly scan (anomalies_scan, `trm-forge scan`): the champion's surprise at recent data. */
export const ScanSchema = z
  .object({
    /** The window when the caller names none. */
    default_window: DurationSchema.prefault("1h"),
    /** The largest window a caller may ask for (the scan reads it whole). */
    max_window: DurationSchema.prefault("24h"),
    /** Findings group records per service in buckets of this width. */
    bucket: DurationSchema.prefault("5m"),
    /**
     * The period before the window that is "normal here": its error templates count as known, and
     * each record's surprise is measured against the model's surprise at the same kind of record in it.
     */
    reference: DurationSchema.prefault("24h"),
    /** Logs and traces of the reference period read and scored, at most per source (the newest of it). */
    reference_records: z.number().int().min(1).max(1_000_000).default(20_000),
    /** A record kind's usual surprise: this quantile of its surprise in the reference period. */
    reference_quantile: z.number().min(0.5).max(1).default(0.95),
    /**
     * A record is anomalous when it surprises the model this many nats more than its kind usually
     * does in the reference period (2: about 7 times less likely than usual). Defaults tuned on the
     * scan bench's training days.
     */
    record_threshold: z.number().positive().default(2),
    /** A service's episode (its buckets with anomalies, at most two apart) is a finding at this summed excess surprise. */
    min_score: z.number().min(0).default(8),
    /** ... and with at least this many anomalous records. */
    min_records: z.number().int().min(1).default(3),
    /** Every slot's top answer below this confidence: the input counts as novel. */
    low_confidence: z.number().min(0).max(1).default(0.35),
    /** Records read per source and window, at most. */
    max_records: z.number().int().min(1).max(10_000_000).default(200_000),
    /** Findings returned when the caller names no top_k. */
    top_k: z.number().int().min(1).max(100).default(10),
    /** Scan each agent after its daily scheduled collect (the trm_forge_anomaly_score gauge follows). */
    schedule: z.boolean().default(false),
  })
  .strict();
export type ScanSection = z.infer<typeof ScanSchema>;
