// The real collectors against the simulator, for two simulated days: records arrive from all three
// sources, nothing is lost or doubled on the way, and no fake secret reaches the store.
import { mkdtempSync, readdirSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Config, parseConfig } from "../../src/config/index.js";
import {
  type CollectionReport,
  collect,
  listSegments,
  readSegment,
} from "../../src/pipeline/collect/index.js";
import type { RecordOf, SourceName } from "../../src/pipeline/collect/records.js";
import { IncidentJoin, incidentSettings } from "../../src/pipeline/incidents.js";
import { logFacts } from "../../src/pipeline/tasks/log-triage.js";
import { agentConfigFor, createSimulator, SERVICE_NAMES, type Simulator } from "../../src/simulator/index.js";
import { HOUR_MS } from "../../src/simulator/logs.js";
import { TRACE_BUCKET_MS } from "../../src/simulator/traces.js";
import { type ObjectStore, openStore } from "../../src/store/index.js";
import { END, END_MS } from "./helpers.js";

let sim: Simulator;
let config: Config;
let store: ObjectStore;
let report: CollectionReport;

beforeAll(async () => {
  sim = await createSimulator({ seed: 6, days: 2, end: END });
  config = parseConfig({
    data_dir: mkdtempSync(join(tmpdir(), "trm-sim-collect-")),
    agents: { "agent-sre": agentConfigFor(sim.url, { lookback: "2d" }) },
  });
  store = openStore(config);
  report = await collect(config, { agent: "agent-sre", now: END_MS, store });
}, 300_000);
afterAll(async () => {
  await sim.close();
});

async function records<S extends SourceName>(source: S): Promise<RecordOf<S>[]> {
  const out: RecordOf<S>[] = [];
  for (const ref of await listSegments(store, "agent-sre", source)) {
    out.push(...(await readSegment(store, { key: ref.key, source })).records);
  }
  return out;
}

function storeText(dir: string): string {
  const parts: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) parts.push(storeText(p));
    else
      parts.push(
        name,
        p.endsWith(".gz") ? gunzipSync(readFileSync(p)).toString("utf8") : readFileSync(p, "utf8"),
      );
  }
  return parts.join("\n");
}

describe("collecting the simulated homelab", () => {
  it("every source and query succeeds", () => {
    for (const s of report.sources.filter((x) => x.source !== "code")) {
      expect(
        s.status,
        `${s.source}: ${JSON.stringify(s.queries.map((q) => [q.query, q.status, q.errors]))}`,
      ).toBe("ok");
      for (const q of s.queries) {
        expect(q.errors, `${s.source}/${q.query}`).toEqual([]);
        // Tempo stores a trace once, under the first query that found it: later ones may add nothing.
        if (s.source !== "tempo") expect(q.records, `${s.source}/${q.query}`).toBeGreaterThan(0);
      }
      expect(s.queries.reduce((a, q) => a + q.records, 0)).toBeGreaterThan(0);
    }
  });

  it("metrics: every default query, every service", async () => {
    const series = await records("prometheus");
    const queries = new Set(series.map((r) => r.query));
    expect(queries).toEqual(
      new Set(config.agents["agent-sre"].sources.prometheus!.queries.map((q) => q.name)),
    );
    const services = new Set(series.filter((r) => r.query === "up").map((r) => r.labels.service));
    for (const s of SERVICE_NAMES) expect(services).toContain(s);
    // The p95 of a lambda scaled to zero is NaN, and arrives as NaN.
    const p95 = series.filter(
      (r) => r.labels.service === "lambda-notify-digest" && r.query === "http_latency_p95",
    );
    expect(p95.flatMap((r) => r.points.map((p) => p[1]))).toContain("NaN");
  });

  it("logs: every line of the window once, none twice", async () => {
    const entries = await records("loki");
    const w = sim.world;
    let expected = 0;
    const from = END_MS - 2 * 86_400_000;
    const to = END_MS - 2 * 60_000; // the collectors leave the last two minutes to settle
    for (let h = Math.floor(from / HOUR_MS); h * HOUR_MS < to; h++) {
      for (const name of SERVICE_NAMES)
        for (const e of w.logs.bucket(name, h)) if (e.ms >= from && e.ms < to) expected++;
    }
    const keys = entries.map((e) => `${e.ts_ns}|${e.labels.pod}|${e.line}`);
    expect(new Set(keys).size).toBe(keys.length);
    expect(entries.length).toBe(expected);
  });

  it("traces: every trace of the window, with its spans", async () => {
    const traces = await records("tempo");
    const ids = new Set(traces.map((t) => t.trace_id));
    expect(ids.size).toBe(traces.length);
    const w = sim.world;
    const want = new Set<string>();
    for (
      let b = Math.floor((END_MS - 2 * 86_400_000) / TRACE_BUCKET_MS);
      b * TRACE_BUCKET_MS < END_MS - 5 * 60_000;
      b++
    ) {
      for (const t of w.traces.bucket(b))
        if (t.startUs / 1000 >= END_MS - 2 * 86_400_000 + 60_000) want.add(t.traceId);
    }
    const missing = [...want].filter((id) => !ids.has(id));
    expect(missing).toEqual([]);
    const one = traces.find((t) => t.spans.length > 5)!;
    expect(one.spans.map((s) => s.span_id)).toEqual(w.traces.byId(one.trace_id)!.spans.map((s) => s.spanId));
  });

  it("the incident join over what was collected finds every incident the simulator staged", async () => {
    const ds = config.dataset;
    const window = { start: END_MS - 2 * 86_400_000, end: END_MS };
    const join = new IncidentJoin(incidentSettings(ds.incidents), window, ds.service_labels);
    for (const r of await records("prometheus")) join.addSeries(r);
    for (const r of await records("tempo")) join.addTrace(r);
    for (const r of await records("loki")) join.addLog(logFacts(r, ds.service_labels));
    const found = join.windows();
    const staged = sim.groundTruth.incidents;
    expect(staged.length).toBeGreaterThanOrEqual(4);
    for (const inc of staged) {
      const hit = found.filter(
        (w) => w.service === inc.service && w.start < inc.end_ms && w.end > inc.start_ms,
      );
      expect(hit.length, `${inc.id}: ${inc.service} ${inc.start}..${inc.end}`).toBeGreaterThan(0);
    }
  });

  it("no fake secret reaches the store", () => {
    const text = storeText(config.data_dir);
    expect(text.length).toBeGreaterThan(100_000);
    expect(sim.groundTruth.secrets.filter((v) => text.includes(v))).toEqual([]);
    // The lines that held them did arrive, redacted.
    expect(text).toMatch(/<redacted:[a-z_-]+>/);
  });
});
