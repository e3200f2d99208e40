// Step 9 of the demo: three questions from the validation days (data the model never trained
// on), asked through the serving path, and answered the way a person reads them. The questions
// come from the collected (redacted) raw store; the simulator's ground truth says what really
// happened.

import { listSegments, readSegment } from "../pipeline/collect/raw-store.js";
import type { LogEntryRecord, MetricSeriesRecord, TraceRecord } from "../pipeline/collect/records.js";
import { analyseTrace, latencyBucket, logFacts, nsToMs } from "../pipeline/tasks/index.js";
import type { ModelServer, PredictResult } from "../serve/index.js";
import type { GroundTruth, GroundTruthIncident } from "../simulator/index.js";
import type { ObjectStore } from "../store/index.js";

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const WEEK = 7 * DAY;

export interface ExampleContext {
  store: ObjectStore;
  agent: string;
  serviceLabels: readonly string[];
  /** The validation part of the dataset window (ms). */
  val: { start: number; end: number };
  groundTruth: GroundTruth;
  /** metric_forecast's points (K) at its step (ms). */
  points: number;
  stepMs: number;
}

export interface ExampleAnswer {
  task: string;
  /** What was asked, in words, then the answer against what happened. */
  lines: string[];
  result: PredictResult;
}

interface Answered<T> {
  value: T | null;
  confidence: number;
}

const pct = (c: number) => `${Math.round(c * 100)}%`;
const said = <T>(a: Answered<T>, show: (v: T) => string = String) =>
  a.value === null ? "no answer" : `${show(a.value)} (${pct(a.confidence)})`;
const clock = (ms: number) => new Date(ms).toISOString().slice(0, 16).replace("T", " ");
const clip = (s: string, n: number) => (s.length > n ? `${s.slice(0, n - 1)}…` : s);

async function records<S extends "loki" | "tempo" | "prometheus">(
  ctx: ExampleContext,
  source: S,
  from: number,
  to: number,
) {
  const day = (ms: number) => new Date(ms).toISOString().slice(0, 10);
  const refs = await listSegments(ctx.store, ctx.agent, source, {
    fromDay: day(from - DAY),
    toDay: day(to + DAY),
  });
  const out: (S extends "loki" ? LogEntryRecord : S extends "tempo" ? TraceRecord : MetricSeriesRecord)[] =
    [];
  for (const ref of refs) {
    const { records } = await readSegment(ctx.store, { key: ref.key, source });
    out.push(...(records as typeof out));
  }
  return out;
}

function incidentAt(gt: GroundTruth, service: string, ms: number): GroundTruthIncident | null {
  return (
    gt.incidents.find(
      (i) => ms >= i.start_ms && ms < i.end_ms && (i.service === service || i.affected.includes(service)),
    ) ?? null
  );
}

const incidentText = (i: GroundTruthIncident) =>
  `${i.kind.replace(/_/g, " ")} of ${i.service}, ${clock(i.start_ms).slice(11)}–${clock(i.end_ms).slice(11)} UTC`;

/** An error line logged during an incident in the validation days (else any error line there). */
export async function logExample(ctx: ExampleContext, server: ModelServer): Promise<ExampleAnswer | null> {
  const lines = (await records(ctx, "loki", ctx.val.start, ctx.val.end))
    .map((rec) => ({ rec, facts: logFacts(rec, ctx.serviceLabels) }))
    .filter(({ facts }) => facts.service && facts.time >= ctx.val.start && facts.time < ctx.val.end)
    .sort((a, b) => a.facts.time - b.facts.time);
  const inIncident = lines.filter(
    ({ facts }) => facts.level === "error" && incidentAt(ctx.groundTruth, facts.service!, facts.time),
  );
  const pick = inIncident[0] ?? lines.find(({ facts }) => facts.level === "error") ?? lines[0];
  if (!pick) return null;
  const { rec, facts } = pick;
  const r = await server.predict(ctx.agent, "log_triage", { line: rec.line });
  const a = r.answer as {
    level: Answered<string>;
    service: Answered<string>;
    incident: Answered<boolean>;
    level_source?: "input";
  };
  const inc = incidentAt(ctx.groundTruth, facts.service!, facts.time);
  return {
    task: "log_triage",
    result: r,
    lines: [
      `A log line from ${clock(facts.time)} UTC, a validation day the model never trained on:`,
      `    ${clip(rec.line, 110)}`,
      `  The model says: level ${said(a.level)}${a.level_source === "input" ? " (stated in the line)" : ""}, service ${said(a.service)}, part of an incident: ${said(a.incident, (v) => (v ? "yes" : "no"))}`,
      `  What happened:  level ${facts.level}, service ${facts.service}, ${inc ? `during the ${incidentText(inc)} (the simulator's ground truth)` : "no incident in the simulator's ground truth"}`,
    ],
  };
}

/** A failed (else the slowest) trace of the validation days. */
export async function traceExample(ctx: ExampleContext, server: ModelServer): Promise<ExampleAnswer | null> {
  const traces = (await records(ctx, "tempo", ctx.val.start, ctx.val.end))
    .map((rec) => ({ rec, time: nsToMs(rec.start_ns), facts: analyseTrace(rec.spans, rec.duration_ms) }))
    .filter((t) => typeof t.facts !== "string" && t.time >= ctx.val.start && t.time < ctx.val.end)
    .sort((a, b) => a.time - b.time) as {
    rec: TraceRecord;
    time: number;
    facts: Exclude<ReturnType<typeof analyseTrace>, string>;
  }[];
  const pick =
    traces.find((t) => t.facts.status === "error" && t.facts.culprit !== t.rec.root_service) ??
    traces.find((t) => t.facts.status === "error") ??
    [...traces].sort((a, b) => b.facts.durationMs - a.facts.durationMs)[0];
  if (!pick) return null;
  const { facts } = pick;
  const r = await server.predict(ctx.agent, "trace_outcome", { path: facts.path });
  const a = r.answer as { status: Answered<string>; latency: Answered<string>; culprit: Answered<string> };
  const inc = incidentAt(ctx.groundTruth, facts.culprit, pick.time);
  const hops =
    facts.path.length > 6 ? [...facts.path.slice(0, 5), `… ${facts.path.length - 5} more`] : facts.path;
  return {
    task: "trace_outcome",
    result: r,
    lines: [
      `A request traced at ${clock(pick.time)} UTC (its call path only, ${facts.path.length} hops):`,
      `    ${clip(hops.join(" → "), 110)}`,
      `  The model says: ${said(a.status)}, latency ${said(a.latency)}, culprit ${said(a.culprit)}${seenText(r.seen_in_training)}`,
      `  What happened:  ${facts.status}, ${Math.round(facts.durationMs)} ms (${latencyBucket(facts.durationMs)}), culprit ${facts.culprit}${inc ? `, during the ${incidentText(inc)}` : ""}`,
    ],
  };
}

/** What the version's memory added to a trace answer. */
function seenText(seen: number | undefined): string {
  if (seen === undefined) return "";
  return seen ? ` (this path: ${seen} in training)` : " (a path not seen in training)";
}

/** The newest sample in each step of [from, from + n * step) (what the dataset build keeps). */
function perStep(points: [number, unknown][], from: number, n: number, stepMs: number): (number | null)[] {
  const out: (number | null)[] = new Array(n).fill(null);
  const at: number[] = new Array(n).fill(Number.NEGATIVE_INFINITY);
  for (const [t, v] of points) {
    const ms = t * 1000;
    const i = Math.floor((ms - from) / stepMs);
    if (i < 0 || i >= n || typeof v !== "number" || !Number.isFinite(v)) continue;
    if (ms >= at[i]) {
      at[i] = ms;
      out[i] = v;
    }
  }
  return out;
}

const num = (v: number | null) =>
  v === null || !Number.isFinite(v)
    ? "?"
    : Math.abs(v) >= 100
      ? v.toFixed(0)
      : Math.abs(v) >= 1
        ? v.toFixed(2)
        : v.toPrecision(2);

/** The busiest request-rate series: its last day in, the next day out, against yesterday's values. */
export async function metricExample(ctx: ExampleContext, server: ModelServer): Promise<ExampleAnswer | null> {
  const K = ctx.points;
  const span = K * ctx.stepMs;
  const origin =
    Math.floor((ctx.val.start + span + (ctx.val.end - ctx.val.start - 2 * span) / 2) / HOUR) * HOUR;
  if (origin - span < ctx.val.start - span || origin + span > ctx.val.end) return null;
  const series = new Map<string, { rec: MetricSeriesRecord; points: [number, unknown][]; sum: number }>();
  // A week before the history too: the model also reads the same hours a week and two days back.
  const before = span + WEEK;
  for (const rec of await records(ctx, "prometheus", origin - before, origin + span)) {
    if (rec.query !== "http_requests_rate") continue;
    const key = JSON.stringify(Object.entries(rec.labels).sort());
    const s = series.get(key) ?? { rec, points: [], sum: 0 };
    for (const p of rec.points) {
      s.points.push(p);
      if (typeof p[1] === "number") s.sum += p[1];
    }
    series.set(key, s);
  }
  const busiest = [...series.values()].sort((a, b) => b.sum - a.sum)[0];
  if (!busiest) return null;
  const hist = perStep(busiest.points, origin - span, K, ctx.stepMs);
  const actual = perStep(busiest.points, origin, K, ctx.stepMs);
  if (hist.every((v) => v === null)) return null;
  const r = await server.predict(ctx.agent, "metric_forecast", {
    query: busiest.rec.query,
    labels: busiest.rec.labels,
    points: perStep(busiest.points, origin - before, Math.round(before / ctx.stepMs), ctx.stepMs),
  });
  const a = r.answer as { points: { value: number | null; confidence: number }[] };
  const mae = (pred: (number | null)[]) => {
    let s = 0;
    let n = 0;
    pred.forEach((p, i) => {
      const t = actual[i];
      if (p === null || t === null) return;
      s += Math.abs(p - t);
      n++;
    });
    return n ? s / n : Number.NaN;
  };
  const model = a.points.map((p) => p.value);
  // The seasonal-naive baseline: the same hour a day earlier.
  const seasonal = perStep(busiest.points, origin - DAY, K, ctx.stepMs);
  const show = [0, 3, 6, 9, 12, 15, 18, 21].filter((i) => i < K);
  const labels = busiest.rec.labels;
  const name = `requests/s of ${labels.service ?? labels.job ?? "?"}${labels.code ? ` (HTTP ${labels.code})` : ""}`;
  const row = (title: string, vals: (number | null)[]) =>
    `    ${title.padEnd(22)} ${show.map((i) => num(vals[i]).padStart(7)).join("")}`;
  return {
    task: "metric_forecast",
    result: r,
    lines: [
      `${name}: the ${K} hours up to ${clock(origin)} UTC in, the next ${K} hours out:`,
      `    ${"hour".padEnd(22)} ${show.map((i) => `+${i + 1}h`.padStart(7)).join("")}`,
      row("the model", model),
      row("same hour yesterday", seasonal),
      row("what happened", actual),
      `  Mean absolute error over the ${K} hours: the model ${num(mae(model))}, yesterday's values ${num(mae(seasonal))} (the seasonal-naive baseline).`,
    ],
  };
}
