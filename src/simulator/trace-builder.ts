// One trace as it is built: the span types the simulator serves, the builder that opens and
// closes spans against the timeline's effects, and the calls a flow is made of (a query, an
// external call, an HTTP call between services, a message through the queue).
import { service } from "./homelab.js";
import type { Rng } from "./rng.js";
import type { FakeSecrets } from "./secrets.js";
import type { Effects, Incident, Timeline } from "./timeline.js";

export type SpanKind =
  | "SPAN_KIND_SERVER"
  | "SPAN_KIND_CLIENT"
  | "SPAN_KIND_INTERNAL"
  | "SPAN_KIND_PRODUCER"
  | "SPAN_KIND_CONSUMER";

export type AttrValue =
  | { stringValue: string }
  | { intValue: string }
  | { boolValue: boolean }
  | { doubleValue: number }
  | { arrayValue: { values: AttrValue[] } };

export interface Attr {
  key: string;
  value: AttrValue;
}

export interface SimSpan {
  spanId: string;
  parentId: string | null;
  service: string;
  pod: string;
  name: string;
  /** null: unspecified, omitted from the JSON. */
  kind: SpanKind | null;
  startUs: number;
  durUs: number;
  status: "unset" | "ok" | "error";
  message?: string;
  attrs: Attr[];
  events: { timeUs: number; name: string; attrs: Attr[] }[];
}

export interface SimTrace {
  /** 32 hex characters. */
  traceId: string;
  bucket: number;
  index: number;
  flow: string;
  startUs: number;
  endUs: number;
  rootService: string;
  rootName: string;
  spans: SimSpan[];
  /** The incident active when the trace started, if it touched an affected service. */
  incident: string | null;
  error: boolean;
}

export const str = (key: string, v: string): Attr => ({ key, value: { stringValue: v } });
export const int = (key: string, v: number): Attr => ({ key, value: { intValue: String(Math.round(v)) } });

// --- building one trace -----------------------------------------------------------------------

export class Builder {
  readonly spans: SimSpan[] = [];
  /** The incident whose alerts or retries caused this trace, if any: it takes the incident's path. */
  causedBy: Incident | null = null;
  constructor(
    readonly r: Rng,
    private readonly tl: Timeline,
    readonly secrets: FakeSecrets,
  ) {}

  eff(name: string, us: number): Effects {
    return this.tl.effects(name, us / 1000);
  }

  private podOf(name: string, us: number): string {
    const alive = this.tl.podsAlive(name, us / 1000);
    if (alive.length === 0) return this.tl.pods(name)[0]?.name ?? name;
    return alive[this.r.int(alive.length)].name;
  }

  open(
    parent: SimSpan | null,
    svc: string,
    name: string,
    kind: SpanKind | null,
    startUs: number,
    attrs: Attr[] = [],
  ): SimSpan {
    let id = this.r.hex(8);
    if (id === "0000000000000000") id = "0000000000000001";
    const s: SimSpan = {
      spanId: id,
      parentId: parent?.spanId ?? null,
      service: svc,
      pod: this.podOf(svc, startUs),
      name,
      kind,
      startUs: Math.round(startUs),
      durUs: 0,
      status: "unset",
      attrs,
      events: [],
    };
    this.spans.push(s);
    return s;
  }

  close(s: SimSpan, endUs: number): number {
    s.durUs = Math.max(1, Math.round(endUs) - s.startUs);
    return s.startUs + s.durUs;
  }

  fail(s: SimSpan, message: string, type?: string): void {
    s.status = "error";
    s.message = message;
    if (type) {
      s.events.push({
        timeUs: s.startUs + s.durUs,
        name: "exception",
        attrs: [str("exception.type", type), str("exception.message", message)],
      });
    }
  }

  /** Self time of a service's own work, slowed down by incidents (GC pressure, CPU). */
  self(name: string, us: number, medianMs: number): number {
    return this.r.lognormal(medianMs * 1000, 0.4) * this.eff(name, us).latency;
  }

  /** A transient own failure: the baseline error rate, plus the culprit's share in an incident. */
  ownFailure(name: string, us: number): boolean {
    const e = this.eff(name, us);
    const p = service(name).errorRate + (e.culprit ? e.errorAdd : 0) + (e.blip ? 0.08 : 0);
    return this.r.chance(p);
  }
}

export interface CallResult {
  end: number;
  error: string | null;
  status: number;
}

/** The work under a span that serves a request (its children), from time `t` on. */
export type Serve = (span: SimSpan, t: number) => CallResult;

/** A SQL query from `caller` to postgres, retried once when it is cancelled. */
export function query(
  b: Builder,
  parent: SimSpan,
  caller: string,
  op: string,
  table: string,
  t: number,
): CallResult {
  let at = t;
  for (let attempt = 0; attempt < 2; attempt++) {
    const stmt = `${op} ${table}`;
    const attrs = [
      str("db.system", "postgresql"),
      str("db.name", "notifications"),
      str("db.operation", op),
      str("db.sql.table", table),
    ];
    if (caller === "notification-worker" && b.r.chance(0.03)) {
      attrs.push(
        str(
          "db.connection_string",
          `postgres://notifi:${b.secrets.dbPassword}@postgres.data.svc:5432/notifications`,
        ),
      );
    }
    if (attempt > 0) attrs.push(int("db.retry", attempt));
    const client = b.open(parent, caller, stmt, "SPAN_KIND_CLIENT", at, attrs);
    const sStart = at + b.r.range(150, 600);
    const server = b.open(client, "postgres", stmt, "SPAN_KIND_SERVER", sStart, [
      str("db.statement", `${op} ... FROM ${table} WHERE id = $1`),
    ]);
    const pe = b.eff("postgres", sStart);
    let dur = b.r.lognormal(3_500, 0.8);
    let error: string | null = null;
    if (pe.culprit && pe.incident?.kind === "db_slowdown") {
      if (b.r.chance(0.3 * pe.intensity)) {
        dur = 5_000_000 + b.r.range(0, 20_000);
        error = "canceling statement due to statement timeout";
      } else dur = b.r.lognormal(3_500 * (1 + 70 * pe.intensity), 0.9);
    } else if (b.ownFailure("postgres", sStart)) {
      error = 'duplicate key value violates unique constraint "notifications_pkey"';
    }
    const sEnd = b.close(server, sStart + dur);
    if (error) b.fail(server, error, "postgres.error");
    const end = b.close(client, sEnd + b.r.range(100, 500));
    if (!error) return { end, error: null, status: 0 };
    b.fail(client, error, error.startsWith("canceling") ? "QueryCanceled" : "UniqueViolation");
    // A cancelled statement is retried once; anything else fails the caller at once.
    if (attempt === 1 || !error.startsWith("canceling")) return { end, error, status: 0 };
    at = end + b.r.range(1_000, 20_000);
  }
  return { end: at, error: null, status: 0 };
}

/** An external HTTP call the service makes (LLM, Slack, Prometheus, Kubernetes): no callee span. */
export function external(
  b: Builder,
  parent: SimSpan,
  caller: string,
  name: string,
  url: string,
  t: number,
  medianMs: number,
  extra: Attr[] = [],
): number {
  const s = b.open(parent, caller, name, "SPAN_KIND_CLIENT", t, [str("url.full", url), ...extra]);
  // A struggling process (GC thrash, CPU starvation) is slow to handle even remote answers.
  const end = b.close(s, t + b.r.lognormal(medianMs * 1000, 0.55) * b.eff(caller, t).latency);
  s.attrs.push(int("http.response.status_code", 200));
  return end;
}

/** A call from `caller` to an HTTP service; `serve` runs the callee's server span. */
export function httpCall(
  b: Builder,
  parent: SimSpan,
  caller: string,
  callee: string,
  method: string,
  route: string,
  t: number,
  serve: Serve,
  retries = 0,
): CallResult {
  let at = t;
  let last: CallResult = { end: t, error: null, status: 200 };
  const def = service(callee);
  for (let attempt = 0; attempt <= retries; attempt++) {
    const attrs = [
      str("http.request.method", method),
      str("server.address", `${callee}.${def.namespace}.svc`),
      int("server.port", def.port),
    ];
    if (attempt > 0) attrs.push(int("http.request.resend_count", attempt));
    const client = b.open(parent, caller, method, "SPAN_KIND_CLIENT", at, attrs);
    const sStart = at + b.r.range(300, 1500);
    const ce = b.eff(callee, sStart);
    let res: CallResult;
    if (ce.down) {
      if (def.workload === "knative") {
        // Knative's queue-proxy answers for a crashing user container.
        const qp = b.open(client, callee, `${method} ${route}`, "SPAN_KIND_SERVER", sStart, [
          str("http.route", route),
          str("knative.component", "queue-proxy"),
        ]);
        const end = b.close(qp, sStart + b.r.range(2_000, 15_000));
        b.fail(qp, "dial tcp 127.0.0.1:8080: connect: connection refused", "ProxyError");
        qp.attrs.push(int("http.response.status_code", 503));
        res = { end, error: "503 Service Unavailable", status: 503 };
      } else {
        res = { end: sStart + b.r.range(500, 3000), error: "connect: connection refused", status: 0 };
      }
    } else {
      const server = b.open(client, callee, `${method} ${route}`, "SPAN_KIND_SERVER", sStart, [
        str("http.route", route),
        str("http.request.method", method),
      ]);
      const inner = serve(server, sStart + b.r.range(100, 800));
      const end = b.close(server, inner.end + b.self(callee, inner.end, 0.4));
      const status = inner.error ? (inner.status >= 400 ? inner.status : 500) : 200;
      server.attrs.push(int("http.response.status_code", status));
      if (inner.error) b.fail(server, inner.error);
      res = { end, error: inner.error, status };
    }
    const cEnd = b.close(client, res.end + b.r.range(200, 1200));
    if (res.status) client.attrs.push(int("http.response.status_code", res.status));
    last = { end: cEnd, error: res.error, status: res.status };
    if (!res.error) return last;
    b.fail(client, res.error);
    at = cEnd + b.r.range(50_000, 400_000) * (attempt + 1);
  }
  return last;
}

/** A message through RabbitMQ to the notification worker. Returns when the consumer is done. */
export function deliver(
  b: Builder,
  producerParent: SimSpan,
  producer: string,
  queue: string,
  t: number,
): number {
  const pub = b.open(producerParent, producer, `${queue} publish`, "SPAN_KIND_PRODUCER", t, [
    str("messaging.system", "rabbitmq"),
    str("messaging.destination.name", queue),
    str("messaging.operation", "publish"),
  ]);
  const brokerStart = t + b.r.range(200, 800);
  const broker = b.open(pub, "rabbitmq", `basic.publish ${queue}`, "SPAN_KIND_SERVER", brokerStart);
  const brokerEnd = b.close(broker, brokerStart + b.r.lognormal(900, 0.5));
  const pubEnd = b.close(pub, brokerEnd + b.r.range(100, 400));
  // Delivery: the queue wait grows while the consumer stalls or restarts.
  const we = b.eff("notification-worker", brokerEnd);
  const wait =
    we.culprit && we.incident?.kind === "memory_leak"
      ? b.r.range(200_000, 4_000_000) * (0.3 + we.leak)
      : b.r.lognormal(8_000, 0.8);
  let at = brokerEnd + wait;
  let end = pubEnd;
  for (let attempt = 0; attempt < 3; attempt++) {
    const dAttrs = [
      str("messaging.system", "rabbitmq"),
      str("messaging.destination.name", queue),
      str("messaging.operation", "deliver"),
    ];
    if (attempt > 0) dAttrs.push({ key: "messaging.rabbitmq.redelivered", value: { boolValue: true } });
    const d = b.open(broker, "rabbitmq", `basic.deliver ${queue}`, "SPAN_KIND_PRODUCER", at, dAttrs);
    const cStart = at + b.r.range(300, 1200);
    const c = b.open(d, "notification-worker", `${queue} process`, "SPAN_KIND_CONSUMER", cStart, [
      str("messaging.system", "rabbitmq"),
      str("messaging.destination.name", queue),
    ]);
    let cur = cStart + b.self("notification-worker", cStart, 1.5);
    let error: string | null = null;
    const we2 = b.eff("notification-worker", cStart);
    if (we2.culprit && we2.incident?.kind === "bad_deploy") {
      const render = b.open(c, "notification-worker", "template.render", "SPAN_KIND_INTERNAL", cur);
      cur = b.close(render, cur + b.r.lognormal(400, 0.5));
      if (b.r.chance(0.85)) {
        b.fail(
          render,
          "Object reference not set to an instance of an object.",
          "System.NullReferenceException",
        );
        error = "Object reference not set to an instance of an object.";
      }
    }
    if (!error) {
      const q = query(b, c, "notification-worker", "INSERT", "notifications", cur);
      cur = q.end;
      error = q.error;
    }
    if (!error) {
      // Each channel has its own sender, and its own pace: ntfy is quick, Slack and the mail relay are not.
      const channel = b.r.weighted(["slack", "email", "ntfy"], [5, 3, 2]);
      const sender = b.open(c, "notification-worker", `channel.${channel} send`, "SPAN_KIND_INTERNAL", cur, [
        str("notifi.channel", channel),
      ]);
      const url =
        channel === "slack"
          ? "https://slack.com/api/chat.postMessage"
          : channel === "email"
            ? "https://smtp-relay.homelab.internal/v1/send"
            : "https://ntfy.sh/homelab";
      const sent = external(
        b,
        sender,
        "notification-worker",
        "POST",
        url,
        cur + b.self("notification-worker", cur, 0.8),
        channel === "slack" ? 180 : channel === "email" ? 350 : 25,
      );
      cur = b.close(sender, sent + b.self("notification-worker", sent, 0.3));
      if (b.ownFailure("notification-worker", cur)) {
        error = `channel ${channel} returned 503`;
        b.fail(sender, error);
      }
    }
    if (we2.culprit && we2.incident?.kind === "memory_leak" && we2.errorAdd > 0.3 && b.r.chance(0.6)) {
      error = "The operation was canceled.";
    }
    const cEnd = b.close(c, cur + b.self("notification-worker", cur, 1));
    end = b.close(d, cEnd + b.r.range(100, 500));
    if (!error) break;
    b.fail(
      c,
      error,
      error.startsWith("Object") ? "System.NullReferenceException" : "System.OperationCanceledException",
    );
    at = end + b.r.range(1_000_000, 5_000_000);
  }
  return end;
}
