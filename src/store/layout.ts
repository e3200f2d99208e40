// Every store key is made here: what lives where. Keys start "<area>/<agent>/", so an agent's data
// is what lies under its AGENT_AREAS (gc and usage walk them) and no prefix is shared by two agents.
// Ids that come from callers (agent, run, version) go through checkKey where a key is built from them.
import { checkKey } from "./types.js";

/** The areas that hold an agent's own data, under "<area>/<agent>/". */
export const AGENT_AREAS = ["raw", "datasets", "runs", "models", "deploy", "jobs", "state"] as const;

export function agentAreaPrefix(area: (typeof AGENT_AREAS)[number], agent: string): string {
  return `${area}/${agent}`;
}

// ---- raw data: collection -------------------------------------------------------------------

/** raw/<agent>, or raw/<agent>/<source>. */
export function rawPrefix(agent: string, source?: string): string {
  return source ? `raw/${agent}/${source}` : `raw/${agent}`;
}

export function segmentKey(agent: string, source: string, day: string, name: string): string {
  return `${rawPrefix(agent, source)}/${day}/${name}.jsonl.gz`;
}

export function collectReportsPrefix(agent: string): string {
  return `${rawPrefix(agent)}/_reports`;
}

export function collectReportKey(agent: string, id: string): string {
  return `${collectReportsPrefix(agent)}/${id}.json`;
}

export function watermarkKey(agent: string, source: string, query: string): string {
  return `state/${agent}/collect/${source}/${query}.json`;
}

// ---- datasets ---------------------------------------------------------------------------------

export function datasetsPrefix(agent: string): string {
  return `datasets/${agent}`;
}

/** With a trailing slash: the dataset's files are `${datasetPrefix}<name>`. */
export function datasetPrefix(agent: string, id: string): string {
  return `${datasetsPrefix(agent)}/${id}/`;
}

export function datasetManifestKey(agent: string, id: string): string {
  return `${datasetPrefix(agent, id)}manifest.json`;
}

/** Points at the newest dataset: {"id": …}. */
export function latestDatasetKey(agent: string): string {
  return `${datasetsPrefix(agent)}/latest.json`;
}

// ---- runs -------------------------------------------------------------------------------------

export function runsPrefix(agent: string): string {
  return `runs/${agent}`;
}

export function runPrefix(agent: string, runId: string): string {
  return checkKey(`${runsPrefix(agent)}/${runId}`);
}

export function runKey(agent: string, runId: string): string {
  return `${runPrefix(agent, runId)}/run.json`;
}

/** What a worker-mode process wrote for one stage of a run. */
export function stageResultKey(agent: string, runId: string, stage: string): string {
  return `${runPrefix(agent, runId)}/stages/${stage}.json`;
}

export function runEvaluationKey(agent: string, runId: string): string {
  return `${runPrefix(agent, runId)}/evaluation.json`;
}

export function runReportKey(agent: string, runId: string): string {
  return `${runPrefix(agent, runId)}/report.html`;
}

/** The training loop's metrics, under the run prefix it was handed. */
export function metricsKey(runPrefix: string): string {
  return `${runPrefix}/metrics.jsonl`;
}

export function checkpointsPrefix(runPrefix: string): string {
  return `${runPrefix}/checkpoints`;
}

/** A checkpoint's folder: step-<n> (the latest states) or best-<n>, zero-padded so they sort. */
export function checkpointDir(runPrefix: string, kind: "state" | "best", step: number): string {
  return `${checkpointsPrefix(runPrefix)}/${kind === "state" ? "step" : "best"}-${String(step).padStart(8, "0")}`;
}

export function scheduleStateKey(agent: string): string {
  return `${runsPrefix(agent)}/schedule.json`;
}

export function gcStateKey(agent: string): string {
  return `${runsPrefix(agent)}/gc.json`;
}

// ---- the model registry ------------------------------------------------------------------------

export function modelsPrefix(agent: string): string {
  return checkKey(`models/${agent}`);
}

export function registryKey(agent: string): string {
  return `${modelsPrefix(agent)}/registry.json`;
}

export function versionPrefix(agent: string, version: string): string {
  return checkKey(`${modelsPrefix(agent)}/${version}`);
}

export function artifactKey(agent: string, version: string, name: string): string {
  return `${versionPrefix(agent, version)}/${name}`;
}

// ---- deploy targets, serving, scans, jobs --------------------------------------------------------

export function targetStateKey(agent: string, target: string): string {
  return `deploy/${agent}/${target}.json`;
}

/** A file deploy made for a version (the knowledge card of a version registered without one). */
export function deployFileKey(agent: string, version: string, name: string): string {
  return `deploy/${agent}/${version}/${name}`;
}

export function vllmPrefix(agent: string, version: string): string {
  return `deploy/${agent}/vllm/${version}`;
}

export function shadowKey(agent: string): string {
  return `serve/${agent}/shadow.json`;
}

export function scanKey(agent: string): string {
  return `scans/${agent}/latest.json`;
}

export function jobsPrefix(agent: string): string {
  return `jobs/${agent}`;
}

export function jobKey(agent: string, id: string): string {
  return `${jobsPrefix(agent)}/${id}.json`;
}

// ---- locks: the agent's lease and cancel markers ------------------------------------------------

/** Held by the agent's running run, or by store gc. */
export function runLeaseKey(agent: string): string {
  return `locks/${agent}/run.json`;
}

/** Asks run runId of the agent to stop, on whichever host holds its lease. */
export function cancelKey(agent: string, runId: string): string {
  return `locks/${agent}/cancel/${runId}.json`;
}
