// The Prometheus metrics trm-forge exports on /metrics. One registry for the process; each
// stage updates its own metrics here, so the Grafana dashboard (k8s/) has one list to follow.
import { Counter, Gauge, Histogram, Registry } from "prom-client";

export const registry = new Registry();
registry.setDefaultLabels({ app: "trm-forge" });

export const runStageDuration = new Histogram({
  name: "trm_forge_run_stage_duration_seconds",
  help: "Duration of pipeline stages",
  labelNames: ["agent", "stage", "result"] as const,
  buckets: [1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 12 * 3600],
  registers: [registry],
});

export const runsTotal = new Counter({
  name: "trm_forge_runs_total",
  help: "Pipeline runs by result (succeeded, failed, cancelled)",
  labelNames: ["agent", "result"] as const,
  registers: [registry],
});

export const runLastSuccess = new Gauge({
  name: "trm_forge_run_last_success_timestamp_seconds",
  help: "Unix time of the last successful run per agent",
  labelNames: ["agent"] as const,
  registers: [registry],
});

export const datasetExamples = new Gauge({
  name: "trm_forge_dataset_examples",
  help: "Examples per task and split in the newest dataset",
  labelNames: ["agent", "task", "split"] as const,
  registers: [registry],
});

export const validationScore = new Gauge({
  name: "trm_forge_validation_score",
  help: "Validation score per task (0..1) of evaluated model versions",
  labelNames: ["agent", "task", "version"] as const,
  registers: [registry],
});

export const gateResult = new Gauge({
  name: "trm_forge_gate_result",
  help: "Evaluation gate result per version: 1 passed, 0 failed",
  labelNames: ["agent", "version"] as const,
  registers: [registry],
});

export const servedModelInfo = new Gauge({
  name: "trm_forge_served_model_info",
  help: "The model version served per agent and alias (value is always 1)",
  labelNames: ["agent", "alias", "version"] as const,
  registers: [registry],
});

export const collectRecords = new Counter({
  name: "trm_forge_collect_records_total",
  help: "Records collected per agent and source",
  labelNames: ["agent", "source"] as const,
  registers: [registry],
});

export const collectErrors = new Counter({
  name: "trm_forge_collect_errors_total",
  help: "Collection errors per agent and source",
  labelNames: ["agent", "source"] as const,
  registers: [registry],
});

export const predictDuration = new Histogram({
  name: "trm_forge_predict_duration_seconds",
  help: "Latency of model_predict per agent, task and model role (champion or shadow challenger)",
  labelNames: ["agent", "task", "role"] as const,
  buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  registers: [registry],
});

export const predictionsTotal = new Counter({
  name: "trm_forge_predictions_total",
  help: "Predictions per agent, task and result (ok, error)",
  labelNames: ["agent", "task", "result"] as const,
  registers: [registry],
});

export const shadowAgreement = new Gauge({
  name: "trm_forge_shadow_agreement_ratio",
  help: "Share of shadowed predictions where the challenger agreed with the champion",
  labelNames: ["agent", "task"] as const,
  registers: [registry],
});

export const storeBytes = new Gauge({
  name: "trm_forge_store_bytes",
  help: "Bytes in the store per agent and prefix (raw/<source>, datasets, runs, checkpoints, models, other)",
  labelNames: ["agent", "prefix"] as const,
  registers: [registry],
});

export const gcDeletedBytes = new Counter({
  name: "trm_forge_gc_deleted_bytes_total",
  help: "Bytes deleted by store gc per agent",
  labelNames: ["agent"] as const,
  registers: [registry],
});

export const gcFailures = new Counter({
  name: "trm_forge_gc_failures_total",
  help: "Store gc runs that failed per agent (the run they followed is unaffected)",
  labelNames: ["agent"] as const,
  registers: [registry],
});

export const anomalyScore = new Gauge({
  name: "trm_forge_anomaly_score",
  help: "Score of the top finding per service in the agent's newest anomaly scan (0: no finding there now)",
  labelNames: ["agent", "service"] as const,
  registers: [registry],
});
