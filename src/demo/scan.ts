// The demo's scan step: "what was wrong on <a validation day>?" The champion scans a bounded window
// around the first incident the simulator staged in the held-out days that fits in it whole (at
// most two hours, not the whole day, so the step stays cheap on 2 cores; a slow leak that lasts
// all afternoon does not fit), and the simulator's ground truth is printed beside the findings,
// with whether a top finding names the incident's services while it lasted.
import type { Config } from "../config/index.js";
import type { ModelRegistry } from "../pipeline/deploy/registry.js";
import type { Finding, ScanResult } from "../pipeline/scan/index.js";
import type { ModelServer } from "../serve/index.js";
import { scanChampion } from "../serve/scan.js";
import type { GroundTruth, GroundTruthIncident } from "../simulator/index.js";
import type { ObjectStore } from "../store/index.js";

const MINUTE = 60_000;
/** The window scanned: from a little before the incident began to a little after it ended. */
export const SCAN_BEFORE_MS = 30 * MINUTE;
export const SCAN_AFTER_MS = 15 * MINUTE;
/** The longest window the step scans. */
export const SCAN_MAX_MS = 2 * 60 * MINUTE;
/** Findings printed (and judged against the ground truth). */
export const SCAN_TOP = 5;

export interface ScanStepContext {
  config: Config;
  store: ObjectStore;
  registry: ModelRegistry;
  agent: string;
  /** The validation part of the dataset window (ms). */
  val: { start: number; end: number };
  groundTruth: GroundTruth;
}

export interface ScanStep {
  /** The validation day, YYYY-MM-DD. */
  day: string;
  incident: GroundTruthIncident;
  result: ScanResult;
  /** 1-based rank of the first printed finding on the incident's services during it; null: none. */
  hit: number | null;
  lines: string[];
}

const hhmm = (ms: number | string) => new Date(ms).toISOString().slice(11, 16);

/** The window around an incident: from SCAN_BEFORE_MS before it to SCAN_AFTER_MS after it. */
const around = (i: GroundTruthIncident) => ({
  start: i.start_ms - SCAN_BEFORE_MS,
  end: i.end_ms + SCAN_AFTER_MS,
});

/** The first staged incident whose window lies in the validation days and fits SCAN_MAX_MS; else null. */
export function heldOutIncident(gt: GroundTruth, val: { start: number; end: number }) {
  return (
    [...gt.incidents]
      .sort((a, b) => a.start_ms - b.start_ms)
      .find((i) => {
        const w = around(i);
        return w.start >= val.start && w.end <= val.end && w.end - w.start <= SCAN_MAX_MS;
      }) ?? null
  );
}

/** Does the finding name one of the incident's services while the incident lasted? */
export function findsIncident(f: Finding, i: GroundTruthIncident): boolean {
  const services = new Set([i.service, ...i.affected]);
  return services.has(f.service) && Date.parse(f.start) < i.end_ms && Date.parse(f.end) > i.start_ms;
}

export async function scanHeldOutIncident(
  ctx: ScanStepContext,
  models: ModelServer,
): Promise<ScanStep | null> {
  const incident = heldOutIncident(ctx.groundTruth, ctx.val);
  if (!incident) return null;
  const { start, end } = around(incident);
  const { result } = await scanChampion(models, {
    config: ctx.config,
    store: ctx.store,
    registry: ctx.registry,
    agent: ctx.agent,
    sinceMs: end - start,
    end,
    topK: SCAN_TOP,
  });
  const day = new Date(incident.start_ms).toISOString().slice(0, 10);
  const at = result.findings.findIndex((f) => findsIncident(f, incident));
  const hit = at < 0 ? null : at + 1;
  const lines = [
    `What was wrong on ${day} (a validation day), ${hhmm(result.window.start)}-${hhmm(result.window.end)} UTC?`,
    `   the champion ${result.version} scanned ${result.scanned.logs} log lines, ${result.scanned.traces} traces and ${result.scanned.series} series in ${result.took_ms} ms:`,
  ];
  if (!result.findings.length)
    lines.push(`     no findings: ${result.note ?? "nothing surprised the model"}`);
  result.findings.forEach((f, i) => {
    lines.push(
      `     ${i + 1}. ${f.service} ${hhmm(f.start)}-${hhmm(f.end)} score ${f.score} (${f.signals.map((s) => s.signal).join(", ")})`,
    );
    const e = f.evidence[0];
    if (e) lines.push(`        e.g. ${e.source}: ${e.record.replace(/\s+/g, " ").slice(0, 110)}`);
  });
  lines.push(
    `   ground truth (the simulator's staged incident): ${incident.kind.replace(/_/g, " ")} of ${incident.service}, ${hhmm(incident.start_ms)}-${hhmm(incident.end_ms)} UTC: ${incident.summary}`,
  );
  if (hit !== null) {
    const f = result.findings[hit - 1];
    const lead = Math.round((Date.parse(f.start) - incident.start_ms) / MINUTE);
    // A finding spans whole buckets: one that starts a little before the incident holds its start.
    const when =
      lead > 0 ? `${lead} min after the incident began` : `from ${hhmm(f.start)}, as the incident began`;
    lines.push(`   => finding ${hit} names ${f.service} ${when}`);
  } else
    lines.push(
      `   => none of the ${result.findings.length} findings names ${[...new Set([incident.service, ...incident.affected])].join(" or ")} while the incident lasted`,
    );
  return { day, incident, result, hit, lines };
}
