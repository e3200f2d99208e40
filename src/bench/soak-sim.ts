// The homelab the soak lives in: the simulator's three APIs over a world that spans the whole
// soak, with its fault injection for the soak's outages, behind a thin layer that gives each
// source a retention (data older than it is gone, as in a real Loki or Tempo). Time is the soak's
// simulated "now", which it sets before each step.
import type { IncomingMessage, ServerResponse } from "node:http";
import { apiOfPath, Faults, type Listening, listen, simulatorHandler, World } from "../simulator/index.js";

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
  /** The simulated now the soak last set. */
  now = 0;
  url = "";
  /** The simulator's fault hooks, read against the soak's clock. */
  readonly faults = new Faults(() => this.now);
  private listening: Listening | null = null;

  constructor(
    opts: { seed: number; start: number; end: number; logsPerDay?: number; tracesPerDay?: number },
    readonly retentionMs: Record<SourceName, number>,
  ) {
    this.world = new World({
      seed: opts.seed,
      end: opts.end,
      days: (opts.end - opts.start) / DAY,
      logsPerDay: opts.logsPerDay,
      tracesPerDay: opts.tracesPerDay,
    });
  }

  /** The source answers `status` while the soak's now is in [from, to). */
  outage(o: Outage): void {
    this.faults.outage({ api: o.source, from: o.from, to: o.to, status: o.status });
  }

  async start(): Promise<void> {
    const inner = simulatorHandler(this.world, undefined, this.faults);
    this.listening = await listen(async (req: IncomingMessage, res: ServerResponse) => {
      const url = new URL(req.url ?? "/", "http://soak");
      const source = apiOfPath(url.pathname);
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
      await inner(req, res);
    });
    this.url = this.listening.url;
  }

  async close(): Promise<void> {
    await this.listening?.close();
  }
}
