// The homelab the soak lives in: the simulator's three APIs over a world that spans the whole
// soak, behind a thin layer that gives each source a retention (data older than it is gone, as in
// a real Loki or Tempo) and answers with an error while one of the soak's outages lasts. Time is
// the soak's simulated "now", which it sets before each step.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { simulatorHandler, World } from "../simulator/index.js";

export const SOURCES = ["prometheus", "loki", "tempo"] as const;
export type SourceName = (typeof SOURCES)[number];

const DAY = 86_400_000;
/** How far back each source keeps data (a real Loki or Tempo drops older data); the soak's config says the same. */
export const SOURCE_RETENTION: Record<SourceName, number> = {
  prometheus: 15 * DAY,
  loki: 7 * DAY,
  tempo: 2 * DAY,
};

export interface Outage {
  source: SourceName;
  from: number;
  to: number;
  /** What the source answers meanwhile: 503 (down) or 500 (broken). */
  status: number;
}

/** Which API a path belongs to (the simulator serves all three on one port). */
export function sourceOf(path: string): SourceName | null {
  if (path.startsWith("/loki/")) return "loki";
  if (path.startsWith("/api/v1/") || path.startsWith("/-/")) return "prometheus";
  if (/^\/api\/(search|v2\/traces|traces|echo)/.test(path) || path === "/status/config") return "tempo";
  return null;
}

const NS_PER_MS = 1_000_000n;

/** A time parameter as ms, with a function that writes a ms value back in the same form. */
function parseTime(v: string): { ms: number; write: (ms: number) => string } | null {
  if (/^\d{16,}$/.test(v))
    return { ms: Number(BigInt(v) / NS_PER_MS), write: (ms) => String(BigInt(ms) * NS_PER_MS) };
  if (/^\d+(\.\d+)?$/.test(v)) return { ms: Number(v) * 1000, write: (ms) => String(Math.floor(ms / 1000)) };
  const ms = Date.parse(v);
  return Number.isFinite(ms) ? { ms, write: (x) => new Date(x).toISOString() } : null;
}

export class SoakHomelab {
  readonly world: World;
  readonly outages: Outage[] = [];
  /** The simulated now the soak last set. */
  now = 0;
  url = "";
  requests = 0;
  refused = 0;
  private server: Server | null = null;

  constructor(
    opts: { seed: number; start: number; end: number; logsPerDay?: number; tracesPerDay?: number },
    readonly retentionMs: Record<SourceName, number>,
  ) {
    this.world = new World({
      seed: opts.seed,
      end: opts.end,
      days: (opts.end - opts.start) / 86_400_000,
      logsPerDay: opts.logsPerDay,
      tracesPerDay: opts.tracesPerDay,
    });
  }

  outageAt(source: SourceName, at = this.now): Outage | null {
    return this.outages.find((o) => o.source === source && o.from <= at && at < o.to) ?? null;
  }

  async start(): Promise<void> {
    const inner = simulatorHandler(this.world);
    this.server = createServer((req, res) => {
      this.requests++;
      const url = new URL(req.url ?? "/", "http://soak");
      const source = sourceOf(url.pathname);
      const down = source ? this.outageAt(source) : null;
      if (down) {
        this.refused++;
        res.writeHead(down.status, { "Content-Type": "text/plain" });
        res.end(`${source} is ${down.status === 503 ? "down" : "failing"} (soak outage)\n`);
        return;
      }
      // Older data is gone: a query's start is moved up to the source's horizon.
      if (source && req.method === "GET") {
        const horizon = this.now - this.retentionMs[source];
        const start = url.searchParams.get("start");
        const t = start ? parseTime(start) : null;
        const e = parseTime(url.searchParams.get("end") ?? "");
        if (t && t.ms < horizon) {
          // Entirely before the horizon: an empty answer, as from the real source (a second's sliver).
          url.searchParams.set("start", t.write(e ? Math.min(horizon, e.ms - 1000) : horizon));
          req.url = `${url.pathname}?${url.searchParams}`;
        }
      }
      void inner(req, res);
    });
    this.server.keepAliveTimeout = 5_000;
    await new Promise<void>((resolve) => this.server!.listen(0, "127.0.0.1", resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async close(): Promise<void> {
    const s = this.server;
    if (!s) return;
    await new Promise<void>((resolve) => {
      s.close(() => resolve());
      s.closeAllConnections();
    });
  }
}
