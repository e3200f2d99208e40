// The record a run starts from: a new one, one to resume, or (worker mode) the stages of a run
// that another process owns.
import { hostname, userInfo } from "node:os";
import type { Config } from "../../config/index.js";
import { UsageError } from "../../errors.js";
import type { ObjectStore } from "../../store/index.js";
import {
  type RunRecord,
  readRun,
  STAGES,
  type StageName,
  type StageRecord,
  type Trigger,
} from "../contract.js";
import { codeVersion } from "./code-version.js";
import type { StartRunOptions } from "./types.js";

/** The record of a new run: the requested stages pending, the others skipped. */
export function newRecord(
  config: Config,
  now: () => Date,
  agent: string,
  runId: string,
  requested: StageName[],
  opts: StartRunOptions,
): RunRecord {
  if (opts.evaluate && (requested.length !== 1 || requested[0] !== "evaluate"))
    throw new UsageError("an evaluation run (evaluate: version) has the evaluate stage only");
  const at = now().toISOString();
  return {
    schema: 1,
    id: runId,
    agent,
    status: "running",
    trigger: {
      kind: opts.trigger?.kind ?? "api",
      actor: opts.trigger?.actor ?? defaultActor(),
      reason: opts.trigger?.reason ?? null,
    },
    created_at: at,
    updated_at: at,
    ended_at: null,
    options: {
      from_scratch: Boolean(opts.fromScratch),
      dataset_id: opts.datasetId ?? null,
      ...(opts.evaluate ? { evaluate: opts.evaluate } : {}),
    },
    stages: STAGES.map(
      (name): StageRecord => ({
        name,
        requested: requested.includes(name),
        status: requested.includes(name) ? "pending" : "skipped",
        started_at: null,
        ended_at: null,
        attempts: [],
        error: null,
        output: {},
      }),
    ),
    config,
    code_version: codeVersion(),
    dataset_id: opts.datasetId ?? null,
    parent_version: null,
    model_version: null,
    progress: null,
    resumes: [],
    log: [],
    error: null,
  };
}

/**
 * Worker mode (`--resume RUN --stages S`, e.g. the train stage in a Kubernetes Job): runs the
 * given stages of a run that another process owns. run.json is left to its owner; each
 * stage's result goes to runs/<agent>/<run>/stages/<stage>.json (see readStageResult).
 */
export async function prepareWorker(
  store: ObjectStore,
  agent: string,
  runId: string,
  stages: StageName[],
): Promise<RunRecord> {
  const r = await readRun(store, agent, runId);
  if (r.status !== "running")
    throw new UsageError(
      `run ${runId} is ${r.status}: --stages with --resume runs stages of a run in progress; use --resume alone to continue it`,
    );
  for (const s of r.stages) {
    if (stages.includes(s.name)) {
      if (!s.requested) throw new UsageError(`run ${runId} did not ask for the ${s.name} stage`);
      s.status = "pending";
      s.error = null;
    } else if (s.status === "pending" || s.status === "running") s.status = "skipped";
  }
  return r;
}

/** A run to continue from its first unfinished stage; its interrupted attempts are marked so. */
export async function prepareResume(
  store: ObjectStore,
  now: () => Date,
  agent: string,
  runId: string,
  trigger?: Partial<Trigger>,
): Promise<RunRecord> {
  const r = await readRun(store, agent, runId);
  if (r.status === "succeeded") return r;
  const at = now().toISOString();
  let from: StageName | null = null;
  for (const s of r.stages) {
    if (!s.requested || s.status === "succeeded" || s.status === "partial" || s.status === "skipped")
      continue;
    from ??= s.name;
    for (const a of s.attempts) {
      if (a.status === "running") {
        a.status = "interrupted";
        a.ended_at = at;
        a.error = "the process stopped during this attempt";
      }
    }
    s.status = "pending";
    s.error = null;
  }
  r.resumes.push({
    at,
    pid: process.pid,
    from_stage: from,
    reason: trigger?.reason ?? (r.status === "running" ? "interrupted" : `resumed after ${r.status}`),
  });
  r.status = "running";
  r.error = null;
  r.ended_at = null;
  r.updated_at = at;
  return r;
}

export function normaliseStages(stages?: StageName[]): StageName[] {
  if (!stages || stages.length === 0) return [...STAGES];
  for (const s of stages) {
    if (!STAGES.includes(s)) throw new UsageError(`unknown stage "${s}" (stages: ${STAGES.join(", ")})`);
  }
  return STAGES.filter((s) => stages.includes(s));
}

function defaultActor(): string {
  try {
    return `api:${userInfo().username}@${hostname()}`;
  } catch {
    return "api";
  }
}
