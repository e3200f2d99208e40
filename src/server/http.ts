// `trm-forge serve --http`: Streamable HTTP with stateful sessions on /mcp, plus /healthz and
// /metrics. Every request passes the Host check (DNS rebinding) and the Origin check; an /mcp
// request then the bearer token (401 with WWW-Authenticate), the body size limit (413), then its
// session, which belongs to the identity that opened it (a few per identity, so one cannot take
// every slot). /healthz gives its details to a token holder only. Without tokens the server only
// binds to loopback.
import { randomUUID } from "node:crypto";
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { networkInterfaces } from "node:os";
import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { isInitializeRequest } from "@modelcontextprotocol/sdk/types.js";
import { ConfigError } from "../errors.js";
import { childLogger } from "../log.js";
import { registry as metrics } from "../metrics.js";
import { ADMIN, authInfoOf, hasScope, type Identity, isAdmin } from "./auth.js";
import type { ServerContext } from "./context.js";
import { createServer } from "./mcp.js";

export interface HttpServerOptions {
  host?: string;
  port?: number;
  /** Who a request is when no tokens are configured (loopback only); default admin. */
  localIdentity?: Identity;
}

export interface HttpServer {
  url: string;
  host: string;
  port: number;
  sessions(): number;
  /** Stops accepting, lets in-flight requests finish (up to graceMs), then closes every session. */
  close(graceMs?: number): Promise<void>;
}

interface Session {
  transport: StreamableHTTPServerTransport;
  server: McpServer;
  identity: string;
  lastSeen: number;
  /** Requests in progress, not counting the standalone SSE stream (GET), which may stay open. */
  inflight: number;
}

const LOOPBACK_NAMES = ["localhost", "127.0.0.1", "[::1]"];

export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || host === "[::1]" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

function hostnameOf(hostHeader: string): string | null {
  // A name or an IP literal and a port, nothing else: the URL parser would read "evil@localhost"
  // or "localhost/x" as localhost.
  if (!/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$/.test(hostHeader)) return null;
  try {
    return new URL(`http://${hostHeader}`).hostname.toLowerCase();
  } catch {
    return null;
  }
}

/** This machine's own addresses, as a Host header names them: the pod IP the kubelet probes with. */
function ownAddresses(): string[] {
  return Object.values(networkInterfaces())
    .flat()
    .filter((i) => i !== undefined)
    .map((i) => (i.family === "IPv6" ? `[${i.address}]` : i.address));
}

function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  if (res.headersSent) return;
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "Content-Type": "application/json",
    "Content-Length": Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

/** A header echoed in an error, cut short: it is the caller's text. */
function bounded(text: string): string {
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}

function rpcError(
  res: ServerResponse,
  status: number,
  code: number,
  message: string,
  headers?: Record<string, string>,
) {
  sendJson(res, status, { jsonrpc: "2.0", error: { code, message }, id: null }, headers);
}

/** Reads a body up to max bytes; null when it is larger. */
async function readBody(req: IncomingMessage, max: number): Promise<Buffer | null> {
  const declared = Number(req.headers["content-length"]);
  if (Number.isFinite(declared) && declared > max) return null;
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > max) return null;
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks);
}

export async function startHttpServer(ctx: ServerContext, opts: HttpServerOptions = {}): Promise<HttpServer> {
  const cfg = ctx.config.server;
  const host = opts.host ?? cfg.host;
  const port = opts.port ?? cfg.port;
  const tokens = ctx.tokens;
  if (!tokens.configured && !isLoopback(host))
    throw new ConfigError(
      `refusing to listen on ${host} without tokens: configure \`tokens\` (see README, "MCP server") or bind to 127.0.0.1`,
    );
  const log = childLogger({ component: "http" });
  const localIdentity: Identity = opts.localIdentity ?? { name: "admin", scopes: ["admin"] };
  if (!tokens.configured)
    log.warn(
      { identity: localIdentity.name },
      "no tokens configured: every local caller acts as this identity",
    );

  const wildcard = host === "0.0.0.0" || host === "::" || host === "[::]";
  const allowedHosts = new Set([
    ...LOOPBACK_NAMES,
    // Bound to every interface, each interface's address is "the bound address". An IP literal
    // cannot be rebound, and the kubelet's probes and Prometheus send Host: <pod IP>:<port>.
    ...(wildcard
      ? ownAddresses()
      : [hostnameOf(host.includes(":") && !host.startsWith("[") ? `[${host}]` : host) ?? host]),
    ...cfg.allowed_hosts.map((h) => h.toLowerCase()),
  ]);
  const sessions = new Map<string, Session>();
  /** Initialisations under way per identity: counted before their session id exists. */
  const opening = new Map<string, number>();
  const idleMs = cfg.session_idle_timeout;
  let inflight = 0;
  let closing = false;
  const drained = new Set<() => void>();

  /** The caller's identity, or null after answering 401. */
  const authenticate = (
    req: IncomingMessage,
    res: ServerResponse,
  ): { identity: Identity; token: string } | null => {
    if (!tokens.configured) return { identity: localIdentity, token: "" };
    const header = req.headers.authorization ?? "";
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!m) {
      rpcError(res, 401, -32001, "Unauthorized: send Authorization: Bearer <token>", {
        "WWW-Authenticate": 'Bearer realm="trm-forge"',
      });
      return null;
    }
    const identity = tokens.verify(m[1]);
    if (!identity) {
      log.warn({ remote: req.socket.remoteAddress }, "rejected a request with an unknown token");
      rpcError(res, 401, -32001, "Unauthorized: the token is not valid", {
        "WWW-Authenticate":
          'Bearer realm="trm-forge", error="invalid_token", error_description="The token is not valid"',
      });
      return null;
    }
    return { identity, token: m[1] };
  };

  const closeSession = async (id: string) => {
    const s = sessions.get(id);
    if (!s) return;
    sessions.delete(id);
    await s.transport.close().catch(() => undefined);
    await s.server.close().catch(() => undefined);
  };

  /** The Host (DNS rebinding) and Origin checks every path gets; false after answering 403. */
  const hostAllowed = (req: IncomingMessage, res: ServerResponse): boolean => {
    const hostname = hostnameOf(req.headers.host ?? "");
    if (!hostname || !allowedHosts.has(hostname)) {
      rpcError(res, 403, -32000, `Invalid Host: ${bounded(req.headers.host ?? "(none)")}`);
      return false;
    }
    const origin = req.headers.origin;
    if (origin) {
      let originHost: string | null = null;
      try {
        originHost = new URL(origin).hostname.toLowerCase();
      } catch {
        originHost = null;
      }
      if (!originHost || !allowedHosts.has(originHost)) {
        rpcError(res, 403, -32000, `Invalid Origin: ${bounded(origin)}`);
        return false;
      }
    }
    return true;
  };

  /** /healthz: a status for anyone who passes the Host check; the details for a token holder. */
  const handleHealth = async (req: IncomingMessage, res: ServerResponse) => {
    if (req.method !== "GET" && req.method !== "HEAD") return sendJson(res, 405, { error: "use GET" });
    let caller: Identity | null = tokens.configured ? null : localIdentity;
    if (req.headers.authorization !== undefined) {
      const auth = authenticate(req, res);
      if (!auth) return;
      caller = auth.identity;
    }
    const h = await ctx.health();
    const code = h.status === "ok" && !closing ? 200 : 503;
    const status = closing ? "stopping" : h.status;
    if (!caller) return sendJson(res, code, { status });
    // Agent names, versions and failure text: an agent sees its own agent's only.
    const served = isAdmin(caller) ? h.served : h.served.filter((x) => x.agent === caller.name);
    return sendJson(res, code, { ...h, status, served });
  };

  const handleMcp = async (req: IncomingMessage, res: ServerResponse) => {
    const auth = authenticate(req, res);
    if (!auth) return;
    let body: unknown;
    if (req.method === "POST") {
      const raw = await readBody(req, cfg.max_request_bytes);
      if (raw === null) {
        res.setHeader("Connection", "close");
        return rpcError(res, 413, -32600, `Payload Too Large: the limit is ${cfg.max_request_bytes} bytes`);
      }
      try {
        body = JSON.parse(raw.toString("utf8"));
      } catch {
        return rpcError(res, 400, -32700, "Parse error: the body is not JSON");
      }
    }
    (req as IncomingMessage & { auth?: unknown }).auth = tokens.configured
      ? authInfoOf(auth.identity, auth.token)
      : undefined;
    const sid = req.headers["mcp-session-id"];
    if (typeof sid === "string" && sid) {
      const s = sessions.get(sid);
      if (!s) return rpcError(res, 404, -32001, "Session not found: initialize a new one");
      if (s.identity !== auth.identity.name)
        return rpcError(res, 403, -32000, "Forbidden: this session belongs to another identity");
      const counted = req.method !== "GET";
      s.lastSeen = Date.now();
      if (counted) s.inflight++;
      try {
        await s.transport.handleRequest(req, res, body);
      } finally {
        if (counted) s.inflight--;
        s.lastSeen = Date.now();
      }
      return;
    }
    const init =
      req.method === "POST" &&
      (Array.isArray(body) ? body.some(isInitializeRequest) : isInitializeRequest(body));
    if (!init)
      return rpcError(
        res,
        400,
        -32000,
        "Bad Request: no valid session id (mcp-session-id); initialize first",
      );
    // Counted before any await, so concurrent initialisations see each other.
    const name = auth.identity.name;
    opening.set(name, (opening.get(name) ?? 0) + 1);
    try {
      const refused = await makeRoom(name);
      if (refused) return rpcError(res, 503, -32000, refused);
      await openSession(req, res, body, auth.identity);
    } finally {
      const n = (opening.get(name) ?? 1) - 1;
      if (n > 0) opening.set(name, n);
      else opening.delete(name);
    }
  };

  /** Sessions of an identity, open or opening. */
  const countOf = (name: string): number => {
    let n = opening.get(name) ?? 0;
    for (const s of sessions.values()) if (s.identity === name) n++;
    return n;
  };

  /**
   * Makes room for the session `name` is opening (already counted), or says why not. At its own cap an identity's oldest
   * idle session is closed first, so one identity cannot take every slot from the others. Admin's
   * sessions are not counted against max_sessions (only against the per-identity cap): admin always
   * has room to look at what is going on.
   */
  const makeRoom = async (name: string): Promise<string | null> => {
    const cap = cfg.max_sessions_per_identity;
    if (countOf(name) > cap) {
      let oldest: [string, Session] | null = null;
      for (const entry of sessions)
        if (
          entry[1].identity === name &&
          entry[1].inflight === 0 &&
          (!oldest || entry[1].lastSeen < oldest[1].lastSeen)
        )
          oldest = entry;
      if (!oldest) return `Too many sessions for ${name} (${cap}), each busy; let one finish or close one`;
      log.info(
        { session: oldest[0].slice(0, 8), identity: name },
        "closing the identity's oldest idle session for a new one",
      );
      await closeSession(oldest[0]);
    }
    if (name === ADMIN) return null;
    let agents = 0;
    for (const s of sessions.values()) if (s.identity !== ADMIN) agents++;
    for (const [n, k] of opening) if (n !== ADMIN) agents += k;
    return agents > cfg.max_sessions
      ? `Too many sessions (${cfg.max_sessions}); close one or try later`
      : null;
  };

  const openSession = async (
    req: IncomingMessage,
    res: ServerResponse,
    body: unknown,
    identity: Identity,
  ) => {
    const server = createServer(ctx, {
      identity: tokens.configured ? null : localIdentity,
      owner: identity.name,
    });
    const entry: Session = {
      transport: undefined as unknown as StreamableHTTPServerTransport,
      server,
      identity: identity.name,
      lastSeen: Date.now(),
      inflight: 1,
    };
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: (id) => {
        sessions.set(id, entry);
      },
      onsessionclosed: (id) => {
        void closeSession(id);
      },
    });
    entry.transport = transport;
    transport.onclose = () => {
      if (transport.sessionId) sessions.delete(transport.sessionId);
    };
    await server.connect(transport);
    try {
      await transport.handleRequest(req, res, body);
    } finally {
      entry.inflight--;
    }
  };

  const handler = async (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? "/").split("?")[0];
    try {
      if (!hostAllowed(req, res)) return;
      if (path === "/healthz") return await handleHealth(req, res);
      if (path === "/metrics") {
        if (req.method !== "GET") return sendJson(res, 405, { error: "use GET" });
        if (ctx.config.server.metrics_require_token) {
          const auth = authenticate(req, res);
          if (!auth) return;
          if (!hasScope(auth.identity, "read"))
            return sendJson(res, 403, { error: "the token lacks the read scope" });
        }
        const text = await metrics.metrics();
        res.writeHead(200, { "Content-Type": metrics.contentType });
        return res.end(text);
      }
      if (path === "/mcp") {
        if (closing)
          return rpcError(res, 503, -32000, "the server is shutting down", { Connection: "close" });
        // SSE streams (GET) last as long as the session; they are not requests to wait for.
        const counted = req.method !== "GET";
        if (counted) inflight++;
        try {
          return await handleMcp(req, res);
        } finally {
          if (counted) {
            inflight--;
            if (inflight === 0) for (const fn of drained) fn();
          }
        }
      }
      return sendJson(res, 404, { error: "not found: the MCP endpoint is /mcp" });
    } catch (err) {
      log.error({ err, path }, "request failed");
      if (!res.headersSent) rpcError(res, 500, -32603, "internal server error");
      else res.end();
    }
  };

  const http = createHttpServer((req, res) => void handler(req, res));
  http.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    http.once("error", reject);
    http.listen(port, host, () => {
      http.off("error", reject);
      resolve();
    });
  });
  const addr = http.address() as AddressInfo;
  const shown = addr.address.includes(":") ? `[${addr.address}]` : addr.address;
  const url = `http://${wildcard ? "127.0.0.1" : shown}:${addr.port}/mcp`;
  log.info(
    { url, host: addr.address, port: addr.port, auth: tokens.configured ? "tokens" : "none (loopback)" },
    "MCP server listening",
  );

  const sweep = setInterval(
    () => {
      const now = Date.now();
      for (const [id, s] of sessions)
        if (s.inflight === 0 && now - s.lastSeen > idleMs) {
          log.info({ session: id.slice(0, 8), identity: s.identity }, "closing an idle session");
          void closeSession(id);
        }
    },
    Math.max(1000, Math.min(60_000, idleMs / 2)),
  );
  sweep.unref();

  let closed: Promise<void> | null = null;
  return {
    url,
    host: addr.address,
    port: addr.port,
    sessions: () => sessions.size,
    close(graceMs = cfg.shutdown_grace) {
      closed ??= (async () => {
        closing = true;
        clearInterval(sweep);
        const stopped = new Promise<void>((r) => http.close(() => r()));
        http.closeIdleConnections();
        if (inflight > 0) {
          let timer: NodeJS.Timeout | undefined;
          await new Promise<void>((resolve) => {
            const done = () => {
              clearTimeout(timer);
              drained.delete(done);
              resolve();
            };
            drained.add(done);
            timer = setTimeout(done, graceMs);
          });
        }
        await Promise.all([...sessions.keys()].map(closeSession));
        http.closeAllConnections();
        await stopped;
      })();
      return closed;
    },
  };
}
