// The reference period's part of a scan: the error templates seen in it and the model's usual
// surprise per record kind there. Read and scored once per agent, model version, sources and
// hour, so the scans of an investigation (or the schedule's) do not score the same day again.
import type { Config } from "../../config/schema.js";
import type { ObjectStore } from "../../store/index.js";
import { historyPoints } from "../tasks/metric-forecast.js";
import { type Calibration, calibrationOf } from "./calibrate.js";
import { type ScoreSettings, scoreLogs, scoreSeries, scoreTraces } from "./score.js";
import type { ScanModel, ScanSource } from "./types.js";
import { readReference, type Span, type WindowRecords } from "./window.js";

const HOUR = 3_600_000;
/** Reference summaries kept in memory (a few agents' latest hour each). */
const KEPT = 8;

export interface Reference {
  /** `service\0template` (card form) of every error line in the period. */
  knownErrors: ReadonlySet<string>;
  /** The usual surprise per kind; null when the period had nothing to score. */
  calibration: Calibration | null;
  /** Distinct model inputs it was scored from. */
  inferences: number;
}

export interface ReferenceRequest {
  config: Config;
  store: ObjectStore;
  model: ScanModel;
  agent: string;
  sources: readonly ScanSource[];
  /** The scanned window: the reference is the `scan.reference` before its start's hour. */
  window: Span;
}

const cache = new Map<string, Reference>();

/** The window's records (or the reference's) scored by the model, all sources together. */
export async function scoreWindow(model: ScanModel, w: WindowRecords, span: Span, settings: ScoreSettings) {
  const parts = [
    await scoreLogs(model, w.logs, settings),
    await scoreTraces(model, w.traces, settings),
    await scoreSeries(model, w.series, span, settings),
  ];
  return {
    records: parts.flatMap((p) => p.records),
    inferences: parts.reduce((n, p) => n + p.inferences, 0),
  };
}

export function scoreSettings(config: Config, knownErrors: ReadonlySet<string>): ScoreSettings {
  return {
    serviceLabels: config.dataset.service_labels,
    knownErrors,
    lowConfidence: config.scan.low_confidence,
    inFlight: 4 * config.serve.max_batch_size,
  };
}

export async function referenceFor(r: ReferenceRequest): Promise<Reference> {
  const cfg = r.config.scan;
  // Ends at the window's hour, so scans started within an hour share one reference.
  const end = Math.floor(r.window.start / HOUR) * HOUR;
  const span = { start: end - cfg.reference, end };
  // What the summary depends on besides the stored data (which a past hour keeps; a late collect
  // into it shows from the next hour on).
  const key = JSON.stringify([
    r.agent,
    r.model.version,
    r.sources,
    span,
    cfg.reference_records,
    cfg.reference_quantile,
    cfg.low_confidence,
    r.config.dataset.service_labels,
  ]);
  const hit = cache.get(key);
  // The same answer whether cached or not: a scan's result does not depend on the scans before it.
  if (hit) return hit;
  const spec = r.model.vocab.encoding.metric_forecast;
  const records = await readReference(r.store, r.agent, r.sources, span, {
    historyMs: historyPoints(spec) * spec.step_ms,
    maxRecords: cfg.reference_records,
    serviceLabels: r.config.dataset.service_labels,
  });
  const scored = await scoreWindow(r.model, records, span, scoreSettings(r.config, records.knownErrors));
  const out: Reference = {
    knownErrors: records.knownErrors,
    calibration: scored.records.length ? calibrationOf(scored.records, cfg.reference_quantile) : null,
    inferences: scored.inferences,
  };
  cache.delete(key);
  cache.set(key, out);
  while (cache.size > KEPT) cache.delete(cache.keys().next().value!);
  return out;
}
