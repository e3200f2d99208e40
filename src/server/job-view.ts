// What job_status, jobs_list and trm://jobs/{id} show of a job: a view computed from the run
// record (every job is a run), with a hint of what to call next. Evaluation jobs that a server
// from before evaluations were runs left (`j…` ids) are shown from their own record.
import { type Progress, stageOutput } from "../pipeline/contract.js";
import type { RunRecord, StageName } from "../pipeline/run.js";
import type { JobKind, JobRecord, JobState, JobSummary, JobView } from "./job-records.js";

/** A run as a job: its live progress (from this process) wins over the stored one. */
export function runView(
  run: RunRecord,
  rec: JobRecord | null,
  status: JobState,
  liveProgress?: Progress | null,
): JobView {
  const requested = run.stages.filter((s) => s.requested);
  const current = requested.find((s) => s.status === "running") ?? null;
  // Progress left over from a stage that has ended says nothing about the current one.
  const latest = status === "running" ? (liveProgress ?? run.progress) : null;
  const progress = latest && latest.stage === current?.name ? latest : null;
  const finished = requested.filter((s) => s.status !== "pending" && s.status !== "running").length;
  const stageFraction =
    progress && progress.step !== null && progress.total ? Math.min(1, progress.step / progress.total) : 0;
  const kind: JobKind =
    rec?.kind ??
    runKind(
      requested.map((s) => s.name),
      Boolean(run.options.evaluate),
    );
  const result = runResult(run);
  return {
    job_id: run.id,
    kind,
    agent: run.agent,
    status,
    actor: rec?.actor ?? run.trigger.actor,
    created_at: run.created_at,
    updated_at: run.updated_at,
    ended_at: run.ended_at,
    stage: current?.name ?? progress?.stage ?? null,
    step: progress?.step ?? null,
    total_steps: progress?.total ?? null,
    eta_s: progress?.eta_s === null || progress?.eta_s === undefined ? null : Math.round(progress.eta_s),
    fraction:
      status === "succeeded"
        ? 1
        : requested.length
          ? Math.round(((finished + stageFraction) / requested.length) * 1000) / 1000
          : null,
    message: progress?.message ?? null,
    metrics: progress?.metrics ?? {},
    stages: requested.map((s) => ({
      name: s.name,
      status: s.status,
      attempts: s.attempts.length,
      error: s.error,
      started_at: s.started_at,
      ended_at: s.ended_at,
    })),
    result,
    error: status === "interrupted" ? null : run.error,
    next: nextHint(kind, status, result),
  };
}

/** The job a run is: a collection, an evaluation (of a registered version) or a training. */
export function runKind(stages: readonly StageName[], evaluation: boolean): JobKind {
  if (evaluation) return "evaluation";
  return stages.length === 1 && stages[0] === "collect" ? "collect" : "training";
}

/** An evaluation job with its own record and lifecycle, as servers before evaluation runs kept them. */
export function isLegacyEvaluation(rec: JobRecord): boolean {
  return rec.kind === "evaluation" && rec.id.startsWith("j");
}

/** A legacy evaluation job as its record tells it. */
export function evaluationView(rec: JobRecord): JobView {
  const p = rec.progress;
  return {
    job_id: rec.id,
    kind: "evaluation",
    agent: rec.agent,
    status: rec.status,
    actor: rec.actor,
    created_at: rec.created_at,
    updated_at: rec.updated_at,
    ended_at: rec.ended_at,
    stage: rec.status === "running" ? "evaluate" : null,
    step: p?.step ?? null,
    total_steps: p?.total ?? null,
    eta_s: null,
    fraction: rec.status === "succeeded" ? 1 : p?.step !== null && p?.total ? p.step! / p.total : null,
    message: p?.message ?? null,
    metrics: {},
    stages: [],
    result: rec.result,
    error: rec.error,
    next: nextHint("evaluation", rec.status, rec.result),
  };
}

export function summary(v: JobView, modelVersion: string | null): JobSummary {
  return {
    job_id: v.job_id,
    kind: v.kind,
    agent: v.agent,
    status: v.status,
    stage: v.stage,
    actor: v.actor,
    created_at: v.created_at,
    ended_at: v.ended_at,
    error: v.error,
    model_version: modelVersion,
  };
}

/** The outputs of a run that a caller acts on. */
export function runResult(run: RunRecord): Record<string, unknown> | null {
  const asked = run.options.evaluate;
  if (asked) {
    const e = stageOutput(run, "evaluate");
    if (!e?.gate) return null;
    return {
      version: e.version ?? asked.version,
      against: e.champion ?? null,
      dataset_id: e.dataset_id ?? run.dataset_id,
      examples: e.examples ?? null,
      stored_at: e.evaluation ?? null,
      gate: e.gate,
      tasks: e.tasks ?? {},
    };
  }
  const result: Record<string, unknown> = {};
  const c = stageOutput(run, "collect");
  if (c && "records" in c) result.collect = { records: c.records, errors: c.errors, sources: c.sources };
  const b = stageOutput(run, "build");
  if (b && "dataset_id" in b) result.dataset = { id: b.dataset_id, examples: b.examples, reused: b.reused };
  const t = stageOutput(run, "train");
  if (t && "steps" in t)
    result.training = {
      steps: t.steps,
      best_step: t.best_step,
      best_score: t.best_score,
      stopped: t.stopped,
      fine_tuned_from: t.parent_version ?? null,
    };
  const e = stageOutput(run, "evaluate");
  if (e && "gate" in e) result.gate = e.gate;
  if (e && "scores" in e) result.scores = e.scores;
  const d = stageOutput(run, "deploy");
  if (d && "version" in d)
    result.deploy = {
      version: d.version,
      promoted_to: d.promoted_to ?? null,
      previous_champion: d.previous_champion ?? null,
    };
  if (run.model_version) result.model_version = run.model_version;
  return Object.keys(result).length ? result : null;
}

function nextHint(kind: JobKind, status: JobState, result: Record<string, unknown> | null): string {
  switch (status) {
    case "running":
      return "Call job_status again (wait_s up to 25 waits for it), job_logs for its log, job_cancel to stop it.";
    case "interrupted":
      return "A server shutdown (or crash) stopped this job at a checkpoint; the server resumes it when it starts, and job_status follows it from there. job_cancel drops it.";
    case "cancelled":
      return kind === "evaluation"
        ? "Cancelled. model_evaluate starts another."
        : "Cancelled; training_start (or data_collect) starts a new run; a new training resumes nothing.";
    case "failed":
      return "Read job_logs (min_level: warn) for the cause; fix it (sources_check, data_status) and start the job again.";
    case "succeeded":
      break;
  }
  if (kind === "collect")
    return "Collected. data_status shows what has accumulated; training_start trains on it.";
  if (kind === "evaluation") {
    const gate = result?.gate as { passed?: boolean } | undefined;
    return gate?.passed
      ? "The version passed the gate. model_compare shows it beside the champion; model_promote makes it champion."
      : "The version failed the gate (reasons in result.gate). model_promote needs force to override that; think twice.";
  }
  const deploy = result?.deploy as { version?: string; promoted_to?: string | null } | undefined;
  if (!deploy?.version)
    return "Done. data_status or jobs_list shows what it produced; training_start with all stages registers a model.";
  return deploy.promoted_to
    ? `Version ${deploy.version} is now ${deploy.promoted_to}. model_compare against the previous champion, model_predict to try it, model_rollback if it misbehaves.`
    : `Version ${deploy.version} is registered but not promoted (gate failed: see result.gate). model_compare shows why; model_promote with force overrides the gate.`;
}
