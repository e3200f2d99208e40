// data table: api-gateway's log templates (logfmt) and the routes it proxies.
import { fixed, ip, ms, type ServiceTemplates } from "./log-kit.js";

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

export const gateway: ServiceTemplates = {
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
