// The HTTP shell around the simulator's API handlers: form bodies, the bearer token and tenant
// header checks, fault injection, and the loopback listener. The simulator and the list-backed
// fakes the tests start share it.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { log } from "../log.js";
import { type ApiName, type FaultRequest, type FaultResponse, Faults } from "./faults.js";
import { type ApiRequest, type ApiResponse, text } from "./http.js";

export interface Api {
  readonly name: ApiName;
  handle(req: ApiRequest): ApiResponse | null;
}

export interface ShellOptions {
  /** When set, every request must carry `Authorization: Bearer <token>` (else 401). */
  token?: string;
  /** When set, every request must carry this `X-Scope-OrgID` (else 400 "no org id", as Loki answers). */
  tenant?: string;
  faults?: Faults;
  /** Sees every request, after the fault hooks counted it. */
  onRequest?: (req: FaultRequest) => void;
}

const MAX_BODY = 1 << 20;

async function readForm(req: IncomingMessage): Promise<URLSearchParams | null> {
  if (req.method !== "POST") return null;
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > MAX_BODY) throw new Error("request body too large");
    chunks.push(c as Buffer);
  }
  const type = String(req.headers["content-type"] ?? "");
  if (!type.includes("application/x-www-form-urlencoded")) return null;
  return new URLSearchParams(Buffer.concat(chunks).toString("utf8"));
}

/** Which API a path belongs to when one port serves all three (null: `/ready` and the like). */
export function apiOfPath(path: string): ApiName | null {
  if (path.startsWith("/loki/") || path === "/config") return "loki";
  if (path.startsWith("/api/v1/") || path.startsWith("/-/")) return "prometheus";
  if (path.startsWith("/api/") || path.startsWith("/status/")) return "tempo";
  return null;
}

function send(res: ServerResponse, out: ApiResponse, fault: FaultResponse | undefined): void {
  if (res.destroyed) return;
  const headers: Record<string, string | number> = { "Content-Type": out.type, ...(fault?.headers ?? {}) };
  let body = out.body;
  // A truncated body ends early without a length, as a proxy that lost its upstream does.
  if (fault?.truncateAt !== undefined) body = Buffer.from(body).subarray(0, fault.truncateAt).toString();
  else headers["Content-Length"] = Buffer.byteLength(body);
  res.writeHead(out.status, headers);
  res.end(body);
}

/** A node:http request handler over `apis`, the first that answers a path wins. */
export function apiHandler(apis: readonly Api[], opts: ShellOptions = {}) {
  const faults = opts.faults ?? new Faults();
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    let out: ApiResponse;
    let fault: FaultResponse | undefined;
    try {
      const url = new URL(req.url ?? "/", "http://simulator");
      const params = new URLSearchParams(url.searchParams);
      const form = await readForm(req);
      if (form) for (const [k, v] of form) params.set(k, v);
      const request: ApiRequest = {
        method: req.method ?? "GET",
        path: url.pathname,
        params,
        headers: req.headers,
      };
      const api = apis.length === 1 ? apis[0].name : apiOfPath(request.path);
      const applied = faults.apply({ api, ...request });
      opts.onRequest?.(applied.request);
      fault = applied.fault;
      if (opts.token && req.headers.authorization !== `Bearer ${opts.token}`) out = text(401, "Unauthorized");
      else if (opts.tenant && req.headers["x-scope-orgid"] !== opts.tenant) out = text(400, "no org id");
      else if (fault?.status !== undefined) {
        out = {
          status: fault.status,
          type: fault.type ?? "text/plain; charset=utf-8",
          body: fault.body ?? "",
        };
      } else {
        out = text(404, "404 page not found");
        for (const api of apis) {
          const r = api.handle(request);
          if (r) {
            out = r;
            break;
          }
        }
      }
    } catch (err) {
      log.error({ err, url: req.url }, "simulator request failed");
      out = text(500, `internal error: ${err instanceof Error ? err.message : String(err)}`);
    }
    log.debug(
      { method: req.method, url: req.url, status: out.status, bytes: out.body.length },
      "simulator request",
    );
    if (fault?.delayMs) setTimeout(() => send(res, out, fault), fault.delayMs);
    else send(res, out, fault);
  };
}

export interface Listening {
  /** e.g. http://127.0.0.1:41234 */
  url: string;
  server: Server;
  close(): Promise<void>;
}

/** Listens on loopback (or `host`), port 0 picking a free one. */
export async function listen(
  handler: ReturnType<typeof apiHandler>,
  host = "127.0.0.1",
  port = 0,
): Promise<Listening> {
  const server = createServer(handler);
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const { port: bound } = server.address() as AddressInfo;
  const shown = host.includes(":") ? `[${host}]` : host;
  return {
    url: `http://${shown}:${bound}`,
    server,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}
