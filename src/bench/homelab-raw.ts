// A synthetic homelab written straight into the raw store, the way the collectors leave it:
// services with their own log vocabulary, traces along the simulator's call graph, hourly series
// with a daily rhythm, a code repository, and incidents placed at known times that show in logs,
// traces and `up`.
// The dataset benchmark and the dataset tests build from it.

import { dayOf, writeSegment } from "../pipeline/collect/raw-store.js";
import type {
  CodeFileRecord,
  LogEntryRecord,
  MetricSeriesRecord,
  SpanRecord,
  TraceRecord,
} from "../pipeline/collect/records.js";
import { rng } from "../pipeline/tasks/hash.js";
import { type Role, SERVICE_NAMES, SERVICES, type ServiceDef, service } from "../simulator/homelab.js";
import type { ObjectStore } from "../store/index.js";

const DAY = 86_400_000;
const HOUR = 3_600_000;

export interface RawHomelabOptions {
  store: ObjectStore;
  agent: string;
  /** Days of data ending at `end` (exclusive, ms; default 2026-02-01T00:00Z). */
  days: number;
  end?: number;
  seed?: number;
  files: number;
  logLines: number;
  traces: number;
  series: number;
  /** Incidents spread over the days (default one every four days). */
  incidents?: number;
}

export interface PlacedIncident {
  service: string;
  kind: "crash" | "errors" | "slow";
  start: number;
  end: number;
}

/** Words each service's log lines draw from, so a line says which service wrote it. */
const WORDS: Record<string, string[]> = {
  "api-gateway": ["route", "upstream", "client", "request", "proxy", "listener", "ingress", "header"],
  "agent-sre": ["alert", "runbook", "silence", "escalation", "oncall", "probe", "remediation", "slo"],
  "agent-bruno": ["conversation", "prompt", "embedding", "memory", "reply", "tool", "session", "persona"],
  "notification-worker": [
    "email",
    "webhook",
    "slack",
    "template",
    "recipient",
    "digest",
    "delivery",
    "channel",
  ],
  postgres: ["checkpoint", "vacuum", "wal", "autovacuum", "relation", "tuple", "replication", "lock"],
  rabbitmq: ["consumer", "partition", "offset", "broker", "topic", "ack", "backlog", "lease"],
  "lambda-pod-restart": ["thumbnail", "image", "bucket", "resize", "jpeg", "webp", "crop", "pixels"],
  "lambda-notify-digest": ["report", "pdf", "render", "chart", "export", "schedule", "summary", "csv"],
};

const NAMES = [
  "alpha",
  "bravo",
  "cedar",
  "delta",
  "ember",
  "fjord",
  "gale",
  "harbor",
  "iris",
  "juno",
  "kite",
  "lumen",
];

/** A trace's root span by its service's role; {id} becomes a request id, as un-templated routes do. */
const ROOT_OP: Record<Role, string> = {
  gateway: "GET /orders/{id}",
  agent: "investigate",
  worker: "digest",
  database: "vacuum",
  queue: "deliver",
  lambda: "render {id}",
};
/** A call's span by the callee's role. */
const HOP_OP: Record<Role, string> = {
  gateway: "proxy",
  agent: "POST /v1/task",
  worker: "send",
  database: "SELECT",
  queue: "publish",
  lambda: "invoke",
};

interface Hop {
  service: string;
  op: string;
  min: number;
  max: number;
  /** Median ms per call: the callee's median latency in the simulator. */
  ms: number;
}

/** A route per caller in the simulator's call graph: it calls each of its callees in turn. */
const ROUTES: { root: ServiceDef; hops: Hop[] }[] = SERVICES.filter((s) => s.calls.length > 0).map((s) => ({
  root: s,
  hops: s.calls.map((to) => {
    const callee = service(to);
    // The database and the queue are called on every request; services only on some.
    const infra = callee.role === "database" || callee.role === "queue";
    return {
      service: to,
      op: HOP_OP[callee.role],
      min: infra ? 1 : 0,
      max: callee.role === "database" ? 4 : 2,
      ms: callee.latency * 1000,
    };
  }),
}));

function hex(r: () => number, n: number): string {
  let s = "";
  for (let i = 0; i < n; i++) s += Math.floor(r() * 16).toString(16);
  return s;
}

function pick<T>(r: () => number, xs: readonly T[]): T {
  return xs[Math.floor(r() * xs.length)];
}

export function placeIncidents(days: number, end: number, count: number, seed: number): PlacedIncident[] {
  const r = rng(seed ^ 0x1c1d);
  const kinds: PlacedIncident["kind"][] = ["errors", "crash", "slow"];
  const out: PlacedIncident[] = [];
  const start = end - days * DAY;
  for (let i = 0; i < count; i++) {
    // Evenly spread, so both the training days and the validation days hold some.
    const at = start + ((i + 0.5) / count) * days * DAY + Math.floor(r() * 6 - 3) * HOUR;
    const service = pick(r, ["postgres", "rabbitmq", "notification-worker", "lambda-pod-restart"] as const);
    out.push({
      service,
      kind: kinds[i % kinds.length],
      start: at,
      end: at + (1 + Math.floor(r() * 3)) * HOUR,
    });
  }
  return out;
}

function activeIncident(incidents: PlacedIncident[], service: string, t: number): PlacedIncident | undefined {
  return incidents.find((x) => x.service === service && t >= x.start && t < x.end);
}

function logLine(
  r: () => number,
  svc: string,
  t: number,
  level: string,
  incident: PlacedIncident | undefined,
): string {
  const w = WORDS[svc];
  const name = pick(r, NAMES);
  if (incident && level === "error") {
    const msg =
      incident.kind === "slow"
        ? `${pick(r, w)} ${name} deadline exceeded after ${Math.floor(r() * 9000)}ms`
        : `${pick(r, w)} ${name} failed: connection refused to ${10 + Math.floor(r() * 4)}.0.${Math.floor(r() * 255)}.${Math.floor(r() * 255)}:5432`;
    return `${new Date(t).toISOString()} level=error msg="${msg}" trace_id=${hex(r, 32)}`;
  }
  const shapes = [
    () => `level=${level} msg="${pick(r, w)} ${name} ${pick(r, w)} done" duration=${Math.floor(r() * 900)}ms`,
    () =>
      `{"level":"${level}","msg":"${pick(r, w)} ${pick(r, w)} for ${name}","id":"${hex(r, 8)}-${hex(r, 4)}-${hex(r, 4)}-${hex(r, 4)}-${hex(r, 12)}"}`,
    () => `[${level.toUpperCase()}] ${pick(r, w)}: ${name} ${pick(r, w)} count=${Math.floor(r() * 100)}`,
  ];
  return pick(r, shapes)();
}

function levelFor(r: () => number): string {
  const x = r();
  return x < 0.1 ? "debug" : x < 0.85 ? "info" : x < 0.95 ? "warn" : "error";
}

function makeTrace(r: () => number, t: number, incidents: PlacedIncident[]): TraceRecord {
  const route = pick(r, ROUTES);
  const traceId = hex(r, 32);
  const startNs = BigInt(Math.floor(t)) * 1_000_000n;
  const rootId = hex(r, 16);
  const children: SpanRecord[] = [];
  let cursor = 1e6; // ns after the root starts; hops run one after the other
  const span = (svc: string, name: string, dur: number, status: SpanRecord["status"]) => {
    children.push({
      trace_id: traceId,
      span_id: hex(r, 16),
      parent_span_id: rootId,
      service: svc,
      name,
      kind: "client",
      start_ns: (startNs + BigInt(Math.floor(cursor))).toString(),
      duration_ns: Math.floor(dur),
      status,
      attributes: {},
    });
    cursor += dur + 2e5;
  };
  for (const { service: svc, op, min, max, ms } of route.hops) {
    const calls = min + Math.floor(r() * (max - min + 1));
    const inc = activeIncident(incidents, svc, t);
    for (let c = 0; c < calls; c++) {
      const dur = ms * (0.6 + r() * 0.8) * 1e6 + (inc?.kind === "slow" ? 6e9 : 0);
      const bad = inc !== undefined && inc.kind !== "slow" && r() < 0.85;
      span(svc, op, dur, bad ? "error" : "ok");
      // The caller retries a failed call once: the path shows it.
      if (bad) span(svc, `${op} retry`, dur / 2, "error");
    }
  }
  const rootName = ROOT_OP[route.root.role].replace("{id}", String(1000 + Math.floor(r() * 9000)));
  const root: SpanRecord = {
    trace_id: traceId,
    span_id: rootId,
    parent_span_id: null,
    service: route.root.name,
    name: rootName,
    kind: "server",
    start_ns: startNs.toString(),
    duration_ns: Math.floor(cursor + 1e6),
    status: "unset",
    attributes: {},
  };
  return {
    kind: "trace",
    query: "all",
    trace_id: traceId,
    root_service: route.root.name,
    root_name: rootName,
    start_ns: startNs.toString(),
    duration_ms: Math.round((cursor + 1e6) / 1e6),
    spans: [root, ...children],
  };
}

const SOURCE_WORDS = [
  "config",
  "handler",
  "client",
  "server",
  "metrics",
  "store",
  "queue",
  "report",
  "image",
  "agent",
];

function codeFile(r: () => number, i: number, day: string): CodeFileRecord {
  const langs = [
    ["ts", "typescript"],
    ["go", "go"],
    ["py", "python"],
    ["yaml", "yaml"],
  ] as const;
  const [ext, language] = langs[i % langs.length];
  const mod = pick(r, SOURCE_WORDS);
  const lines: string[] = [];
  const n = 40 + Math.floor(r() * 300);
  for (let k = 0; k < n; k++) {
    const a = pick(r, SOURCE_WORDS);
    const b = pick(r, SOURCE_WORDS);
    if (ext === "ts")
      lines.push(`export function ${a}${k}(${b}: ${a === b ? "string" : "number"}) { return ${b} + ${k}; }`);
    else if (ext === "go") lines.push(`func ${a}${k}(${b} int) int { return ${b} * ${k % 7} }`);
    else if (ext === "py") lines.push(`def ${a}_${k}(${b}):\n    return ${b} * ${k % 9}`);
    else lines.push(`${a}_${k}:\n  ${b}: ${k}\n  enabled: ${k % 2 === 0}`);
  }
  const content = `${lines.join("\n")}\n`;
  return {
    kind: "code_file",
    path: `src/${mod}/file${i}.${ext}`,
    language,
    size: Buffer.byteLength(content),
    sha256: hex(r, 64),
    commit: null,
    content,
    redactions: 0,
    collected_at: `${day}T03:00:00.000Z`,
  };
}

export interface HomelabDay {
  day: string;
  logs: LogEntryRecord[];
  traces: TraceRecord[];
  series: MetricSeriesRecord[];
}

/** The homelab's incidents and its records, day by day (only one day is in memory at a time). */
export function homelabDays(opts: Omit<RawHomelabOptions, "store" | "agent">): {
  incidents: PlacedIncident[];
  days: Iterable<HomelabDay>;
} {
  const end = opts.end ?? Date.parse("2026-02-01T00:00:00Z");
  const seed = opts.seed ?? 1;
  const start = end - opts.days * DAY;
  const incidents = placeIncidents(
    opts.days,
    end,
    opts.incidents ?? Math.max(1, Math.round(opts.days / 4)),
    seed,
  );
  const seriesDefs = Array.from({ length: opts.series }, (_, i) => {
    const svc = SERVICE_NAMES[i % SERVICE_NAMES.length];
    const kind =
      i < SERVICE_NAMES.length
        ? "up"
        : pick(rng(seed + i), ["http_requests_rate", "memory_bytes", "cpu_rate"]);
    return { svc, kind, replica: Math.floor(i / SERVICE_NAMES.length), base: 10 + (i % 13) * 7 };
  });
  function* days(): Iterable<HomelabDay> {
    for (let d = 0; d < opts.days; d++) {
      const dayStart = start + d * DAY;
      const r = rng(seed * 1000 + d);
      const logs: LogEntryRecord[] = [];
      const perDay = Math.round(opts.logLines / opts.days);
      for (let k = 0; k < perDay; k++) {
        const t = dayStart + Math.floor(r() * DAY);
        const svc = pick(r, SERVICE_NAMES);
        const inc = activeIncident(incidents, svc, t);
        const level =
          inc && inc.kind !== "slow" && r() < 0.7 ? "error" : inc && r() < 0.5 ? "error" : levelFor(r);
        logs.push({
          kind: "log_entry",
          query: "homelab",
          ts_ns: `${Math.round(t)}000000`,
          labels: { service_name: svc, namespace: "homelab" },
          line: logLine(r, svc, t, level, level === "error" ? inc : undefined),
        });
      }
      // Extra error bursts during incidents, so the error-log rate stands out.
      for (const inc of incidents) {
        if (inc.end <= dayStart || inc.start >= dayStart + DAY) continue;
        for (let t = Math.max(inc.start, dayStart); t < Math.min(inc.end, dayStart + DAY); t += 20_000) {
          logs.push({
            kind: "log_entry",
            query: "homelab",
            ts_ns: `${Math.round(t)}000000`,
            labels: { service_name: inc.service, namespace: "homelab" },
            line: logLine(r, inc.service, t, "error", inc),
          });
        }
      }
      logs.sort((a, b) => (a.ts_ns < b.ts_ns ? -1 : 1));

      const traces: TraceRecord[] = [];
      const tracesPerDay = Math.round(opts.traces / opts.days);
      // One trace in each equal slot of the day, so that even a few a day reach every part of it.
      for (let k = 0; k < tracesPerDay; k++)
        traces.push(makeTrace(r, dayStart + Math.floor(((k + r()) / tracesPerDay) * DAY), incidents));

      const series: MetricSeriesRecord[] = [];
      for (const def of seriesDefs) {
        const points: [number, number][] = [];
        for (let h = 0; h < 24; h++) {
          const t = dayStart + h * HOUR;
          const diurnal = Math.sin(((h - 6) / 24) * 2 * Math.PI);
          const inc = activeIncident(incidents, def.svc, t);
          let v: number;
          if (def.kind === "up") v = inc?.kind === "crash" ? 0 : 1;
          else if (def.kind === "memory_bytes") v = 2e8 + def.base * 1e6 * (1 + 0.2 * diurnal) + r() * 1e6;
          else v = def.base * (1 + 0.5 * diurnal) + r() * 2;
          points.push([t / 1000, v]);
        }
        const labels: Record<string, string> =
          def.kind === "up"
            ? { __name__: "up", job: def.svc, instance: `${def.svc}:9090` }
            : { service: def.svc, replica: String(def.replica) };
        series.push({
          kind: "metric_series",
          query: def.kind,
          promql: def.kind === "up" ? "up" : `${def.kind}`,
          labels,
          step_s: 3600,
          start: dayStart / 1000,
          end: (dayStart + DAY - HOUR) / 1000,
          points,
        });
      }
      yield { day: dayOf(dayStart), logs, traces, series };
    }
  }
  return { incidents, days: days() };
}

/** Writes the homelab into the store, a segment per source per day; returns the incidents placed. */
export async function writeRawHomelab(opts: RawHomelabOptions): Promise<PlacedIncident[]> {
  const end = opts.end ?? Date.parse("2026-02-01T00:00:00Z");
  const seed = opts.seed ?? 1;
  const { store, agent } = opts;
  const { incidents, days } = homelabDays(opts);
  for (const { day, logs, traces, series } of days) {
    await writeSegment(store, agent, "loki", day, "homelab-0001", logs);
    await writeSegment(store, agent, "tempo", day, "all-0001", traces);
    await writeSegment(store, agent, "prometheus", day, "series-0001", series);
  }
  // The repository is collected once, on the last day.
  const codeDay = dayOf(end - DAY);
  const r = rng(seed ^ 0xc0de);
  const perSegment = 500;
  for (let s = 0; s * perSegment < opts.files; s++) {
    const files: CodeFileRecord[] = [];
    for (let i = s * perSegment; i < Math.min(opts.files, (s + 1) * perSegment); i++)
      files.push(codeFile(r, i, codeDay));
    await writeSegment(store, agent, "code", codeDay, `repo-${String(s).padStart(4, "0")}`, files);
  }
  return incidents;
}
