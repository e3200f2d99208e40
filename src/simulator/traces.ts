// The homelab's traces. Each 10-minute bucket is generated on its own from the seed. A trace
// follows one of a few request flows through the call graph; incidents change the path itself
// (a new failing span after a bad release, retries and fallbacks when a callee is down, slow and
// cancelled queries when postgres is slow), not only its status, so outcome is learnable from
// the path. Trace IDs encode (bucket, index) through a keyed permutation: a lookup by ID
// regenerates one bucket instead of searching.
import { service } from "./homelab.js";
import { hashKey, mix32, Rng } from "./rng.js";
import type { FakeSecrets } from "./secrets.js";
import { type Effects, type Incident, MEAN_RHYTHM, type Timeline } from "./timeline.js";

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

export const TRACE_BUCKET_MS = 600_000;
export const DEFAULT_TRACES_PER_DAY = 160;
/** Tail sampling, as a homelab's collector does it: errors and slow traces are kept, this share of the rest. */
const KEEP_ORDINARY = 0.5;
const SLOW_US = 2_000_000;
/** Extra traces per hour an incident causes (alerts, retries, redeliveries), at the default density. */
const INCIDENT_TRACES_PER_HOUR = 24;

const str = (key: string, v: string): Attr => ({ key, value: { stringValue: v } });
const int = (key: string, v: number): Attr => ({ key, value: { intValue: String(Math.round(v)) } });

// --- trace IDs ------------------------------------------------------------------------------

/** A keyed Feistel permutation of 64 bits: (bucket, index, check) <-> 16 hex characters. */
class TraceIds {
  private readonly keys: number[];
  constructor(private readonly seed: number) {
    this.keys = [0, 1, 2, 3].map((r) => hashKey(seed, "trace-id", r));
  }

  private check(bucket: number, index: number): number {
    return hashKey(this.seed, "trace-check", bucket, index) & 0xffff;
  }

  encode(bucket: number, index: number, wide: boolean): string {
    let l = bucket >>> 0;
    let r = ((index & 0xffff) | (this.check(bucket, index) << 16)) >>> 0;
    for (const k of this.keys) {
      const nl = r;
      r = (l ^ mix32(r ^ k)) >>> 0;
      l = nl;
    }
    const low = l.toString(16).padStart(8, "0") + r.toString(16).padStart(8, "0");
    const high = wide ? Rng.of(this.seed, "trace-hi", bucket, index).hex(8) : "0000000000000000";
    return high + low;
  }

  decode(hex32: string): { bucket: number; index: number } | null {
    let l = Number.parseInt(hex32.slice(16, 24), 16) >>> 0;
    let r = Number.parseInt(hex32.slice(24, 32), 16) >>> 0;
    for (let i = this.keys.length - 1; i >= 0; i--) {
      const pr = l;
      l = (r ^ mix32(l ^ this.keys[i])) >>> 0;
      r = pr;
    }
    const bucket = l;
    const index = r & 0xffff;
    if (r >>> 16 !== this.check(bucket, index)) return null;
    return { bucket, index };
  }
}

// --- building one trace -----------------------------------------------------------------------

class Builder {
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

interface CallResult {
  end: number;
  error: string | null;
  status: number;
}

/** A SQL query from `caller` to postgres, retried once when it is cancelled. */
function query(
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
function external(
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
function httpCall(
  b: Builder,
  parent: SimSpan,
  caller: string,
  callee: string,
  method: string,
  route: string,
  t: number,
  serve: (server: SimSpan, t: number) => CallResult,
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
function deliver(b: Builder, producerParent: SimSpan, producer: string, queue: string, t: number): number {
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

// --- flows -----------------------------------------------------------------------------------

type Flow = (b: Builder, t: number) => void;

function gatewayRoot(
  b: Builder,
  route: string,
  method: string,
  t: number,
  inner: (root: SimSpan, t: number) => CallResult,
  okStatus = 200,
): void {
  const attrs = [
    str("http.request.method", method),
    str("http.route", route),
    str("url.path", route),
    str("client.address", `10.42.0.${2 + b.r.int(250)}`),
  ];
  if (b.r.chance(0.015)) {
    attrs.push({
      key: "http.request.header.authorization",
      value: { arrayValue: { values: [{ stringValue: `Bearer ${b.secrets.jwt}` }] } },
    });
  }
  const root = b.open(null, "api-gateway", `${method} ${route}`, "SPAN_KIND_SERVER", t, attrs);
  const auth = b.open(root, "api-gateway", "auth.verify_jwt", "SPAN_KIND_INTERNAL", t + b.r.range(50, 300));
  let cur = b.close(auth, auth.startUs + b.r.lognormal(600, 0.5));
  const ge = b.eff("api-gateway", cur);
  let res: CallResult;
  if (ge.culprit && ge.incident?.kind === "bad_deploy" && route !== "/api/v1/notifications") {
    const resolve = b.open(root, "api-gateway", "router.resolve_upstream", "SPAN_KIND_INTERNAL", cur);
    cur = b.close(resolve, cur + b.r.lognormal(150, 0.4));
    if (b.r.chance(0.8)) {
      b.fail(resolve, "runtime error: invalid memory address or nil pointer dereference", "runtime.Error");
      res = { end: cur, error: "upstream config for route is nil", status: 502 };
    } else res = inner(root, cur);
  } else {
    res = inner(root, cur);
  }
  const end = b.close(root, res.end + b.self("api-gateway", res.end, 0.3));
  const status = res.error ? (/timeout|canceling/.test(res.error) ? 504 : 502) : okStatus;
  root.attrs.push(int("http.response.status_code", status));
  if (res.error) b.fail(root, `upstream error: ${res.error}`);
  else if (b.ownFailure("api-gateway", end) && route !== "/api/v1/notifications") {
    root.attrs[root.attrs.length - 1] = int("http.response.status_code", 502);
    b.fail(root, "upstream connection reset by peer");
  }
}

const notify: Flow = (b, t) => {
  gatewayRoot(
    b,
    "/api/v1/notifications",
    "POST",
    t,
    (root, cur) => {
      // The gateway answers 202 once the message is published; delivery continues in the trace.
      const pubAt = cur + b.r.range(100, 400);
      deliver(b, root, "api-gateway", "notifications", pubAt);
      const pub = b.spans.find((s) => s.name === "notifications publish")!;
      return { end: pub.startUs + pub.durUs, error: null, status: 202 };
    },
    202,
  );
};

const chat: Flow = (b, t) => {
  gatewayRoot(b, "/api/v1/chat", "POST", t, (root, cur) =>
    httpCall(b, root, "api-gateway", "agent-bruno", "POST", "/v1/chat", cur, (server, st) => {
      let at = st;
      const q = query(b, server, "agent-bruno", "SELECT", "conversations", at);
      if (q.error) return { end: q.end, error: q.error, status: 500 };
      at = q.end + b.self("agent-bruno", q.end, 2);
      const be = b.eff("agent-bruno", at);
      if (be.culprit && be.incident?.kind === "bad_deploy") {
        const route = b.open(server, "agent-bruno", "tool.route search_docs_v2", "SPAN_KIND_INTERNAL", at);
        at = b.close(route, at + b.r.lognormal(2_000, 0.5));
        if (b.r.chance(0.75)) {
          b.fail(route, "'search_docs_v2'", "KeyError");
          return { end: at, error: "KeyError: 'search_docs_v2'", status: 500 };
        }
      } else if (b.r.chance(0.45)) {
        const tool = b.r.pick(Object.keys(TOOL_MEDIAN_US));
        const median = TOOL_MEDIAN_US[tool];
        const span = b.open(server, "agent-bruno", `tool.call ${tool}`, "SPAN_KIND_INTERNAL", at);
        at = b.close(span, at + b.r.lognormal(median, 0.6) * be.latency);
      }
      // Short turns go to the small model, long ones to the large: the span name (GenAI semantic
      // conventions: "chat <model>") says which, and so says much about the latency.
      const model = b.r.weighted(["llama3.2:3b", "llama3.1:8b"], [0.55, 0.45]);
      at = llm(b, server, "agent-bruno", model, at, model === "llama3.2:3b" ? 300 : 1400);
      if (b.ownFailure("agent-bruno", at)) return { end: at, error: "ollama: server busy", status: 503 };
      const w = query(b, server, "agent-bruno", "INSERT", "messages", at + b.self("agent-bruno", at, 1));
      return { end: w.end, error: w.error, status: w.error ? 500 : 200 };
    }),
  );
};

const TOOL_MEDIAN_US: Record<string, number> = { search_docs: 150_000, calendar: 30_000, web_fetch: 900_000 };

/** A call to the homelab's Ollama, named as the GenAI semantic conventions name it. */
function llm(
  b: Builder,
  parent: SimSpan,
  caller: string,
  model: string,
  t: number,
  medianMs: number,
): number {
  const s = b.open(parent, caller, `chat ${model}`, "SPAN_KIND_CLIENT", t, [
    str("gen_ai.system", "ollama"),
    str("gen_ai.operation.name", "chat"),
    str("gen_ai.request.model", model),
    int("gen_ai.usage.input_tokens", 200 + b.r.int(3000)),
    str("server.address", "ollama.ai-agents.svc"),
  ]);
  return b.close(s, t + b.r.lognormal(medianMs * 1000, 0.45) * b.eff(caller, t).latency);
}

function prometheusQueries(b: Builder, parent: SimSpan, at: number, n: number): number {
  for (let i = 0; i < n; i++) {
    at =
      external(b, parent, "agent-sre", "GET", "http://prometheus.monitoring.svc:9090/api/v1/query", at, 60) +
      b.r.range(200, 3000);
  }
  return at;
}

const alert: Flow = (b, t) => {
  gatewayRoot(b, "/api/v1/alerts", "POST", t, (root, cur) =>
    httpCall(b, root, "api-gateway", "agent-sre", "POST", "/v1/alerts", cur, (server, st) => {
      const q = query(b, server, "agent-sre", "SELECT", "incidents", st);
      if (q.error) return { end: q.end, error: q.error, status: 500 };
      let at = prometheusQueries(b, server, q.end, 1 + b.r.int(3));
      const se = b.eff("agent-sre", at);
      if (se.culprit && se.incident?.kind === "bad_deploy") {
        const plan = b.open(server, "agent-sre", "analyzer.plan", "SPAN_KIND_INTERNAL", at);
        at = b.close(plan, at + b.r.lognormal(3_000, 0.5));
        if (b.r.chance(0.75)) {
          b.fail(plan, "'tool_calls'", "KeyError");
          return { end: at, error: "KeyError: 'tool_calls'", status: 500 };
        }
      }
      // Critical alerts get the large model: slower, often past five seconds.
      const model = b.r.weighted(["qwen2.5:7b", "qwen2.5:32b"], [0.7, 0.3]);
      at = llm(b, server, "agent-sre", model, at, model === "qwen2.5:7b" ? 1500 : 5200);
      // Alerts about a crash-looping lambda ask for remediation, and so call it.
      if (b.r.chance(b.causedBy?.kind === "crash_loop" ? 0.9 : 0.35)) {
        const rem = httpCall(
          b,
          server,
          "agent-sre",
          "lambda-pod-restart",
          "POST",
          "/",
          at,
          (ls, lt) => {
            if (b.r.chance(0.25)) {
              ls.attrs.push(
                str(
                  "vcs.repository.url.full",
                  `https://${b.secrets.githubToken}@github.com/homelab/gitops.git`,
                ),
              );
            }
            const end = external(
              b,
              ls,
              "lambda-pod-restart",
              "PATCH",
              "https://10.43.0.1:443/apis/apps/v1/namespaces/notifi/deployments/api-gateway",
              lt + b.r.range(500, 3000),
              60,
            );
            return b.ownFailure("lambda-pod-restart", end)
              ? { end, error: "deployments.apps not found", status: 500 }
              : { end, error: null, status: 200 };
          },
          2,
        );
        at = rem.end;
        if (rem.error) {
          const fb = b.open(server, "agent-sre", "remediation.fallback", "SPAN_KIND_INTERNAL", at);
          at = b.close(fb, at + b.r.lognormal(1_500, 0.4));
          if (b.r.chance(0.3)) return { end: at, error: `remediation failed: ${rem.error}`, status: 502 };
        }
      }
      deliver(b, server, "agent-sre", "notifications", at + b.r.range(200, 1000));
      const pub = b.spans
        .filter((s) => s.name === "notifications publish" && s.service === "agent-sre")
        .pop()!;
      return { end: pub.startUs + pub.durUs, error: null, status: 200 };
    }),
  );
};

const check: Flow = (b, t) => {
  const root = b.open(null, "agent-sre", "scheduled health_check", "SPAN_KIND_INTERNAL", t, [
    str("job.name", "health_check"),
  ]);
  let at = prometheusQueries(b, root, t + b.r.range(200, 2000), 2 + b.r.int(3));
  const q = query(b, root, "agent-sre", "INSERT", "checks", at);
  at = q.end;
  b.close(root, at + b.self("agent-sre", at, 1));
  if (q.error) b.fail(root, q.error);
};

const compact: Flow = (b, t) => {
  const root = b.open(null, "agent-bruno", "memory.compact", "SPAN_KIND_INTERNAL", t, [
    str("job.name", "memory_compaction"),
  ]);
  const s = query(b, root, "agent-bruno", "SELECT", "memory", t + b.r.range(100, 800));
  let at = s.end;
  let error = s.error;
  if (!error) {
    const d = query(b, root, "agent-bruno", "DELETE", "memory", at + b.self("agent-bruno", at, 1.5));
    at = d.end;
    error = d.error;
  }
  b.close(root, at + b.self("agent-bruno", at, 0.5));
  if (error) b.fail(root, error);
};

const status: Flow = (b, t) => {
  gatewayRoot(b, "/api/v1/notifications", "GET", t, (root, cur) =>
    httpCall(
      b,
      root,
      "api-gateway",
      "notification-worker",
      "GET",
      "/api/v1/notifications",
      cur,
      (server, st) => {
        const q = query(
          b,
          server,
          "notification-worker",
          "SELECT",
          "notifications",
          st + b.self("notification-worker", st, 0.5),
        );
        return { end: q.end, error: q.error, status: q.error ? 500 : 200 };
      },
    ),
  );
};

const digest: Flow = (b, t) => {
  const root = b.open(null, "rabbitmq", "basic.deliver digest.tick", "SPAN_KIND_PRODUCER", t, [
    str("messaging.system", "rabbitmq"),
    str("messaging.destination.name", "knative-broker"),
  ]);
  const res = httpCall(
    b,
    root,
    "rabbitmq",
    "lambda-notify-digest",
    "POST",
    "/",
    t + b.r.range(200, 800),
    (server, st) => {
      const q = query(b, server, "lambda-notify-digest", "SELECT", "notifications", st);
      if (q.error) return { end: q.end, error: q.error, status: 500 };
      let at = q.end + b.self("lambda-notify-digest", q.end, 25);
      const pub = b.open(server, "lambda-notify-digest", "digest publish", "SPAN_KIND_PRODUCER", at, [
        str("messaging.system", "rabbitmq"),
        str("messaging.destination.name", "digest"),
      ]);
      const brokerStart = at + b.r.range(200, 600);
      const broker = b.open(pub, "rabbitmq", "basic.publish digest", "SPAN_KIND_SERVER", brokerStart);
      at = b.close(pub, b.close(broker, brokerStart + b.r.lognormal(900, 0.5)) + b.r.range(100, 300));
      return b.ownFailure("lambda-notify-digest", at)
        ? { end: at, error: "publish failed: channel closed", status: 500 }
        : { end: at, error: null, status: 200 };
    },
    2,
  );
  b.close(root, res.end + b.r.range(100, 500));
  if (res.error) b.fail(root, `dispatch failed: ${res.error}`);
};

interface FlowDef {
  name: string;
  weight: number;
  flow: Flow;
  wide: boolean;
}

const FLOWS: FlowDef[] = [
  { name: "notify", weight: 30, flow: notify, wide: true },
  { name: "chat", weight: 22, flow: chat, wide: true },
  { name: "alert", weight: 10, flow: alert, wide: true },
  { name: "check", weight: 10, flow: check, wide: true },
  { name: "compact", weight: 8, flow: compact, wide: true },
  { name: "status", weight: 10, flow: status, wide: true },
];

const DIGEST: FlowDef = { name: "digest", weight: 0, flow: digest, wide: false };
const flowNamed = (name: string): FlowDef =>
  name === "digest" ? DIGEST : FLOWS.find((f) => f.name === name)!;

/** The flows an incident's extra traffic takes, by incident kind and culprit. */
function incidentFlows(kind: string, culprit: string): string[] {
  if (kind === "db_slowdown") return ["chat", "status", "compact", "notify", "check", "alert"];
  if (kind === "crash_loop") return culprit === "lambda-pod-restart" ? ["alert"] : ["digest"];
  if (kind === "memory_leak") {
    // Users retry what is slow: the requests that go through the leaking service.
    return (
      { "agent-bruno": ["chat"], "agent-sre": ["alert"], "notification-worker": ["notify"] }[culprit] ?? [
        "notify",
      ]
    );
  }
  const byService: Record<string, string[]> = {
    "agent-bruno": ["chat", "chat", "compact"],
    "agent-sre": ["alert", "alert", "check"],
    "api-gateway": ["chat", "alert", "status"],
    "notification-worker": ["notify", "notify", "status"],
  };
  return byService[culprit] ?? ["notify"];
}

// --- generation ------------------------------------------------------------------------------

export interface TraceDensity {
  /** Request traces per day over the homelab (the hourly digest adds 24). */
  tracesPerDay: number;
}

export class HomelabTraces {
  private readonly cache = new Map<number, SimTrace[]>();
  private readonly ids: TraceIds;

  constructor(
    private readonly tl: Timeline,
    private readonly secrets: FakeSecrets,
    private readonly density: TraceDensity,
    private readonly dataStart: number,
  ) {
    this.ids = new TraceIds(tl.seed);
  }

  bucket(bucket: number): SimTrace[] {
    let out = this.cache.get(bucket);
    if (!out) {
      out = this.generate(bucket);
      if (this.cache.size > 6000) this.cache.delete(this.cache.keys().next().value!);
      this.cache.set(bucket, out);
    }
    return out;
  }

  /** A trace by its 32-hex ID, or null. */
  byId(hex32: string): SimTrace | null {
    const key = this.ids.decode(hex32);
    if (!key) return null;
    return this.bucket(key.bucket).find((t) => t.index === key.index && t.traceId === hex32) ?? null;
  }

  private generate(bucket: number): SimTrace[] {
    const t0 = bucket * TRACE_BUCKET_MS;
    const t1 = t0 + TRACE_BUCKET_MS;
    if (t1 <= this.dataStart) return [];
    const tl = this.tl;
    const r = Rng.of(tl.seed, "traces", bucket);
    const scale = this.density.tracesPerDay / DEFAULT_TRACES_PER_DAY;
    const starts: { t: number; flow: FlowDef; incident: Incident | null }[] = [];
    // The digest lambda runs at the top of every hour.
    if (t0 % 3_600_000 === 0) starts.push({ t: t0 + 1_000 + r.int(20_000), flow: DIGEST, incident: null });
    const lambda =
      (this.density.tracesPerDay *
        (TRACE_BUCKET_MS / 86_400_000) *
        tl.load(service("api-gateway"), t0 + TRACE_BUCKET_MS / 2)) /
      MEAN_RHYTHM;
    const n = r.poisson(lambda);
    const weights = FLOWS.map((f) => f.weight);
    for (let i = 0; i < n; i++)
      starts.push({ t: t0 + r.int(TRACE_BUCKET_MS), flow: r.weighted(FLOWS, weights), incident: null });
    for (const inc of tl.incidents) {
      if (inc.end <= t0 || inc.start >= t1) continue;
      const from = Math.max(t0, inc.start);
      const to = Math.min(t1, inc.end);
      const names = incidentFlows(inc.kind, inc.service);
      const k = r.poisson((INCIDENT_TRACES_PER_HOUR * scale * (to - from)) / 3_600_000);
      for (let i = 0; i < k; i++)
        starts.push({ t: from + r.int(to - from), flow: flowNamed(r.pick(names)), incident: inc });
    }
    const out: SimTrace[] = [];
    starts.forEach((s, index) => {
      if (s.t < this.dataStart) return;
      const b = new Builder(Rng.of(tl.seed, "trace", bucket, index), tl, this.secrets);
      b.causedBy = s.incident;
      const startUs = s.t * 1000 + b.r.int(1000);
      s.flow.flow(b, startUs);
      const spans = b.spans.sort((x, y) => x.startUs - y.startUs);
      const root = spans[0];
      const endUs = Math.max(...spans.map((x) => x.startUs + x.durUs));
      const error = spans.some((x) => x.status === "error");
      if (!error && endUs - root.startUs < SLOW_US && !b.r.chance(KEEP_ORDINARY)) return;
      const inc = tl.incidentAt(s.t);
      const touched = inc && spans.some((x) => inc.affected.includes(x.service)) ? inc.id : null;
      out.push({
        traceId: this.ids.encode(bucket, index, s.flow.wide),
        bucket,
        index,
        flow: s.flow.name,
        startUs: root.startUs,
        endUs,
        rootService: root.service,
        rootName: root.name,
        spans,
        incident: touched,
        error,
      });
    });
    return out;
  }
}
