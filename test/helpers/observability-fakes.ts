// Loki and Tempo for the collection tests: the simulator's own Loki and Tempo APIs (its LogQL and
// TraceQL, limits, errors and wire shapes) over entries a test lists, behind the simulator's HTTP
// shell with its fault hooks, bearer token and tenant checks, and a log of the requests.
import type { Fault, FaultRequest } from "../../src/simulator/faults.js";
import { Faults } from "../../src/simulator/faults.js";
import { HOUR_MS } from "../../src/simulator/logs.js";
import { type LogStore, LokiApi, type ServedLog } from "../../src/simulator/loki-api.js";
import { type Api, apiHandler, type Listening, listen } from "../../src/simulator/server.js";
import { TempoApi, type TraceStore } from "../../src/simulator/tempo-api.js";
import type { Attr, SimSpan, SimTrace, SpanKind } from "../../src/simulator/traces.js";

export type { Fault, FaultRequest };

abstract class FakeServer {
  readonly requests: FaultRequest[] = [];
  readonly faults = new Faults();
  /** When set, requests without this bearer token get 401. */
  token?: string;
  /** When set, requests without this X-Scope-OrgID get 400 "no org id". */
  tenant?: string;
  private listening: Listening | null = null;

  protected abstract api(): Api;

  async start(): Promise<string> {
    const handler = apiHandler([this.api()], {
      faults: this.faults,
      onRequest: (r) => this.requests.push(r),
      // Read on every request, so a test may set them after start.
      get token() {
        return self.token;
      },
      get tenant() {
        return self.tenant;
      },
    });
    const self = this;
    this.listening = await listen(handler);
    return this.listening.url;
  }

  async stop(): Promise<void> {
    await this.listening?.close();
    this.listening = null;
  }
}

// ---- Loki --------------------------------------------------------------------------------------

export interface LogEntry {
  /** Nanoseconds since the epoch. */
  ts: bigint;
  labels: Record<string, string>;
  line: string;
}

/** Listed entries as a Loki store, bucketed by hour. */
export function listLogs(entries: LogEntry[]): LogStore {
  const hours = new Map<number, ServedLog[]>();
  let start = Number.POSITIVE_INFINITY;
  let end = Number.NEGATIVE_INFINITY;
  for (const e of entries) {
    const ms = Number(e.ts / 1_000_000n);
    const served: ServedLog = {
      ms,
      subNs: Number(e.ts % 1_000_000n),
      ts: e.ts.toString(),
      labels: e.labels,
      line: e.line,
    };
    const h = Math.floor(ms / HOUR_MS);
    hours.set(h, [...(hours.get(h) ?? []), served]);
    start = Math.min(start, ms);
    end = Math.max(end, ms);
  }
  if (!entries.length) start = end = 0;
  const names = [...new Set(entries.flatMap((e) => Object.keys(e.labels)))].sort();
  return {
    start,
    horizon: () => end,
    retentionMs: 30 * 86_400_000,
    hour: (h) => hours.get(h) ?? [],
    labelNames: () => names,
    labelValues: (name) => [...new Set(entries.map((e) => e.labels[name]).filter(Boolean))].sort(),
  };
}

export class FakeLoki extends FakeServer {
  readonly loki: LokiApi;
  constructor(entries: LogEntry[]) {
    super();
    this.loki = new LokiApi(listLogs(entries));
  }
  /** Loki's max_entries_limit_per_query. */
  set maxEntriesLimit(n: number) {
    this.loki.maxEntries = n;
  }
  protected api(): Api {
    return this.loki;
  }
}

// ---- Tempo -------------------------------------------------------------------------------------

export interface FakeSpan {
  spanId: string;
  parentSpanId?: string;
  service: string;
  namespace?: string;
  name: string;
  /** OTLP span kind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer. */
  kind?: number;
  /** Served to the microsecond, as the simulator keeps time. */
  startNs: bigint;
  durationNs: bigint;
  status?: { code: 0 | 1 | 2; message?: string };
  attributes?: Record<string, string | number | boolean>;
}

export interface FakeTrace {
  /** 32 hex characters; may start with zeros. */
  traceId: string;
  spans: FakeSpan[];
  /** Answer the v2 body with status PARTIAL. */
  partial?: boolean;
}

const KINDS: (SpanKind | null)[] = [
  null,
  "SPAN_KIND_INTERNAL",
  "SPAN_KIND_SERVER",
  "SPAN_KIND_CLIENT",
  "SPAN_KIND_PRODUCER",
  "SPAN_KIND_CONSUMER",
];

function attr(key: string, v: string | number | boolean): Attr {
  if (typeof v === "string") return { key, value: { stringValue: v } };
  if (typeof v === "boolean") return { key, value: { boolValue: v } };
  if (Number.isInteger(v)) return { key, value: { intValue: String(v) } };
  return { key, value: { doubleValue: v } };
}

/** Listed traces as a Tempo store. */
export function listTraces(traces: FakeTrace[]): TraceStore {
  const resources = new WeakMap<SimSpan, Record<string, string>>();
  const partial = new WeakSet<SimTrace>();
  const byId = new Map<string, SimTrace>();
  let start = Number.POSITIVE_INFINITY;
  let end = 0;
  const sims = traces.map((t, index): SimTrace => {
    const spans = t.spans.map((s): SimSpan => {
      const span: SimSpan = {
        spanId: s.spanId,
        parentId: s.parentSpanId ?? null,
        service: s.service,
        pod: "",
        name: s.name,
        kind: KINDS[s.kind ?? 0] ?? null,
        startUs: Number(s.startNs / 1000n),
        durUs: Number(s.durationNs / 1000n),
        status: s.status?.code === 2 ? "error" : s.status?.code === 1 ? "ok" : "unset",
        ...(s.status?.message ? { message: s.status.message } : {}),
        attrs: Object.entries(s.attributes ?? {}).map(([k, v]) => attr(k, v)),
        events: [],
      };
      resources.set(span, {
        "service.name": s.service,
        ...(s.namespace ? { "k8s.namespace.name": s.namespace } : {}),
      });
      return span;
    });
    const root = spans.find((s) => s.parentId === null) ?? spans[0];
    const startUs = Math.min(...spans.map((s) => s.startUs));
    const endUs = Math.max(...spans.map((s) => s.startUs + s.durUs));
    const sim: SimTrace = {
      traceId: t.traceId,
      bucket: 0,
      index,
      flow: "listed",
      startUs,
      endUs,
      rootService: root.service,
      rootName: root.name,
      spans,
      incident: null,
      error: spans.some((s) => s.status === "error"),
    };
    if (t.partial) partial.add(sim);
    byId.set(t.traceId, sim);
    start = Math.min(start, startUs / 1000);
    end = Math.max(end, endUs / 1000);
    return sim;
  });
  if (!traces.length) start = 0;
  return {
    start,
    horizon: () => end,
    retentionMs: 30 * 86_400_000,
    overlapping: () => sims,
    byId: (hex32) => byId.get(hex32) ?? null,
    resourceOf: (span) => resources.get(span) ?? { "service.name": span.service },
    scopeOf: () => ({ name: "opentelemetry.instrumentation.fake", version: "1.0.0" }),
    partial: (t) => partial.has(t),
  };
}

export class FakeTempo extends FakeServer {
  readonly tempo: TempoApi;
  constructor(traces: FakeTrace[]) {
    super();
    this.tempo = new TempoApi(listTraces(traces));
  }
  /** False: an older Tempo without the /api/v2/traces route. */
  set v2(on: boolean) {
    this.tempo.v2 = on;
  }
  protected api(): Api {
    return this.tempo;
  }
}
