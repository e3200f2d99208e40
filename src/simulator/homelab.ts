// The simulated homelab: eight services, their namespaces, how they run and who calls whom.
// Everything else (load, incidents, metrics, logs, traces) is derived from this table.

export type Role = "gateway" | "agent" | "worker" | "database" | "queue" | "lambda";
export type LogFormat = "logfmt" | "structlog" | "dotnet" | "zap" | "postgres" | "rabbitmq";

export interface ServiceDef {
  name: string;
  namespace: string;
  role: Role;
  /** deployment pods get a replicaset hash, statefulset pods an ordinal, knative pods a revision. */
  workload: "deployment" | "statefulset" | "knative";
  container: string;
  replicas: number;
  port: number;
  logFormat: LogFormat;
  /** Exports http_requests_total and http_request_duration_seconds. */
  http: boolean;
  /** Requests (or queries, or messages) per second at the daily peak. */
  rps: number;
  /** Median latency in seconds and the log-normal spread. */
  latency: number;
  sigma: number;
  errorRate: number;
  cpu: number;
  cpuPerRps: number;
  memory: number;
  memoryLimit: number;
  /** Share of the homelab's log lines. */
  logWeight: number;
  sdkLanguage: string;
  scope: { name: string; version: string };
  initialVersion: string;
  calls: string[];
}

const MiB = 1024 * 1024;

// data table: one entry per service.
export const SERVICES: readonly ServiceDef[] = [
  {
    name: "api-gateway",
    namespace: "notifi",
    role: "gateway",
    workload: "deployment",
    container: "api-gateway",
    replicas: 2,
    port: 8080,
    logFormat: "logfmt",
    http: true,
    rps: 1.2,
    latency: 0.09,
    sigma: 1.0,
    errorRate: 0.004,
    cpu: 0.015,
    cpuPerRps: 0.012,
    memory: 46 * MiB,
    memoryLimit: 256 * MiB,
    logWeight: 0.2,
    sdkLanguage: "go",
    scope: { name: "go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp", version: "0.53.0" },
    initialVersion: "2.3.1",
    calls: ["agent-bruno", "agent-sre", "rabbitmq"],
  },
  {
    name: "agent-sre",
    namespace: "ai-agents",
    role: "agent",
    workload: "deployment",
    container: "agent-sre",
    replicas: 1,
    port: 8000,
    logFormat: "structlog",
    http: true,
    rps: 0.08,
    latency: 2.4,
    sigma: 0.45,
    errorRate: 0.01,
    cpu: 0.04,
    cpuPerRps: 0.5,
    memory: 310 * MiB,
    memoryLimit: 1024 * MiB,
    logWeight: 0.14,
    sdkLanguage: "python",
    scope: { name: "opentelemetry.instrumentation.fastapi", version: "0.48b0" },
    initialVersion: "0.9.4",
    calls: ["postgres", "lambda-pod-restart", "rabbitmq"],
  },
  {
    name: "agent-bruno",
    namespace: "ai-agents",
    role: "agent",
    workload: "deployment",
    container: "agent-bruno",
    replicas: 1,
    port: 8000,
    logFormat: "structlog",
    http: true,
    rps: 0.25,
    latency: 1.1,
    sigma: 0.55,
    errorRate: 0.008,
    cpu: 0.035,
    cpuPerRps: 0.3,
    memory: 420 * MiB,
    memoryLimit: 1024 * MiB,
    logWeight: 0.16,
    sdkLanguage: "python",
    scope: { name: "opentelemetry.instrumentation.fastapi", version: "0.48b0" },
    initialVersion: "1.7.2",
    calls: ["postgres", "rabbitmq"],
  },
  {
    name: "notification-worker",
    namespace: "notifi",
    role: "worker",
    workload: "deployment",
    container: "notification-worker",
    replicas: 2,
    port: 8080,
    logFormat: "dotnet",
    http: true,
    rps: 0.7,
    latency: 0.16,
    sigma: 0.7,
    errorRate: 0.006,
    cpu: 0.025,
    cpuPerRps: 0.05,
    memory: 180 * MiB,
    memoryLimit: 512 * MiB,
    logWeight: 0.18,
    sdkLanguage: "dotnet",
    scope: { name: "OpenTelemetry.Instrumentation.AspNetCore", version: "1.9.0" },
    initialVersion: "3.2.0",
    calls: ["postgres"],
  },
  {
    name: "postgres",
    namespace: "data",
    role: "database",
    workload: "statefulset",
    container: "postgres",
    replicas: 1,
    port: 5432,
    logFormat: "postgres",
    http: false,
    rps: 3,
    latency: 0.004,
    sigma: 0.8,
    errorRate: 0.001,
    cpu: 0.08,
    cpuPerRps: 0.02,
    memory: 610 * MiB,
    memoryLimit: 2048 * MiB,
    logWeight: 0.09,
    sdkLanguage: "cpp",
    scope: { name: "pg-otel-proxy", version: "0.4.1" },
    initialVersion: "16.4",
    calls: [],
  },
  {
    name: "rabbitmq",
    namespace: "data",
    role: "queue",
    workload: "statefulset",
    container: "rabbitmq",
    replicas: 1,
    port: 5672,
    logFormat: "rabbitmq",
    http: false,
    rps: 1.4,
    latency: 0.002,
    sigma: 0.6,
    errorRate: 0.0005,
    cpu: 0.05,
    cpuPerRps: 0.01,
    memory: 190 * MiB,
    memoryLimit: 1024 * MiB,
    logWeight: 0.06,
    sdkLanguage: "erlang",
    scope: { name: "rabbitmq_tracing_otel", version: "1.2.0" },
    initialVersion: "3.13.7",
    calls: ["notification-worker"],
  },
  {
    name: "lambda-pod-restart",
    namespace: "knative-lambda",
    role: "lambda",
    workload: "knative",
    container: "user-container",
    replicas: 1,
    port: 8080,
    logFormat: "zap",
    http: true,
    rps: 0.012,
    latency: 0.35,
    sigma: 0.5,
    errorRate: 0.02,
    cpu: 0.004,
    cpuPerRps: 0.2,
    memory: 38 * MiB,
    memoryLimit: 128 * MiB,
    logWeight: 0.08,
    sdkLanguage: "go",
    scope: { name: "knative.dev/pkg/tracing", version: "0.42.0" },
    initialVersion: "0.4.0",
    calls: [],
  },
  {
    name: "lambda-notify-digest",
    namespace: "knative-lambda",
    role: "lambda",
    workload: "knative",
    container: "user-container",
    replicas: 1,
    port: 8080,
    logFormat: "zap",
    http: true,
    rps: 0.02,
    latency: 0.6,
    sigma: 0.4,
    errorRate: 0.01,
    cpu: 0.004,
    cpuPerRps: 0.2,
    memory: 44 * MiB,
    memoryLimit: 128 * MiB,
    logWeight: 0.09,
    sdkLanguage: "go",
    scope: { name: "knative.dev/pkg/tracing", version: "0.42.0" },
    initialVersion: "0.2.3",
    calls: ["postgres", "rabbitmq"],
  },
];

export const SERVICE_NAMES = SERVICES.map((s) => s.name);
export const NAMESPACES = [...new Set(SERVICES.map((s) => s.namespace))];

const BY_NAME = new Map(SERVICES.map((s) => [s.name, s]));

export function service(name: string): ServiceDef {
  const s = BY_NAME.get(name);
  if (!s) throw new Error(`unknown simulated service ${name}`);
  return s;
}

/** Services that call `name` directly. */
export function callersOf(name: string): string[] {
  return SERVICES.filter((s) => s.calls.includes(name)).map((s) => s.name);
}

export interface Edge {
  from: string;
  to: string;
  protocol: "http" | "sql" | "amqp";
}

export function serviceEdges(): Edge[] {
  const edges: Edge[] = [];
  for (const s of SERVICES) {
    for (const to of s.calls) {
      const target = service(to);
      const protocol =
        target.role === "database" ? "sql" : target.role === "queue" || s.role === "queue" ? "amqp" : "http";
      edges.push({ from: s.name, to, protocol });
    }
  }
  return edges;
}
