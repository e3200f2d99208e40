// The homelab's log lines. Each (service, hour) bucket is generated on its own from the seed, so
// a query over any window sees the same lines. Every service writes in its own format (Go logfmt,
// Python structlog JSON, .NET JSON console, zap JSON, postgres and RabbitMQ text); incidents shift
// a service's mix toward their own error lines; pod starts print start-up blocks, some with secrets.
import { SERVICES, type ServiceDef, service } from "./homelab.js";
import type { Labels } from "./metrics.js";
import { Rng } from "./rng.js";
import { type FakeSecrets, pemBlock } from "./secrets.js";
import { type Effects, type Incident, MEAN_RHYTHM, type Pod, type Timeline } from "./timeline.js";

export type Level = "debug" | "info" | "warn" | "error" | "fatal";

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

interface Msg {
  msg: string;
  level: Level;
  logger?: string;
  fields?: Record<string, unknown>;
  /** An exception or stack trace the format carries in a field. */
  exception?: string;
  /** .NET message template, for State.{OriginalFormat}. */
  format?: string;
  secret?: boolean;
}

interface Ctx {
  r: Rng;
  s: FakeSecrets;
  svc: ServiceDef;
  pod: Pod;
  t: number;
  eff: Effects;
}

type Make = (c: Ctx) => Msg | Msg[];
type Weighted = [number, Make];

// --- small random helpers -----------------------------------------------------------------

const ip = (r: Rng) => `10.42.${r.int(3) + 1}.${r.int(250) + 2}`;
const ms = (r: Rng, median: number) => Math.max(0.2, r.lognormal(median, 0.5));
const fixed = (x: number, d = 1) => x.toFixed(d);
const ALERTS = [
  "KubePodCrashLooping",
  "HighErrorRate",
  "NodeDiskPressure",
  "TargetDown",
  "HighLatencyP95",
  "CertExpiringSoon",
];
const DEPLOYMENTS = [
  "notifi/api-gateway",
  "notifi/notification-worker",
  "ai-agents/agent-bruno",
  "data/rabbitmq",
];
const CHANNELS = ["slack", "email", "ntfy"];

function pyTraceback(file: string, line: number, fn: string, code: string, err: string): string {
  return `Traceback (most recent call last):\n  File "/usr/local/lib/python3.12/site-packages/starlette/routing.py", line 74, in app\n    response = await func(request)\n  File "${file}", line ${line}, in ${fn}\n    ${code}\n${err}`;
}

function dotnetTrace(ex: string, frames: string[]): string {
  return `${ex}\n${frames.map((f) => `   at ${f}`).join("\n")}`;
}

// --- templates: per service, normal lines and lines by incident kind ------------------------

interface ServiceTemplates {
  normal: Weighted[];
  /** Lines a service writes during an incident: as the culprit, or as a victim. */
  culprit?: Partial<Record<Incident["kind"], Weighted[]>>;
  victim?: Partial<Record<Incident["kind"], Weighted[]>>;
  /** Lines while a short burst of transient errors passes (not an incident). */
  blip: Weighted[];
  startup: (c: Ctx) => Msg[];
}

const GATEWAY_ROUTES = [
  { path: "/api/v1/notifications", method: "POST", status: 202, upstream: "rabbitmq.data.svc:5672", ms: 9 },
  { path: "/api/v1/chat", method: "POST", status: 200, upstream: "agent-bruno.ai-agents.svc:8000", ms: 900 },
  { path: "/api/v1/alerts", method: "POST", status: 200, upstream: "agent-sre.ai-agents.svc:8000", ms: 2300 },
  {
    path: "/api/v1/notifications",
    method: "GET",
    status: 200,
    upstream: "notification-worker.notifi.svc:8080",
    ms: 25,
  },
  { path: "/healthz", method: "GET", status: 200, upstream: "", ms: 0.4 },
];

const gateway: ServiceTemplates = {
  normal: [
    [
      46,
      ({ r }) => {
        const route = r.weighted(GATEWAY_ROUTES, [40, 25, 10, 15, 10]);
        return {
          level: "info",
          logger: "proxy/handler.go:142",
          msg: "request completed",
          fields: {
            method: route.method,
            path: route.path,
            status: route.status,
            duration: `${fixed(ms(r, route.ms), 2)}ms`,
            request_id: r.hex(8),
            ...(route.upstream ? { upstream: route.upstream } : {}),
          },
        };
      },
    ],
    [
      // Written back to back: the same millisecond.
      12,
      ({ r }) => {
        const request_id = r.hex(8);
        return [
          {
            level: "debug",
            logger: "auth/jwt.go:88",
            msg: "jwt verified",
            fields: { sub: `user-${r.int(40)}`, exp_in: `${r.int(3600)}s`, request_id },
          },
          {
            level: "debug",
            logger: "router/match.go:61",
            msg: "route matched",
            fields: { route: r.pick(GATEWAY_ROUTES).path, request_id },
          },
        ];
      },
    ],
    [
      4,
      ({ r }) => ({
        level: "warn",
        logger: "ratelimit/limiter.go:73",
        msg: "rate limit approaching",
        fields: { client_ip: ip(r), remaining: r.int(10) },
      }),
    ],
    [
      3,
      ({ r, s }) => ({
        level: "warn",
        logger: "auth/jwt.go:102",
        msg: "request rejected",
        fields: {
          status: 401,
          reason: r.pick(["token expired", "invalid signature"]),
          authorization: `Bearer ${s.jwt}`,
        },
        secret: true,
      }),
    ],
    [
      3,
      ({ r }) => ({
        level: "warn",
        logger: "proxy/handler.go:171",
        msg: "slow upstream response",
        fields: { upstream: "agent-bruno.ai-agents.svc:8000", duration: `${fixed(r.range(2, 4), 3)}s` },
      }),
    ],
    [
      1.2,
      ({ r }) => ({
        level: "error",
        logger: "proxy/handler.go:188",
        msg: "upstream request failed",
        fields: {
          upstream: r.pick(GATEWAY_ROUTES.slice(0, 3)).upstream,
          status: 499,
          err: "context canceled",
        },
      }),
    ],
    [
      0.5,
      () => ({
        level: "info",
        logger: "tls/reload.go:44",
        msg: "certificate reloaded",
        fields: { not_after: "2027-02-14T00:00:00Z" },
      }),
    ],
  ],
  culprit: {
    bad_deploy: [
      [
        5,
        ({ r }) => [
          {
            level: "error",
            logger: "proxy/handler.go:203",
            msg: "panic recovered",
            fields: {
              path: "/api/v1/chat",
              err: "runtime error: invalid memory address or nil pointer dereference",
              request_id: r.hex(8),
            },
          },
          {
            level: "error",
            logger: "proxy/handler.go:204",
            msg: "request failed",
            fields: { status: 502, path: "/api/v1/chat", err: "upstream config for route is nil" },
          },
        ],
      ],
      [
        3,
        ({ r }) => ({
          level: "error",
          logger: "router/match.go:97",
          msg: "no upstream for route",
          fields: { path: r.pick(["/api/v1/chat", "/api/v1/alerts"]), status: 502 },
        }),
      ],
      [
        1,
        ({ r }) => ({
          level: "warn",
          logger: "proxy/retry.go:33",
          msg: "retrying upstream",
          fields: { attempt: 1 + r.int(2), upstream: "agent-bruno.ai-agents.svc:8000" },
        }),
      ],
    ],
  },
  victim: {
    bad_deploy: [
      [
        4,
        ({ r, eff }) => ({
          level: "error",
          logger: "proxy/handler.go:188",
          msg: "upstream returned error",
          fields: {
            upstream: `${eff.incident?.service ?? "agent-bruno"}.ai-agents.svc:8000`,
            status: 502,
            upstream_status: 500,
            request_id: r.hex(8),
          },
        }),
      ],
      [
        1,
        ({ eff }) => ({
          level: "warn",
          logger: "proxy/breaker.go:58",
          msg: "circuit breaker half-open",
          fields: { upstream: `${eff.incident?.service ?? "agent-bruno"}.ai-agents.svc:8000` },
        }),
      ],
    ],
    db_slowdown: [
      [
        4,
        ({ r }) => ({
          level: "error",
          logger: "proxy/handler.go:188",
          msg: "upstream timeout",
          fields: {
            upstream: r.pick(GATEWAY_ROUTES.slice(1, 3)).upstream,
            status: 504,
            err: "context deadline exceeded",
            duration: `${fixed(r.range(10, 30), 3)}s`,
          },
        }),
      ],
      [
        2,
        ({ r }) => ({
          level: "warn",
          logger: "proxy/handler.go:171",
          msg: "slow upstream response",
          fields: {
            upstream: r.pick(GATEWAY_ROUTES.slice(1, 3)).upstream,
            duration: `${fixed(r.range(5, 12), 3)}s`,
          },
        }),
      ],
    ],
  },
  blip: [
    [
      1,
      ({ r }) => ({
        level: "error",
        logger: "proxy/handler.go:188",
        msg: "upstream request failed",
        fields: {
          upstream: r.pick(GATEWAY_ROUTES.slice(0, 3)).upstream,
          status: 503,
          err: "connection reset by peer",
        },
      }),
    ],
  ],
  startup: ({ pod }) => [
    {
      level: "info",
      logger: "main.go:51",
      msg: "starting api-gateway",
      fields: { version: pod.version, go: "go1.22.5" },
    },
    { level: "info", logger: "config/load.go:30", msg: "routes loaded", fields: { routes: 5 } },
    { level: "info", logger: "main.go:77", msg: "listening", fields: { addr: ":8080" } },
  ],
};

function agentTemplates(name: "agent-sre" | "agent-bruno"): ServiceTemplates {
  const pkg = name === "agent-sre" ? "agent_sre" : "bruno";
  const dbVictim: Weighted[] = [
    [
      4,
      ({ r }) => ({
        level: "error",
        logger: `${pkg}.db`,
        msg: "database query failed",
        fields: {
          table: r.pick(["incidents", "conversations", "memory"]),
          elapsed_ms: Math.round(r.range(5000, 5100)),
        },
        exception: pyTraceback(
          `/app/${pkg}/db.py`,
          61,
          "fetch",
          "rows = await conn.execute(query, params)",
          "psycopg.errors.QueryCanceled: canceling statement due to statement timeout",
        ),
      }),
    ],
    [
      2,
      ({ r }) => ({
        level: "warn",
        logger: `${pkg}.db`,
        msg: "slow query",
        fields: { elapsed_ms: Math.round(r.range(1500, 4900)) },
      }),
    ],
  ];
  const leak: Weighted[] = [
    [
      3,
      ({ r, eff }) => ({
        level: "warn",
        logger: `${pkg}.health`,
        msg: "memory usage high",
        fields: { rss_mb: Math.round(300 + 650 * eff.leak), limit_mb: 1024, cache_entries: r.int(90000) },
      }),
    ],
    [
      2,
      ({ r }) => ({
        level: "warn",
        logger: "uvicorn.error",
        msg: "event loop blocked",
        fields: { blocked_ms: Math.round(r.range(400, 3000)) },
      }),
    ],
    [
      1,
      ({ r }) => ({
        level: "error",
        logger: `${pkg}.llm`,
        msg: "request timed out while building context",
        fields: { elapsed_ms: Math.round(r.range(20000, 30000)) },
      }),
    ],
  ];
  const common: Weighted[] = [
    [
      20,
      ({ r }) => ({
        level: "info",
        logger: "uvicorn.access",
        msg: `${ip(r)}:${30000 + r.int(30000)} - "POST ${name === "agent-sre" ? "/v1/alerts" : "/v1/chat"} HTTP/1.1" 200`,
      }),
    ],
    [
      6,
      ({ r }) => ({
        level: "info",
        logger: "uvicorn.access",
        msg: `${ip(r)}:${30000 + r.int(30000)} - "GET /healthz HTTP/1.1" 200`,
      }),
    ],
    [
      8,
      ({ r }) => ({
        level: "info",
        logger: `${pkg}.llm`,
        msg: "llm completion",
        fields: {
          model: name === "agent-sre" ? "qwen2.5:7b" : "llama3.1:8b",
          prompt_tokens: 200 + r.int(3000),
          completion_tokens: 20 + r.int(600),
          duration_ms: Math.round(ms(r, 1100)),
        },
      }),
    ],
    [
      3,
      ({ r }) => ({
        level: "warn",
        logger: `${pkg}.llm`,
        msg: "llm response truncated, retrying with shorter context",
        fields: { max_tokens: 4096, attempt: 1 + r.int(2) },
      }),
    ],
    [
      1,
      ({ r }) => ({
        level: "error",
        logger: `${pkg}.tools`,
        msg: "tool call failed",
        fields: { tool: r.pick(["web_fetch", "search_docs", "prometheus_query"]) },
        exception: pyTraceback(
          `/app/${pkg}/tools/base.py`,
          40,
          "call",
          "resp = await client.get(url, timeout=10)",
          "httpx.ReadTimeout: timed out",
        ),
      }),
    ],
  ];
  if (name === "agent-sre") {
    return {
      normal: [
        ...common,
        [
          12,
          ({ r }) => ({
            level: "info",
            logger: "agent_sre.webhook",
            msg: "alert received",
            fields: {
              alertname: r.pick(ALERTS),
              severity: r.pick(["warning", "critical"]),
              fingerprint: r.hex(8),
            },
          }),
        ],
        [
          6,
          ({ r }) => ({
            level: "debug",
            logger: "agent_sre.tools.prometheus",
            msg: "prometheus query",
            fields: {
              query: `rate(http_requests_total{service="${r.pick(["api-gateway", "agent-bruno"])}"}[5m])`,
              series: r.int(12),
            },
          }),
        ],
        [
          4,
          ({ r }) => ({
            level: "info",
            logger: "agent_sre.remediation",
            msg: "remediation requested",
            fields: { action: "restart", target: r.pick(DEPLOYMENTS) },
          }),
        ],
        [
          5,
          ({ r }) => ({
            level: "info",
            logger: "agent_sre.notify",
            msg: "notification published",
            fields: { channel: r.pick(CHANNELS), queue: "notifications" },
          }),
        ],
        [
          1,
          () => ({
            level: "error",
            logger: "agent_sre.tools.prometheus",
            msg: "prometheus query failed",
            fields: {
              error:
                "HTTPConnectionPool(host='prometheus.monitoring', port=9090): Read timed out. (read timeout=10)",
            },
          }),
        ],
        [
          0.3,
          ({ s }) => ({
            level: "error",
            logger: "agent_sre.reports",
            msg: `report upload failed: profile [homelab] aws_secret_access_key = ${s.awsSecretAccessKey} was rejected`,
            fields: { bucket: "sre-reports", status: 403 },
            secret: true,
          }),
        ],
      ],
      culprit: {
        bad_deploy: [
          [
            5,
            ({ r }) => ({
              level: "error",
              logger: "agent_sre.analyzer",
              msg: "alert analysis failed",
              fields: { alertname: r.pick(ALERTS) },
              exception: pyTraceback(
                "/app/agent_sre/analyzer.py",
                214,
                "analyze",
                'plan = response["tool_calls"][0]',
                "KeyError: 'tool_calls'",
              ),
            }),
          ],
          [
            2,
            ({ r }) => ({
              level: "info",
              logger: "uvicorn.access",
              msg: `${ip(r)}:${30000 + r.int(30000)} - "POST /v1/alerts HTTP/1.1" 500`,
            }),
          ],
        ],
        memory_leak: leak,
      },
      victim: {
        db_slowdown: dbVictim,
        crash_loop: [
          [
            4,
            () => ({
              level: "error",
              logger: "agent_sre.remediation",
              msg: "remediation call failed",
              fields: {
                target: "lambda-pod-restart",
                error: "httpx.ConnectError: [Errno 111] Connection refused",
              },
            }),
          ],
          [
            2,
            () => ({
              level: "warn",
              logger: "agent_sre.remediation",
              msg: "falling back to notify-only remediation",
              fields: { target: "lambda-pod-restart" },
            }),
          ],
        ],
      },
      blip: [
        [
          1,
          () => ({
            level: "error",
            logger: "agent_sre.tools.prometheus",
            msg: "prometheus query failed",
            fields: {
              error: "HTTPConnectionPool(host='prometheus.monitoring', port=9090): Max retries exceeded",
            },
          }),
        ],
      ],
      startup: ({ r, s, pod }) => [
        { level: "info", logger: "uvicorn.error", msg: "Started server process [1]" },
        {
          level: "info",
          logger: "agent_sre.settings",
          msg: "settings loaded",
          fields: { version: pod.version, model: "qwen2.5:7b" },
        },
        {
          level: "info",
          logger: "agent_sre.aws",
          msg: "using credentials",
          fields: { aws_access_key_id: s.awsAccessKeyId, region: "eu-west-1" },
          secret: true,
        },
        ...(r.chance(0.3)
          ? [
              {
                level: "error" as const,
                logger: "agent_sre.tls",
                msg: "failed to load client key, continuing without mTLS",
                fields: { key: pemBlock(s) },
                secret: true,
              },
            ]
          : []),
        {
          level: "info",
          logger: "uvicorn.error",
          msg: "Uvicorn running on http://0.0.0.0:8000 (Press CTRL+C to quit)",
        },
      ],
    };
  }
  return {
    normal: [
      ...common,
      [
        12,
        ({ r }) => ({
          level: "info",
          logger: "bruno.chat",
          msg: "chat request",
          fields: { conversation_id: r.uuid(), turns: 1 + r.int(30) },
        }),
      ],
      [
        5,
        ({ r }) => ({
          level: "info",
          logger: "bruno.tools",
          msg: "tool call",
          fields: {
            tool: r.pick(["search_docs", "calendar", "web_fetch"]),
            duration_ms: Math.round(ms(r, 300)),
          },
        }),
      ],
      [
        3,
        ({ r }) => ({
          level: "info",
          logger: "bruno.memory",
          msg: "memory compacted",
          fields: { removed: r.int(200), kept: 200 + r.int(2000) },
        }),
      ],
      [
        2,
        () => ({
          level: "warn",
          logger: "bruno.chat",
          msg: "context window exceeded, summarising history",
          fields: { limit: 8192 },
        }),
      ],
      [
        0.6,
        ({ s }) => ({
          level: "error",
          logger: "bruno.tools",
          msg: "upstream api rejected request",
          fields: {
            tool: "weather",
            status: 401,
            request: { url: "https://api.weather.example/v1/forecast", headers: { apiKey: s.apiKey } },
          },
          secret: true,
        }),
      ],
    ],
    culprit: {
      bad_deploy: [
        [
          5,
          ({ r }) => ({
            level: "error",
            logger: "bruno.chat",
            msg: "chat request failed",
            fields: { conversation_id: r.uuid() },
            exception: pyTraceback(
              "/app/bruno/tools/router.py",
              88,
              "route",
              "return TOOLS[name](**args)",
              "KeyError: 'search_docs_v2'",
            ),
          }),
        ],
        [
          2,
          () => ({
            level: "error",
            logger: "bruno.tools",
            msg: "tool router returned no result",
            fields: { tool: "search_docs_v2" },
          }),
        ],
        [
          1,
          ({ r }) => ({
            level: "info",
            logger: "uvicorn.access",
            msg: `${ip(r)}:${30000 + r.int(30000)} - "POST /v1/chat HTTP/1.1" 500`,
          }),
        ],
      ],
      memory_leak: leak,
    },
    victim: { db_slowdown: dbVictim },
    blip: [
      [
        1,
        () => ({
          level: "error",
          logger: "bruno.llm",
          msg: "llm request failed",
          fields: { error: "ollama: server busy, retry later" },
        }),
      ],
    ],
    startup: ({ r, s, pod }) => [
      { level: "info", logger: "uvicorn.error", msg: "Started server process [1]" },
      {
        level: "info",
        logger: "bruno.settings",
        msg: "settings loaded",
        fields: { version: pod.version, model: "llama3.1:8b" },
      },
      ...(r.chance(0.5)
        ? [
            {
              level: "info" as const,
              logger: "bruno.llm",
              msg: "fallback provider configured",
              fields: { provider: "openai", api_key: s.openaiKey },
              secret: true,
            },
          ]
        : []),
      {
        level: "info",
        logger: "uvicorn.error",
        msg: "Uvicorn running on http://0.0.0.0:8000 (Press CTRL+C to quit)",
      },
    ],
  };
}

const WORKER_CAT = "Notifi.Worker.Consumers.NotificationConsumer";
const worker: ServiceTemplates = {
  normal: [
    [
      30,
      ({ r }) => {
        const id = r.uuid();
        const ch = r.pick(CHANNELS);
        const el = Math.round(ms(r, 130));
        return {
          level: "info",
          logger: WORKER_CAT,
          msg: `Delivered notification ${id} via ${ch} in ${el} ms`,
          format: "Delivered notification {NotificationId} via {Channel} in {ElapsedMs} ms",
          fields: { NotificationId: id, Channel: ch, ElapsedMs: el },
        };
      },
    ],
    [
      14,
      ({ r }) => ({
        level: "info",
        logger: WORKER_CAT,
        msg: `Consumed message ${r.hex(12)} from notifications`,
        format: "Consumed message {MessageId} from {Queue}",
      }),
    ],
    [
      10,
      ({ r }) => ({
        level: "debug",
        logger: "Microsoft.EntityFrameworkCore.Database.Command",
        msg: `Executed DbCommand (${r.int(12) + 1}ms) [Parameters=[@p0='?' (DbType = Guid)], CommandType='Text', CommandTimeout='30']`,
        format:
          "Executed DbCommand ({elapsed}ms) [Parameters=[{parameters}], CommandType='{commandType}', CommandTimeout='{commandTimeout}']",
      }),
    ],
    [
      3,
      ({ r }) => ({
        level: "warn",
        logger: "Notifi.Worker.Channels.SlackChannel",
        msg: `Slack rate limited, retrying in ${1 + r.int(30)}s`,
        format: "Slack rate limited, retrying in {RetryAfter}s",
      }),
    ],
    [
      1,
      ({ r }) => {
        const id = r.uuid();
        return {
          level: "error",
          logger: "Notifi.Worker.Channels.EmailChannel",
          msg: `Delivery failed for ${id}: channel email returned 503`,
          format: "Delivery failed for {NotificationId}: channel {Channel} returned {Status}",
        };
      },
    ],
    [
      0.7,
      ({ s }) => ({
        level: "error",
        logger: "Notifi.Worker.Channels.SlackChannel",
        msg: "slack post failed",
        fields: { token: s.slackToken, error: "invalid_auth" },
        secret: true,
      }),
    ],
  ],
  culprit: {
    bad_deploy: [
      [
        5,
        ({ r }) => ({
          level: "error",
          logger: WORKER_CAT,
          msg: `Unhandled exception processing message ${r.hex(12)}`,
          format: "Unhandled exception processing message {MessageId}",
          exception: dotnetTrace(
            "System.NullReferenceException: Object reference not set to an instance of an object.",
            [
              "Notifi.Worker.Channels.TemplateRenderer.Render(Notification n) in /src/Notifi.Worker/Channels/TemplateRenderer.cs:line 57",
              "Notifi.Worker.Consumers.NotificationConsumer.Consume(ConsumeContext`1 context) in /src/Notifi.Worker/Consumers/NotificationConsumer.cs:line 41",
            ],
          ),
        }),
      ],
      [
        2,
        ({ r }) => ({
          level: "warn",
          logger: WORKER_CAT,
          msg: `Message ${r.hex(12)} moved to notifications_error`,
          format: "Message {MessageId} moved to {ErrorQueue}",
        }),
      ],
    ],
    memory_leak: [
      [
        3,
        ({ eff }) => ({
          level: "warn",
          logger: "Notifi.Worker.Diagnostics.MemoryMonitor",
          msg: `GC heap size ${Math.round(180 + 310 * eff.leak)} MB exceeds soft limit`,
          format: "GC heap size {HeapMb} MB exceeds soft limit",
        }),
      ],
      [
        2,
        ({ r }) => ({
          level: "warn",
          logger: WORKER_CAT,
          msg: `Message processing slow: ${Math.round(r.range(900, 6000))} ms`,
          format: "Message processing slow: {ElapsedMs} ms",
        }),
      ],
      [
        1,
        () => ({
          level: "error",
          logger: "Notifi.Worker.Channels.TemplateCache",
          msg: "Template cache eviction failed; cache keeps growing",
          format: "Template cache eviction failed; cache keeps growing",
        }),
      ],
    ],
  },
  victim: {
    db_slowdown: [
      [
        4,
        ({ r }) => ({
          level: "error",
          logger: "Microsoft.EntityFrameworkCore.Database.Command",
          msg: `Failed executing DbCommand (${Math.round(r.range(5000, 5100))}ms) [Parameters=[@p0='?' (DbType = Guid)], CommandType='Text', CommandTimeout='30']`,
          format:
            "Failed executing DbCommand ({elapsed}ms) [Parameters=[{parameters}], CommandType='{commandType}', CommandTimeout='{commandTimeout}']",
          exception: dotnetTrace(
            "Npgsql.PostgresException (0x80004005): 57014: canceling statement due to statement timeout",
            [
              "Npgsql.Internal.NpgsqlConnector.ReadMessageLong(Boolean async, DataRowLoadingMode dataRowLoadingMode, Boolean readingNotifications, Boolean isReadingPrependedMessage)",
              "Notifi.Worker.Data.NotificationRepository.SaveAsync(Notification n) in /src/Notifi.Worker/Data/NotificationRepository.cs:line 33",
            ],
          ),
        }),
      ],
      [
        2,
        ({ r }) => ({
          level: "warn",
          logger: "Notifi.Worker.Data.NotificationRepository",
          msg: `Retrying database operation, attempt ${1 + r.int(3)}`,
          format: "Retrying database operation, attempt {Attempt}",
        }),
      ],
    ],
  },
  blip: [
    [
      1,
      () => ({
        level: "error",
        logger: "Notifi.Worker.Channels.SlackChannel",
        msg: "Slack returned 502 Bad Gateway",
        format: "Slack returned {Status}",
      }),
    ],
  ],
  startup: ({ r, s }) => [
    {
      level: "info",
      logger: "Microsoft.Hosting.Lifetime",
      msg: "Now listening on: http://[::]:8080",
      format: "Now listening on: {address}",
    },
    ...(r.chance(0.6)
      ? [
          {
            level: "info" as const,
            logger: "Notifi.Worker.Data.NotificationRepository",
            msg: `connecting to postgres://notifi:${s.dbPassword}@postgres.data.svc:5432/notifications`,
            format: "connecting to {ConnectionString}",
            secret: true,
          },
        ]
      : []),
    {
      level: "info",
      logger: "Microsoft.Hosting.Lifetime",
      msg: "Application started. Press Ctrl+C to shut down.",
      format: "Application started. Press Ctrl+C to shut down.",
    },
    {
      level: "info",
      logger: "Microsoft.Hosting.Lifetime",
      msg: "Hosting environment: Production",
      format: "Hosting environment: {EnvName}",
    },
  ],
};

const SQL = [
  "SELECT id, payload FROM notifications WHERE status = $1 ORDER BY created_at LIMIT 100",
  "SELECT * FROM conversations WHERE user_id = $1",
  "UPDATE incidents SET state = $1 WHERE id = $2",
  "SELECT count(*) FROM messages WHERE created_at > now() - interval '1 hour'",
];

const postgres: ServiceTemplates = {
  normal: [
    [
      // A backend logs both lines within the same millisecond.
      14,
      ({ r }) => [
        { level: "info", msg: `connection received: host=${ip(r)} port=${30000 + r.int(30000)}` },
        {
          level: "info",
          msg: `connection authorized: user=${r.pick(["notifi", "agent", "grafana"])} database=notifications application_name=${r.pick(["npgsql", "psycopg", "pgx"])}`,
        },
      ],
    ],
    [4, () => ({ level: "info", msg: "checkpoint starting: time" })],
    [
      4,
      ({ r }) => ({
        level: "info",
        msg: `checkpoint complete: wrote ${r.int(4000)} buffers (${fixed(r.range(0, 20))}%); 0 WAL file(s) added, 0 removed, ${r.int(3)} recycled; write=${fixed(r.range(10, 180), 3)} s, sync=0.00${r.int(9)} s, total=${fixed(r.range(10, 180), 3)} s`,
      }),
    ],
    [
      3,
      ({ r }) => ({
        level: "info",
        msg: `automatic vacuum of table "notifications.public.${r.pick(["messages", "notifications", "conversations"])}": index scans: 1`,
      }),
    ],
    [
      2,
      ({ r }) => ({
        level: "info",
        msg: `duration: ${fixed(r.range(1000, 2500), 3)} ms  statement: ${r.pick(SQL)}`,
      }),
    ],
    [
      1,
      ({ r }) => [
        { level: "error", msg: 'duplicate key value violates unique constraint "notifications_pkey"' },
        { level: "error", msg: `DETAIL:  Key (id)=(${r.uuid()}) already exists.` },
        {
          level: "error",
          msg: "STATEMENT:  INSERT INTO notifications (id, payload, status) VALUES ($1, $2, $3)",
        },
      ],
    ],
    [0.5, () => ({ level: "fatal", msg: 'password authentication failed for user "grafana"' })],
    [
      0.15,
      ({ s }) => ({
        level: "info",
        msg: `statement: ALTER ROLE notifi WITH PASSWORD '${s.dbPassword}'`,
        secret: true,
      }),
    ],
  ],
  culprit: {
    db_slowdown: [
      [
        5,
        ({ r }) => ({
          level: "info",
          msg: `duration: ${fixed(r.range(3000, 9000), 3)} ms  statement: ${r.pick(SQL)}`,
        }),
      ],
      [
        4,
        ({ r }) => [
          { level: "error", msg: "canceling statement due to statement timeout" },
          { level: "error", msg: `STATEMENT:  ${r.pick(SQL)}` },
        ],
      ],
      [
        2,
        ({ r }) => [
          {
            level: "info",
            msg: `process ${1000 + r.int(9000)} still waiting for ShareLock on transaction ${100000 + r.int(900000)} after ${fixed(r.range(1000, 1100), 3)} ms`,
          },
          {
            level: "info",
            msg: `DETAIL:  Process holding the lock: ${1000 + r.int(9000)}. Wait queue: ${1000 + r.int(9000)}.`,
          },
        ],
      ],
      [
        1,
        ({ r }) => ({
          level: "info",
          msg: `automatic vacuum of table "notifications.public.messages": index scans: 3 elapsed: ${fixed(r.range(200, 600), 2)} s`,
        }),
      ],
    ],
  },
  blip: [
    [
      1,
      ({ r }) => ({
        level: "info",
        msg: `could not receive data from client: Connection reset by peer (host=${ip(r)})`,
      }),
    ],
  ],
  startup: () => [{ level: "info", msg: "database system is ready to accept connections" }],
};

const rabbitmq: ServiceTemplates = {
  normal: [
    [
      8,
      ({ r }) => ({
        level: "info",
        msg: `accepting AMQP connection <0.${1000 + r.int(9000)}.0> (${ip(r)}:${30000 + r.int(30000)} -> 10.42.0.9:5672)`,
      }),
    ],
    [
      8,
      ({ r }) => ({
        level: "info",
        msg: `connection <0.${1000 + r.int(9000)}.0> (${ip(r)}:${30000 + r.int(30000)} -> 10.42.0.9:5672): user 'notifi' authenticated and granted access to vhost '/'`,
      }),
    ],
    [
      5,
      ({ r }) => ({
        level: "info",
        msg: `closing AMQP connection <0.${1000 + r.int(9000)}.0> (${ip(r)}:${30000 + r.int(30000)} -> 10.42.0.9:5672, vhost: '/', user: 'notifi')`,
      }),
    ],
    [
      1,
      ({ r }) => ({
        level: "warn",
        msg: `client unexpectedly closed TCP connection <0.${1000 + r.int(9000)}.0>`,
      }),
    ],
  ],
  victim: {
    memory_leak: [
      [
        3,
        ({ r }) => ({
          level: "error",
          msg: `closing AMQP connection <0.${1000 + r.int(9000)}.0> (${ip(r)}:${30000 + r.int(30000)} -> 10.42.0.9:5672): missed heartbeats from client, timeout: 60s`,
        }),
      ],
      [
        2,
        () => ({
          level: "warn",
          msg: "queue 'notifications' in vhost '/': consumer count dropped to 0, messages are accumulating",
        }),
      ],
    ],
  },
  blip: [
    [
      1,
      ({ r }) => ({
        level: "warn",
        msg: `client unexpectedly closed TCP connection <0.${1000 + r.int(9000)}.0>`,
      }),
    ],
  ],
  startup: () => [{ level: "info", msg: "Server startup complete; 5 plugins started." }],
};

function lambdaTemplates(name: "lambda-pod-restart" | "lambda-notify-digest"): ServiceTemplates {
  const restart = name === "lambda-pod-restart";
  const caller = restart ? "handler/restart.go" : "handler/digest.go";
  const panic = (s: FakeSecrets): Msg[] => [
    restart
      ? {
          level: "fatal",
          logger: "main",
          msg: "failed to load credentials",
          fields: { error: 'secret "lambda-pod-restart-git" has no key "token"', caller: "main.go:48" },
        }
      : {
          level: "fatal",
          logger: "main",
          msg: "failed to load config",
          fields: { error: `stripe: invalid api key ${s.stripeKey}`, caller: "main.go:52" },
          secret: true,
        },
  ];
  return {
    normal: restart
      ? [
          [
            10,
            ({ r }) => ({
              level: "info",
              logger: "fallback",
              msg: "received event",
              fields: { type: "dev.homelab.alert", id: r.uuid() },
            }),
          ],
          [
            8,
            ({ r }) => ({
              level: "info",
              logger: "fallback",
              msg: "restarting deployment",
              fields: { deployment: r.pick(DEPLOYMENTS) },
            }),
          ],
          [
            6,
            ({ r }) => ({
              level: "info",
              logger: "fallback",
              msg: "rollout restarted",
              fields: { deployment: r.pick(DEPLOYMENTS), duration: `${fixed(r.range(0.1, 2), 3)}s` },
            }),
          ],
          [
            3,
            () => ({
              level: "debug",
              logger: "k8s",
              msg: "client ready",
              fields: { host: "https://10.43.0.1:443" },
            }),
          ],
          [
            1,
            ({ r }) => ({
              level: "error",
              logger: "fallback",
              msg: "restart failed",
              fields: { error: `deployments.apps "${r.pick(["grafana", "loki"])}" not found` },
            }),
          ],
          [
            0.3,
            ({ s }) => ({
              level: "warn",
              logger: "gitops",
              msg: "manifest drift detected",
              fields: {
                object: {
                  apiVersion: "v1",
                  kind: "Secret",
                  metadata: { name: "lambda-pod-restart-git" },
                  data: { password: s.k8sSecretData },
                },
              },
              secret: true,
            }),
          ],
        ]
      : [
          [
            10,
            () => ({ level: "info", logger: "digest", msg: "digest run started", fields: { window: "1h" } }),
          ],
          [
            10,
            ({ r }) => ({
              level: "info",
              logger: "digest",
              msg: "digest sent",
              fields: { recipients: 1 + r.int(6), notifications: r.int(80) },
            }),
          ],
          [
            4,
            () => ({
              level: "warn",
              logger: "digest",
              msg: "no notifications in window",
              fields: { window: "1h" },
            }),
          ],
          [
            1,
            () => ({
              level: "error",
              logger: "digest",
              msg: "publish failed",
              fields: { error: 'Exception (504) Reason: "channel/connection is not open"' },
            }),
          ],
          [
            0.3,
            ({ s }) => ({
              level: "warn",
              logger: "billing",
              msg: "billing summary skipped",
              fields: { error: `stripe: invalid api key ${s.stripeKey}` },
              secret: true,
            }),
          ],
        ],
    culprit: {
      crash_loop: [
        [
          1,
          ({ s }) => [
            ...panic(s),
            ...(restart
              ? [
                  {
                    level: "error" as const,
                    logger: "main",
                    msg: "dumping applied manifest",
                    fields: {
                      object: {
                        apiVersion: "v1",
                        kind: "Secret",
                        metadata: { name: "lambda-pod-restart-git" },
                        data: { password: s.k8sSecretData },
                      },
                    },
                    secret: true,
                  },
                ]
              : []),
          ],
        ],
      ],
    },
    victim: {
      db_slowdown: [
        [
          3,
          () => ({
            level: "error",
            logger: "digest",
            msg: "digest query failed",
            fields: { error: "pq: canceling statement due to statement timeout" },
          }),
        ],
      ],
    },
    blip: [
      [
        1,
        () => ({
          level: "error",
          logger: restart ? "fallback" : "digest",
          msg: "event delivery failed",
          fields: { error: "dial tcp 10.43.12.7:80: i/o timeout" },
        }),
      ],
    ],
    startup: ({ r, s, pod }) => [
      {
        level: "info",
        logger: "main",
        msg: "starting function",
        fields: { version: pod.version, caller: "main.go:31" },
      },
      ...(restart
        ? r.chance(0.6)
          ? [
              {
                level: "debug" as const,
                logger: "gitops",
                msg: "cloning gitops repo",
                fields: { url: `https://${s.githubToken}@github.com/homelab/gitops.git` },
                secret: true,
              },
            ]
          : []
        : r.chance(0.6)
          ? [
              {
                level: "debug" as const,
                logger: "geo",
                msg: "geocoding enabled",
                fields: { key: s.googleApiKey },
                secret: true,
              },
            ]
          : []),
      { level: "info", logger: "main", msg: "listening", fields: { addr: ":8080", caller } },
    ],
  };
}

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
