// Per-record surprise: encode each record as its task does, ask the model once per distinct input
// (identical inputs share an answer), and score what really happened by how unlikely the model
// found it, in nats (-ln p). Requests go out a few batches at a time, so the model batches them
// and only small per-slot distributions stay in memory.
import type { LogEntryRecord, MetricSeriesRecord, TraceRecord } from "../collect/records.js";
import { serviceOf } from "../tasks/facts.js";
import { hash53 } from "../tasks/hash.js";
import { logFacts, logTriage, nsToMs } from "../tasks/log-triage.js";
import { historyPoints, identityText, metricForecast, sampleValue, toBin } from "../tasks/metric-forecast.js";
import { analyseTrace, latencyBucket, pathText, traceOutcome } from "../tasks/trace-outcome.js";
import type { Encoded, Readout } from "../tasks/types.js";
import { BIN_BASE, BYTE_BASE, type Vocab } from "../tasks/vocab.js";
import { cardForm } from "./card.js";
import type { RecordScore, ScanModel, Signal } from "./types.js";
import { templateOf } from "./window.js";

/** Probabilities below this count as this (a -ln of 0 would swamp every other signal). */
const P_FLOOR = 1e-4;
/** The bonus of a novel input: as surprising as a class the model gave 5%. */
export const NOVELTY_NATS = -Math.log(0.05);

/** Scored records, and how many distinct inputs the model answered for them. */
export interface Scored {
  records: RecordScore[];
  inferences: number;
}

export interface ScoreSettings {
  serviceLabels: readonly string[];
  /** `service\0template` (card form) of the error lines seen in the reference period. */
  knownErrors: ReadonlySet<string>;
  /** Every slot's top answer below this: the input is unlike anything in training. */
  lowConfidence: number;
  /** Requests in flight at once (a few of the model's batches). */
  inFlight: number;
}

/** One readout's distribution over the ids a valid answer may take there. */
interface Dist {
  ids: readonly number[];
  p: Float64Array;
}

function allowed(r: Readout, vocab: Vocab): readonly number[] {
  if (r.kind === "class") return vocab.namespaceIds(r.namespace ?? "");
  const from = r.kind === "bin" ? BIN_BASE : BYTE_BASE;
  const n = r.kind === "bin" ? vocab.numBins : 256;
  return Array.from({ length: n }, (_, i) => from + i);
}

function distsOf(encoded: Encoded, probs: Float32Array, vocab: Vocab): Dist[] {
  const V = vocab.size;
  return encoded.readouts.map((r) => {
    const ids = allowed(r, vocab);
    const p = new Float64Array(ids.length);
    let sum = 0;
    ids.forEach((id, i) => {
      p[i] = probs[r.position * V + id];
      sum += p[i];
    });
    if (sum > 0) for (let i = 0; i < p.length; i++) p[i] /= sum;
    return { ids, p };
  });
}

/** Runs distinct inputs through the model, in first-seen order, a few batches in flight at once. */
async function answer(model: ScanModel, queries: Encoded[], inFlight: number): Promise<Map<number, Dist[]>> {
  const unique = new Map<number, Encoded>();
  for (const q of queries) {
    const k = inputKey(q);
    if (!unique.has(k)) unique.set(k, q);
  }
  const out = new Map<number, Dist[]>();
  const entries = [...unique.entries()];
  for (let i = 0; i < entries.length; i += inFlight) {
    const chunk = entries.slice(i, i + inFlight);
    const outs = await Promise.all(chunk.map(([, e]) => model.predict(e)));
    chunk.forEach(([k, e], j) => {
      out.set(k, distsOf(e, outs[j].probs, model.vocab));
    });
  }
  return out;
}

export function inputKey(e: Encoded): number {
  return hash53(e.inputs, e.puzzleId);
}

function prob(d: Dist, id: number | undefined): number {
  if (id === undefined) return 0;
  const i = d.ids.indexOf(id);
  return i < 0 ? 0 : d.p[i];
}

function nats(p: number): number {
  return -Math.log(Math.max(p, P_FLOOR));
}

function top(d: Dist, vocab: Vocab): { name: string; p: number } {
  let best = 0;
  for (let i = 1; i < d.p.length; i++) if (d.p[i] > d.p[best]) best = i;
  const id = d.ids[best];
  const name = vocab.isBin(id) ? `bin ${id - BIN_BASE}` : (vocab.className(id) ?? "?");
  return { name: name.slice(name.indexOf(":") + 1), p: d.p[best] ?? 0 };
}

const pct = (p: number) => `${(100 * p).toFixed(p < 0.01 ? 2 : 0)}%`;

/** The slot's class id for an observed value, or the catch-all (`service:<other>`) when new. */
function classIdOf(vocab: Vocab, ns: string, value: string): { id: number | undefined; known: boolean } {
  const id = vocab.classId(`${ns}:${value}`);
  return id !== undefined ? { id, known: true } : { id: vocab.classId(`${ns}:<other>`), known: false };
}

function total(parts: Partial<Record<Signal, number>>): number {
  let s = 0;
  for (const v of Object.values(parts)) s += v ?? 0;
  return s;
}

function lowConfidence(dists: Dist[], vocab: Vocab, floor: number): boolean {
  return dists.length > 0 && dists.every((d) => top(d, vocab).p < floor);
}

/** Logs: the observed level and service, and "not in an incident", against the model's answer. */
export async function scoreLogs(
  model: ScanModel,
  logs: readonly LogEntryRecord[],
  s: ScoreSettings,
): Promise<Scored> {
  const vocab = model.vocab;
  const items: { rec: LogEntryRecord; enc: Encoded }[] = [];
  for (const rec of logs) {
    if (!rec.line.trim()) continue;
    try {
      items.push({ rec, enc: logTriage.encode({ line: rec.line }, vocab) });
    } catch {
      // A line the task cannot encode is not something the model can be surprised by.
    }
  }
  const answers = await answer(
    model,
    items.map((i) => i.enc),
    s.inFlight,
  );
  const records = items.map(({ rec, enc }): RecordScore => {
    const [dLevel, dService, dIncident] = answers.get(inputKey(enc))!;
    const f = logFacts(rec, s.serviceLabels);
    const service = f.service ?? "(unknown)";
    const svc = classIdOf(vocab, "service", service);
    const pLevel = prob(dLevel, vocab.classId(`level:${f.level}`));
    const pService = prob(dService, svc.id);
    const pIncident = prob(dIncident, vocab.classId("incident:yes"));
    const parts: Partial<Record<Signal, number>> = {
      log_level: nats(pLevel),
      log_service: nats(pService),
      log_incident: nats(1 - pIncident),
    };
    const template = templateOf(rec.line);
    const isError = f.level === "error" || f.level === "fatal";
    if (isError && !s.knownErrors.has(`${service}\u0000${cardForm(template)}`))
      parts.novel_template = NOVELTY_NATS;
    if (lowConfidence([dLevel, dService, dIncident], vocab, s.lowConfidence))
      parts.low_confidence = NOVELTY_NATS;
    const tl = top(dLevel, vocab);
    const ts = top(dService, vocab);
    return {
      time: f.time,
      source: "loki",
      service,
      text: rec.line.slice(0, 240),
      score: total(parts),
      signals: [],
      parts,
      expected: {
        level: `${tl.name} ${pct(tl.p)}`,
        service: `${ts.name} ${pct(ts.p)}`,
        incident: `${pIncident >= 0.5 ? "yes" : "no"} ${pct(Math.max(pIncident, 1 - pIncident))}`,
      },
      observed: {
        level: `${f.level} (p ${pct(pLevel)})`,
        service: `${service}${svc.known ? "" : " (a service the model never saw)"} (p ${pct(pService)})`,
        incident: `no (p ${pct(1 - pIncident)})`,
      },
      template: cardForm(template),
    };
  });
  return { records, inferences: answers.size };
}

/** Traces: the observed status, latency bucket and culprit against the model's answer. */
export async function scoreTraces(
  model: ScanModel,
  traces: readonly TraceRecord[],
  s: ScoreSettings,
): Promise<Scored> {
  const vocab = model.vocab;
  const items: { rec: TraceRecord; enc: Encoded; facts: Exclude<ReturnType<typeof analyseTrace>, string> }[] =
    [];
  for (const rec of traces) {
    const facts = analyseTrace(rec.spans, rec.duration_ms);
    if (typeof facts === "string") continue;
    items.push({ rec, facts, enc: traceOutcome.encode({ path: facts.path }, vocab) });
  }
  const answers = await answer(
    model,
    items.map((i) => i.enc),
    s.inFlight,
  );
  const records = items.map(({ rec, enc, facts }): RecordScore => {
    const [dStatus, dLatency, dCulprit] = answers.get(inputKey(enc))!;
    const bucket = latencyBucket(facts.durationMs);
    const culprit = classIdOf(vocab, "service", facts.culprit);
    const pStatus = prob(dStatus, vocab.classId(`status:${facts.status}`));
    const pLatency = prob(dLatency, vocab.classId(`latency:${bucket}`));
    const pCulprit = prob(dCulprit, culprit.id);
    const parts: Partial<Record<Signal, number>> = {
      trace_status: nats(pStatus),
      trace_latency: nats(pLatency),
      trace_culprit: nats(pCulprit),
    };
    if (lowConfidence([dStatus, dLatency, dCulprit], vocab, s.lowConfidence))
      parts.low_confidence = NOVELTY_NATS;
    const t = [dStatus, dLatency, dCulprit].map((d) => top(d, vocab));
    return {
      time: nsToMs(rec.start_ns),
      source: "tempo",
      service: facts.culprit,
      text: pathText(facts.path).slice(0, 240),
      score: total(parts),
      signals: [],
      parts,
      expected: {
        status: `${t[0].name} ${pct(t[0].p)}`,
        latency: `${t[1].name} ${pct(t[1].p)}`,
        culprit: `${t[2].name} ${pct(t[2].p)}`,
      },
      observed: {
        status: `${facts.status} (p ${pct(pStatus)})`,
        latency: `${bucket}, ${Math.round(facts.durationMs)} ms (p ${pct(pLatency)})`,
        culprit: `${facts.culprit} (p ${pct(pCulprit)})`,
      },
    };
  });
  return { records, inferences: answers.size };
}

/**
 * Series: for each step of the window, the forecast made from the K steps before it. A point's
 * surprise is -ln of the probability of its bin or a neighbour (the forecast's own tolerance);
 * a series scores one record per forecast, at its most surprising point.
 */
export async function scoreSeries(
  model: ScanModel,
  series: readonly MetricSeriesRecord[],
  span: { start: number; end: number },
  s: ScoreSettings,
): Promise<Scored> {
  const vocab = model.vocab;
  const spec = vocab.encoding.metric_forecast;
  const K = spec.points;
  const back = historyPoints(spec);
  const step = spec.step_ms;
  const first = Math.ceil(span.start / step);
  const last = Math.ceil(span.end / step) - 1;
  if (last < first) return { records: [], inferences: 0 };
  // One value per step and series (the newest sample of the step), from every chunk of the series.
  const bySeries = new Map<
    string,
    { rec: MetricSeriesRecord; values: Map<number, { t: number; v: number }> }
  >();
  for (const rec of series) {
    const key = `${rec.query}\u0000${identityText(rec.query, rec.labels)}`;
    let e = bySeries.get(key);
    if (!e) {
      e = { rec, values: new Map() };
      bySeries.set(key, e);
    }
    for (const [t, raw] of rec.points) {
      const v = sampleValue(raw);
      if (!Number.isFinite(v)) continue;
      const ms = t * 1000;
      const i = Math.floor(ms / step);
      const prev = e.values.get(i);
      if (!prev || ms > prev.t) e.values.set(i, { t: ms, v });
    }
  }
  const items: { key: string; origin: number; enc: Encoded; targets: (number | null)[] }[] = [];
  for (const key of [...bySeries.keys()].sort()) {
    const { rec, values } = bySeries.get(key)!;
    for (let o = first; o <= last; o += K) {
      // The last K points, and before them what the model's rows of earlier days read.
      const hist: (number | null)[] = [];
      for (let i = o - back; i < o; i++) hist.push(values.get(i)?.v ?? null);
      if (hist.slice(-K).filter((v) => v !== null).length < K / 2) continue;
      const targets: (number | null)[] = [];
      for (let i = o; i < o + K; i++) targets.push(i <= last ? (values.get(i)?.v ?? null) : null);
      if (targets.every((v) => v === null)) continue;
      try {
        items.push({
          key,
          origin: o,
          targets,
          enc: metricForecast.encode({ query: rec.query, labels: rec.labels, points: hist }, vocab),
        });
      } catch {
        // No finite history: nothing to forecast from.
      }
    }
  }
  const answers = await answer(
    model,
    items.map((i) => i.enc),
    s.inFlight,
  );
  const out: RecordScore[] = [];
  for (const { key, origin, enc, targets } of items) {
    const dists = answers.get(inputKey(enc))!;
    const { rec } = bySeries.get(key)!;
    const center = enc.aux[0];
    const scale = enc.aux[1];
    let worst = -1;
    let worstNats = -1;
    let worstP = 1;
    let worstBin = 0;
    // What model_predict answers for that point: the bin with the most probability within one bin.
    let expectedBin = 0;
    let expectedP = 0;
    targets.forEach((v, i) => {
      if (v === null) return;
      const b = toBin(v, center, scale, vocab.numBins, spec.z_max);
      const d = dists[i];
      const p = within1(d.p, b);
      // Relative to the forecast's own best window: a spread-out forecast is not surprised by much.
      let best = 0;
      let bestJ = 0;
      for (let j = 0; j < d.p.length; j++) {
        const w = within1(d.p, j);
        if (w > best) {
          best = w;
          bestJ = j;
        }
      }
      const n = nats(p) - nats(best);
      if (n > worstNats) {
        worst = i;
        worstNats = n;
        worstP = p;
        worstBin = b;
        expectedBin = bestJ;
        expectedP = best;
      }
    });
    if (worst < 0) continue;
    // A forecast is spread by nature: low confidence is no sign of a novel series here.
    const parts: Partial<Record<Signal, number>> = { metric_forecast: worstNats };
    const value = targets[worst]!;
    out.push({
      time: (origin + worst) * step,
      source: "prometheus",
      service: seriesService(rec.labels, s.serviceLabels),
      text: `${identityText(rec.query, rec.labels).slice(0, 200)} = ${fmt(value)}`,
      score: total(parts),
      signals: [],
      parts,
      expected: {
        point: `bin ${expectedBin} (p ${pct(expectedP)} within one bin; median ${fmt(center)}, iqr ${fmt(scale)})`,
      },
      observed: { point: `${fmt(value)} in bin ${worstBin} (p ${pct(worstP)} within one bin)` },
    });
  }
  return { records: out, inferences: answers.size };
}

/** Probability of bin b or a neighbour. */
function within1(p: Float64Array, b: number): number {
  let s = 0;
  for (let j = Math.max(0, b - 1); j <= Math.min(p.length - 1, b + 1); j++) s += p[j];
  return s;
}

/** The service of a series: a per-container label before the scrape job that collected it. */
function seriesService(labels: Record<string, string>, serviceLabels: readonly string[]): string {
  const own = serviceLabels.filter((k) => k !== "job");
  return serviceOf(labels, own) ?? serviceOf(labels, serviceLabels) ?? "(unattributed)";
}

function fmt(v: number): string {
  return Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-2 && v !== 0)
    ? v.toExponential(2)
    : String(Math.round(v * 100) / 100);
}
