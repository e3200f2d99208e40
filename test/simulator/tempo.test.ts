// The simulated Tempo keeps Tempo's rules: TraceQL search in windows of at most 168 h, limit and
// spss, hex trace IDs with leading zeros stripped in search results, base64 IDs in trace bodies,
// 404 for an unknown trace, plain-text errors.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createSimulator, type Simulator } from "../../src/simulator/index.js";
import { DAY_S, END, END_S, get } from "./helpers.js";

let sim: Simulator;

beforeAll(async () => {
  sim = await createSimulator({ seed: 9, days: 3, end: END });
});
afterAll(async () => {
  await sim.close();
});

const search = (params: Record<string, string | number>) => get(sim.url, "/api/search", params);
const hexOf = (b64: string) => Buffer.from(b64, "base64").toString("hex");

describe("search", () => {
  it("finds traces by resource attribute, newest first, at most `limit`", async () => {
    const r = await search({
      q: '{ resource.service.name = "agent-bruno" }',
      start: END_S - DAY_S,
      end: END_S,
      limit: 7,
    });
    expect(r.status).toBe(200);
    const traces = r.json.traces;
    expect(traces).toHaveLength(7);
    const starts = traces.map((t: { startTimeUnixNano: string }) => BigInt(t.startTimeUnixNano));
    for (let i = 1; i < starts.length; i++) expect(starts[i] <= starts[i - 1]).toBe(true);
    for (const t of traces) {
      expect(BigInt(t.startTimeUnixNano) >= BigInt(END_S - DAY_S) * 1_000_000_000n).toBe(true);
      expect(t.spanSets[0].matched).toBeGreaterThan(0);
      expect(t.spanSets[0].spans.length).toBeLessThanOrEqual(3);
      for (const s of t.spanSets[0].spans) {
        expect(s.attributes).toEqual([{ key: "service.name", value: { stringValue: "agent-bruno" } }]);
        expect(s.spanID).toMatch(/^[0-9a-f]{16}$/);
      }
      const body = await get(sim.url, `/api/v2/traces/${t.traceID}`);
      const services = body.json.trace.resourceSpans.map(
        (rs: { resource: { attributes: { key: string; value: { stringValue: string } }[] } }) =>
          rs.resource.attributes.find((a) => a.key === "service.name")!.value.stringValue,
      );
      expect(services).toContain("agent-bruno");
    }
  });

  it("searches namespaces, trace duration, status and span names", async () => {
    const ns = await search({
      q: '{ resource.k8s.namespace.name = "knative-lambda" }',
      start: END_S - DAY_S,
      end: END_S,
      limit: 50,
    });
    expect(ns.json.traces.length).toBeGreaterThan(0);
    const slow = await search({
      q: "{ traceDuration > 5s }",
      start: END_S - 3 * DAY_S,
      end: END_S,
      limit: 50,
    });
    expect(slow.json.traces.length).toBeGreaterThan(0);
    for (const t of slow.json.traces) expect(t.durationMs).toBeGreaterThan(5000);
    const errors = await search({ q: "{ status = error }", start: END_S - 3 * DAY_S, end: END_S, limit: 50 });
    expect(errors.json.traces.length).toBeGreaterThan(0);
    const body = await get(sim.url, `/api/v2/traces/${errors.json.traces[0].traceID}`);
    const spans = body.json.trace.resourceSpans.flatMap((rs: any) =>
      rs.scopeSpans.flatMap((ss: any) => ss.spans),
    );
    expect(spans.some((s: any) => s.status.code === "STATUS_CODE_ERROR")).toBe(true);
    const both = await search({
      q: '{ resource.service.name = "postgres" && duration > 100ms }',
      start: END_S - 3 * DAY_S,
      end: END_S,
      limit: 50,
    });
    for (const t of both.json.traces) {
      for (const s of t.spanSets[0].spans) expect(BigInt(s.durationNanos) > 100_000_000n).toBe(true);
    }
  });

  it("strips leading zeros from trace IDs, and finds the trace by the stripped ID", async () => {
    // The digest lambda's Go tracer makes 64-bit trace IDs: half the hex is leading zeros.
    const r = await search({
      q: '{ resource.service.name = "lambda-notify-digest" }',
      start: END_S - DAY_S,
      end: END_S,
      limit: 20,
    });
    const ids: string[] = r.json.traces.map((t: { traceID: string }) => t.traceID);
    expect(ids.length).toBeGreaterThan(0);
    expect(ids.every((id) => !id.startsWith("0"))).toBe(true);
    expect(ids.some((id) => id.length <= 16)).toBe(true);
    for (const id of ids) {
      const body = await get(sim.url, `/api/traces/${id}`);
      expect(body.status).toBe(200);
      const traceId = body.json.batches[0].scopeSpans[0].spans[0].traceId;
      expect(hexOf(traceId)).toBe(id.padStart(32, "0"));
      expect(traceId).toMatch(/^[A-Za-z0-9+/]{22}==$/);
    }
  });

  it("serves span IDs, parents and int64s as jsonpb does", async () => {
    const r = await search({
      q: '{ name = "notifications process" }',
      start: END_S - DAY_S,
      end: END_S,
      limit: 3,
    });
    const body = await get(sim.url, `/api/v2/traces/${r.json.traces[0].traceID}`);
    const spans = body.json.trace.resourceSpans.flatMap((rs: any) =>
      rs.scopeSpans.flatMap((ss: any) => ss.spans),
    );
    const ids = new Set(spans.map((s: any) => hexOf(s.spanId)));
    const roots = spans.filter((s: any) => s.parentSpanId === undefined);
    expect(roots).toHaveLength(1);
    for (const s of spans) {
      expect(hexOf(s.spanId)).toMatch(/^[0-9a-f]{16}$/);
      if (s.parentSpanId) expect(ids.has(hexOf(s.parentSpanId))).toBe(true);
      expect(s.startTimeUnixNano).toMatch(/^\d{19}$/);
      expect(BigInt(s.endTimeUnixNano) >= BigInt(s.startTimeUnixNano)).toBe(true);
      for (const a of s.attributes ?? [])
        if ("intValue" in a.value) expect(typeof a.value.intValue).toBe("string");
    }
    expect(
      spans.some((s: any) => s.name === "notifications process" && s.kind === "SPAN_KIND_CONSUMER"),
    ).toBe(true);
  });

  it("legacy tag search with minDuration", async () => {
    const r = await search({
      tags: "service.name=agent-sre",
      minDuration: "2s",
      start: END_S - DAY_S,
      end: END_S,
      limit: 20,
    });
    expect(r.json.traces.length).toBeGreaterThan(0);
    for (const t of r.json.traces) {
      expect(t.durationMs).toBeGreaterThanOrEqual(2000);
      expect(t.spanSets).toBeUndefined();
    }
  });
});

describe("errors and lookups", () => {
  it("refuses ranges over 168 h, spss over 100 and bad TraceQL in plain text", async () => {
    const long = await search({ q: "{}", start: END_S - 8 * DAY_S, end: END_S });
    expect(long.status).toBe(400);
    expect(long.type).toBe("text/plain; charset=utf-8");
    expect(long.text).toBe(
      `range specified by start and end exceeds 168h0m0s. received start=${END_S - 8 * DAY_S} end=${END_S}\n`,
    );
    const spss = await search({ q: "{}", start: END_S - 3600, end: END_S, spss: 101 });
    expect(spss.status).toBe(400);
    expect(spss.text).toBe("spans per span set exceeds 100. received 101\n");
    const bad = await search({ q: "{ .service.name = }", start: END_S - 3600, end: END_S });
    expect(bad.status).toBe(400);
    expect(bad.text).toMatch(/^invalid TraceQL query: parse error at line 1, col \d+/);
    const pipeline = await search({ q: "{ status = error } | count() > 2", start: END_S - 3600, end: END_S });
    expect(pipeline.status).toBe(400);
    expect(pipeline.text).toContain("does not serve pipelines");
  });

  it("answers 404 for an unknown trace and 400 for an ID that is not hex", async () => {
    expect((await get(sim.url, "/api/v2/traces/0123456789abcdef0123456789abcdef")).status).toBe(404);
    expect((await get(sim.url, "/api/traces/not-a-trace-id")).status).toBe(400);
  });

  it("answers echo and ready", async () => {
    expect((await get(sim.url, "/api/echo")).text).toBe("echo");
    expect((await get(sim.url, "/ready")).status).toBe(200);
  });
});
