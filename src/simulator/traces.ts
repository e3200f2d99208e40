// The homelab's traces. Each 10-minute bucket is generated on its own from the seed. A trace
// follows one of a few request flows through the call graph; incidents change the path itself
// (a new failing span after a bad release, retries and fallbacks when a callee is down, slow and
// cancelled queries when postgres is slow), not only its status, so outcome is learnable from
// the path. Trace IDs encode (bucket, index) through a keyed permutation: a lookup by ID
// regenerates one bucket instead of searching.

import { mix32 } from "../util/mix32.js";
import { DIGEST, FLOWS, type FlowDef, flowNamed, incidentFlows } from "./data/flows.js";
import { service } from "./homelab.js";
import { hashKey, Rng } from "./rng.js";
import type { FakeSecrets } from "./secrets.js";
import { type Incident, MEAN_RHYTHM, type Timeline } from "./timeline.js";
import { Builder, type SimTrace } from "./trace-builder.js";

export type { Attr, AttrValue, SimSpan, SimTrace, SpanKind } from "./trace-builder.js";

export const TRACE_BUCKET_MS = 600_000;
export const DEFAULT_TRACES_PER_DAY = 160;
/** Tail sampling, as a homelab's collector does it: errors and slow traces are kept, this share of the rest. */
const KEEP_ORDINARY = 0.5;
const SLOW_US = 2_000_000;
/** Extra traces per hour an incident causes (alerts, retries, redeliveries), at the default density. */
const INCIDENT_TRACES_PER_HOUR = 24;

// --- trace IDs ------------------------------------------------------------------------------

/** A keyed Feistel permutation of 64 bits: (bucket, index, check) <-> 16 hex characters. */
class TraceIds {
  private readonly keys: number[];
  constructor(private readonly seed: number) {
    this.keys = [0, 1, 2, 3].map((r) => hashKey(seed, "trace-id", r));
  }

  private check(bucket: number, index: number): number {
    return hashKey(this.seed, "trace-check", bucket, index) & 0xffff;
  }

  encode(bucket: number, index: number, wide: boolean): string {
    let l = bucket >>> 0;
    let r = ((index & 0xffff) | (this.check(bucket, index) << 16)) >>> 0;
    for (const k of this.keys) {
      const nl = r;
      r = (l ^ mix32(r ^ k)) >>> 0;
      l = nl;
    }
    const low = l.toString(16).padStart(8, "0") + r.toString(16).padStart(8, "0");
    const high = wide ? Rng.of(this.seed, "trace-hi", bucket, index).hex(8) : "0000000000000000";
    return high + low;
  }

  decode(hex32: string): { bucket: number; index: number } | null {
    let l = Number.parseInt(hex32.slice(16, 24), 16) >>> 0;
    let r = Number.parseInt(hex32.slice(24, 32), 16) >>> 0;
    for (let i = this.keys.length - 1; i >= 0; i--) {
      const pr = l;
      l = (r ^ mix32(l ^ this.keys[i])) >>> 0;
      r = pr;
    }
    const bucket = l;
    const index = r & 0xffff;
    if (r >>> 16 !== this.check(bucket, index)) return null;
    return { bucket, index };
  }
}

// --- generation ------------------------------------------------------------------------------

export interface TraceDensity {
  /** Request traces per day over the homelab (the hourly digest adds 24). */
  tracesPerDay: number;
}

export class HomelabTraces {
  private readonly cache = new Map<number, SimTrace[]>();
  private readonly ids: TraceIds;

  constructor(
    private readonly tl: Timeline,
    private readonly secrets: FakeSecrets,
    private readonly density: TraceDensity,
    private readonly dataStart: number,
  ) {
    this.ids = new TraceIds(tl.seed);
  }

  bucket(bucket: number): SimTrace[] {
    let out = this.cache.get(bucket);
    if (!out) {
      out = this.generate(bucket);
      if (this.cache.size > 6000) this.cache.delete(this.cache.keys().next().value!);
      this.cache.set(bucket, out);
    }
    return out;
  }

  /** A trace by its 32-hex ID, or null. */
  byId(hex32: string): SimTrace | null {
    const key = this.ids.decode(hex32);
    if (!key) return null;
    return this.bucket(key.bucket).find((t) => t.index === key.index && t.traceId === hex32) ?? null;
  }

  private generate(bucket: number): SimTrace[] {
    const t0 = bucket * TRACE_BUCKET_MS;
    const t1 = t0 + TRACE_BUCKET_MS;
    if (t1 <= this.dataStart) return [];
    const tl = this.tl;
    const r = Rng.of(tl.seed, "traces", bucket);
    const scale = this.density.tracesPerDay / DEFAULT_TRACES_PER_DAY;
    const starts: { t: number; flow: FlowDef; incident: Incident | null }[] = [];
    // The digest lambda runs at the top of every hour.
    if (t0 % 3_600_000 === 0) starts.push({ t: t0 + 1_000 + r.int(20_000), flow: DIGEST, incident: null });
    const lambda =
      (this.density.tracesPerDay *
        (TRACE_BUCKET_MS / 86_400_000) *
        tl.load(service("api-gateway"), t0 + TRACE_BUCKET_MS / 2)) /
      MEAN_RHYTHM;
    const n = r.poisson(lambda);
    const weights = FLOWS.map((f) => f.weight);
    for (let i = 0; i < n; i++)
      starts.push({ t: t0 + r.int(TRACE_BUCKET_MS), flow: r.weighted(FLOWS, weights), incident: null });
    for (const inc of tl.incidents) {
      if (inc.end <= t0 || inc.start >= t1) continue;
      const from = Math.max(t0, inc.start);
      const to = Math.min(t1, inc.end);
      const names = incidentFlows(inc.kind, inc.service);
      const k = r.poisson((INCIDENT_TRACES_PER_HOUR * scale * (to - from)) / 3_600_000);
      for (let i = 0; i < k; i++)
        starts.push({ t: from + r.int(to - from), flow: flowNamed(r.pick(names)), incident: inc });
    }
    const out: SimTrace[] = [];
    starts.forEach((s, index) => {
      if (s.t < this.dataStart) return;
      const b = new Builder(Rng.of(tl.seed, "trace", bucket, index), tl, this.secrets);
      b.causedBy = s.incident;
      const startUs = s.t * 1000 + b.r.int(1000);
      s.flow.flow(b, startUs);
      const spans = b.spans.sort((x, y) => x.startUs - y.startUs);
      const root = spans[0];
      const endUs = Math.max(...spans.map((x) => x.startUs + x.durUs));
      const error = spans.some((x) => x.status === "error");
      if (!error && endUs - root.startUs < SLOW_US && !b.r.chance(KEEP_ORDINARY)) return;
      const inc = tl.incidentAt(s.t);
      const touched = inc && spans.some((x) => inc.affected.includes(x.service)) ? inc.id : null;
      out.push({
        traceId: this.ids.encode(bucket, index, s.flow.wide),
        bucket,
        index,
        flow: s.flow.name,
        startUs: root.startUs,
        endUs,
        rootService: root.service,
        rootName: root.name,
        spans,
        incident: touched,
        error,
      });
    });
    return out;
  }
}
