// The simulator's responses have the structure of the recorded samples in
// shared/reference/observability-apis.md (copied to test/fixtures/simulator): the same keys and
// JSON types, so the collectors read them through the same code as a real server's.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createSimulator, type Simulator } from "../../src/simulator/index.js";
import { DAY_S, END, END_S, fixture, get, ns, shapeProblems } from "./helpers.js";

let sim: Simulator;

beforeAll(async () => {
  sim = await createSimulator({ seed: 11, days: 3, end: END });
});
afterAll(async () => {
  await sim.close();
});

describe("shape comparison", () => {
  it("finds a missing key, an extra key and a wrong type", () => {
    const sample = { a: "x", b: [[1, "v"]], c: { d: 1 } };
    expect(shapeProblems({ a: "y", b: [[2, "w"]], c: { d: 3 } }, sample)).toEqual([]);
    expect(shapeProblems({ a: "y", b: [[2, 5]], c: { d: 3 } }, sample)).toEqual([
      "$.b[][1]: expected string, got number",
    ]);
    expect(shapeProblems({ b: [], c: { d: 3, e: 1 } }, sample)).toEqual([
      "$.a: missing",
      "$.c.e: not in the sample",
    ]);
  });
});

describe("Prometheus", () => {
  it("query_range matrix: metric maps, [float seconds, string value] pairs", async () => {
    const r = await get(sim.url, "/api/v1/query_range", {
      query: "up",
      start: END_S - DAY_S,
      end: END_S,
      step: 300,
    });
    expect(r.status).toBe(200);
    expect(r.type).toBe("application/json");
    const maps = ["$.data.result[].metric"];
    expect(shapeProblems(r.json, fixture("prometheus-query-range-up.json"), { maps })).toEqual([]);
    const rate = await get(sim.url, "/api/v1/query_range", {
      query: "sum by (container, namespace, pod) (rate(container_cpu_usage_seconds_total[5m]))",
      start: END_S - DAY_S,
      end: END_S,
      step: 300,
    });
    expect(shapeProblems(rate.json, fixture("prometheus-rate-nan.json"), { maps })).toEqual([]);
    expect(r.json.data.result.length).toBeGreaterThan(5);
  });

  it("errors: the bad_data envelope", async () => {
    const r = await get(sim.url, "/api/v1/query_range", {
      query: "up",
      start: END_S - 30 * DAY_S,
      end: END_S,
      step: 60,
    });
    expect(r.status).toBe(400);
    expect(shapeProblems(r.json, fixture("prometheus-error-resolution.json"))).toEqual([]);
    expect(r.json).toEqual(fixture("prometheus-error-resolution.json"));
    const parse = await get(sim.url, "/api/v1/query_range", {
      query: "rate(",
      start: END_S - 3600,
      end: END_S,
      step: 60,
    });
    expect(parse.status).toBe(400);
    expect(shapeProblems(parse.json, fixture("prometheus-error-parse.json"))).toEqual([]);
  });
});

describe("Loki", () => {
  it("query_range streams: label maps, [ns string, line] pairs, a stats object", async () => {
    for (const name of ["loki-query-range-streams.json", "loki-pagination-page1.json"]) {
      const r = await get(sim.url, "/loki/api/v1/query_range", {
        query: '{namespace="knative-lambda"}',
        start: ns(END_S - DAY_S),
        end: ns(END_S),
        limit: 50,
      });
      expect(r.status).toBe(200);
      expect(r.json.data.result.length).toBeGreaterThan(0);
      const problems = shapeProblems(r.json, fixture(name), {
        maps: ["$.data.result[].stream"],
        open: ["$.data.stats"],
      });
      expect(problems).toEqual([]);
    }
  });
});

describe("Tempo", () => {
  it("TraceQL search: metadata with string nanoseconds, spanSet and spanSets", async () => {
    const r = await get(sim.url, "/api/search", {
      q: '{ resource.service.name = "agent-sre" }',
      start: END_S - DAY_S,
      end: END_S,
      limit: 10,
    });
    expect(r.status).toBe(200);
    expect(r.json.traces.length).toBe(10);
    expect(shapeProblems(r.json, fixture("tempo-search-traceql.json"), { open: ["$.metrics"] })).toEqual([]);
  });

  it("status = error search has the repaired docs sample's shape", async () => {
    const r = await get(sim.url, "/api/search", {
      q: "{ status = error }",
      start: END_S - 3 * DAY_S,
      end: END_S,
      limit: 5,
    });
    expect(r.json.traces.length).toBeGreaterThan(0);
    expect(
      shapeProblems(r.json, fixture("tempo-search-status-error.json"), {
        open: ["$.metrics", "$.traces[]"],
      }),
    ).toEqual([]);
    for (const t of r.json.traces)
      for (const s of t.spanSets[0].spans)
        expect(s.attributes).toEqual([{ key: "status", value: { stringValue: "error" } }]);
  });

  it("legacy tag search has the tag-search sample's shape", async () => {
    const r = await get(sim.url, "/api/search", {
      tags: "service.name=agent-bruno",
      minDuration: "600ms",
      start: END_S - DAY_S,
      end: END_S,
    });
    expect(r.json.traces.length).toBeGreaterThan(0);
    expect(shapeProblems(r.json, fixture("tempo-search-tags.json"), { open: ["$.metrics"] })).toEqual([]);
  });

  it("trace by ID: v1 batches and v2 trace.resourceSpans, as jsonpb writes OTLP", async () => {
    const search = await get(sim.url, "/api/search", {
      q: '{ resource.service.name = "agent-bruno" }',
      start: END_S - DAY_S,
      end: END_S,
      limit: 3,
    });
    // The v2 sample has a span with and one without attributes, an int and a string value; the v1
    // docs sample has one span only. v1 is "identical except the outer wrapper", so both are
    // checked against the v2 sample's spans, and v1 against the docs sample's resource and scope.
    const v2Sample = fixture("tempo-trace-v2.json") as { trace: { resourceSpans: unknown } };
    const v1Sample = { batches: v2Sample.trace.resourceSpans };
    const opts = (root: string) => ({
      // Span events and arrayValue attributes are OTLP the samples do not happen to show.
      open: [`${root}.scopeSpans[].spans[]`, `${root}.scopeSpans[].spans[].attributes[].value`, "$.metrics"],
      optional: [`${root}.scopeSpans[].spans[].attributes[].value`, `${root}.scopeSpans[].spans[].status`],
    });
    for (const t of search.json.traces) {
      const v1 = await get(sim.url, `/api/traces/${t.traceID}`);
      expect(v1.status).toBe(200);
      expect(shapeProblems(v1.json, v1Sample, opts("$.batches[]"))).toEqual([]);
      const docs = fixture("tempo-trace-v1.json") as {
        batches: { resource: unknown; scopeSpans: { scope: unknown }[] }[];
      };
      for (const b of v1.json.batches) {
        expect(shapeProblems(b.resource, docs.batches[0].resource)).toEqual([]);
        expect(shapeProblems(b.scopeSpans[0].scope, docs.batches[0].scopeSpans[0].scope)).toEqual([]);
      }
      const v2 = await get(sim.url, `/api/v2/traces/${t.traceID}`);
      expect(v2.status).toBe(200);
      expect(shapeProblems(v2.json, v2Sample, opts("$.trace.resourceSpans[]"))).toEqual([]);
      // The same spans either way; only the wrapper differs.
      expect(v2.json.trace.resourceSpans).toEqual(v1.json.batches);
    }
  });
});
