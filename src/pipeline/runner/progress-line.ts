// The one place that says which pod log lines carry training progress. The Job's pod runs
// `trm-forge run --resume <run> --stages train`; every line it prints reaches the job logs, and
// lines that are JSON progress events also reach job status. Accepted shapes:
//   {"type":"progress","stage":"train","step":120,"total_steps":2000,"loss":1.9,...}
//   {"event":"progress",...}                     (same fields)
//   {"level":30,"msg":"...","progress":{...}}   (a pino line carrying an event)
import * as z from "zod";

export const TrainProgressSchema = z.looseObject({
  stage: z.string().default("train"),
  step: z.number().int().min(0),
  total_steps: z.number().int().min(0).optional(),
  loss: z.number().optional(),
  lr: z.number().optional(),
  eta_s: z.number().min(0).optional(),
  samples_per_s: z.number().min(0).optional(),
});
export type TrainProgress = z.infer<typeof TrainProgressSchema>;

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
  let candidate: unknown = null;
  if (obj.type === "progress" || obj.event === "progress") candidate = obj;
  else if (typeof obj.progress === "object" && obj.progress !== null) candidate = obj.progress;
  if (candidate === null) return { kind: "log" };
  const res = TrainProgressSchema.safeParse(candidate);
  if (!res.success) return { kind: "log" };
  const {
    type: _t,
    event: _e,
    ...progress
  } = res.data as TrainProgress & { type?: unknown; event?: unknown };
  return { kind: "progress", progress: progress as TrainProgress };
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
