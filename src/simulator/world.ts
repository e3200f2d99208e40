// One simulated homelab for one seed and window: the timeline and the three signals derived from
// it, plus the ground truth a test or the demo can check the pipeline against.
import { type Edge, NAMESPACES, SERVICES, serviceEdges } from "./homelab.js";
import { DEFAULT_LOGS_PER_DAY, HomelabLogs } from "./logs.js";
import { HomelabMetrics } from "./metrics.js";
import { Evaluator } from "./promql.js";
import { type FakeSecrets, fakeSecrets, secretValues } from "./secrets.js";
import { type Deploy, type Incident, type IncidentKind, SCRAPE_MS, Timeline } from "./timeline.js";
import { DEFAULT_TRACES_PER_DAY, HomelabTraces, type SimSpan } from "./traces.js";

export interface WorldOptions {
  seed?: number;
  /** Days of data before `end`. */
  days?: number;
  /** End of the window (unix ms, a Date or an ISO string); default: now, to the minute. */
  end?: number | Date | string;
  /** Ordinary log lines per day over the whole homelab (incidents and start-ups add more). */
  logsPerDay?: number;
  /** Request traces per day (the hourly digest adds 24). */
  tracesPerDay?: number;
}

export interface Signals {
  /** Services whose 5xx share rises. */
  error_ratio: string[];
  /** Services whose p95 latency rises. */
  latency: string[];
  /** Services whose `up` drops to 0. */
  up_zero: string[];
  /** Services whose memory climbs toward the limit. */
  memory_growth: string[];
  /** Text that appears in the service's log lines only because of this incident. */
  log_markers: { service: string; text: string }[];
  /** Services with error spans in the incident's traces. */
  trace_error_services: string[];
  /** Services with slow spans in the incident's traces. */
  trace_slow_services: string[];
  /** A span name that appears only because of this incident, if any. */
  trace_span?: string;
}

export interface GroundTruthIncident {
  id: string;
  kind: IncidentKind;
  service: string;
  affected: string[];
  start: string;
  end: string;
  start_ms: number;
  end_ms: number;
  version?: string;
  summary: string;
  restarts: string[];
  symptoms: { metrics: string[]; logs: string[]; traces: string[] };
  signals: Signals;
}

export interface GroundTruth {
  generator: "trm-forge simulate";
  format: 1;
  seed: number;
  days: number;
  start: string;
  end: string;
  start_ms: number;
  end_ms: number;
  density: { logs_per_day: number; traces_per_day: number; scrape_interval_s: number };
  namespaces: string[];
  services: {
    name: string;
    namespace: string;
    role: string;
    workload: string;
    replicas: number;
    log_format: string;
    http_metrics: boolean;
    calls: string[];
  }[];
  edges: Edge[];
  deploys: {
    service: string;
    at: string;
    at_ms: number;
    version: string;
    generation: number;
    reason: Deploy["reason"];
    incident?: string;
    pods: string[];
  }[];
  incidents: GroundTruthIncident[];
  /** Every fake secret value the logs and span attributes carry: none may reach the store. */
  secrets: string[];
}

const BAD_DEPLOY_MARKERS: Record<string, { log: string; span: string }> = {
  "agent-bruno": { log: "KeyError: 'search_docs_v2'", span: "tool.route search_docs_v2" },
  "agent-sre": { log: "KeyError: 'tool_calls'", span: "analyzer.plan" },
  "api-gateway": { log: "panic recovered", span: "router.resolve_upstream" },
  "notification-worker": { log: "System.NullReferenceException", span: "template.render" },
};

function toMs(end: WorldOptions["end"]): number {
  if (end === undefined) return Math.floor(Date.now() / 60_000) * 60_000;
  const ms = end instanceof Date ? end.getTime() : typeof end === "string" ? Date.parse(end) : end;
  if (!Number.isFinite(ms)) throw new Error(`simulator end is not a time: ${String(end)}`);
  return ms;
}

export class World {
  readonly seed: number;
  readonly days: number;
  readonly start: number;
  readonly end: number;
  /** True when the window ends at the real "now": data then keeps arriving as time passes. */
  readonly live: boolean;
  readonly tl: Timeline;
  readonly secrets: FakeSecrets;
  readonly metrics: HomelabMetrics;
  readonly logs: HomelabLogs;
  readonly traces: HomelabTraces;
  readonly promql: Evaluator;
  readonly logsPerDay: number;
  readonly tracesPerDay: number;
  private readonly versionByPod = new Map<string, string>();

  constructor(opts: WorldOptions = {}) {
    this.seed = opts.seed ?? 1;
    this.days = opts.days ?? 30;
    if (!Number.isInteger(this.seed) || this.seed < 0)
      throw new Error(`simulator seed must be a non-negative integer, got ${this.seed}`);
    if (!(this.days > 0 && this.days <= 400))
      throw new Error(`simulator days must be in (0, 400], got ${this.days}`);
    this.live = opts.end === undefined;
    this.end = toMs(opts.end);
    this.start = this.end - Math.round(this.days * 86_400_000);
    this.logsPerDay = opts.logsPerDay ?? DEFAULT_LOGS_PER_DAY;
    this.tracesPerDay = opts.tracesPerDay ?? DEFAULT_TRACES_PER_DAY;
    this.tl = new Timeline({ seed: this.seed, start: this.start, end: this.end });
    this.secrets = fakeSecrets(this.seed);
    this.metrics = new HomelabMetrics(this.tl, this.start);
    this.logs = new HomelabLogs(this.tl, this.secrets, { logsPerDay: this.logsPerDay }, this.start);
    this.traces = new HomelabTraces(this.tl, this.secrets, { tracesPerDay: this.tracesPerDay }, this.start);
    this.promql = new Evaluator(this.metrics, () => this.horizon());
    for (const s of SERVICES) for (const p of this.tl.pods(s.name)) this.versionByPod.set(p.name, p.version);
  }

  /** No data exists after this moment: the window's end, or the real clock when live. */
  horizon(): number {
    return this.live ? Math.max(this.end, Date.now()) : this.end;
  }

  /** The OTLP resource attributes of the process that reported a span. */
  resourceOf = (span: SimSpan): Record<string, string> => {
    const def = SERVICES.find((s) => s.name === span.service)!;
    return {
      "service.name": span.service,
      "service.version": this.versionByPod.get(span.pod) ?? def.initialVersion,
      "k8s.namespace.name": def.namespace,
      "k8s.pod.name": span.pod,
      "telemetry.sdk.language": def.sdkLanguage,
    };
  };

  groundTruth(): GroundTruth {
    const iso = (ms: number) => new Date(ms).toISOString();
    return {
      generator: "trm-forge simulate",
      format: 1,
      seed: this.seed,
      days: this.days,
      start: iso(this.start),
      end: iso(this.end),
      start_ms: this.start,
      end_ms: this.end,
      density: {
        logs_per_day: this.logsPerDay,
        traces_per_day: this.tracesPerDay,
        scrape_interval_s: SCRAPE_MS / 1000,
      },
      namespaces: NAMESPACES,
      services: SERVICES.map((s) => ({
        name: s.name,
        namespace: s.namespace,
        role: s.role,
        workload: s.workload,
        replicas: s.replicas,
        log_format: s.logFormat,
        http_metrics: s.http,
        calls: s.calls,
      })),
      edges: serviceEdges(),
      deploys: this.tl.deploys.map((d) => ({
        service: d.service,
        at: iso(d.at),
        at_ms: d.at,
        version: d.version,
        generation: d.generation,
        reason: d.reason,
        ...(d.incident ? { incident: d.incident } : {}),
        pods: this.tl
          .pods(d.service)
          .filter((p) => p.generation === d.generation)
          .map((p) => p.name),
      })),
      incidents: this.tl.incidents.map((i) => this.describe(i)),
      secrets: secretValues(this.secrets),
    };
  }

  private describe(i: Incident): GroundTruthIncident {
    const base = {
      id: i.id,
      kind: i.kind,
      service: i.service,
      affected: i.affected,
      start: new Date(i.start).toISOString(),
      end: new Date(i.end).toISOString(),
      start_ms: i.start,
      end_ms: i.end,
      ...(i.version ? { version: i.version } : {}),
      summary: i.summary,
      restarts: i.restarts.map((r) => new Date(r).toISOString()),
    };
    const s = i.service;
    switch (i.kind) {
      case "bad_deploy": {
        const m = BAD_DEPLOY_MARKERS[s];
        const victims = i.affected.filter((a) => a !== s);
        return {
          ...base,
          symptoms: {
            metrics: [
              `5xx share of http_requests_total{service="${s}"} jumps to about half`,
              `new pods of ${s} with image tag ${i.version}, replaced again at the rollback`,
              ...victims.map((v) => `${v} answers 502 for requests routed to ${s}`),
            ],
            logs: [
              `${s} error lines containing "${m.log}"`,
              ...victims.map((v) => `${v} logs "upstream returned error"`),
            ],
            traces: [`error spans "${m.span}" in ${s}; error status up the call path`],
          },
          signals: {
            error_ratio: i.affected,
            // Failing requests fail fast: latency is no reliable sign of a bad release.
            latency: [],
            up_zero: [],
            memory_growth: [],
            log_markers: [{ service: s, text: m.log }],
            trace_error_services: [s],
            trace_slow_services: [],
            trace_span: m.span,
          },
        };
      }
      case "db_slowdown": {
        const callers = i.affected.filter((a) => a !== "postgres");
        return {
          ...base,
          symptoms: {
            metrics: [
              `p95 of http_request_duration_seconds rises for ${callers.join(", ")}`,
              "container_cpu_usage_seconds_total of postgres-0 rises above 1 core",
              'pg_stat_activity_count{state="active"} climbs',
            ],
            logs: [
              'postgres "canceling statement due to statement timeout" and slow-statement lines',
              "callers log query timeouts",
            ],
            traces: [
              "postgres spans take seconds; some end in error at the 5 s statement timeout and are retried",
            ],
          },
          signals: {
            // The digest lambda runs once an hour: a short slowdown may not see it run at all.
            error_ratio: callers.filter((c) => c !== "api-gateway" && c !== "lambda-notify-digest"),
            latency: callers.filter((c) => c !== "lambda-notify-digest"),
            up_zero: [],
            memory_growth: [],
            log_markers: [{ service: "postgres", text: "canceling statement due to statement timeout" }],
            trace_error_services: ["postgres"],
            trace_slow_services: ["postgres"],
          },
        };
      }
      case "crash_loop": {
        const marker = s === "lambda-pod-restart" ? "failed to load credentials" : "failed to load config";
        return {
          ...base,
          symptoms: {
            metrics: [
              `up{service="${s}"} is 0 between restarts`,
              `kube_pod_container_status_restarts_total of ${s} climbs`,
            ],
            logs: [
              `${s} repeats its start-up lines then a fatal "${marker}"`,
              ...i.affected.slice(1).map((v) => `${v} logs connection refused`),
            ],
            traces: [
              `${s} answers 503 from its queue-proxy (connection refused); callers retry, then fall back`,
            ],
          },
          signals: {
            error_ratio: [s],
            latency: [],
            up_zero: [s],
            memory_growth: [],
            log_markers: [{ service: s, text: marker }],
            trace_error_services: [s],
            trace_slow_services: [],
          },
        };
      }
      case "memory_leak": {
        const marker = s === "notification-worker" ? "GC heap size" : "memory usage high";
        return {
          ...base,
          symptoms: {
            metrics: [
              `container_memory_working_set_bytes of ${s} climbs to its limit, drops at each OOM kill`,
              `up{service="${s}"} is 0 for a few seconds after each kill; p95 rises as memory fills`,
            ],
            logs: [`${s} warns "${marker}" with growing numbers, and starts up again after each kill`],
            traces: [`${s} spans grow slower; requests in flight at a kill are cancelled`],
          },
          signals: {
            error_ratio: [s],
            latency: [s],
            up_zero: [s],
            memory_growth: [s],
            log_markers: [{ service: s, text: marker }],
            trace_error_services: [],
            trace_slow_services: [s],
          },
        };
      }
    }
  }
}
