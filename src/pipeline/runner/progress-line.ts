// The one place that says which pod log lines carry training progress. The Job's pod runs
// `trm-forge run --resume <run> --stages train`; every line it prints reaches the job logs, and
// lines that are JSON progress events also reach job status. Accepted shapes:
//   {"type":"progress","progress":{"stage":"train","message":"...","step":120,"total":2000,
//     "eta_s":300,"metrics":{"loss":1.9}}}                 (a run event, as `run --json` streams)
//   {"type":"progress","step":120,"total_steps":2000,"loss":1.9,...}     (flat)
//   {"level":30,"msg":"...","progress":{...}}               (a pino line carrying either shape)
import * as z from "zod";

/** Progress as the run record holds it (src/pipeline/run/record.ts Progress, without `at`). */
export interface TrainProgress {
  stage: string;
  message: string;
  step: number | null;
  total: number | null;
  eta_s: number | null;
  metrics: Record<string, number>;
}

/** The part of a progress a stage reports (its stage and time are its context's): no other field passes. */
export function stageProgress(p: Omit<TrainProgress, "stage">): Omit<TrainProgress, "stage"> {
  return { message: p.message, step: p.step, total: p.total, eta_s: p.eta_s, metrics: p.metrics };
}

const Num = z.number().finite();
const RecordShape = z.object({
  stage: z.string().optional(),
  message: z.string().optional(),
  step: Num.int().min(0).nullable(),
  total: Num.int().min(0).nullable().optional(),
  eta_s: Num.min(0).nullable().optional(),
  metrics: z.record(z.string(), Num).optional(),
});
const FlatShape = z.looseObject({
  stage: z.string().optional(),
  message: z.string().optional(),
  step: Num.int().min(0),
  total_steps: Num.int().min(0).optional(),
  total: Num.int().min(0).optional(),
  eta_s: Num.min(0).optional(),
});
const NOT_METRICS = new Set([
  "type",
  "event",
  "stage",
  "message",
  "step",
  "total",
  "total_steps",
  "eta_s",
  "at",
  "time",
  "level",
  "runId",
  "agent",
]);

export type PodLine = { kind: "progress"; progress: TrainProgress } | { kind: "log" };

/** Classifies one log line (without its Kubernetes timestamp). Anything not a valid event is a plain log line. */
export function parsePodLine(line: string): PodLine {
  const text = line.trim();
  if (!text.startsWith("{")) return { kind: "log" };
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return { kind: "log" };
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) return { kind: "log" };
  const obj = doc as Record<string, unknown>;
  const nested = typeof obj.progress === "object" && obj.progress !== null ? obj.progress : null;
  const isEvent = obj.type === "progress" || obj.event === "progress";
  const candidate = nested ?? (isEvent ? obj : null);
  if (!candidate) return { kind: "log" };
  const progress = normalise(candidate);
  return progress ? { kind: "progress", progress } : { kind: "log" };
}

function normalise(c: unknown): TrainProgress | null {
  const rec = RecordShape.safeParse(c);
  if (rec.success && (rec.data.metrics || rec.data.total !== undefined || rec.data.step === null)) {
    const d = rec.data;
    return {
      stage: d.stage ?? "train",
      message: d.message ?? stepMessage(d.step, d.total ?? null),
      step: d.step,
      total: d.total ?? null,
      eta_s: d.eta_s ?? null,
      metrics: d.metrics ?? {},
    };
  }
  const flat = FlatShape.safeParse(c);
  if (!flat.success) return null;
  const d = flat.data;
  const total = d.total_steps ?? d.total ?? null;
  const metrics: Record<string, number> = {};
  for (const [k, v] of Object.entries(d)) {
    if (!NOT_METRICS.has(k) && typeof v === "number" && Number.isFinite(v)) metrics[k] = v;
  }
  return {
    stage: d.stage ?? "train",
    message: d.message ?? stepMessage(d.step, total),
    step: d.step,
    total,
    eta_s: d.eta_s ?? null,
    metrics,
  };
}

function stepMessage(step: number | null, total: number | null): string {
  if (step === null) return "training";
  return total ? `step ${step}/${total}` : `step ${step}`;
}

/** Splits "2024-05-01T10:00:00.123456789Z message" (the API's timestamps=true format). */
export function splitTimestamp(line: string): { time: string | null; text: string } {
  const space = line.indexOf(" ");
  if (space > 0 && /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/.test(line.slice(0, space))) {
    return { time: line.slice(0, space), text: line.slice(space + 1) };
  }
  return { time: null, text: line };
}

/**
 * Compares two RFC3339 timestamps with nanoseconds. Go's RFC3339Nano trims trailing zeros, so plain
 * string order is wrong ("05.1Z" vs "05.12Z").
 */
export function compareTimestamps(a: string, b: string): number {
  const [sa, na] = timeParts(a);
  const [sb, nb] = timeParts(b);
  return sa !== sb ? sa - sb : na - nb;
}

function timeParts(t: string): [number, number] {
  const m = /^(.*?)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$/.exec(t);
  if (!m) return [Number.NaN, 0];
  const seconds = Date.parse(`${m[1]}${m[3]}`) / 1000;
  const nanos = m[2] ? Number(m[2].padEnd(9, "0").slice(0, 9)) : 0;
  return [seconds, nanos];
}
