// The incident join: a (service, time) is in incident when, in its time bucket, the error
// ratio of its traces passes a threshold, its `up` series reads 0, or its error-log count is
// above its own robust baseline (median + k * 1.4826 * MAD over the window's buckets). Times
// within the configured window of a flagged bucket count as in incident too.
import type { IncidentsSection } from "../config/schema.js";
import type { MetricSeriesRecord, TraceRecord } from "./collect/records.js";
import { getOrAdd, type LogFacts, nsToMs, serviceOf } from "./tasks/facts.js";

export interface IncidentSettings {
  bucketMs: number;
  windowMs: number;
  traceErrorRatio: number;
  minTraces: number;
  upDown: boolean;
  logErrorMadK: number;
  minErrorLogs: number;
}

export type IncidentSignal = "trace_errors" | "up_down" | "error_logs";

export interface IncidentEvidence {
  signal: IncidentSignal;
  /** Flagged buckets of this signal inside the incident. */
  buckets: number;
  /** The worst value seen: error ratio, down samples, or error lines in one bucket. */
  peak: number;
  /** What the value had to pass. */
  threshold: number;
}

export interface IncidentWindow {
  service: string;
  /** [start, end) of the flagged buckets, ms since the epoch. */
  start: number;
  end: number;
  evidence: IncidentEvidence[];
}

export function incidentSettings(cfg: IncidentsSection): IncidentSettings {
  return {
    bucketMs: cfg.bucket,
    windowMs: cfg.window,
    traceErrorRatio: cfg.trace_error_ratio,
    minTraces: cfg.min_traces,
    upDown: cfg.up_down,
    logErrorMadK: cfg.log_error_mad_k,
    minErrorLogs: cfg.min_error_logs,
  };
}

/** Whether a series is Prometheus's `up` (by name, by PromQL or by the collector's query name). */
export function isUpSeries(rec: Pick<MetricSeriesRecord, "labels" | "promql" | "query">): boolean {
  return rec.labels.__name__ === "up" || rec.promql.trim() === "up" || rec.query === "up";
}

interface ServiceCounts {
  traces: Map<number, [number, number]>;
  down: Map<number, number>;
  errorLogs: Map<number, number>;
}

export class IncidentJoin {
  private readonly services = new Map<string, ServiceCounts>();
  private readonly buckets: number;

  constructor(
    readonly settings: IncidentSettings,
    readonly window: { start: number; end: number },
    readonly serviceLabels: readonly string[],
  ) {
    this.buckets = Math.max(1, Math.ceil((window.end - window.start) / settings.bucketMs));
  }

  private bucket(t: number): number {
    const b = Math.floor((t - this.window.start) / this.settings.bucketMs);
    return b >= 0 && b < this.buckets ? b : -1;
  }

  private counts(service: string): ServiceCounts {
    return getOrAdd(this.services, service, () => ({
      traces: new Map(),
      down: new Map(),
      errorLogs: new Map(),
    }));
  }

  addTrace(trace: Pick<TraceRecord, "start_ns" | "spans">): void {
    const b = this.bucket(nsToMs(trace.start_ns));
    if (b < 0 || !trace.spans.length) return;
    const failed = new Map<string, boolean>();
    for (const s of trace.spans) {
      const svc = s.service.trim() || "unknown";
      failed.set(svc, (failed.get(svc) ?? false) || s.status === "error");
    }
    for (const [svc, err] of failed) {
      const m = this.counts(svc).traces;
      const v = m.get(b) ?? [0, 0];
      v[0]++;
      if (err) v[1]++;
      m.set(b, v);
    }
  }

  addSeries(rec: MetricSeriesRecord): void {
    if (!this.settings.upDown || !isUpSeries(rec)) return;
    const svc = serviceOf(rec.labels, this.serviceLabels);
    if (!svc) return;
    for (const [t, v] of rec.points) {
      if (v !== 0) continue;
      const b = this.bucket(t * 1000);
      if (b < 0) continue;
      const m = this.counts(svc).down;
      m.set(b, (m.get(b) ?? 0) + 1);
    }
  }

  addLog(facts: LogFacts): void {
    if (!facts.service || (facts.level !== "error" && facts.level !== "fatal")) return;
    const b = this.bucket(facts.time);
    if (b < 0) return;
    const m = this.counts(facts.service).errorLogs;
    m.set(b, (m.get(b) ?? 0) + 1);
  }

  /** The incident windows, by service then time. */
  windows(): IncidentWindow[] {
    const s = this.settings;
    const out: IncidentWindow[] = [];
    for (const service of [...this.services.keys()].sort()) {
      const c = this.services.get(service)!;
      const flags = new Map<number, { signal: IncidentSignal; value: number; threshold: number }[]>();
      const flag = (b: number, signal: IncidentSignal, value: number, threshold: number) => {
        getOrAdd(flags, b, () => []).push({ signal, value, threshold });
      };
      for (const [b, [total, errors]] of c.traces) {
        if (total >= s.minTraces && errors / total >= s.traceErrorRatio)
          flag(b, "trace_errors", errors / total, s.traceErrorRatio);
      }
      for (const [b, n] of c.down) flag(b, "up_down", n, 0);
      if (c.errorLogs.size) {
        const all = new Float64Array(this.buckets);
        for (const [b, n] of c.errorLogs) all[b] = n;
        const med = median(all);
        const mad = median(all.map((v) => Math.abs(v - med)));
        const threshold = Math.max(med + s.logErrorMadK * 1.4826 * mad, s.minErrorLogs - 1);
        for (const [b, n] of c.errorLogs) if (n > threshold) flag(b, "error_logs", n, threshold);
      }
      if (!flags.size) continue;
      // Flagged buckets closer than two windows apart are one incident.
      const gap = Math.ceil((2 * s.windowMs) / s.bucketMs);
      const order = [...flags.keys()].sort((a, b) => a - b);
      let from = 0;
      for (let i = 1; i <= order.length; i++) {
        if (i < order.length && order[i] - order[i - 1] <= gap + 1) continue;
        const group = order.slice(from, i);
        const evidence = new Map<IncidentSignal, IncidentEvidence>();
        for (const b of group) {
          for (const f of flags.get(b)!) {
            const e = evidence.get(f.signal) ?? {
              signal: f.signal,
              buckets: 0,
              peak: 0,
              threshold: f.threshold,
            };
            e.buckets++;
            e.peak = Math.max(e.peak, f.value);
            evidence.set(f.signal, e);
          }
        }
        out.push({
          service,
          start: this.window.start + group[0] * s.bucketMs,
          end: this.window.start + (group[group.length - 1] + 1) * s.bucketMs,
          evidence: [...evidence.values()].sort((a, b) => (a.signal < b.signal ? -1 : 1)),
        });
        from = i;
      }
    }
    return out;
  }
}

function median(v: Float64Array): number {
  const s = Float64Array.from(v).sort();
  if (!s.length) return 0;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Answers "is (service, time) in incident" from the windows, padded by the configured window. */
export class IncidentIndex {
  private readonly byService = new Map<string, IncidentWindow[]>();

  constructor(
    readonly windows: readonly IncidentWindow[],
    readonly padMs: number,
  ) {
    for (const w of windows) {
      getOrAdd(this.byService, w.service, () => []).push(w);
    }
  }

  inIncident(service: string, time: number): boolean {
    const l = this.byService.get(service);
    if (!l) return false;
    for (const w of l) if (time >= w.start - this.padMs && time < w.end + this.padMs) return true;
    return false;
  }
}
