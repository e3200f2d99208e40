// data table: the request flows a simulated trace follows, one per entry point (a notification,
// a chat, an alert, a check, a compaction, a status page, the hourly digest), with their weights,
// and the flows an incident's extra traffic takes.
import {
  type Builder,
  type CallResult,
  deliver,
  external,
  httpCall,
  int,
  query,
  type Serve,
  type SimSpan,
  str,
} from "../trace-builder.js";

export type Flow = (b: Builder, t: number) => void;

function gatewayRoot(
  b: Builder,
  route: string,
  method: string,
  t: number,
  inner: Serve,
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
      const broken = badRelease(
        b,
        server,
        "agent-bruno",
        "tool.route search_docs_v2",
        "search_docs_v2",
        at,
        2_000,
      );
      if (broken) {
        if (broken.error) return broken;
        at = broken.end;
      } else if (b.r.chance(0.45)) {
        const tool = b.r.pick(Object.keys(TOOL_MEDIAN_US));
        const median = TOOL_MEDIAN_US[tool];
        const span = b.open(server, "agent-bruno", `tool.call ${tool}`, "SPAN_KIND_INTERNAL", at);
        at = b.close(span, at + b.r.lognormal(median, 0.6) * b.eff("agent-bruno", at).latency);
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

/**
 * The step an agent's bad release breaks: while the agent is an incident's culprit, the span `name`
 * runs and fails three times in four with a KeyError for `key` (a dict key the new code expects).
 * Null when the agent is healthy.
 */
function badRelease(
  b: Builder,
  parent: SimSpan,
  agent: string,
  name: string,
  key: string,
  at: number,
  medianUs: number,
): CallResult | null {
  const e = b.eff(agent, at);
  if (!e.culprit || e.incident?.kind !== "bad_deploy") return null;
  const span = b.open(parent, agent, name, "SPAN_KIND_INTERNAL", at);
  const end = b.close(span, at + b.r.lognormal(medianUs, 0.5));
  if (!b.r.chance(0.75)) return { end, error: null, status: 200 };
  b.fail(span, `'${key}'`, "KeyError");
  return { end, error: `KeyError: '${key}'`, status: 500 };
}

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
      const broken = badRelease(b, server, "agent-sre", "analyzer.plan", "tool_calls", at, 3_000);
      if (broken?.error) return broken;
      if (broken) at = broken.end;
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

export interface FlowDef {
  name: string;
  weight: number;
  flow: Flow;
  wide: boolean;
}

export const FLOWS: FlowDef[] = [
  { name: "notify", weight: 30, flow: notify, wide: true },
  { name: "chat", weight: 22, flow: chat, wide: true },
  { name: "alert", weight: 10, flow: alert, wide: true },
  { name: "check", weight: 10, flow: check, wide: true },
  { name: "compact", weight: 8, flow: compact, wide: true },
  { name: "status", weight: 10, flow: status, wide: true },
];

export const DIGEST: FlowDef = { name: "digest", weight: 0, flow: digest, wide: false };
export const flowNamed = (name: string): FlowDef =>
  name === "digest" ? DIGEST : FLOWS.find((f) => f.name === name)!;

/** The flows an incident's extra traffic takes, by incident kind and culprit. */
export function incidentFlows(kind: string, culprit: string): string[] {
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
