// data table: the log templates of the two Python agents (structlog JSON), agent-sre and agent-bruno.
import { pemBlock } from "../secrets.js";
import {
  ALERTS,
  CHANNELS,
  DEPLOYMENTS,
  ip,
  ms,
  pyTraceback,
  type ServiceTemplates,
  type Weighted,
} from "./log-kit.js";

export function agentTemplates(name: "agent-sre" | "agent-bruno"): ServiceTemplates {
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
