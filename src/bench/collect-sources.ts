// What the collection benchmark's Loki and Tempo serve: the simulator's own Loki and Tempo APIs
// over entries and traces made on demand from their index (`count` of them spread evenly over a
// window), so a 200k-line or 20k-trace run needs no list in memory.
import { createHash } from "node:crypto";
import { HOUR_MS } from "../simulator/logs.js";
import type { LogStore, ServedLog } from "../simulator/loki-api.js";
import type { TraceStore } from "../simulator/tempo-api.js";
import type { SimSpan, SimTrace } from "../simulator/traces.js";

/** The first index in [0, count) whose time is at or after `t`, for times increasing with the index. */
function firstAtOrAfter(count: number, timeOf: (i: number) => number, t: number): number {
  let lo = 0;
  let hi = count;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (timeOf(mid) < t) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** `count` entries evenly spread over [startMs, startMs + spanMs), entry i made by `make(i)`. */
export function generatedLogs(
  startMs: number,
  spanMs: number,
  count: number,
  make: (i: number) => { labels: Record<string, string>; line: string },
): LogStore {
  const startNs = BigInt(startMs) * 1_000_000n;
  const spanNs = BigInt(spanMs) * 1_000_000n;
  const nsOf = (i: number) => startNs + (spanNs * BigInt(i)) / BigInt(count);
  const msOf = (i: number) => Number(nsOf(i) / 1_000_000n);
  return {
    start: startMs,
    horizon: () => startMs + spanMs,
    retentionMs: 30 * 86_400_000,
    *hour(h) {
      const a = firstAtOrAfter(count, msOf, h * HOUR_MS);
      const b = firstAtOrAfter(count, msOf, (h + 1) * HOUR_MS);
      for (let i = a; i < b; i++) {
        const ns = nsOf(i);
        const e: ServedLog = {
          ms: Number(ns / 1_000_000n),
          subNs: Number(ns % 1_000_000n),
          ts: ns.toString(),
          ...make(i),
        };
        yield e;
      }
    },
    labelNames: () => Object.keys(make(0).labels).sort(),
    labelValues: (name) => [make(0).labels[name] ?? ""].filter(Boolean),
  };
}

export interface GeneratedTrace {
  spans: Omit<SimSpan, "events" | "pod">[];
  /** Every span's k8s.namespace.name. */
  namespace: string;
}

/** `count` traces spread over [startMs, startMs + spanMs), trace i made by `make`; its index is in its ID. */
export function generatedTraces(
  startMs: number,
  spanMs: number,
  count: number,
  longestMs: number,
  make: (i: number, traceId: string, startUs: number) => GeneratedTrace,
): TraceStore {
  const startOf = (i: number) => startMs + Math.floor((spanMs * i) / count);
  const idOf = (i: number) =>
    `${createHash("sha256").update(String(i)).digest("hex").slice(0, 24)}${i.toString(16).padStart(8, "0")}`;
  const namespaces = new WeakMap<SimSpan, string>();
  const at = (i: number): SimTrace => {
    const traceId = idOf(i);
    const g = make(i, traceId, startOf(i) * 1000);
    const spans = g.spans.map((s) => {
      const span: SimSpan = { ...s, pod: "", events: [] };
      namespaces.set(span, g.namespace);
      return span;
    });
    const root = spans.find((s) => s.parentId === null) ?? spans[0];
    return {
      traceId,
      bucket: 0,
      index: i,
      flow: "generated",
      startUs: Math.min(...spans.map((s) => s.startUs)),
      endUs: Math.max(...spans.map((s) => s.startUs + s.durUs)),
      rootService: root.service,
      rootName: root.name,
      spans,
      incident: null,
      error: spans.some((s) => s.status === "error"),
    };
  };
  return {
    start: startMs,
    horizon: () => startMs + spanMs + longestMs,
    retentionMs: 30 * 86_400_000,
    *overlapping(fromMs, toMs) {
      for (let i = firstAtOrAfter(count, startOf, fromMs - longestMs); i < count && startOf(i) <= toMs; i++)
        yield at(i);
    },
    byId(hex32) {
      const i = Number.parseInt(hex32.slice(24), 16);
      if (!Number.isInteger(i) || i < 0 || i >= count || idOf(i) !== hex32) return null;
      return at(i);
    },
    resourceOf: (span) => ({
      "service.name": span.service,
      "k8s.namespace.name": namespaces.get(span) ?? "",
    }),
    scopeOf: () => ({ name: "opentelemetry.instrumentation.bench", version: "1.0.0" }),
  };
}
