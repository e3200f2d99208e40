// manifest.json of a dataset and its quality report. The reader validates the manifest with
// this schema before it trusts a single byte of the arrays.
import * as z from "zod";

export const DATASET_FORMAT = "trm-forge/dataset";
export const DATASET_VERSION = 1;

const Count = z.number().int().min(0);
const Sha = z.string().regex(/^[0-9a-f]{64}$/);

export const InvalidReason = z
  .object({ reason: z.string(), count: Count, examples: z.array(z.string()) })
  .strict();

export const TaskQuality = z
  .object({
    status: z.enum(["built", "skipped"]),
    /** Why a task was skipped. */
    reason: z.string().optional(),
    split_by: z.enum(["time", "file path"]),
    records_read: Count,
    records_valid: Count,
    invalid: z.array(InvalidReason),
    skipped: z.record(z.string(), Count),
    notes: z.record(z.string(), Count),
    /** Examples before the caps and the leak check. */
    candidates: z.object({ train: Count, val: Count }).strict(),
    examples: z.object({ train: Count, val: Count }).strict(),
    /** Train examples dropped because the same input is in validation. */
    dropped_as_leaks: Count,
    /** Validation examples whose input train also holds (when drop_shared_inputs is off). */
    val_inputs_seen_in_train: Count,
    label_distribution: z.record(z.string(), z.record(z.string(), Count)),
    /** Each baseline's metrics on validation (fitted on train). */
    baselines: z.record(z.string(), z.record(z.string(), z.number())),
    best_baseline: z.string().nullable(),
    primary_metric: z.string(),
  })
  .strict();
export type TaskQuality = z.infer<typeof TaskQuality>;

export const QualityReport = z
  .object({
    passed: z.boolean(),
    failures: z.array(z.string()),
    valid_ratio: z.number(),
    tasks: z.record(z.string(), TaskQuality),
  })
  .strict();
export type QualityReport = z.infer<typeof QualityReport>;

export const FileEntry = z.object({ sha256: Sha, bytes: Count }).strict();

export const Manifest = z
  .object({
    format: z.literal(DATASET_FORMAT),
    version: z.literal(DATASET_VERSION),
    id: z.string().regex(/^ds-\d{8}-[0-9a-f]{12}$/),
    agent: z.string().min(1),
    window: z.object({ start: z.string(), end: z.string(), split_at: z.string(), days: z.number() }).strict(),
    seq_len: z.number().int().min(1),
    tasks: z.array(z.string()),
    puzzle_identifiers: z.array(z.string()),
    num_puzzle_identifiers: z.number().int().min(1),
    config: z.record(z.string(), z.unknown()),
    sources: z.record(z.string(), z.object({ enabled: z.boolean(), segments: Count }).strict()),
    segments: z.array(z.object({ key: z.string(), sha256: Sha, records: Count }).strict()),
    vocab: z.object({ size: Count, revision: z.number().int(), sha256: Sha }).strict(),
    counts: z
      .object({
        train: Count,
        val: Count,
        by_task: z.record(z.string(), z.object({ train: Count, val: Count }).strict()),
      })
      .strict(),
    split: z
      .object({
        val_fraction: z.number(),
        split_at: z.string(),
        by_task: z.record(z.string(), z.enum(["time", "file path"])),
      })
      .strict(),
    incidents: Count,
    files: z.record(z.string(), FileEntry),
    quality: QualityReport,
  })
  .strict();
export type Manifest = z.infer<typeof Manifest>;
