// From scored records to ranked findings: records past the threshold are grouped by service and
// time bucket, a bucket scores the excess surprise of its distinct anomalies (a repeated line
// counts sublinearly), a service's buckets with anomalies at most two apart form one episode that
// sums them (a slow trickle adds up as a burst does), and an episode with enough score and records
// is a finding with its strongest evidence and what the knowledge card already knew.
import type { CardFacts } from "./card.js";
import type { Evidence, Finding, KnowledgeMatch, RecordScore, Signal } from "./types.js";

export interface FindingSettings {
  bucketMs: number;
  /** A record is anomalous above this many nats of surprise. */
  recordThreshold: number;
  /** An episode is a finding at this score or more. */
  minScore: number;
  /** ... and with at least this many anomalous records (one odd line is not an incident). */
  minRecords: number;
  topK: number;
}

/** A part of a record's score names a signal once the model gave the observed value under 1/e. */
const SIGNAL_NATS = 1;

const round = (x: number, d = 3) => Math.round(x * 10 ** d) / 10 ** d;

interface Bucket {
  service: string;
  index: number;
  records: number;
  anomalous: RecordScore[];
  score: number;
}

/** The grouping key of a record inside a bucket: its template, path or series. */
function sameAs(r: RecordScore): string {
  return `${r.source}\u0000${r.template ?? r.text.replace(/ = [^=]*$/, "")}`;
}

function bucketScore(anomalous: RecordScore[], threshold: number): number {
  const byKey = new Map<string, { max: number; n: number }>();
  for (const r of anomalous) {
    const k = sameAs(r);
    const e = byKey.get(k);
    const x = r.score - threshold;
    if (!e) byKey.set(k, { max: x, n: 1 });
    else {
      e.max = Math.max(e.max, x);
      e.n++;
    }
  }
  let s = 0;
  for (const { max, n } of byKey.values()) s += max * (1 + Math.log(n));
  return s;
}

function signalsOf(r: RecordScore): Signal[] {
  return (Object.entries(r.parts) as [Signal, number][])
    .filter(([, v]) => v >= SIGNAL_NATS)
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
    .map(([k]) => k);
}

function byRank(a: RecordScore, b: RecordScore): number {
  return b.score - a.score || a.time - b.time || (a.text < b.text ? -1 : a.text > b.text ? 1 : 0);
}

const iso = (ms: number) => new Date(ms).toISOString();

function evidenceOf(records: RecordScore[]): Evidence[] {
  const out: Evidence[] = [];
  const seen = new Set<string>();
  for (const r of [...records].sort(byRank)) {
    const k = sameAs(r);
    if (seen.has(k)) continue;
    seen.add(k);
    out.push({
      time: iso(r.time),
      source: r.source,
      record: r.text,
      expected: r.expected,
      observed: r.observed,
      score: round(r.score),
      signals: signalsOf(r),
    });
    if (out.length === 5) break;
  }
  return out;
}

function knowledgeOf(service: string, records: RecordScore[], card: CardFacts): KnowledgeMatch[] {
  const out: KnowledgeMatch[] = [];
  const templates = new Set(records.map((r) => r.template).filter((t): t is string => t !== undefined));
  for (const s of card.signatures)
    if (s.service === service && templates.has(s.signature) && out.length < 3)
      out.push({ kind: "error_signature", text: `${s.service}: ${s.line}` });
  // The card lists incidents oldest first: the latest two of this service.
  for (const i of card.incidents.filter((x) => x.service === service).slice(-2))
    out.push({ kind: "incident", text: i.line });
  return out;
}

/** Shares of the anomalous records' surprise per signal, largest first. */
function signalShares(records: RecordScore[]): { signal: Signal; share: number }[] {
  const sums = new Map<Signal, number>();
  let total = 0;
  for (const r of records)
    for (const [k, v] of Object.entries(r.parts) as [Signal, number][]) {
      sums.set(k, (sums.get(k) ?? 0) + v);
      total += v;
    }
  return [...sums.entries()]
    .map(([signal, v]) => ({ signal, share: total > 0 ? round(v / total) : 0 }))
    .filter((x) => x.share >= 0.05)
    .sort((a, b) => b.share - a.share || (a.signal < b.signal ? -1 : 1));
}

/** Records whose score passes the threshold, with the signals that drove each. */
export function markAnomalies(records: RecordScore[], threshold: number): void {
  for (const r of records) r.signals = r.score > threshold ? signalsOf(r) : [];
}

export function rankFindings(records: RecordScore[], card: CardFacts, s: FindingSettings): Finding[] {
  const buckets = new Map<string, Bucket>();
  for (const r of records) {
    const index = Math.floor(r.time / s.bucketMs);
    const key = `${r.service}\u0000${index}`;
    let b = buckets.get(key);
    if (!b) {
      b = { service: r.service, index, records: 0, anomalous: [], score: 0 };
      buckets.set(key, b);
    }
    b.records++;
    if (r.score > s.recordThreshold) b.anomalous.push(r);
  }
  const withAnomalies = new Map<string, Bucket[]>();
  for (const b of buckets.values()) {
    if (!b.anomalous.length) continue;
    b.score = bucketScore(b.anomalous, s.recordThreshold);
    const list = withAnomalies.get(b.service) ?? [];
    list.push(b);
    withAnomalies.set(b.service, list);
  }
  const findings: Finding[] = [];
  for (const [service, list] of withAnomalies) {
    list.sort((a, b) => a.index - b.index);
    // Buckets two apart still belong to one episode: a quiet bucket inside it does not split it.
    let run: Bucket[] = [];
    const close = () => {
      const recs = run.flatMap((b) => b.anomalous);
      const score = run.reduce((n, b) => n + b.score, 0);
      if (run.length && score >= s.minScore && recs.length >= s.minRecords)
        findings.push({
          service,
          start: iso(run[0].index * s.bucketMs),
          end: iso((run[run.length - 1].index + 1) * s.bucketMs),
          score: round(score),
          signals: signalShares(recs),
          records: run.reduce((n, b) => n + b.records, 0),
          anomalous: recs.length,
          evidence: evidenceOf(recs),
          knowledge: knowledgeOf(service, recs, card),
        });
      run = [];
    };
    for (const b of list) {
      if (run.length && b.index - run[run.length - 1].index > 2) close();
      run.push(b);
    }
    close();
  }
  findings.sort(
    (a, b) =>
      b.score - a.score ||
      (a.service < b.service ? -1 : a.service > b.service ? 1 : 0) ||
      (a.start < b.start ? -1 : 1),
  );
  return findings.slice(0, s.topK);
}
