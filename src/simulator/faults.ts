// Fault injection for the simulator's HTTP APIs: per-request hooks (a 5xx, a slow or truncated
// body, a plain-text error) and outages over a window of simulated time ("Loki down from day 3 to
// day 5"), so collectors can be tested and soaked against an outside world that misbehaves.
import type { IncomingHttpHeaders } from "node:http";

export type ApiName = "prometheus" | "loki" | "tempo";

export interface FaultRequest {
  /** The API the path belongs to; null for paths every API answers (`/ready`). */
  api: ApiName | null;
  method: string;
  path: string;
  params: URLSearchParams;
  headers: IncomingHttpHeaders;
  /** 1-based count of requests to this server so far, this one included. */
  n: number;
  /** The simulated time the request arrives at (the simulator's clock), unix ms. */
  now: number;
}

/** With `status`, sent instead of the real answer; without, applied to it (delay, truncation). */
export interface FaultResponse {
  status?: number;
  body?: string;
  type?: string;
  /** Wait this long (real ms) before answering. */
  delayMs?: number;
  /** Send only the first N bytes of the body, then end the response. */
  truncateAt?: number;
  headers?: Record<string, string>;
}

export type Fault = (req: FaultRequest) => FaultResponse | undefined;

type Time = number | string | Date;

export interface Outage {
  /** The APIs that are down (all three when left out). */
  api?: ApiName | ApiName[];
  /** Simulated time, start inclusive, end exclusive. */
  from: Time;
  to: Time;
  /** Default 503 with Go's plain-text body, as a proxy in front of a stopped service answers. */
  status?: number;
  body?: string;
  /** Answer this late instead of (or as well as) failing: a hung service. */
  delayMs?: number;
}

function ms(t: Time): number {
  const v = t instanceof Date ? t.getTime() : typeof t === "string" ? Date.parse(t) : t;
  if (!Number.isFinite(v)) throw new Error(`outage time is not a time: ${String(t)}`);
  return v;
}

/** A fault that fails every request to the outage's APIs while simulated time is inside its window. */
export function outage(o: Outage): Fault {
  const from = ms(o.from);
  const to = ms(o.to);
  if (!(to > from)) throw new Error("an outage must end after it starts");
  const apis = o.api === undefined ? null : new Set(Array.isArray(o.api) ? o.api : [o.api]);
  const status = o.status ?? (o.delayMs !== undefined ? undefined : 503);
  return (req) => {
    if (req.now < from || req.now >= to) return undefined;
    if (apis && (req.api === null || !apis.has(req.api))) return undefined;
    return {
      ...(status !== undefined
        ? { status, body: o.body ?? `${status === 503 ? "service unavailable" : "internal error"}\n` }
        : {}),
      ...(o.delayMs !== undefined ? { delayMs: o.delayMs } : {}),
    };
  };
}

/** The fault hooks of one server; the first hook that answers wins. */
export class Faults {
  private hooks: Fault[] = [];
  private count = 0;

  constructor(private readonly now: () => number = Date.now) {}

  /** Adds a hook; returns a function that removes it again. */
  add(fault: Fault): () => void {
    this.hooks.push(fault);
    return () => {
      this.hooks = this.hooks.filter((f) => f !== fault);
    };
  }

  /** Adds an outage window (see `outage`); returns its remover. */
  outage(o: Outage): () => void {
    return this.add(outage(o));
  }

  clear(): void {
    this.hooks = [];
  }

  /** Counts the request and asks the hooks about it. */
  apply(req: Omit<FaultRequest, "n" | "now">): { request: FaultRequest; fault?: FaultResponse } {
    const request: FaultRequest = { ...req, n: ++this.count, now: this.now() };
    for (const f of this.hooks) {
      const out = f(request);
      if (out) return { request, fault: out };
    }
    return { request };
  }
}
