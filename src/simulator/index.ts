// The homelab simulator: one loopback HTTP server that speaks the Prometheus, Loki and Tempo APIs
// the collectors use, over a small, deterministic homelab (eight services, deploys, incidents).
// It answers the demo config's queries; it is not a PromQL, LogQL or TraceQL engine. It lives
// beside the product: nothing in src/pipeline imports it.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { log } from "../log.js";
import { type ApiRequest, type ApiResponse, text } from "./http.js";
import { LokiApi } from "./loki-api.js";
import { PrometheusApi } from "./prometheus-api.js";
import { TempoApi } from "./tempo-api.js";
import { type GroundTruth, World, type WorldOptions } from "./world.js";

export { NAMESPACES, SERVICE_NAMES, SERVICES } from "./homelab.js";
export type { GroundTruth, GroundTruthIncident, Signals, WorldOptions } from "./world.js";
export { World } from "./world.js";

export interface SimulatorOptions extends WorldOptions {
  host?: string;
  /** 0 (the default) picks a free port. */
  port?: number;
  /** When set, every request must carry `Authorization: Bearer <token>`. */
  token?: string;
}

export interface Simulator {
  /** Base URL of all three APIs, e.g. http://127.0.0.1:41234 */
  url: string;
  server: Server;
  world: World;
  groundTruth: GroundTruth;
  close(): Promise<void>;
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

/** The request handler of a simulator over `world`, for use in any node:http server. */
export function simulatorHandler(world: World, token?: string) {
  const apis = [new PrometheusApi(world), new LokiApi(world), new TempoApi(world)];
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    let out: ApiResponse;
    try {
      const url = new URL(req.url ?? "/", "http://simulator");
      if (token && req.headers.authorization !== `Bearer ${token}`) {
        out = text(401, "Unauthorized");
      } else {
        const params = new URLSearchParams(url.searchParams);
        const form = await readForm(req);
        if (form) for (const [k, v] of form) params.set(k, v);
        const request: ApiRequest = {
          method: req.method ?? "GET",
          path: url.pathname,
          params,
          headers: req.headers,
        };
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
    res.writeHead(out.status, { "Content-Type": out.type, "Content-Length": Buffer.byteLength(out.body) });
    res.end(out.body);
  };
}

/** Starts the simulator on loopback (or `host`) and resolves once it listens. */
export async function createSimulator(opts: SimulatorOptions = {}): Promise<Simulator> {
  const world = new World(opts);
  const host = opts.host ?? "127.0.0.1";
  const server = createServer(simulatorHandler(world, opts.token));
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 0, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const shown = host.includes(":") ? `[${host}]` : host;
  return {
    url: `http://${shown}:${port}`,
    server,
    world,
    groundTruth: world.groundTruth(),
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}

/**
 * An agent's config (the `agents.<name>` section) that points all three collectors at a simulator:
 * every simulated namespace, one Loki query over all of them, and a Prometheus step that keeps 30
 * days of metrics quick to collect. The demo writes it into its config file.
 */
export function agentConfigFor(url: string, opts: { lookback?: string } = {}) {
  return {
    namespaces: { agents: "ai-agents", lambda: "knative-lambda", notifi: "notifi", data: "data" },
    lookback: opts.lookback ?? "30d",
    sources: {
      prometheus: { url, step: "5m" },
      loki: {
        url,
        queries: [{ name: "homelab_logs", logql: '{namespace=~"ai-agents|knative-lambda|notifi|data"}' }],
      },
      tempo: { url, search_window: "6h" },
    },
  };
}
