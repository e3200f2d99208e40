// The run record, runs/<agent>/<run-id>/run.json: what a run was asked to do, each stage's
// status, times and attempts, and what it produced. It is rewritten whole (an atomic put) on
// every change, so a reader always sees a consistent record.
import * as z from "zod";
import { WorkError } from "../errors.js";
import { NotFoundError, type ObjectStore } from "../store/index.js";
import { runKey, runPrefix, runsPrefix } from "../store/layout.js";

export const STAGES = ["collect", "build", "train", "evaluate", "deploy"] as const;
export type StageName = (typeof STAGES)[number];

export const RunStatus = z.enum(["running", "succeeded", "failed", "cancelled"]);
export type RunStatus = z.infer<typeof RunStatus>;

/** partial: the stage did its main work but an optional part failed (e.g. one deploy target). */
export const StageStatus = z.enum([
  "pending",
  "running",
  "succeeded",
  "partial",
  "failed",
  "cancelled",
  "skipped",
]);
export type StageStatus = z.infer<typeof StageStatus>;

export const Attempt = z
  .object({
    n: z.number().int().min(1),
    started_at: z.string(),
    ended_at: z.string().nullable(),
    status: z.enum(["running", "succeeded", "failed", "interrupted", "cancelled"]),
    error: z.string().nullable(),
    /** Whether the failure was judged transient (and so retried). */
    transient: z.boolean().nullable(),
    pid: z.number().int(),
  })
  .strict();
export type Attempt = z.infer<typeof Attempt>;

export const StageRecord = z
  .object({
    name: z.enum(STAGES),
    requested: z.boolean(),
    status: StageStatus,
    started_at: z.string().nullable(),
    ended_at: z.string().nullable(),
    attempts: z.array(Attempt),
    error: z.string().nullable(),
    /** What the stage produced (dataset id, checkpoint key, gate verdict, version...). */
    output: z.record(z.string(), z.unknown()),
  })
  .strict();
export type StageRecord = z.infer<typeof StageRecord>;

export const Trigger = z
  .object({
    kind: z.enum(["cli", "schedule", "catch-up", "mcp", "api", "resume"]),
    /** Who asked: "cli:<user>", "mcp:<identity>", "schedule". */
    actor: z.string(),
    reason: z.string().nullable(),
  })
  .strict();
export type Trigger = z.infer<typeof Trigger>;

export const CodeVersion = z
  .object({
    /** One string for lineage: "<package version>+g<git sha>" or "<package version>+dist.<sha12>". */
    id: z.string(),
    package: z.string(),
    git: z.string().nullable(),
    dist_sha256: z.string().nullable(),
  })
  .strict();
export type CodeVersion = z.infer<typeof CodeVersion>;

/** The live state of the running stage, for job_status and the CLI. */
export const Progress = z
  .object({
    stage: z.enum(STAGES),
    message: z.string(),
    step: z.number().nullable(),
    total: z.number().nullable(),
    eta_s: z.number().nullable(),
    metrics: z.record(z.string(), z.number()),
    at: z.string(),
  })
  .strict();
export type Progress = z.infer<typeof Progress>;

export const LogLine = z
  .object({
    at: z.string(),
    level: z.enum(["debug", "info", "warn", "error"]),
    stage: z.string().nullable(),
    msg: z.string(),
  })
  .strict();
export type LogLine = z.infer<typeof LogLine>;

export const RunRecord = z
  .object({
    schema: z.literal(1),
    id: z.string(),
    agent: z.string(),
    status: RunStatus,
    trigger: Trigger,
    created_at: z.string(),
    updated_at: z.string(),
    ended_at: z.string().nullable(),
    options: z
      .object({
        from_scratch: z.boolean(),
        /** A dataset named by the caller instead of the newest one. */
        dataset_id: z.string().nullable(),
        /**
         * An evaluation run (model_evaluate, `trm-forge evaluate`): its one evaluate stage scores
         * this registered version, against another one or none, instead of the run's candidate.
         */
        evaluate: z.object({ version: z.string(), against: z.string().nullable() }).strict().optional(),
      })
      .strict(),
    stages: z.array(StageRecord),
    /** The config the run started with (secrets are references, never values). */
    config: z.unknown(),
    code_version: CodeVersion,
    dataset_id: z.string().nullable(),
    /** The champion the candidate was fine-tuned from. */
    parent_version: z.string().nullable(),
    /** The registered model version, once deploy has run. */
    model_version: z.string().nullable(),
    progress: Progress.nullable(),
    resumes: z.array(
      z
        .object({
          at: z.string(),
          pid: z.number().int(),
          from_stage: z.string().nullable(),
          reason: z.string(),
        })
        .strict(),
    ),
    /** The newest log lines of the run (bounded). */
    log: z.array(LogLine),
    error: z.string().nullable(),
  })
  .strict();
export type RunRecord = z.infer<typeof RunRecord>;

export const LOG_LINES_KEPT = 200;

export { runKey, runPrefix };

export function isTerminal(status: RunStatus): boolean {
  return status !== "running";
}

export class RunNotFoundError extends WorkError {
  override name = "RunNotFoundError";
}

export async function readRun(store: ObjectStore, agent: string, runId: string): Promise<RunRecord> {
  const key = runKey(agent, runId);
  let body: Buffer;
  try {
    body = await store.get(key);
  } catch (err) {
    if (err instanceof NotFoundError) throw new RunNotFoundError(`agent ${agent} has no run "${runId}"`);
    throw err;
  }
  let raw: unknown;
  try {
    raw = JSON.parse(body.toString("utf8"));
  } catch {
    throw new WorkError(`${key} is not valid JSON; the run record is damaged`);
  }
  const r = RunRecord.safeParse(raw);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new WorkError(`${key} is not a valid run record: ${i.path.join(".")}: ${i.message}`);
  }
  return r.data;
}

export async function writeRun(store: ObjectStore, record: RunRecord): Promise<void> {
  await store.put(runKey(record.agent, record.id), `${JSON.stringify(RunRecord.parse(record), null, 2)}\n`, {
    contentType: "application/json",
  });
}

/** Run ids of an agent, newest first. */
export async function listRunIds(store: ObjectStore, agent: string): Promise<string[]> {
  const ids = new Set<string>();
  for (const o of await store.list(runsPrefix(agent))) {
    const m = /^runs\/[^/]+\/([^/]+)\/run\.json$/.exec(o.key);
    if (m) ids.add(m[1]);
  }
  return [...ids].sort().reverse();
}
