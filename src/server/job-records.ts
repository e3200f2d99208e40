// The job record (jobs/<agent>/<id>.json) and the job view's schema: what a tool call that
// started long work gets back, and what the server keeps so a restarted server can resume it.
import * as z from "zod";
import { UsageError, WorkError } from "../errors.js";
import { childLogger } from "../log.js";
import { LogLine, Progress } from "../pipeline/contract.js";
import { NotFoundError, type ObjectStore } from "../store/index.js";
import { jobKey, jobsPrefix } from "../store/layout.js";

const log = childLogger({ component: "jobs" });

export const JOB_KINDS = ["collect", "training", "evaluation"] as const;
export type JobKind = (typeof JOB_KINDS)[number];
export const JOB_STATES = ["running", "succeeded", "failed", "cancelled", "interrupted"] as const;
export type JobState = (typeof JOB_STATES)[number];

const JOB_ID_RE = /^[rj]\d{8}-\d{6}-\d{3}-[0-9a-f]{4}$/;

/** A server shutdown: the job stops at a step boundary and is resumed by the next server. */
export class ShutdownError extends Error {
  override name = "ShutdownError";
}

export class JobNotFoundError extends WorkError {
  override name = "JobNotFoundError";
}

/** What the record and the view both say of a job. */
const jobFacts = {
  kind: z.enum(JOB_KINDS),
  agent: z.string(),
  status: z.enum(JOB_STATES),
  /** Who started it: "mcp:<identity>", "schedule", "startup". */
  actor: z.string(),
  created_at: z.string(),
  updated_at: z.string(),
  ended_at: z.string().nullable(),
};
const outcome = { result: z.record(z.string(), z.unknown()).nullable(), error: z.string().nullable() };

export const JobRecord = z
  .object({
    schema: z.literal(1),
    id: z.string().regex(JOB_ID_RE),
    ...jobFacts,
    /** The pipeline run of the job (the same id); null for an older server's evaluation job. */
    run_id: z.string().nullable(),
    /** What was asked. */
    request: z.record(z.string(), z.unknown()),
    ...outcome,
    /** Only evaluation jobs of older servers (`j…`) kept their progress and log here; a run keeps them in run.json. */
    progress: Progress.nullable(),
    log: z.array(LogLine),
    /** When a server shutdown stopped it; the next server resumes it. */
    interrupted_at: z.string().nullable(),
  })
  .strict();
export type JobRecord = z.infer<typeof JobRecord>;

/** What job_status and trm://jobs/{id} show. */
export const JobView = z
  .object({
    job_id: z.string(),
    ...jobFacts,
    stage: z.string().nullable(),
    step: z.number().nullable(),
    total_steps: z.number().nullable(),
    eta_s: z.number().nullable(),
    /** 0..1 over the whole job. */
    fraction: z.number().nullable(),
    message: z.string().nullable(),
    metrics: z.record(z.string(), z.number()),
    stages: z.array(
      z
        .object({
          name: z.string(),
          status: z.string(),
          attempts: z.number().int(),
          error: z.string().nullable(),
          started_at: z.string().nullable(),
          ended_at: z.string().nullable(),
        })
        .strict(),
    ),
    ...outcome,
    /** What to call next. */
    next: z.string(),
  })
  .strict();
export type JobView = z.infer<typeof JobView>;

export type JobSummary = Pick<
  JobView,
  "job_id" | "kind" | "agent" | "status" | "stage" | "actor" | "created_at" | "ended_at" | "error"
> & { model_version: string | null };

export { jobKey };

export function isJobId(id: string): boolean {
  return JOB_ID_RE.test(id);
}

/** Rejects job ids of the wrong shape before they reach the store. */
export function checkJobId(id: string): string {
  if (!isJobId(id)) throw new UsageError(`"${id}" is not a job id (e.g. r20260101-020000-000-ab12)`);
  return id;
}

/** A job record, or null when there is none (or it does not validate: it is then ignored). */
export async function readJobRecord(
  store: ObjectStore,
  agent: string,
  id: string,
): Promise<JobRecord | null> {
  let body: Buffer;
  try {
    body = await store.get(jobKey(agent, id));
  } catch (err) {
    if (err instanceof NotFoundError) return null;
    throw err;
  }
  const r = JobRecord.safeParse(JSON.parse(body.toString("utf8")));
  if (!r.success) {
    log.warn({ key: jobKey(agent, id) }, "ignoring a job record that does not validate");
    return null;
  }
  return r.data;
}

export async function writeJobRecord(store: ObjectStore, rec: JobRecord): Promise<void> {
  await store.put(jobKey(rec.agent, rec.id), `${JSON.stringify(JobRecord.parse(rec), null, 2)}\n`, {
    contentType: "application/json",
  });
}

/** The newest job records of an agent (ids sort by time within a prefix). */
export async function recentJobRecords(store: ObjectStore, agent: string, n: number): Promise<JobRecord[]> {
  const ids = (await store.list(jobsPrefix(agent)))
    .map((o) => /^jobs\/[^/]+\/([^/]+)\.json$/.exec(o.key)?.[1])
    .filter((id): id is string => Boolean(id && isJobId(id)))
    .sort((a, b) => (a.slice(1) < b.slice(1) ? 1 : -1))
    .slice(0, n);
  const out: JobRecord[] = [];
  for (const id of ids) {
    const r = await readJobRecord(store, agent, id);
    if (r) out.push(r);
  }
  return out;
}
