// Surprise measured against this homelab's own normal: the same model's surprise at the same kind of
// record in the reference period before the window. A log template, call path or series the model
// is always unsure of is normal here, so only what a record adds over its kind's usual surprise
// counts. Kinds the reference never saw are compared with their service's typical record.
import type { RecordScore, Signal } from "./types.js";

type Parts = Partial<Record<Signal, number>>;

export interface Calibration {
  /** Per record kind (source, service, template/path/series): the usual surprise per signal. */
  byKind: Map<string, Parts>;
  /** Per source and service: the median record's surprise per signal. */
  byService: Map<string, Parts>;
}

/** A record's kind: its log template, call path or series (the value cut off). */
export function kindOf(r: RecordScore): string {
  return `${r.source}\u0000${r.service}\u0000${r.template ?? r.text.replace(/ = [^=]*$/, "")}`;
}

const serviceOf = (r: RecordScore) => `${r.source}\u0000${r.service}`;

/** The q-quantile of sorted values (nearest rank: with few values, q near 1 is the maximum). */
function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

function summarise(groups: Map<string, RecordScore[]>, q: number): Map<string, Parts> {
  const out = new Map<string, Parts>();
  for (const [k, recs] of groups) {
    const signals = new Set(recs.flatMap((r) => Object.keys(r.parts) as Signal[]));
    const parts: Parts = {};
    for (const s of signals)
      parts[s] = quantile(
        recs.map((r) => r.parts[s] ?? 0).sort((a, b) => a - b),
        q,
      );
    out.set(k, parts);
  }
  return out;
}

function group(records: readonly RecordScore[], key: (r: RecordScore) => string): Map<string, RecordScore[]> {
  const out = new Map<string, RecordScore[]>();
  for (const r of records) {
    const list = out.get(key(r));
    if (list) list.push(r);
    else out.set(key(r), [r]);
  }
  return out;
}

/** The reference's usual surprise: the q-quantile per record kind, the median per service. */
export function calibrationOf(reference: readonly RecordScore[], q: number): Calibration {
  return {
    byKind: summarise(group(reference, kindOf), q),
    byService: summarise(group(reference, serviceOf), 0.5),
  };
}

/**
 * Each record's score becomes what its signals add over the reference's usual surprise for its
 * kind (its service's when the kind is new; none for a service the reference never saw). The
 * model's own score stays in `raw`.
 */
export function calibrate(records: RecordScore[], cal: Calibration): void {
  for (const r of records) {
    const usual = cal.byKind.get(kindOf(r)) ?? cal.byService.get(serviceOf(r)) ?? {};
    const parts: Parts = {};
    let score = 0;
    for (const [s, v] of Object.entries(r.parts) as [Signal, number][]) {
      // Novelty was already judged against the reference (known templates); it is not discounted.
      const x = s === "novel_template" ? v : Math.max(0, v - (usual[s] ?? 0));
      parts[s] = x;
      score += x;
    }
    r.raw = r.score;
    r.parts = parts;
    r.score = score;
  }
}
