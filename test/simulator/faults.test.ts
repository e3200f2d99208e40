// Fault injection on the simulator's APIs: outages over a window of simulated time, scoped to one
// API, and per-request hooks that fail, slow down or cut short an answer; the real collector
// through an outage.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config/index.js";
import { collect } from "../../src/pipeline/collect/index.js";
import { createSimulator, type Simulator } from "../../src/simulator/index.js";
import { DAY_S, END, END_MS, END_S, get } from "./helpers.js";

const DAY = 86_400_000;
let sim: Simulator;
let now = END_MS - 3 * DAY;

beforeAll(async () => {
  sim = await createSimulator({ seed: 4, days: 3, end: END, now: () => now });
});
afterAll(async () => {
  await sim.close();
});

const lokiQuery = () =>
  get(sim.url, "/loki/api/v1/query_range", {
    query: '{namespace="data"}',
    start: END_S - DAY_S,
    end: END_S,
    limit: 5,
  });
const promQuery = () => get(sim.url, "/api/v1/query", { query: "up", time: END_S });

describe("outages", () => {
  it("fails only the named API, only while the simulated clock is inside the window", async () => {
    const off = sim.faults.outage({ api: "loki", from: END_MS - 2 * DAY, to: END_MS - DAY });
    try {
      now = END_MS - 2 * DAY - 1;
      expect((await lokiQuery()).status).toBe(200);
      now = END_MS - 2 * DAY;
      const down = await lokiQuery();
      expect(down.status).toBe(503);
      expect(down.type).toMatch(/^text\/plain/);
      expect(down.text).toBe("service unavailable\n");
      expect((await promQuery()).status).toBe(200);
      expect((await get(sim.url, "/api/echo")).status).toBe(200);
      now = END_MS - DAY;
      expect((await lokiQuery()).status).toBe(200);
    } finally {
      off();
    }
  });

  it("takes every API down when none is named, with the status asked for", async () => {
    const off = sim.faults.outage({ from: "2026-11-28T00:00:00Z", to: "2026-11-28T12:00:00Z", status: 500 });
    now = Date.parse("2026-11-28T06:00:00Z");
    try {
      expect((await lokiQuery()).status).toBe(500);
      expect((await promQuery()).status).toBe(500);
      expect((await get(sim.url, "/api/search", { q: "{}" })).status).toBe(500);
    } finally {
      off();
    }
    expect((await promQuery()).status).toBe(200);
  });

  it("rejects a window that ends before it starts", () => {
    expect(() => sim.faults.outage({ from: END_MS, to: END_MS - 1 })).toThrow(/end after it starts/);
  });
});

describe("per-request hooks", () => {
  it("see the request's API, path, parameters and count, and answer instead of the API", async () => {
    const seen: { api: string | null; path: string; n: number; query: string | null }[] = [];
    const off = sim.faults.add((req) => {
      seen.push({ api: req.api, path: req.path, n: req.n, query: req.params.get("query") });
      return req.api === "prometheus" ? { status: 502, body: "bad gateway" } : undefined;
    });
    try {
      const bad = await promQuery();
      expect(bad.status).toBe(502);
      expect(bad.text).toBe("bad gateway");
      expect((await lokiQuery()).status).toBe(200);
    } finally {
      off();
    }
    expect(seen.map((s) => [s.api, s.path, s.query])).toEqual([
      ["prometheus", "/api/v1/query", "up"],
      ["loki", "/loki/api/v1/query_range", '{namespace="data"}'],
    ]);
    expect(seen[1].n).toBe(seen[0].n + 1);
    expect((await promQuery()).status).toBe(200);
  });

  it("delays the real answer", async () => {
    const off = sim.faults.add(() => ({ delayMs: 300 }));
    const t0 = performance.now();
    try {
      expect((await promQuery()).status).toBe(200);
    } finally {
      off();
    }
    expect(performance.now() - t0).toBeGreaterThanOrEqual(290);
  });

  it("cuts the real answer short", async () => {
    const full = await lokiQuery();
    const off = sim.faults.add(() => ({ truncateAt: 40 }));
    try {
      const cut = await lokiQuery();
      expect(cut.status).toBe(200);
      expect(cut.text).toBe(full.text.slice(0, 40));
      expect(() => JSON.parse(cut.text)).toThrow();
    } finally {
      off();
    }
  });
});

describe("the collector through an outage", () => {
  const lokiConfig = () =>
    parseConfig({
      data_dir: mkdtempSync(join(tmpdir(), "trm-sim-faults-")),
      agents: {
        lab: {
          lookback: "1d",
          sources: {
            loki: { url: sim.url, retries: 1, queries: [{ name: "data", logql: '{namespace="data"}' }] },
          },
        },
      },
      collect: { backoff_base: "10ms", backoff_max: "50ms" },
    });

  it("fails Loki's query while it is down, then the next run after the outage collects what it missed", async () => {
    const off = sim.faults.outage({ api: "loki", from: END_MS - 14 * 3600e3, to: END_MS - 10 * 3600e3 });
    try {
      const cfg = lokiConfig();
      now = END_MS - 12 * 3600e3;
      const during = await collect(cfg, { agent: "lab", now });
      const q = during.sources.find((s) => s.source === "loki")!.queries[0];
      expect(q.status).toBe("failed");
      expect(q.errors[0]).toMatch(/HTTP 503/);
      expect(q.records).toBe(0);
      now = END_MS;
      const after = await collect(cfg, { agent: "lab", now });
      // As much as one run over the same day with no outage at all.
      const reference = await collect(lokiConfig(), { agent: "lab", now });
      expect(after.status).toBe("ok");
      expect(after.totals.records).toBeGreaterThan(0);
      expect(after.totals.records).toBe(reference.totals.records);
    } finally {
      off();
    }
  }, 120_000);
});
