// The collection report: per source and query, what was collected, what was not, and why. It is
// stored with the data (raw/<agent>/_reports/<run-id>.json) and printed by `collect --json`.
import type { SourceName } from "./records.js";

export type QueryStatus = "ok" | "partial" | "failed" | "cancelled";

export interface TimeSpan {
  start: string;
  end: string;
}

export interface QueryReport {
  source: SourceName;
  query: string;
  status: QueryStatus;
  records: number;
  /** Compressed bytes written. */
  bytes: number;
  /** Keys of the segments written. */
  segments: string[];
  /** The window asked for (from the watermark or the look-back, to now minus the settle time). */
  window: TimeSpan | null;
  /** First and last timestamp actually received. */
  covered: TimeSpan | null;
  /** Stretches of the window without any data, longer than collect.gap_min (at most 20 listed). */
  gaps: TimeSpan[];
  gaps_total: number;
  requests: number;
  retries: number;
  errors: string[];
  warnings: string[];
  redactions: Record<string, number>;
  caps_hit: string[];
  /** Things seen and deliberately not stored, by reason (native_histograms, duplicates, binary, ...). */
  skipped: Record<string, number>;
  duration_ms: number;
}

export interface SourceReport {
  source: SourceName;
  status: QueryStatus | "disabled";
  queries: QueryReport[];
}

export interface CollectionReport {
  run_id: string;
  agent: string;
  status: QueryStatus;
  started_at: string;
  finished_at: string;
  duration_ms: number;
  store: string;
  /** Where this report is stored. */
  report_key: string;
  sources: SourceReport[];
  totals: { records: number; bytes: number; segments: number; redactions: number; errors: number };
}

export function newQueryReport(source: SourceName, query: string): QueryReport {
  return {
    source,
    query,
    status: "ok",
    records: 0,
    bytes: 0,
    segments: [],
    window: null,
    covered: null,
    gaps: [],
    gaps_total: 0,
    requests: 0,
    retries: 0,
    errors: [],
    warnings: [],
    redactions: {},
    caps_hit: [],
    skipped: {},
    duration_ms: 0,
  };
}

export function bumpSkipped(report: QueryReport, reason: string, n = 1): void {
  if (n) report.skipped[reason] = (report.skipped[reason] ?? 0) + n;
}

export const iso = (ms: number) => new Date(ms).toISOString();

const MAX_GAPS_LISTED = 20;

/** Tracks the first/last timestamps seen and the gaps between them; feed it times in order (ms). */
export class Coverage {
  private first: number | null = null;
  private last: number | null = null;
  private readonly gaps: TimeSpan[] = [];
  private gapCount = 0;

  constructor(
    private readonly start: number,
    private readonly gapMinMs: number,
  ) {}

  add(ms: number): void {
    if (this.last !== null && ms <= this.last) return;
    const prev = this.last ?? this.start;
    if (ms - prev > this.gapMinMs) this.gap(prev, ms);
    if (this.first === null) this.first = ms;
    this.last = ms;
  }

  private gap(a: number, b: number): void {
    this.gapCount++;
    if (this.gaps.length < MAX_GAPS_LISTED) this.gaps.push({ start: iso(a), end: iso(b) });
  }

  /** Writes covered/gaps into the report; `end` is where the collected window stopped. */
  finish(report: QueryReport, end: number): void {
    const prev = this.last ?? this.start;
    if (end - prev > this.gapMinMs) this.gap(prev, end);
    report.covered = this.first === null ? null : { start: iso(this.first), end: iso(this.last!) };
    report.gaps = this.gaps;
    report.gaps_total = this.gapCount;
  }
}

/** The status a set of query reports adds up to. */
export function overallStatus(statuses: QueryStatus[]): QueryStatus {
  if (!statuses.length) return "ok";
  if (statuses.includes("cancelled")) return "cancelled";
  if (statuses.every((s) => s === "failed")) return "failed";
  if (statuses.every((s) => s === "ok")) return "ok";
  return "partial";
}

/** A short human summary for the CLI. */
export function formatReport(r: CollectionReport): string {
  const lines = [
    `collection ${r.run_id} for ${r.agent}: ${r.status} in ${(r.duration_ms / 1000).toFixed(1)} s`,
    `  ${r.totals.records} records, ${r.totals.bytes} bytes in ${r.totals.segments} segments, ${r.totals.redactions} redactions, ${r.totals.errors} errors`,
  ];
  for (const s of r.sources) {
    if (s.status === "disabled") continue;
    for (const q of s.queries) {
      const span = q.covered ? ` ${q.covered.start} .. ${q.covered.end}` : "";
      const extra = [
        q.retries ? `${q.retries} retries` : "",
        q.gaps_total ? `${q.gaps_total} gaps` : "",
        q.caps_hit.length ? `cap hit: ${q.caps_hit.join(", ")}` : "",
        Object.keys(q.skipped).length
          ? `skipped ${Object.entries(q.skipped)
              .map(([k, v]) => `${k}=${v}`)
              .join(" ")}`
          : "",
      ].filter(Boolean);
      lines.push(
        `  ${s.source}/${q.query}: ${q.status}, ${q.records} records${span}${extra.length ? ` (${extra.join("; ")})` : ""}`,
      );
      for (const e of q.errors) lines.push(`    error: ${e}`);
      for (const w of q.warnings) lines.push(`    warning: ${w}`);
    }
  }
  lines.push(`  report: ${r.report_key}`);
  return lines.join("\n");
}
