// What the raw store holds: one zod schema per record kind. The collectors validate a record
// before writing it, and every reader validates it again on read.
import * as z from "zod";

export const SOURCES = ["code", "prometheus", "loki", "tempo"] as const;
export type SourceName = (typeof SOURCES)[number];

/** A source file of the agent's code repository, already redacted. */
export const CodeFileRecord = z
  .object({
    kind: z.literal("code_file"),
    path: z.string().min(1),
    language: z.string(),
    size: z.number().int().min(0),
    /** sha256 of the file as it is on disk (before redaction): the "unchanged" check uses it. */
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
    commit: z.string().nullable(),
    content: z.string(),
    redactions: z.number().int().min(0),
    collected_at: z.string(),
  })
  .strict();
export type CodeFileRecord = z.infer<typeof CodeFileRecord>;

/** A Prometheus sample value as the API means it: a float, or one of the special values. */
export const SampleValue = z.union([z.number(), z.enum(["NaN", "+Inf", "-Inf"])]);
export type SampleValue = z.infer<typeof SampleValue>;

/** One series' points from one query chunk, with the series labels. Times are unix seconds. */
export const MetricSeriesRecord = z
  .object({
    kind: z.literal("metric_series"),
    query: z.string().min(1),
    promql: z.string(),
    labels: z.record(z.string(), z.string()),
    step_s: z.number().positive(),
    start: z.number(),
    end: z.number(),
    points: z.array(z.tuple([z.number(), SampleValue])),
  })
  .strict();
export type MetricSeriesRecord = z.infer<typeof MetricSeriesRecord>;

/** One log entry with its stream labels. ts_ns is nanoseconds since the epoch, as a decimal string. */
export const LogEntryRecord = z
  .object({
    kind: z.literal("log_entry"),
    query: z.string().min(1),
    ts_ns: z.string().regex(/^\d{1,20}$/),
    labels: z.record(z.string(), z.string()),
    line: z.string(),
    metadata: z.record(z.string(), z.string()).optional(),
  })
  .strict();
export type LogEntryRecord = z.infer<typeof LogEntryRecord>;

export const SpanRecord = z
  .object({
    trace_id: z.string().regex(/^[0-9a-f]{32}$/),
    span_id: z.string().regex(/^[0-9a-f]{16}$/),
    parent_span_id: z
      .string()
      .regex(/^[0-9a-f]{16}$/)
      .nullable(),
    service: z.string(),
    name: z.string(),
    kind: z.string(),
    start_ns: z.string().regex(/^\d{1,20}$/),
    duration_ns: z.number().min(0),
    status: z.enum(["unset", "ok", "error"]),
    status_message: z.string().optional(),
    attributes: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])),
  })
  .strict();
export type SpanRecord = z.infer<typeof SpanRecord>;

/** One whole trace: its spans flattened, in start order. */
export const TraceRecord = z
  .object({
    kind: z.literal("trace"),
    query: z.string().min(1),
    trace_id: z.string().regex(/^[0-9a-f]{32}$/),
    root_service: z.string(),
    root_name: z.string(),
    start_ns: z.string().regex(/^\d{1,20}$/),
    duration_ms: z.number().min(0),
    spans: z.array(SpanRecord),
    /** Tempo said the trace is PARTIAL (some blocks not searched); absent means complete. */
    partial: z.boolean().optional(),
  })
  .strict();
export type TraceRecord = z.infer<typeof TraceRecord>;

export const RawRecord = z.discriminatedUnion("kind", [
  CodeFileRecord,
  MetricSeriesRecord,
  LogEntryRecord,
  TraceRecord,
]);
export type RawRecord = z.infer<typeof RawRecord>;

export const RECORD_SCHEMA_BY_SOURCE = {
  code: CodeFileRecord,
  prometheus: MetricSeriesRecord,
  loki: LogEntryRecord,
  tempo: TraceRecord,
} as const;

export type RecordOf<S extends SourceName> = z.infer<(typeof RECORD_SCHEMA_BY_SOURCE)[S]>;
