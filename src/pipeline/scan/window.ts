// The scan's input: the agent's raw records in a time window, read from the raw store's day
// segments and bounded per source, and the reference period just before it.
import type { ObjectStore } from "../../store/index.js";
import { dayOf, listSegments, readSegment } from "../collect/raw-store.js";
import type { LogEntryRecord, MetricSeriesRecord, TraceRecord } from "../collect/records.js";
import { normaliseLogLine } from "../tasks/log-normalize.js";
import { logFacts, nsToMs } from "../tasks/log-triage.js";
import { cardForm } from "./card.js";
import type { ScanSource } from "./types.js";

export interface Span {
  /** [start, end) in ms since the epoch. */
  start: number;
  end: number;
}

export interface WindowRecords {
  logs: LogEntryRecord[];
  traces: TraceRecord[];
  /** Series chunks with points in [start - history, end). */
  series: MetricSeriesRecord[];
  /** Sources whose records were cut at the limit. */
  cut: ScanSource[];
}

/** Error templates are compared on this many characters, as the knowledge card writes them. */
export const TEMPLATE_CHARS = 160;

export function templateOf(line: string): string {
  return normaliseLogLine(line.slice(0, 512)).slice(0, TEMPLATE_CHARS);
}

async function* records<S extends ScanSource>(
  store: ObjectStore,
  agent: string,
  source: S,
  span: Span,
  newestFirst = false,
) {
  const refs = await listSegments(store, agent, source, {
    fromDay: dayOf(span.start),
    toDay: dayOf(span.end - 1),
  });
  // Key order is day then segment name: the same records in the same order on every read.
  refs.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  if (newestFirst) refs.reverse();
  for (const ref of refs) {
    const { records } = await readSegment(store, { key: ref.key, source });
    yield* records;
  }
}

/** Reads the window's records of the chosen sources, at most `maxRecords` per source. */
export async function readWindow(
  store: ObjectStore,
  agent: string,
  sources: readonly ScanSource[],
  span: Span,
  opts: { historyMs: number; maxRecords: number },
): Promise<WindowRecords> {
  const out: WindowRecords = { logs: [], traces: [], series: [], cut: [] };
  const inSpan = (ms: number) => ms >= span.start && ms < span.end;
  if (sources.includes("loki"))
    for await (const r of records(store, agent, "loki", span)) {
      if (!inSpan(nsToMs(r.ts_ns))) continue;
      if (out.logs.length >= opts.maxRecords) {
        out.cut.push("loki");
        break;
      }
      out.logs.push(r);
    }
  if (sources.includes("tempo"))
    for await (const r of records(store, agent, "tempo", span)) {
      if (!inSpan(nsToMs(r.start_ns))) continue;
      if (out.traces.length >= opts.maxRecords) {
        out.cut.push("tempo");
        break;
      }
      out.traces.push(r);
    }
  if (sources.includes("prometheus")) {
    const from = span.start - opts.historyMs;
    for await (const r of records(store, agent, "prometheus", { start: from, end: span.end })) {
      const points = r.points.filter(([t]) => t * 1000 >= from && t * 1000 < span.end);
      if (!points.length) continue;
      if (out.series.length >= opts.maxRecords) {
        out.cut.push("prometheus");
        break;
      }
      out.series.push({ ...r, points });
    }
  }
  return out;
}

export interface ReferenceRecords extends WindowRecords {
  /** `service\0template` (card form) of the error lines read (the templates a scan treats as known). */
  knownErrors: Set<string>;
}

/**
 * The reference period before a window, newest segments first: the error templates and at most
 * `maxRecords` logs and traces (the part of the period nearest the window, so a busy homelab's
 * reference costs about as much as a scan of that many records).
 */
export async function readReference(
  store: ObjectStore,
  agent: string,
  sources: readonly ScanSource[],
  span: Span,
  opts: { historyMs: number; maxRecords: number; serviceLabels: readonly string[] },
): Promise<ReferenceRecords> {
  const knownErrors = new Set<string>();
  const out: ReferenceRecords = { logs: [], traces: [], series: [], cut: [], knownErrors };
  if (span.end <= span.start) return out;
  const inSpan = (ms: number) => ms >= span.start && ms < span.end;
  // The known templates come from the logs even when only other sources are scanned.
  let lines = 0;
  for await (const r of records(store, agent, "loki", span, true)) {
    const f = logFacts(r, opts.serviceLabels);
    if (!inSpan(f.time)) continue;
    if (++lines > opts.maxRecords) break;
    if (f.level === "error" || f.level === "fatal")
      knownErrors.add(`${f.service ?? "(unknown)"}\u0000${cardForm(templateOf(r.line))}`);
    if (sources.includes("loki")) out.logs.push(r);
  }
  if (sources.includes("tempo"))
    for await (const r of records(store, agent, "tempo", span, true)) {
      if (!inSpan(nsToMs(r.start_ns))) continue;
      if (out.traces.length >= opts.maxRecords) break;
      out.traces.push(r);
    }
  if (sources.includes("prometheus"))
    out.series = (
      await readWindow(store, agent, ["prometheus"], span, {
        historyMs: opts.historyMs,
        maxRecords: opts.maxRecords,
      })
    ).series;
  return out;
}
