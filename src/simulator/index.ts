// The homelab simulator: one loopback HTTP server that speaks the Prometheus, Loki and Tempo APIs
// the collectors use, over a small, deterministic homelab (eight services, deploys, incidents).
// It answers the demo config's queries; it is not a PromQL, LogQL or TraceQL engine. It lives
// beside the product: nothing in src/pipeline imports it.
import type { Server } from "node:http";
import { Faults } from "./faults.js";
import { LokiApi, worldLogs } from "./loki-api.js";
import { PrometheusApi } from "./prometheus-api.js";
import { apiHandler, listen } from "./server.js";
import { TempoApi, worldTraces } from "./tempo-api.js";
import { type GroundTruth, World, type WorldOptions } from "./world.js";

export type { ApiName, Fault, FaultRequest, FaultResponse, Outage } from "./faults.js";
export { Faults, outage } from "./faults.js";
export { NAMESPACES, SERVICE_NAMES, SERVICES } from "./homelab.js";
export type { Listening } from "./server.js";
export { apiOfPath, listen } from "./server.js";
export type { GroundTruth, GroundTruthIncident, Signals, WorldOptions } from "./world.js";
export { World } from "./world.js";

export interface SimulatorOptions extends WorldOptions {
  host?: string;
  /** 0 (the default) picks a free port. */
  port?: number;
  /** When set, every request must carry `Authorization: Bearer <token>`. */
  token?: string;
  /** The simulated clock that outage windows are read against (default: the real one). */
  now?: () => number;
}

export interface Simulator {
  /** Base URL of all three APIs, e.g. http://127.0.0.1:41234 */
  url: string;
  server: Server;
  world: World;
  groundTruth: GroundTruth;
  /** Per-request hooks and outage windows: `sim.faults.outage({ api: "loki", from, to })`. */
  faults: Faults;
  close(): Promise<void>;
}

/** The request handler of a simulator over `world`, for use in any node:http server. */
export function simulatorHandler(world: World, token?: string, faults?: Faults) {
  return apiHandler(
    [new PrometheusApi(world), new LokiApi(worldLogs(world)), new TempoApi(worldTraces(world))],
    {
      token,
      faults,
    },
  );
}

/** Starts the simulator on loopback (or `host`) and resolves once it listens. */
export async function createSimulator(opts: SimulatorOptions = {}): Promise<Simulator> {
  const world = new World(opts);
  const faults = new Faults(opts.now);
  const { url, server, close } = await listen(
    simulatorHandler(world, opts.token, faults),
    opts.host ?? "127.0.0.1",
    opts.port ?? 0,
  );
  return { url, server, world, groundTruth: world.groundTruth(), faults, close };
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
