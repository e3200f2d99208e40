// Agents and collection. Each agent names its own sources. A source is collected only when its key
// is present (and not `enabled: false`); every other field has a default, so `prometheus: {}` is a
// working source.
import * as z from "zod";
import { DurationSchema, SecretRefSchema } from "./fields.js";

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
    timeout: DurationSchema.prefault(defaults.timeout),
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
export type CodeSourceConfig = z.infer<typeof CodeSourceSchema>;

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
    step: DurationSchema.prefault("60s"),
    scrape_interval: DurationSchema.prefault("30s"),
    queries: z
      .array(PrometheusQuerySchema)
      .min(1)
      .default(DEFAULT_PROMETHEUS_QUERIES)
      .superRefine(uniqueNames),
  })
  .strict();
export type PrometheusSourceConfig = z.infer<typeof PrometheusSourceSchema>;

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
export type LokiSourceConfig = z.infer<typeof LokiSourceSchema>;

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
    search_window: DurationSchema.prefault("1h"),
    min_search_window: DurationSchema.prefault("1m"),
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
export type TempoSourceConfig = z.infer<typeof TempoSourceSchema>;

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
export type AgentConfig = z.infer<typeof AgentSchema>;

export const CollectSchema = z
  .object({
    /** Look-back of a first collection (an agent's own `lookback` wins). */
    lookback: DurationSchema.prefault("7d"),
    /** Data younger than this is left for the next run: servers ingest late. */
    settle: DurationSchema.prefault("2m"),
    /** Queries run at once per source (sources always run side by side). */
    concurrency: z.number().int().min(1).max(16).default(2),
    /** Records per segment; bounds memory, since a segment is built in memory before its atomic put. */
    segment_max_records: z.number().int().min(1).default(20_000),
    /** Uncompressed megabytes per segment, whichever limit comes first (traces and files are large records). */
    segment_max_mb: z.number().positive().default(8),
    /** A stretch without data longer than this is reported as a gap. */
    gap_min: DurationSchema.prefault("1h"),
    backoff_base: DurationSchema.prefault("500ms"),
    backoff_max: DurationSchema.prefault("30s"),
    /** Larger HTTP responses are refused, counted both as sent and after gzip/deflate/br decoding. */
    max_response_mb: z.number().int().min(1).default(256),
  })
  .strict();
export type CollectSettings = z.infer<typeof CollectSchema>;
