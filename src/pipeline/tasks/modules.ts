// The four task modules by name (no model code: dataset readers and the build import this).
import { codeInfill } from "./code-infill.js";
import { logTriage } from "./log-triage.js";
import { metricForecast } from "./metric-forecast.js";
import { traceOutcome } from "./trace-outcome.js";
import { TASK_NAMES, type TaskModule, type TaskName } from "./types.js";

export const TASKS: Record<TaskName, TaskModule<any, any>> = {
  code_infill: codeInfill,
  log_triage: logTriage,
  metric_forecast: metricForecast,
  trace_outcome: traceOutcome,
};

export function getTask(name: string): TaskModule<any, any> {
  const t = TASKS[name as TaskName];
  if (!t) throw new Error(`unknown task "${name}" (tasks: ${TASK_NAMES.join(", ")})`);
  return t;
}
