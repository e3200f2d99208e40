// The anomaly scan: ask a model what in the agent's recent data it did not expect. Reads the
// window from the raw store, scores every record by the model's surprise (score.ts), ranks
// findings by service and time (findings.ts) and stores the newest scan per agent.
import type { Config } from "../../config/schema.js";
import { UsageError } from "../../errors.js";
import { anomalyScore } from "../../metrics.js";
import type { ObjectStore } from "../../store/index.js";
import { scanKey } from "../../store/layout.js";
import { formatDuration } from "../../util/duration.js";
import type { ModelRegistry } from "../deploy/registry.js";
import { historyPoints } from "../tasks/metric-forecast.js";
import { calibrate } from "./calibrate.js";
import { type CardFacts, EMPTY_CARD, parseKnowledgeCard } from "./card.js";
import { markAnomalies, rankFindings } from "./findings.js";
import { referenceFor, scoreSettings, scoreWindow } from "./reference.js";
import { type RecordScore, SCAN_SOURCES, type ScanModel, ScanResult, type ScanSource } from "./types.js";
import { readWindow } from "./window.js";

export { parseKnowledgeCard } from "./card.js";
export {
  Evidence,
  Finding,
  type RecordScore,
  SCAN_SOURCES,
  type ScanModel,
  ScanResult,
  type ScanSource,
  SIGNALS,
} from "./types.js";

export interface ScanOptions {
  config: Config;
  store: ObjectStore;
  /** Where the version's knowledge card is read from (none: no card matches). */
  registry?: ModelRegistry;
  model: ScanModel;
  agent: string;
  /** How far back from `end` (default config scan.default_window). */
  sinceMs?: number;
  /** End of the window, ms since the epoch (default now). */
  end?: number;
  sources?: readonly ScanSource[];
  topK?: number;
  /** Keep every record's score (the CLI's --records, the bench). */
  keepRecords?: boolean;
}

export interface ScanOutput {
  result: ScanResult;
  records?: RecordScore[];
}

export { scanKey };

/** Checks a requested window and sources against the config; throws UsageError for the caller. */
export function checkScanRequest(config: Config, sinceMs: number | undefined, sources?: readonly string[]) {
  const max = config.scan.max_window;
  const since = sinceMs ?? config.scan.default_window;
  if (!(since > 0)) throw new UsageError("since must be a positive duration such as 15m or 1h");
  if (since > max)
    throw new UsageError(
      `a window of ${Math.round(since / 60_000)} min is over the cap of ${formatDuration(max)} (scan.max_window)`,
    );
  for (const s of sources ?? [])
    if (!(SCAN_SOURCES as readonly string[]).includes(s))
      throw new UsageError(`unknown source "${s}" (sources: ${SCAN_SOURCES.join(", ")})`);
  return { since, sources: (sources?.length ? [...new Set(sources)] : [...SCAN_SOURCES]) as ScanSource[] };
}

async function readCard(
  registry: ModelRegistry | undefined,
  agent: string,
  version: string,
): Promise<CardFacts> {
  if (!registry) return EMPTY_CARD;
  try {
    return parseKnowledgeCard((await registry.readArtifact(agent, version, "knowledge.md")).toString("utf8"));
  } catch {
    // A version without a card (an older one, or deploy hooks off): no matches, not a failure.
    return EMPTY_CARD;
  }
}

export async function scanAgent(o: ScanOptions): Promise<ScanOutput> {
  const t0 = performance.now();
  const cfg = o.config.scan;
  const { since, sources } = checkScanRequest(o.config, o.sinceMs, o.sources);
  const end = o.end ?? Date.now();
  const span = { start: end - since, end };
  const spec = o.model.vocab.encoding.metric_forecast;
  const window = await readWindow(o.store, o.agent, sources, span, {
    historyMs: historyPoints(spec) * spec.step_ms,
    maxRecords: cfg.max_records,
  });
  const card = await readCard(o.registry, o.agent, o.model.version);
  // Surprise is judged against the period before (scan.reference): its error templates are not
  // novel, and each record counts by what it adds over its kind's usual surprise there. The card's
  // signatures are not "normal" for that: they include past incidents' errors, which a finding cites.
  const reference =
    cfg.reference > 0
      ? await referenceFor({
          config: o.config,
          store: o.store,
          model: o.model,
          agent: o.agent,
          sources,
          window: span,
        })
      : { knownErrors: new Set<string>(), calibration: null, inferences: 0 };
  const scored = await scoreWindow(o.model, window, span, scoreSettings(o.config, reference.knownErrors));
  const records = scored.records;
  if (reference.calibration) calibrate(records, reference.calibration);
  markAnomalies(records, cfg.record_threshold);
  const findings = rankFindings(records, card, {
    bucketMs: cfg.bucket,
    recordThreshold: cfg.record_threshold,
    minScore: cfg.min_score,
    minRecords: cfg.min_records,
    topK: o.topK ?? cfg.top_k,
  });
  const scannedSeries = new Set(window.series.map((s) => `${s.query}\u0000${JSON.stringify(s.labels)}`)).size;
  const notes: string[] = [];
  if (!window.logs.length && !window.traces.length && !window.series.length)
    notes.push(
      `no ${sources.join(", ")} records of ${o.agent} in the window: nothing collected yet for it (run data_collect, or widen since)`,
    );
  else if (!findings.length) notes.push("nothing in the window surprised the model past the thresholds");
  if (window.cut.length)
    notes.push(
      `${window.cut.join(", ")} cut at ${cfg.max_records} records (scan.max_records): scan a shorter window`,
    );
  const result: ScanResult = {
    agent: o.agent,
    version: o.model.version,
    window: { start: new Date(span.start).toISOString(), end: new Date(span.end).toISOString() },
    sources,
    scanned: { logs: window.logs.length, traces: window.traces.length, series: scannedSeries },
    inferences: scored.inferences + reference.inferences,
    findings,
    note: notes.length ? notes.join("; ") : null,
    took_ms: Math.round(performance.now() - t0),
    at: new Date().toISOString(),
  };
  return { result, ...(o.keepRecords ? { records } : {}) };
}

/** Stores a scan as the agent's newest (one atomic put), and the anomaly gauge follows it. */
export async function saveScan(store: ObjectStore, result: ScanResult): Promise<void> {
  await store.put(scanKey(result.agent), `${JSON.stringify(result, null, 2)}\n`, {
    contentType: "application/json",
  });
  publishScanGauge(result);
}

// Services given a value per agent: one without a finding in the newest scan goes back to 0, so an
// alert resolves instead of keeping the old score or turning into "no data".
const gaugeServices = new Map<string, Set<string>>();

/** trm_forge_anomaly_score{agent,service}: the top finding's score per service of this scan. */
export function publishScanGauge(result: ScanResult): void {
  const top = new Map<string, number>();
  for (const f of result.findings) top.set(f.service, Math.max(top.get(f.service) ?? 0, f.score));
  const seen = gaugeServices.get(result.agent) ?? new Set<string>();
  for (const service of seen) if (!top.has(service)) anomalyScore.set({ agent: result.agent, service }, 0);
  for (const [service, score] of top) {
    anomalyScore.set({ agent: result.agent, service }, score);
    seen.add(service);
  }
  gaugeServices.set(result.agent, seen);
}

/** The agent's newest stored scan, or null when none was stored. */
export async function readLatestScan(store: ObjectStore, agent: string): Promise<ScanResult | null> {
  const key = scanKey(agent);
  if (!(await store.exists(key))) return null;
  return ScanResult.parse(JSON.parse((await store.get(key)).toString("utf8")));
}
