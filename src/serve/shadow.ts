// The A/B shadow: a share of live predictions also runs on the challenger, after the caller has
// its answer. This records, per task, how often the two agree (whole answer and per label), their
// confidence and their latency, so a challenger earns its promotion on live queries too. The
// record is kept in the store (serve/<agent>/shadow.json) so `trm-forge models compare` can read
// it from another process; it starts afresh when the champion/challenger pair changes.
import * as z from "zod";
import { shadowAgreement } from "../metrics.js";
import type { ObjectStore } from "../store/index.js";
import { shadowKey } from "../store/layout.js";

const LATENCY_SAMPLES = 512;

const RoleStats = z
  .object({
    confidence_sum: z.number(),
    steps_sum: z.number(),
    latency_ms_sum: z.number(),
    /** The most recent latencies (bounded), for percentiles. */
    latency_ms_recent: z.array(z.number()),
  })
  .strict();
type RoleStats = z.infer<typeof RoleStats>;

const TaskStats = z
  .object({
    shadowed: z.number().int(),
    agreed: z.number().int(),
    labels: z.record(z.string(), z.object({ n: z.number().int(), agreed: z.number().int() }).strict()),
    champion: RoleStats,
    challenger: RoleStats,
    challenger_errors: z.number().int(),
  })
  .strict();

export const ShadowFile = z
  .object({
    agent: z.string(),
    champion: z.string(),
    challenger: z.string(),
    since: z.string(),
    updated_at: z.string(),
    /** Shadow runs skipped because too many were pending. */
    dropped: z.number().int(),
    tasks: z.record(z.string(), TaskStats),
  })
  .strict();
export type ShadowFile = z.infer<typeof ShadowFile>;

export interface RoleSummary {
  version: string;
  mean_confidence: number;
  mean_steps: number;
  mean_latency_ms: number;
  p50_latency_ms: number;
  p95_latency_ms: number;
}

export interface ShadowTaskSummary {
  task: string;
  shadowed: number;
  agreement: number;
  label_agreement: Record<string, number>;
  champion: RoleSummary;
  challenger: RoleSummary;
  challenger_errors: number;
}

export interface ShadowReport {
  agent: string;
  champion: string;
  challenger: string;
  since: string;
  updated_at: string;
  dropped: number;
  tasks: ShadowTaskSummary[];
}

export interface ShadowSample {
  task: string;
  champion: { answer: unknown; confidence: number; steps: number; latencyMs: number };
  challenger: { answer: unknown; confidence: number; steps: number; latencyMs: number } | { error: string };
}

export { shadowKey };

/** Per label, the answer's values without confidences: { level: "error", service: "api", ... }. */
export function answerValues(answer: unknown): Record<string, string> {
  const strip = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(strip);
    if (v && typeof v === "object") {
      const o = v as Record<string, unknown>;
      if ("value" in o && "confidence" in o) return strip(o.value);
      return Object.fromEntries(
        Object.entries(o)
          .filter(([k]) => k !== "confidence")
          .map(([k, x]) => [k, strip(x)]),
      );
    }
    return v;
  };
  const s = strip(answer);
  if (s && typeof s === "object" && !Array.isArray(s))
    return Object.fromEntries(Object.entries(s).map(([k, v]) => [k, JSON.stringify(v)]));
  return { answer: JSON.stringify(s) };
}

export class ShadowRecorder {
  private file: ShadowFile;
  private dirty = false;

  constructor(
    readonly agent: string,
    readonly champion: string,
    readonly challenger: string,
    now = new Date(),
  ) {
    this.file = {
      agent,
      champion,
      challenger,
      since: now.toISOString(),
      updated_at: now.toISOString(),
      dropped: 0,
      tasks: {},
    };
  }

  /** Continues a record read from the store when it is for the same pair. */
  resume(prev: ShadowFile | null): void {
    // Only before the first sample: a resume must never drop what was recorded since.
    if (Object.keys(this.file.tasks).length || this.file.dropped) return;
    if (prev && prev.champion === this.champion && prev.challenger === this.challenger)
      this.file = structuredClone(prev);
  }

  dropped(): void {
    this.file.dropped++;
    this.dirty = true;
  }

  record(s: ShadowSample): void {
    let t = this.file.tasks[s.task];
    if (!t) {
      t = { shadowed: 0, agreed: 0, labels: {}, champion: role(), challenger: role(), challenger_errors: 0 };
      this.file.tasks[s.task] = t;
    }
    addRole(t.champion, s.champion);
    if ("error" in s.challenger) t.challenger_errors++;
    else {
      t.shadowed++;
      addRole(t.challenger, s.challenger);
      const a = answerValues(s.champion.answer);
      const b = answerValues(s.challenger.answer);
      let all = true;
      for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
        const l = t.labels[k] ?? { n: 0, agreed: 0 };
        l.n++;
        if (a[k] === b[k]) l.agreed++;
        else all = false;
        t.labels[k] = l;
      }
      if (all) t.agreed++;
      shadowAgreement.set({ agent: this.agent, task: s.task }, t.agreed / t.shadowed);
    }
    this.file.updated_at = new Date().toISOString();
    this.dirty = true;
  }

  report(): ShadowReport {
    return summarise(this.file);
  }

  async flush(store: ObjectStore): Promise<void> {
    if (!this.dirty) return;
    this.dirty = false;
    await store.put(shadowKey(this.agent), `${JSON.stringify(this.file, null, 2)}\n`, {
      contentType: "application/json",
    });
  }
}

/** The shadow record an agent's server left in the store, summarised; null when there is none. */
export async function readShadowReport(store: ObjectStore, agent: string): Promise<ShadowReport | null> {
  const raw = await readShadowFile(store, agent);
  return raw ? summarise(raw) : null;
}

export async function readShadowFile(store: ObjectStore, agent: string): Promise<ShadowFile | null> {
  if (!(await store.exists(shadowKey(agent)))) return null;
  const r = ShadowFile.safeParse(JSON.parse((await store.get(shadowKey(agent))).toString("utf8")));
  if (!r.success)
    throw new Error(`${shadowKey(agent)} is not a valid shadow record: ${r.error.issues[0].message}`);
  return r.data;
}

function role(): RoleStats {
  return { confidence_sum: 0, steps_sum: 0, latency_ms_sum: 0, latency_ms_recent: [] };
}

function addRole(r: RoleStats, s: { confidence: number; steps: number; latencyMs: number }): void {
  r.confidence_sum += s.confidence;
  r.steps_sum += s.steps;
  r.latency_ms_sum += s.latencyMs;
  r.latency_ms_recent.push(Math.round(s.latencyMs * 100) / 100);
  if (r.latency_ms_recent.length > LATENCY_SAMPLES) r.latency_ms_recent.shift();
}

function summarise(f: ShadowFile): ShadowReport {
  const tasks = Object.entries(f.tasks)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([task, t]) => {
      const n = t.shadowed + t.challenger_errors;
      return {
        task,
        shadowed: t.shadowed,
        agreement: t.shadowed ? t.agreed / t.shadowed : 0,
        label_agreement: Object.fromEntries(
          Object.entries(t.labels).map(([k, l]) => [k, l.n ? l.agreed / l.n : 0]),
        ),
        champion: roleSummary(f.champion, t.champion, n),
        challenger: roleSummary(f.challenger, t.challenger, t.shadowed),
        challenger_errors: t.challenger_errors,
      };
    });
  return {
    agent: f.agent,
    champion: f.champion,
    challenger: f.challenger,
    since: f.since,
    updated_at: f.updated_at,
    dropped: f.dropped,
    tasks,
  };
}

function roleSummary(version: string, r: RoleStats, n: number): RoleSummary {
  const sorted = [...r.latency_ms_recent].sort((a, b) => a - b);
  const pick = (q: number) =>
    sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : 0;
  return {
    version,
    mean_confidence: n ? r.confidence_sum / n : 0,
    mean_steps: n ? r.steps_sum / n : 0,
    mean_latency_ms: n ? r.latency_ms_sum / n : 0,
    p50_latency_ms: pick(0.5),
    p95_latency_ms: pick(0.95),
  };
}
