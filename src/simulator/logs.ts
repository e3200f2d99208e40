// The homelab's log lines. Each (service, hour) bucket is generated on its own from the seed, so
// a query over any window sees the same lines. Every service writes in its own format (Go logfmt,
// Python structlog JSON, .NET JSON console, zap JSON, postgres and RabbitMQ text); incidents shift
// a service's mix toward their own error lines; pod starts print start-up blocks, some with secrets.
import { agentTemplates } from "./data/agents.js";
import { gateway } from "./data/api-gateway.js";
import { lambdaTemplates } from "./data/lambdas.js";
import type { Ctx, Level, Msg, ServiceTemplates, Weighted } from "./data/log-kit.js";
import { worker } from "./data/notification-worker.js";
import { postgres } from "./data/postgres.js";
import { rabbitmq } from "./data/rabbitmq.js";
import { SERVICES, type ServiceDef, service } from "./homelab.js";
import type { Labels } from "./metrics.js";
import { Rng } from "./rng.js";
import type { FakeSecrets } from "./secrets.js";
import { type Effects, type Incident, MEAN_RHYTHM, type Pod, type Timeline } from "./timeline.js";

export type { Level } from "./data/log-kit.js";

export interface LogEntry {
  /** Milliseconds since the epoch, and nanoseconds within that millisecond. */
  ms: number;
  subNs: number;
  /** Nanoseconds since the epoch, as Loki writes it. */
  ts: string;
  labels: Labels;
  line: string;
  level: Level;
  service: string;
  /** The incident this line was written because of, if any. */
  incident: string | null;
  secret: boolean;
}

export const HOUR_MS = 3_600_000;

// The templates live in data/<service>.ts.
const TEMPLATES: Record<string, ServiceTemplates> = {
  "api-gateway": gateway,
  "agent-sre": agentTemplates("agent-sre"),
  "agent-bruno": agentTemplates("agent-bruno"),
  "notification-worker": worker,
  postgres,
  rabbitmq,
  "lambda-pod-restart": lambdaTemplates("lambda-pod-restart"),
  "lambda-notify-digest": lambdaTemplates("lambda-notify-digest"),
};

// --- formats --------------------------------------------------------------------------------

function iso(t: number, micros = 0): string {
  const base = new Date(t).toISOString();
  return micros ? `${base.slice(0, 23)}${String(micros).padStart(3, "0")}Z` : base;
}

function logfmtValue(v: unknown): string {
  const s = typeof v === "string" ? v : JSON.stringify(v);
  return /[\s"=]/.test(s) || s === "" ? JSON.stringify(s) : s;
}

const PY_LEVEL: Record<Level, string> = {
  debug: "debug",
  info: "info",
  warn: "warning",
  error: "error",
  fatal: "critical",
};
const DOTNET_LEVEL: Record<Level, string> = {
  debug: "Debug",
  info: "Information",
  warn: "Warning",
  error: "Error",
  fatal: "Critical",
};
const PG_LEVEL: Record<Level, string> = {
  debug: "DEBUG",
  info: "LOG",
  warn: "WARNING",
  error: "ERROR",
  fatal: "FATAL",
};
const RMQ_LEVEL: Record<Level, string> = {
  debug: "debug",
  info: "info",
  warn: "warning",
  error: "error",
  fatal: "critical",
};

function formatLine(svc: ServiceDef, m: Msg, t: number, subNs: number, pid: number): string {
  const micros = Math.floor(subNs / 1000);
  switch (svc.logFormat) {
    case "logfmt": {
      const parts = [
        `ts=${iso(t)}`,
        `level=${m.level}`,
        `caller=${m.logger ?? "main.go:1"}`,
        `msg=${logfmtValue(m.msg)}`,
      ];
      for (const [k, v] of Object.entries(m.fields ?? {})) parts.push(`${k}=${logfmtValue(v)}`);
      return parts.join(" ");
    }
    case "structlog":
      return JSON.stringify({
        event: m.msg,
        level: PY_LEVEL[m.level],
        logger: m.logger,
        timestamp: iso(t, micros),
        ...m.fields,
        ...(m.exception ? { exception: m.exception } : {}),
      });
    case "dotnet":
      return JSON.stringify({
        Timestamp: iso(t),
        EventId: 0,
        LogLevel: DOTNET_LEVEL[m.level],
        Category: m.logger,
        Message: m.msg,
        ...(m.exception ? { Exception: m.exception } : {}),
        State: { Message: m.msg, ...m.fields, "{OriginalFormat}": m.format ?? m.msg },
      });
    case "zap": {
      const { caller, ...fields } = (m.fields ?? {}) as Record<string, unknown>;
      return JSON.stringify({
        level: m.level === "warn" ? "warn" : m.level,
        ts: Number(
          `${Math.floor(t / 1000)}.${String(t % 1000).padStart(3, "0")}${String(micros).padStart(3, "0")}`,
        ),
        logger: m.logger,
        caller: caller ?? "handler/handle.go:57",
        msg: m.msg,
        ...fields,
      });
    }
    case "postgres": {
      const d = new Date(t).toISOString();
      return `${d.slice(0, 10)} ${d.slice(11, 23)} UTC [${pid}] ${PG_LEVEL[m.level]}:  ${m.msg}`;
    }
    case "rabbitmq": {
      const d = new Date(t).toISOString();
      return `${d.slice(0, 10)} ${d.slice(11, 23)}${String(micros).padStart(3, "0")}+00:00 [${RMQ_LEVEL[m.level]}] <0.${pid}.0> ${m.msg}`;
    }
  }
}

// --- generation -----------------------------------------------------------------------------

export interface LogDensity {
  /** Ordinary lines per day over the whole homelab (incidents and start-ups add to it). */
  logsPerDay: number;
}

const WEIGHT_SUM = SERVICES.reduce((a, s) => a + s.logWeight, 0);

/** Extra lines per hour a service writes while it takes part in an incident, at the default density. */
const INCIDENT_RATE: Record<Incident["kind"], { culprit: number; victim: number }> = {
  bad_deploy: { culprit: 140, victim: 60 },
  db_slowdown: { culprit: 160, victim: 45 },
  crash_loop: { culprit: 0, victim: 40 },
  memory_leak: { culprit: 30, victim: 20 },
};

export const DEFAULT_LOGS_PER_DAY = 1500;

export class HomelabLogs {
  private readonly cache = new Map<string, LogEntry[]>();
  /** One shared, frozen label set per stream: entries are many, streams are few. */
  private readonly streams = new Map<string, Labels>();

  private streamLabels(svc: ServiceDef, pod: Pod, level: Level): Labels {
    const key = `${pod.name}\u0000${level}`;
    let labels = this.streams.get(key);
    if (!labels) {
      labels = Object.freeze({
        app: svc.name,
        container: svc.container,
        detected_level: level,
        namespace: svc.namespace,
        pod: pod.name,
        service_name: svc.name,
      });
      this.streams.set(key, labels);
    }
    return labels;
  }

  constructor(
    private readonly tl: Timeline,
    private readonly secrets: FakeSecrets,
    private readonly density: LogDensity,
    private readonly dataStart: number,
  ) {}

  /** Every line of one service in one hour bucket, sorted by time. */
  bucket(name: string, hour: number): LogEntry[] {
    const key = `${name}:${hour}`;
    let out = this.cache.get(key);
    if (!out) {
      out = this.generate(service(name), hour);
      if (this.cache.size > 6000) this.cache.delete(this.cache.keys().next().value!);
      this.cache.set(key, out);
    }
    return out;
  }

  private generate(svc: ServiceDef, hour: number): LogEntry[] {
    const t0 = hour * HOUR_MS;
    const t1 = t0 + HOUR_MS;
    if (t1 <= this.dataStart) return [];
    const tl = this.tl;
    const r = Rng.of(tl.seed, "logs", svc.name, hour);
    const tpl = TEMPLATES[svc.name];
    const scale = this.density.logsPerDay / DEFAULT_LOGS_PER_DAY;
    const out: LogEntry[] = [];
    const emit = (t: number, pod: Pod, msgs: Msg | Msg[], incident: Incident | null, pid: number) => {
      if (t < this.dataStart || t < t0 || t >= t1) return;
      // Lines written together share a timestamp: to the nanosecond for most loggers.
      const subNs =
        svc.logFormat === "structlog" || svc.logFormat === "zap" || svc.logFormat === "rabbitmq"
          ? r.int(1000) * 1000
          : 0;
      for (const m of Array.isArray(msgs) ? msgs : [msgs]) {
        out.push({
          ms: t,
          subNs,
          ts: `${t}${String(subNs).padStart(6, "0")}`,
          labels: this.streamLabels(svc, pod, m.level),
          line: formatLine(svc, m, t, subNs, pid),
          level: m.level,
          service: svc.name,
          incident: incident?.id ?? null,
          secret: m.secret === true,
        });
      }
    };
    const podAt = (t: number): Pod | null => {
      const alive = tl.podsAlive(svc.name, t);
      return alive.length ? alive[r.int(alive.length)] : null;
    };
    const ctx = (t: number, pod: Pod, eff: Effects): Ctx => ({ r, s: this.secrets, svc, pod, t, eff });
    const pickFrom = (list: Weighted[]) =>
      r.weighted(
        list,
        list.map((w) => w[0]),
      )[1];

    // Ordinary lines, following the service's load.
    const mid = t0 + HOUR_MS / 2;
    const lambda =
      ((this.density.logsPerDay * svc.logWeight) / WEIGHT_SUM / 24) * (tl.load(svc, mid) / MEAN_RHYTHM);
    const n = r.poisson(lambda);
    for (let i = 0; i < n; i++) {
      const t = t0 + r.int(HOUR_MS);
      const eff = tl.effects(svc.name, t);
      const pod = podAt(t);
      if (!pod || eff.down) continue;
      const inc = eff.incident;
      let list = tpl.normal;
      let linked: Incident | null = null;
      if (inc) {
        const special = (eff.culprit ? tpl.culprit : tpl.victim)?.[inc.kind];
        if (special && r.chance(eff.culprit ? 0.55 : 0.35)) {
          list = special;
          linked = inc;
        }
      } else if (eff.blip && r.chance(0.5)) list = tpl.blip;
      emit(t, pod, pickFrom(list)(ctx(t, pod, eff)), linked, 100 + r.int(30000));
    }

    // Extra lines of incidents overlapping this hour.
    for (const inc of tl.incidents) {
      if (inc.end <= t0 || inc.start >= t1 || !inc.affected.includes(svc.name)) continue;
      const culprit = inc.service === svc.name;
      const list = (culprit ? tpl.culprit : tpl.victim)?.[inc.kind];
      if (!list) continue;
      const from = Math.max(t0, inc.start);
      const to = Math.min(t1, inc.end);
      const rate = INCIDENT_RATE[inc.kind][culprit ? "culprit" : "victim"] * scale;
      const k = r.poisson((rate * (to - from)) / HOUR_MS);
      for (let i = 0; i < k; i++) {
        const t = from + r.int(to - from);
        const eff = tl.effects(svc.name, t);
        const pod = podAt(t);
        if (!pod || (eff.down && culprit)) continue;
        emit(t, pod, pickFrom(list)(ctx(t, pod, eff)), inc, 100 + r.int(30000));
      }
    }

    // Start-up blocks: new pods, and container restarts (crash loops, OOM kills). A block belongs
    // to the bucket its first line falls in, and is kept inside that bucket.
    const inBucket = (t: number) => t >= t0 && t < t1;
    const block = (t: number) => Math.min(t, t1 - 5_000);
    for (const pod of tl.pods(svc.name)) {
      const at = pod.from + 2_000;
      if (!inBucket(at)) continue;
      const inc = tl.incidentAt(pod.from);
      const linked = inc?.service === svc.name ? inc : null;
      emit(block(at), pod, tpl.startup(ctx(pod.from, pod, tl.effects(svc.name, pod.from))), linked, 1);
    }
    for (const inc of tl.incidents) {
      if (inc.service !== svc.name) continue;
      for (const restart of inc.restarts) {
        // OOM-killed processes die silently; the restarted container starts up again a little later.
        const at = inc.kind === "crash_loop" ? restart : restart + 10_000;
        if (!inBucket(at)) continue;
        const pod = tl.podsAlive(svc.name, restart)[0];
        if (!pod) continue;
        const c = ctx(at, pod, tl.effects(svc.name, at));
        emit(block(at), pod, tpl.startup(c), inc, 1);
        const crash = tpl.culprit?.crash_loop;
        if (inc.kind === "crash_loop" && crash)
          emit(block(at) + 1_500 + r.int(2_000), pod, pickFrom(crash)(c), inc, 1);
      }
    }
    out.sort((a, b) => a.ms - b.ms || a.subNs - b.subNs);
    return out;
  }
}
