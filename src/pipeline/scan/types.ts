// The anomaly scan's shapes: the model it asks, the per-record scores and the ranked findings. The
// zod schemas are the stored form (scans/<agent>/latest.json) and the MCP tool's output.
import * as z from "zod";
import type { Encoded } from "../tasks/types.js";
import type { Vocab } from "../tasks/vocab.js";

/** The sources a scan reads: the three the model has a task for. */
export const SCAN_SOURCES = ["loki", "tempo", "prometheus"] as const;
export type ScanSource = (typeof SCAN_SOURCES)[number];

/**
 * What the scan needs of a model: its vocabulary and per-position probabilities. The served
 * model (src/serve) has this shape; the scan holds no reference to serving.
 */
export interface ScanModel {
  readonly version: string;
  readonly vocab: Vocab;
  predict(encoded: Encoded): Promise<{ probs: Float32Array }>;
}

/** What drove a record's or a finding's score. */
export const SIGNALS = [
  "log_level",
  "log_service",
  "log_incident",
  "novel_template",
  "low_confidence",
  "trace_status",
  "trace_latency",
  "trace_culprit",
  "metric_forecast",
] as const;
export type Signal = (typeof SIGNALS)[number];

export const Evidence = z
  .object({
    time: z.string(),
    source: z.enum(SCAN_SOURCES),
    /** The record, short: the log line, the call path, or the series and its observed value. */
    record: z.string(),
    /** The model's answer: its most likely value per slot, with the probability. */
    expected: z.record(z.string(), z.string()),
    /** What happened, with the probability the model gave it. */
    observed: z.record(z.string(), z.string()),
    score: z.number(),
    signals: z.array(z.enum(SIGNALS)),
  })
  .strict();
export type Evidence = z.infer<typeof Evidence>;

export const KnowledgeMatch = z
  .object({
    kind: z.enum(["error_signature", "incident"]),
    /** The card's line, as written there. */
    text: z.string(),
  })
  .strict();
export type KnowledgeMatch = z.infer<typeof KnowledgeMatch>;

export const Finding = z
  .object({
    service: z.string(),
    start: z.string(),
    end: z.string(),
    score: z.number(),
    /** Share of the score per signal, largest first. */
    signals: z.array(z.object({ signal: z.enum(SIGNALS), share: z.number() }).strict()),
    records: z.number().int(),
    /** Records in the span whose own score passed the threshold. */
    anomalous: z.number().int(),
    evidence: z.array(Evidence).max(5),
    knowledge: z.array(KnowledgeMatch),
  })
  .strict();
export type Finding = z.infer<typeof Finding>;

export const ScanResult = z
  .object({
    agent: z.string(),
    version: z.string(),
    window: z.object({ start: z.string(), end: z.string() }).strict(),
    sources: z.array(z.enum(SCAN_SOURCES)),
    scanned: z
      .object({ logs: z.number().int(), traces: z.number().int(), series: z.number().int() })
      .strict(),
    /** Distinct model inputs actually run (identical inputs share one answer). */
    inferences: z.number().int(),
    findings: z.array(Finding),
    /** Why there are no findings, or what limited the scan; null when nothing needs saying. */
    note: z.string().nullable(),
    took_ms: z.number(),
    at: z.string(),
  })
  .strict();
export type ScanResult = z.infer<typeof ScanResult>;

/** One scored record (the CLI's --records, the bench's labels join). */
export interface RecordScore {
  time: number;
  source: ScanSource;
  service: string;
  text: string;
  score: number;
  signals: Signal[];
  /** The model's surprise in nats before calibration against the reference period (none: not calibrated). */
  raw?: number;
  /** Signal -> surprise in nats, before the threshold (after calibration: what it adds over the usual). */
  parts: Partial<Record<Signal, number>>;
  expected: Record<string, string>;
  observed: Record<string, string>;
  /** Normalised log template (logs only), for the knowledge match. */
  template?: string;
}
