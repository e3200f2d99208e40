// The one schema of the trm-forge config file. Every section validates here, and every default
// lives here, so `trm-forge doctor` and the docs can describe the whole config from one place.
import * as z from "zod";
import { agentName, identityName } from "./names.js";

const positiveInt = z.number().int().positive();

/** Architecture of the TRM. Unset keys come from the preset; vocab and sequence length come from the dataset. */
export const ModelSchema = z
  .object({
    preset: z.enum(["7m", "small", "demo"]).default("7m"),
    backend: z.enum(["auto", "tensorflow", "native", "wasm", "cpu"]).default("auto"),
    hidden_size: positiveInt.optional(),
    num_heads: positiveInt.optional(),
    num_layers: positiveInt.optional(),
    expansion: z.number().positive().optional(),
    H_cycles: positiveInt.optional(),
    L_cycles: positiveInt.optional(),
    halt_max_steps: positiveInt.optional(),
    halt_exploration_prob: z.number().min(0).max(1).optional(),
    puzzle_emb_len: z.number().int().min(0).optional(),
    puzzle_emb_ndim: z.number().int().min(-1).optional(),
    pos_encodings: z.enum(["rope", "learned", "none"]).optional(),
    rope_theta: z.number().positive().optional(),
    rms_norm_eps: z.number().positive().optional(),
    mlp_t: z.boolean().optional(),
    loss_type: z.enum(["stablemax", "softmax"]).optional(),
  })
  .strict();

export const StoreSchema = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("fs") }).strict(),
  z
    .object({
      kind: z.literal("minio"),
      endpoint: z.string().min(1),
      port: z.number().int().min(1).max(65535).optional(),
      use_ssl: z.boolean().default(true),
      bucket: z.string().min(3),
      region: z.string().default("us-east-1"),
      path_style: z.boolean().default(true),
      /** Objects up to this size go up in one PUT; s3rver has no multipart, so tests set it above their largest object. */
      part_size_mb: z.number().int().min(5).default(64),
      access_key: z.object({ env: z.string() }).or(z.object({ file: z.string() })),
      secret_key: z.object({ env: z.string() }).or(z.object({ file: z.string() })),
      prefix: z.string().default(""),
      presign_expiry_s: z.number().int().min(0).max(604800).default(0),
    })
    .strict(),
]);

/** A credential given by reference, never inline: an environment variable or a file (a mounted Secret). */
export const SecretRefSchema = z.union([
  z.object({ env: z.string().min(1) }).strict(),
  z.object({ file: z.string().min(1) }).strict(),
]);
export type SecretRef = z.infer<typeof SecretRefSchema>;

/** The in-process TRM server: batching, hot swap and the A/B shadow. */
export const ServeSchema = z
  .object({
    /** Agents to serve; empty means every agent with a registry in the store. */
    agents: z.array(z.string().min(1)).default([]),
    /** Concurrent requests for one agent and model are batched up to this many samples... */
    max_batch_size: z.number().int().min(1).max(1024).default(32),
    /** ...or until the first of them has waited this long. */
    max_wait_ms: z.number().min(0).max(1000).default(3),
    /** Longest input accepted by predict, in characters (tasks truncate further to the sequence length). */
    max_input_chars: z.number().int().min(1).max(1_000_000).default(8192),
    /** How often registry.json is polled for alias moves. */
    poll_interval_ms: z.number().int().min(100).default(5000),
    /** Share of predictions that also run on the challenger in the background. */
    shadow_fraction: z.number().min(0).max(1).default(0.1),
    /** Shadow runs waiting beyond this are dropped, so a slow challenger never builds a backlog. */
    shadow_max_pending: z.number().int().min(0).default(64),
    /** How long a retired model may wait for its in-flight requests before its tensors are freed anyway. */
    drain_timeout_ms: z.number().int().min(0).default(30_000),
  })
  .strict();

/** The knowledge card (knowledge.md) distilled from the data for the agents' language models. */
export const KnowledgeSchema = z
  .object({
    max_tokens: z.number().int().min(500).max(100_000).default(6000),
    top_edges: z.number().int().min(1).default(40),
    top_errors_per_service: z.number().int().min(1).default(5),
    max_incidents: z.number().int().min(0).default(20),
    max_series: z.number().int().min(0).default(40),
  })
  .strict();

/** The agent's Ollama model: a base LLM with the knowledge card as SYSTEM. */
export const OllamaSchema = z
  .object({
    enabled: z.boolean().default(false),
    base_url: z.string().url().default("http://127.0.0.1:11434"),
    base_model: z.string().min(1).default("llama3.2:3b"),
    /** Name of the agent's model; "{agent}" is replaced. Versions are tags of it, the alias is `alias_tag`. */
    model_name: z.string().min(1).default("{agent}-homelab"),
    alias_tag: z.string().min(1).default("latest"),
    parameters: z
      .record(z.string(), z.union([z.number(), z.string(), z.boolean(), z.array(z.string())]))
      .default({ temperature: 0.2, num_ctx: 8192 }),
    /** keep_alive of the preload request (Ollama duration or seconds). */
    keep_alive: z.union([z.string(), z.number()]).default("30m"),
    /** Versioned tags kept besides the alias; older ones are deleted. */
    keep_versions: z.number().int().min(1).default(3),
    smoke_prompt: z.string().min(1).default("Name one service you know about, in one line."),
    smoke_num_predict: z.number().int().min(1).default(16),
    /** Limit for create and generate calls (create streams progress, so this is the whole stream). */
    timeout_s: z.number().positive().default(600),
    /** Limit for the short calls: copy, delete, tags, ps, show. */
    request_timeout_s: z.number().positive().default(30),
  })
  .strict();

/** vLLM serves a base model; it gets the card as a chat template and, optionally, a LoRA adapter. */
export const VllmSchema = z
  .object({
    enabled: z.boolean().default(false),
    /** When set, deploy checks /v1/models for the served name (and loads the adapter). */
    base_url: z.string().url().optional(),
    api_key: SecretRefSchema.optional(),
    base_model: z.string().min(1).default("meta-llama/Llama-3.2-3B-Instruct"),
    /** "{agent}" is replaced. */
    served_model_name: z.string().min(1).default("{agent}-homelab"),
    lora: z
      .object({
        /** Adapter path as vLLM sees it; "{agent}" and "{version}" are replaced. */
        path: z.string().min(1),
        /** Adapter name prefix; the version is appended, since vLLM refuses to reload a loaded name. */
        name: z.string().min(1).default("{agent}-lora"),
      })
      .strict()
      .optional(),
    request_timeout_s: z.number().positive().default(30),
  })
  .strict();

// ---- agents and collection -------------------------------------------------------------------
// Each agent names its own sources. A source is collected only when its key is present (and not
// `enabled: false`); every other field has a default, so `prometheus: {}` is a working source.

/** A duration such as 500ms, 30s, 5m, 12h, 7d or 1w. */
export const DurationSchema = z
  .string()
  .regex(/^\d+(\.\d+)?(ms|s|m|h|d|w)$/, "expected a duration such as 30s, 5m, 12h or 7d");

const NameSchema = z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, "use lowercase letters, digits, _ and -");

const HttpUrlSchema = z
  .url({ protocol: /^https?$/ })
  .refine((u) => !new URL(u).username && !new URL(u).password, "put credentials under auth, not in the URL");

const HttpAuthSchema = z.union([
  z.object({ bearer: SecretRefSchema }).strict(),
  z.object({ basic: z.object({ username: z.string().min(1), password: SecretRefSchema }).strict() }).strict(),
]);

/** Fields every HTTP source shares. */
function httpSource(defaults: { url: string; timeout: string }) {
  return {
    enabled: z.boolean().default(true),
    url: HttpUrlSchema.default(defaults.url),
    auth: HttpAuthSchema.optional(),
    /** Sent as X-Scope-OrgID (Loki/Tempo multi-tenancy, Mimir). */
    tenant: z.string().min(1).optional(),
    /** An extra CA bundle (PEM) trusted beside the system roots. */
    ca_file: z.string().min(1).optional(),
    /** Per request; a slow response past it is retried like a network error. */
    timeout: DurationSchema.default(defaults.timeout),
    /** Retries on network errors, 429 and 5xx, with exponential backoff and jitter. */
    retries: z.number().int().min(0).max(10).default(4),
  };
}

function uniqueNames(queries: { name: string }[], ctx: z.RefinementCtx): void {
  const seen = new Set<string>();
  queries.forEach((q, i) => {
    if (seen.has(q.name))
      ctx.addIssue({ code: "custom", path: [i, "name"], message: `duplicate query name "${q.name}"` });
    seen.add(q.name);
  });
}

export const CodeSourceSchema = z
  .object({
    enabled: z.boolean().default(true),
    /** The repository root (relative paths are relative to the working directory). */
    path: z.string().min(1),
    include: z
      .array(z.string().min(1))
      .min(1)
      .default([
        "**/*.cs",
        "**/*.{yaml,yml}",
        "**/*.json",
        "**/*.mustache",
        "**/*.md",
        "**/*.{ts,tsx,mts,cts}",
        "**/*.{js,jsx,mjs,cjs}",
        "**/*.go",
        "**/*.py",
        "**/Dockerfile",
        "**/Dockerfile.*",
        "**/*.dockerfile",
      ]),
    exclude: z
      .array(z.string().min(1))
      .default([
        "**/.git/**",
        "**/node_modules/**",
        "**/vendor/**",
        "**/bin/**",
        "**/obj/**",
        "**/dist/**",
        "**/build/**",
        "**/out/**",
        "**/target/**",
        "**/coverage/**",
        "**/__pycache__/**",
        "**/.venv/**",
        "**/venv/**",
        "**/.next/**",
        "**/*.min.js",
        "**/package-lock.json",
        "**/pnpm-lock.yaml",
        "**/yarn.lock",
      ]),
    respect_gitignore: z.boolean().default(true),
    /** Files larger than this (bytes) are skipped. */
    max_file_bytes: z.number().int().positive().default(1_048_576),
  })
  .strict();

export const PrometheusQuerySchema = z
  .object({
    name: NameSchema,
    /** `$__rate_interval` becomes max(step + scrape_interval, 4 × scrape_interval), so a rate window never falls short of the step. */
    promql: z.string().min(1),
    step: DurationSchema.optional(),
  })
  .strict();

export const DEFAULT_PROMETHEUS_QUERIES = [
  { name: "up", promql: "up" },
  { name: "http_requests_rate", promql: "rate(http_requests_total[$__rate_interval])" },
  {
    name: "http_latency_p95",
    promql:
      "histogram_quantile(0.95, sum by (le, service) (rate(http_request_duration_seconds_bucket[$__rate_interval])))",
  },
  { name: "container_cpu_rate", promql: "rate(container_cpu_usage_seconds_total[$__rate_interval])" },
  { name: "container_memory_bytes", promql: "container_memory_usage_bytes" },
  { name: "kube_pod_status_phase", promql: "kube_pod_status_phase" },
];

export const PrometheusSourceSchema = z
  .object({
    ...httpSource({ url: "http://localhost:9090", timeout: "60s" }),
    /** Query resolution; raised where needed so that no request asks for more than 11,000 points. */
    step: DurationSchema.default("60s"),
    scrape_interval: DurationSchema.default("30s"),
    queries: z
      .array(PrometheusQuerySchema)
      .min(1)
      .default(DEFAULT_PROMETHEUS_QUERIES)
      .superRefine(uniqueNames),
  })
  .strict();

export const LokiQuerySchema = z.object({ name: NameSchema, logql: z.string().min(1) }).strict();

/** `${key}` in a query is the agent's namespaces[key]. */
export const DEFAULT_LOKI_QUERIES = [
  // biome-ignore lint/suspicious/noTemplateCurlyInString: ${key} is the config's own placeholder
  { name: "lambda_errors", logql: '{namespace="${lambda}"} |= "error"' },
  // biome-ignore lint/suspicious/noTemplateCurlyInString: ${key} is the config's own placeholder
  { name: "agent_logs", logql: '{namespace="${agents}"} | json' },
  { name: "lambda_services", logql: '{service_name=~"lambda-.*"} | json' },
];

export const LokiSourceSchema = z
  .object({
    ...httpSource({ url: "http://localhost:3100", timeout: "120s" }),
    /** Entries per request; Loki's max_entries_limit_per_query defaults to 5000. */
    batch_size: z.number().int().min(1).max(5000).default(5000),
    /** Entries per query per run; the report says when it was hit, and the next run continues from there. */
    max_entries: z.number().int().positive().default(1_000_000),
    queries: z.array(LokiQuerySchema).min(1).default(DEFAULT_LOKI_QUERIES).superRefine(uniqueNames),
  })
  .strict();

export const TempoQuerySchema = z.object({ name: NameSchema, traceql: z.string().min(1) }).strict();

export const TempoSourceSchema = z
  .object({
    ...httpSource({ url: "http://localhost:3200", timeout: "120s" }),
    /** Null means the defaults: agent-sre, agent-bruno, one per namespace, slow traces, error traces. */
    queries: z.array(TempoQuerySchema).min(1).superRefine(uniqueNames).nullable().default(null),
    /** Traces per search request; a window that returns this many is split in two and searched again. */
    search_limit: z.number().int().min(1).max(10_000).default(500),
    /** Spans per span set in search results (Tempo's cap is 100). */
    spss: z.number().int().min(1).max(100).default(3),
    /** Search windows: Tempo refuses ranges over 168h. */
    search_window: DurationSchema.default("1h"),
    min_search_window: DurationSchema.default("1m"),
    /** Trace bodies fetched at once. */
    fetch_concurrency: z.number().int().min(1).max(64).default(8),
    /** Traces per query per run. */
    max_traces: z.number().int().positive().default(50_000),
    /** Span and resource attributes kept (globs); everything else is dropped before storing. */
    attributes: z
      .array(z.string().min(1))
      .default([
        "http.*",
        "url.*",
        "rpc.*",
        "db.system",
        "db.name",
        "db.operation*",
        "db.statement",
        "messaging.*",
        "faas.*",
        "k8s.*",
        "peer.service",
        "server.address",
        "net.peer.name",
        "error.type",
        "exception.type",
        "exception.message",
        "otel.status_code",
      ]),
  })
  .strict();

export const AgentSchema = z
  .object({
    /** Named namespaces: `${key}` in Loki queries, and one default Tempo query each. */
    namespaces: z.record(z.string().regex(/^[a-z0-9_]+$/), z.string().min(1)).default({
      agents: "ai-agents",
      lambda: "knative-lambda",
    }),
    /** How far back the first collection of a query reaches; later runs start at the watermark. */
    lookback: DurationSchema.optional(),
    sources: z
      .object({
        code: CodeSourceSchema.optional(),
        prometheus: PrometheusSourceSchema.optional(),
        loki: LokiSourceSchema.optional(),
        tempo: TempoSourceSchema.optional(),
      })
      .strict()
      .prefault({}),
  })
  .strict();

export const CollectSchema = z
  .object({
    /** Look-back of a first collection (an agent's own `lookback` wins). */
    lookback: DurationSchema.default("7d"),
    /** Data younger than this is left for the next run: servers ingest late. */
    settle: DurationSchema.default("2m"),
    /** Queries run at once per source (sources always run side by side). */
    concurrency: z.number().int().min(1).max(16).default(2),
    /** Records per segment; bounds memory, since a segment is built in memory before its atomic put. */
    segment_max_records: z.number().int().min(1).default(20_000),
    /** Uncompressed megabytes per segment, whichever limit comes first (traces and files are large records). */
    segment_max_mb: z.number().positive().default(8),
    /** A stretch without data longer than this is reported as a gap. */
    gap_min: DurationSchema.default("1h"),
    backoff_base: DurationSchema.default("500ms"),
    backoff_max: DurationSchema.default("30s"),
    /** Larger HTTP responses are refused, counted both as sent and after gzip/deflate/br decoding. */
    max_response_mb: z.number().int().min(1).default(256),
  })
  .strict();

export type AgentConfig = z.infer<typeof AgentSchema>;
export type CodeSourceConfig = z.infer<typeof CodeSourceSchema>;
export type PrometheusSourceConfig = z.infer<typeof PrometheusSourceSchema>;
export type LokiSourceConfig = z.infer<typeof LokiSourceSchema>;
export type TempoSourceConfig = z.infer<typeof TempoSourceSchema>;
export type CollectSettings = z.infer<typeof CollectSchema>;

/** A duration such as "30d", "12h", "5m", "45s". */
const durationText = z.string().regex(/^\d+(ms|s|m|h|d|w)$/, 'a duration such as "30d", "1h" or "5m"');

/**
 * Drop train examples whose input also occurs in validation. On by default where an input fixes
 * its answer (code windows); off where inputs repeat by nature (log templates, call paths, flat
 * series) and dropping them would leave train with only the rare cases. Validation marks the
 * examples whose input train holds, either way.
 */
const dropShared = (on: boolean) => z.boolean().default(on);

const taskBase = {
  enabled: z.boolean().default(true),
  /** Examples kept per task (train + validation), sampled with the seed. */
  max_examples: positiveInt.default(20000),
  /** The build fails when an enabled task with data ends up with fewer examples. */
  min_examples: z.number().int().min(0).default(50),
};

/** The incident join: when a (service, time) counts as "in incident" (log_triage labels, knowledge card). */
export const IncidentsSchema = z
  .object({
    /** Signals are counted per bucket of this width. */
    bucket: durationText.default("5m"),
    /** A time within this distance of a flagged bucket is in incident. */
    window: durationText.default("15m"),
    /** Share of a service's traces in a bucket with an error span. */
    trace_error_ratio: z.number().gt(0).max(1).default(0.2),
    min_traces: positiveInt.default(3),
    /** `up == 0` for the service's target. */
    up_down: z.boolean().default(true),
    /** Error-log count above median + k * 1.4826 * MAD of the service's own buckets. */
    log_error_mad_k: z.number().positive().default(3),
    min_error_logs: positiveInt.default(5),
  })
  .strict();

/** The dataset build (tasks, split, quality gate). */
export const DatasetSchema = z
  .object({
    window: durationText.default("30d"),
    seq_len: z.number().int().min(64).max(4096).default(128),
    seed: z.number().int().min(0).default(0),
    /** The newest share of the window that is validation. */
    val_fraction: z.number().gt(0).lt(1).default(0.2),
    min_valid_ratio: z.number().min(0).max(1).default(0.9),
    num_bins: z.number().int().min(4).max(1024).default(64),
    /** Services beyond this many (least frequent first) share one class. */
    max_services: positiveInt.default(256),
    /** Labels that name a service, first match wins (logs, `up` series). */
    service_labels: z
      .array(z.string().min(1))
      .min(1)
      .default(["service_name", "service", "app", "app_kubernetes_io_name", "job", "container"]),
    tasks: z
      .object({
        code_infill: z
          .object({
            ...taskBase,
            drop_shared_inputs: dropShared(true),
            mask_fraction: z.number().gt(0).max(0.5).default(0.15),
            max_spans: z.number().int().min(1).max(8).default(3),
            max_windows_per_file: positiveInt.default(16),
          })
          .strict()
          .prefault({}),
        log_triage: z
          .object({ ...taskBase, drop_shared_inputs: dropShared(false) })
          .strict()
          .prefault({}),
        metric_forecast: z
          .object({
            ...taskBase,
            drop_shared_inputs: dropShared(false),
            /** K: points in (history) and points out (forecast). */
            points: z.number().int().min(2).max(256).default(24),
            step: durationText.default("1h"),
            /** Points between successive forecast origins. */
            stride: positiveInt.default(6),
            /** Largest |value - median| / IQR that still has its own bin. */
            z_max: z.number().positive().default(20),
            /** Largest share of missing history points. */
            max_missing: z.number().min(0).max(1).default(0.25),
          })
          .strict()
          .prefault({}),
        trace_outcome: z
          .object({ ...taskBase, drop_shared_inputs: dropShared(false) })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    incidents: IncidentsSchema.prefault({}),
  })
  .strict();

// ---- runner: where the train stage runs -------------------------------------------------------

const K8sName = z
  .string()
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, "use lowercase letters, digits and -")
  .max(63);
/** A resource quantity such as 500m, 8Gi or 1 (YAML numbers are accepted). */
const K8sQuantity = z.union([
  z.string().regex(/^[0-9.]+[a-zA-Z]*$/, "a quantity such as 500m, 8Gi or 1"),
  z.number(),
]);

/** The training Job that `runner: kubernetes` creates: same image and store, with its own resources. */
export const KubernetesJobSchema = z
  .object({
    /** Job names are <name_prefix>-<run>-<attempt>. */
    name_prefix: K8sName.max(30).default("trm-forge-train"),
    /** Default: the server pod's own image (read through the API), so the Job runs the same code. */
    image: z.string().min(1).optional(),
    image_pull_policy: z.enum(["Always", "IfNotPresent", "Never"]).optional(),
    /** Copy env, envFrom and the config/secret volumes of the server's own container into the Job. */
    inherit_from_pod: z.boolean().default(true),
    /** The server container whose image/env/volumes are inherited, and the Job's container name. */
    container_name: K8sName.default("trm-forge"),
    /** "{run_id}", "{agent}" and "{attempt}" are replaced. */
    args: z
      .array(z.string())
      .min(1)
      .default(["run", "--agent", "{agent}", "--resume", "{run_id}", "--stages", "train"]),
    service_account_name: K8sName.optional(),
    env: z
      .array(
        z.union([
          z.object({ name: z.string().min(1), value: z.string() }).strict(),
          z
            .object({
              name: z.string().min(1),
              secret: z.object({ name: K8sName, key: z.string().min(1) }).strict(),
            })
            .strict(),
        ]),
      )
      .default([]),
    /** When nothing is inherited: the ConfigMap with the config file (TRM_FORGE_CONFIG names it). */
    config_map: z
      .object({
        name: K8sName,
        key: z.string().min(1).default("config.yaml"),
        mount_path: z.string().startsWith("/").default("/etc/trm-forge"),
      })
      .strict()
      .optional(),
    resources: z
      .object({
        requests: z.record(z.string(), K8sQuantity).optional(),
        limits: z.record(z.string(), K8sQuantity).optional(),
      })
      .strict()
      .default({}),
    node_selector: z.record(z.string(), z.string()).default({}),
    tolerations: z
      .array(
        z
          .object({
            key: z.string().optional(),
            operator: z.enum(["Exists", "Equal"]).optional(),
            value: z.string().optional(),
            effect: z.enum(["NoSchedule", "PreferNoSchedule", "NoExecute"]).optional(),
            toleration_seconds: z.number().int().optional(),
          })
          .strict(),
      )
      .default([]),
    priority_class_name: z.string().min(1).optional(),
    /** e.g. "nvidia" where the NVIDIA container runtime is not the node's default (k3s). */
    runtime_class_name: K8sName.optional(),
    labels: z.record(z.string(), z.string()).default({}),
    annotations: z.record(z.string(), z.string()).default({}),
    /** Pod retries by Kubernetes; training resumes from its last checkpoint in the store. */
    backoff_limit: z.number().int().min(0).default(1),
    active_deadline_s: positiveInt.default(86_400),
    /** Finished Jobs (and their pods' logs) are deleted by Kubernetes this long after they end. */
    ttl_after_finished_s: z.number().int().min(0).default(86_400),
  })
  .strict();

export const KubernetesSchema = z
  .object({
    /** Default: the server pod's namespace in the cluster, else the kubeconfig context's, else "default". */
    namespace: K8sName.optional(),
    /** Out of the cluster only: default $KUBECONFIG or ~/.kube/config. In a pod, the service account. */
    kubeconfig: z.string().min(1).optional(),
    context: z.string().min(1).optional(),
    /** How often the Job and its pods are read. */
    poll_interval_s: z.number().positive().default(5),
    /** A log stream silent this long while the pod runs is reopened (dropped connections stay silent). */
    log_idle_reconnect_s: z.number().positive().default(120),
    /** After a cancel, how long to wait for the Job's pods to go before returning. */
    cancel_grace_s: z.number().min(0).default(60),
    job: KubernetesJobSchema.prefault({}),
  })
  .strict();

export type KubernetesSection = z.infer<typeof KubernetesSchema>;

// ---- pipeline runs: training, the gate, the schedule -----------------------------------------

/** The training loop. Steps are optimiser steps (one supervision step of one batch each). */
export const TrainSchema = z
  .object({
    seed: z.number().int().min(0).default(0),
    batch_size: positiveInt.max(4096).default(32),
    max_steps: positiveInt.default(2000),
    lr: z.number().positive().default(3e-4),
    /** Linear warm-up, then cosine down to lr * lr_min_ratio (1 keeps it constant, as the paper). */
    warmup_steps: z.number().int().min(0).default(100),
    lr_min_ratio: z.number().min(0).max(1).default(0.1),
    weight_decay: z.number().min(0).default(0.1),
    beta1: z.number().min(0).lt(1).default(0.9),
    beta2: z.number().min(0).lt(1).default(0.95),
    /** The task-embedding table (sign-SGD, as the reference trains its puzzle embeddings). */
    task_emb_lr: z.number().min(0).default(1e-2),
    task_emb_weight_decay: z.number().min(0).default(0.1),
    ema_decay: z.number().min(0).lt(1).default(0.999),
    /** Learning rate of a fine-tune from the champion, as a share of lr. */
    fine_tune_lr_scale: z.number().positive().max(1).default(0.3),
    /** Validation (with the EMA weights) every this many steps, on a fixed sample of the val split. */
    eval_interval: positiveInt.default(200),
    eval_examples: positiveInt.default(256),
    /** Evaluations without a better validation score before training stops early. */
    patience: positiveInt.default(5),
    checkpoint_interval: positiveInt.default(100),
    /** Checkpoints kept besides the best one. */
    keep_checkpoints: positiveInt.default(2),
    /** One metrics.jsonl line (and one progress event) every this many steps. */
    log_interval: positiveInt.default(10),
  })
  .strict();

/** The evaluation gate a candidate must pass to be promoted automatically. */
export const GateSchema = z
  .object({
    /** Promote a candidate that passes to champion; off makes it the challenger instead. */
    auto_promote: z.boolean().default(true),
    /** Every enabled task must beat its baseline by more than this (score units, 0..1). */
    baseline_margin: z.number().min(0).max(1).default(0),
    /** No task may score more than this below the champion on the same examples. */
    max_regression: z.number().min(0).max(1).default(0.02),
    /** Optional absolute floors per task, e.g. { log_triage: 0.8 }. */
    floors: z.record(z.string(), z.number().min(0).max(1)).default({}),
    /** Tasks with fewer validation examples are reported but not judged (too few to tell). */
    min_examples: z.number().int().min(1).default(20),
  })
  .strict();

const CronPatternSchema = z.string().min(9).max(120);

/** croner jobs per agent; times are read in `timezone`. */
export const ScheduleSchema = z
  .object({
    enabled: z.boolean().default(true),
    timezone: z.string().min(1).default("UTC"),
    collect: CronPatternSchema.default("0 3 * * *"),
    train: CronPatternSchema.default("0 2 1 * *"),
    /** Agents' trainings start this far apart (in config order), so two never start together. */
    stagger: DurationSchema.default("1h"),
    /** At start, a job that was due while the process was down runs once. */
    catch_up: z.boolean().default(true),
    /** How far back a source keeps data: a catch-up collection cannot reach further. */
    retention: z
      .object({
        prometheus: DurationSchema.default("7d"),
        loki: DurationSchema.default("7d"),
        tempo: DurationSchema.default("1d"),
      })
      .strict()
      .prefault({}),
    /** Per-agent overrides; null turns a job off for that agent. */
    agents: z
      .record(
        z.string(),
        z
          .object({
            collect: CronPatternSchema.nullable().optional(),
            train: CronPatternSchema.nullable().optional(),
            timezone: z.string().min(1).optional(),
          })
          .strict(),
      )
      .default({}),
  })
  .strict();

/** Run orchestration: retries of transient stage failures, resume. */
export const RunsSchema = z
  .object({
    /** Extra attempts of a stage that failed for a transient reason (timeout, connection, upload). */
    retries: z.number().int().min(0).max(10).default(2),
    backoff: DurationSchema.default("30s"),
    backoff_max: DurationSchema.default("10m"),
    /** Resume interrupted runs when the server (or scheduler) starts. */
    resume_on_start: z.boolean().default(true),
    /** How long an agent's run lease (in the store) outlives its last renewal: a crashed run's agent is free again after this. */
    lease: DurationSchema.default("60s"),
  })
  .strict();

/**
 * What gc keeps (`trm-forge store gc`, and after every run). Whatever these say, gc never deletes
 * the champion, the challenger, the previous champion, a version an alias pointed to within
 * protect_alias_days, a run that can still be resumed, the dataset of a kept version, or the
 * newest dataset.
 */
export const RetentionSchema = z
  .object({
    /** Run gc after every run (scheduled collections included); a failure never fails the run. */
    auto: z.boolean().default(true),
    /** Raw days kept beyond `dataset.window`, so a rebuild after downtime still finds its window. */
    raw_days_beyond_window: z.number().int().min(0).max(3650).default(14),
    /** Newest datasets kept (the newest one and those of kept versions come on top). */
    datasets: z.number().int().min(1).max(1000).default(2),
    /** Newest finished runs kept; their checkpoints are dropped once they end. */
    runs: z.number().int().min(1).max(100_000).default(60),
    /** Newest model versions kept besides the protected ones. */
    versions: z.number().int().min(1).max(1000).default(4),
    /** A version an alias pointed to within this many days is kept. */
    protect_alias_days: z.number().int().min(0).max(3650).default(90),
  })
  .strict();
export type RetentionSection = z.infer<typeof RetentionSchema>;

/** The anomaly scan (anomalies_scan, `trm-forge scan`): the champion's surprise at recent data. */
export const ScanSchema = z
  .object({
    /** The window when the caller names none. */
    default_window: DurationSchema.default("1h"),
    /** The largest window a caller may ask for (the scan reads it whole). */
    max_window: DurationSchema.default("24h"),
    /** Findings group records per service in buckets of this width. */
    bucket: DurationSchema.default("5m"),
    /** Error templates seen this long before the window count as known, besides the knowledge card's. */
    reference: DurationSchema.default("24h"),
    /** A record is anomalous above this surprise, in nats (3: the model gave what happened about 5%). */
    record_threshold: z.number().positive().default(3),
    /** A service's bucket becomes a finding at this score (summed excess surprise) or more. */
    min_score: z.number().min(0).default(4),
    /** Every slot's top answer below this confidence: the input counts as novel. */
    low_confidence: z.number().min(0).max(1).default(0.35),
    /** Records read per source and window, at most. */
    max_records: z.number().int().min(1).max(10_000_000).default(200_000),
    /** Findings returned when the caller names no top_k. */
    top_k: z.number().int().min(1).max(100).default(10),
    /** Scan each agent after its daily scheduled collect (the trm_forge_anomaly_score gauge follows). */
    schedule: z.boolean().default(false),
  })
  .strict();
export type ScanSection = z.infer<typeof ScanSchema>;

// ---- the MCP server and who may call it ------------------------------------------------------

/** read: look; train: collect, train, evaluate, cancel; promote: move aliases; admin: all of them. */
export const SCOPES = ["read", "train", "promote", "admin"] as const;

/** A bearer token, by reference only, and the identity it stands for: an agent name or "admin". */
export const TokenSchema = z
  .object({
    identity: identityName,
    scopes: z.array(z.enum(SCOPES)).min(1),
    token: SecretRefSchema,
  })
  .strict();

/** `trm-forge serve`: the Streamable HTTP endpoint and its limits. */
export const ServerSchema = z
  .object({
    host: z.string().min(1).default("127.0.0.1"),
    port: z.number().int().min(0).max(65535).default(8750),
    /** Host header names /mcp accepts besides loopback names and the bound address (DNS rebinding). */
    allowed_hosts: z.array(z.string().min(1)).default([]),
    /** Larger request bodies get 413. */
    max_request_bytes: z.number().int().min(1024).max(67_108_864).default(1_048_576),
    /** Array elements plus object members in one tool call's arguments. */
    max_tool_input_elements: z.number().int().min(16).max(1_000_000).default(4096),
    /** Concurrent MCP sessions of agents; admin's come on top, up to max_sessions_per_identity. */
    max_sessions: z.number().int().min(1).default(256),
    /** Sessions one identity may hold; at the cap its oldest idle session is closed for the new one. */
    max_sessions_per_identity: z.number().int().min(1).max(1024).default(16),
    /** A session without a request for this long is closed. */
    session_idle_timeout: DurationSchema.default("30m"),
    /** /metrics asks for a token with the read scope (Prometheus then needs one too). */
    metrics_require_token: z.boolean().default(false),
    /** On SIGTERM: how long in-flight requests and the running jobs get to stop. */
    shutdown_grace: DurationSchema.default("60s"),
  })
  .strict();

export type TokenEntry = z.infer<typeof TokenSchema>;
export type ServerSection = z.infer<typeof ServerSchema>;

export type TrainSection = z.infer<typeof TrainSchema>;
export type GateSection = z.infer<typeof GateSchema>;
export type ScheduleSection = z.infer<typeof ScheduleSchema>;
export type RunsSection = z.infer<typeof RunsSchema>;

export const ConfigSchema = z
  .object({
    /** Where the local store, locks and caches live. */
    data_dir: z.string().default(".trm-forge"),
    log_level: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
    store: StoreSchema.default({ kind: "fs" }),
    model: ModelSchema.default({ preset: "7m", backend: "auto" }),
    dataset: DatasetSchema.prefault({}),
    /** Agents and the sources each collects from, keyed by agent name. */
    agents: z.record(agentName, AgentSchema).default({}),
    collect: CollectSchema.prefault({}),
    serve: ServeSchema.default(ServeSchema.parse({})),
    knowledge: KnowledgeSchema.default(KnowledgeSchema.parse({})),
    ollama: OllamaSchema.default(OllamaSchema.parse({})),
    vllm: VllmSchema.default(VllmSchema.parse({})),
    train: TrainSchema.prefault({}),
    gate: GateSchema.prefault({}),
    schedule: ScheduleSchema.prefault({}),
    runs: RunsSchema.prefault({}),
    retention: RetentionSchema.prefault({}),
    scan: ScanSchema.prefault({}),
    /** Where the train stage runs: in this process, or as a Kubernetes Job (see `kubernetes`). */
    runner: z.enum(["in-process", "kubernetes"]).default("in-process"),
    kubernetes: KubernetesSchema.prefault({}),
    server: ServerSchema.prefault({}),
    /** Bearer tokens for HTTP callers: references to env variables or files, never values. */
    tokens: z.array(TokenSchema).default([]),
  })
  .strict();

export type Config = z.infer<typeof ConfigSchema>;
export type ModelSection = z.infer<typeof ModelSchema>;
export type DatasetSection = z.infer<typeof DatasetSchema>;
export type IncidentsSection = z.infer<typeof IncidentsSchema>;
export type ServeSection = z.infer<typeof ServeSchema>;
export type KnowledgeSection = z.infer<typeof KnowledgeSchema>;
export type OllamaSection = z.infer<typeof OllamaSchema>;
export type VllmSection = z.infer<typeof VllmSchema>;
