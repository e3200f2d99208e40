// Every incident of the ground truth shows in all three signals during its window, and not in a
// quiet window of the same length and time of day: metrics (5xx share, p95, up, memory), logs
// (its marker lines) and traces (error or slow spans of the culprit, its own span names).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createSimulator,
  type GroundTruthIncident,
  SERVICES,
  type Simulator,
} from "../../src/simulator/index.js";
import { END, get, ns } from "./helpers.js";

let sim: Simulator;
const DAY_MS = 86_400_000;

beforeAll(async () => {
  sim = await createSimulator({ seed: 2, days: 4, end: END });
});
afterAll(async () => {
  await sim.close();
});

interface Window {
  from: number;
  to: number;
}

/** The same stretch of the day on another day, clear of every incident. */
function quietTwin(inc: GroundTruthIncident): Window {
  const gt = sim.groundTruth;
  const len = inc.end_ms - inc.start_ms;
  for (const shift of [-DAY_MS, DAY_MS, -2 * DAY_MS, 2 * DAY_MS, -3 * DAY_MS, 3 * DAY_MS]) {
    const w = { from: inc.start_ms + shift, to: inc.end_ms + shift };
    if (w.from < gt.start_ms + 3_600_000 || w.to > gt.end_ms) continue;
    const margin = 30 * 60_000;
    if (gt.incidents.every((o) => w.to + margin < o.start_ms || w.from - margin > o.end_ms)) return w;
  }
  throw new Error(`no quiet window of ${len} ms for ${inc.id}`);
}

async function matrix(
  query: string,
  w: Window,
  step = 60,
): Promise<{ metric: Record<string, string>; values: [number, string][] }[]> {
  const r = await get(sim.url, "/api/v1/query_range", {
    query,
    start: w.from / 1000,
    end: w.to / 1000,
    step,
  });
  expect(r.status, `${query}: ${r.text.slice(0, 200)}`).toBe(200);
  return r.json.data.result;
}

const numbers = (series: { values: [number, string][] }[]) =>
  series.flatMap((s) => s.values.map((v) => Number(v[1]))).filter((v) => !Number.isNaN(v));
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);

/** 5xx share of a service's requests over a window, and how many requests per second it served. */
async function errorShare(service: string, w: Window): Promise<{ share: number; total: number }> {
  const series = await matrix(`sum by (code) (rate(http_requests_total{service="${service}"}[5m]))`, w);
  let bad = 0;
  let all = 0;
  for (const s of series) {
    const sum = numbers([s]).reduce((a, b) => a + b, 0);
    all += sum;
    if (/^5/.test(s.metric.code)) bad += sum;
  }
  return { share: all > 0 ? bad / all : 0, total: all };
}

async function p95(service: string, w: Window): Promise<number> {
  return mean(
    numbers(
      await matrix(
        `histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{service="${service}"}[5m])))`,
        w,
      ),
    ),
  );
}

async function upZeroShare(service: string, w: Window): Promise<number> {
  const xs = numbers(await matrix(`min by (service) (up{service="${service}"})`, w, 15));
  return xs.filter((v) => v === 0).length / Math.max(1, xs.length);
}

async function maxMemory(service: string, w: Window): Promise<number> {
  return Math.max(
    ...numbers(
      await matrix(`max by (container) (container_memory_working_set_bytes{container="${service}"})`, w),
    ),
  );
}

async function logCount(query: string, w: Window): Promise<number> {
  const r = await get(sim.url, "/loki/api/v1/query_range", {
    query,
    start: ns(w.from / 1000),
    end: ns(w.to / 1000),
    limit: 5000,
  });
  expect(r.status, r.text.slice(0, 200)).toBe(200);
  return r.json.data.result.reduce((a: number, s: { values: unknown[] }) => a + s.values.length, 0);
}

async function traces(q: string, w: Window): Promise<any[]> {
  const r = await get(sim.url, "/api/search", {
    q,
    start: Math.floor(w.from / 1000),
    end: Math.ceil(w.to / 1000),
    limit: 1000,
    spss: 100,
  });
  expect(r.status, r.text.slice(0, 200)).toBe(200);
  return r.json.traces;
}

describe("ground truth", () => {
  it("holds each kind of incident, inside the window, with services from the graph", () => {
    const gt = sim.groundTruth;
    expect(new Set(gt.incidents.map((i) => i.kind))).toEqual(
      new Set(["bad_deploy", "db_slowdown", "crash_loop", "memory_leak"]),
    );
    const names = new Set(gt.services.map((s) => s.name));
    expect(names.size).toBe(8);
    for (const e of gt.edges) expect(names.has(e.from) && names.has(e.to)).toBe(true);
    for (const i of gt.incidents) {
      expect(i.start_ms).toBeGreaterThanOrEqual(gt.start_ms);
      expect(i.end_ms).toBeLessThanOrEqual(gt.end_ms);
      expect(i.affected[0]).toBe(i.service);
      for (const a of i.affected) expect(names.has(a)).toBe(true);
    }
    // Bad releases and leaks ship with a deploy and end with another.
    for (const i of gt.incidents.filter((x) => x.kind === "bad_deploy" || x.kind === "memory_leak")) {
      const deploys = gt.deploys.filter((d) => d.incident === i.id);
      expect(deploys.map((d) => d.at_ms)).toEqual([i.start_ms, i.end_ms]);
      expect(deploys[0].version).toBe(i.version);
      if (i.kind === "bad_deploy") expect(deploys[1].reason).toBe("rollback");
    }
  });
});

describe("each incident in all three signals", () => {
  for (let n = 0; n < 4; n++) {
    it(`incident ${n + 1}`, async () => {
      const inc = sim.groundTruth.incidents[n];
      const during: Window = { from: inc.start_ms, to: inc.end_ms };
      const quiet = quietTwin(inc);
      const sig = inc.signals;
      const label = `${inc.id} (${inc.service})`;

      // Metrics.
      for (const s of sig.error_ratio) {
        const hot = await errorShare(s, during);
        const cold = await errorShare(s, quiet);
        expect(hot.total, `${label}: requests to ${s}`).toBeGreaterThan(0);
        expect(hot.share, `${label}: 5xx share of ${s}`).toBeGreaterThan(Math.max(0.02, 3 * cold.share));
      }
      for (const s of sig.latency) {
        const hot = await p95(s, during);
        const cold = await p95(s, quiet);
        expect(hot, `${label}: p95 of ${s}`).toBeGreaterThan(1.2 * cold);
      }
      for (const s of sig.up_zero) {
        expect(await upZeroShare(s, during), `${label}: up of ${s}`).toBeGreaterThan(0);
        expect(await upZeroShare(s, quiet), `${label}: up of ${s} when quiet`).toBeLessThan(0.01);
      }
      for (const s of sig.memory_growth) {
        const limit = SERVICES.find((x) => x.name === s)!.memoryLimit;
        expect(await maxMemory(s, during), `${label}: memory of ${s}`).toBeGreaterThan(0.8 * limit);
        expect(await maxMemory(s, quiet), `${label}: memory of ${s} when quiet`).toBeLessThan(0.6 * limit);
      }

      // Logs.
      for (const m of sig.log_markers) {
        const q = `{service_name="${m.service}"} |= ${JSON.stringify(m.text)}`;
        expect(await logCount(q, during), `${label}: ${q}`).toBeGreaterThan(0);
        expect(await logCount(q, quiet), `${label}: ${q} when quiet`).toBe(0);
      }

      // Traces.
      for (const s of sig.trace_error_services) {
        const q = `{ resource.service.name = "${s}" && status = error }`;
        const hot = (await traces(q, during)).length;
        expect(hot, `${label}: ${q}`).toBeGreaterThan(0);
        expect(hot, `${label}: ${q} vs quiet`).toBeGreaterThan((await traces(q, quiet)).length);
      }
      for (const s of sig.trace_slow_services) {
        const q = `{ resource.service.name = "${s}" }`;
        const avg = async (w: Window) =>
          mean(
            (await traces(q, w)).flatMap((t) =>
              t.spanSets[0].spans.map((sp: { durationNanos: string }) => Number(sp.durationNanos)),
            ),
          );
        expect(await avg(during), `${label}: span durations of ${s}`).toBeGreaterThan(
          1.3 * (await avg(quiet)),
        );
      }
      if (sig.trace_span) {
        const q = `{ name = ${JSON.stringify(sig.trace_span)} }`;
        expect((await traces(q, during)).length, `${label}: ${q}`).toBeGreaterThan(0);
        expect((await traces(q, quiet)).length, `${label}: ${q} when quiet`).toBe(0);
      }
    });
  }
});
