// The homelab is a pure function of (seed, window): two simulators with the same seed answer
// every request with the same bytes, another seed gives another homelab, and overlapping or
// repeated requests agree with each other.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createSimulator, type Simulator } from "../../src/simulator/index.js";
import { DAY_S, END, END_S, get, ns } from "./helpers.js";

let a: Simulator;
let b: Simulator;
let other: Simulator;

beforeAll(async () => {
  [a, b, other] = await Promise.all([
    createSimulator({ seed: 42, days: 2, end: END }),
    createSimulator({ seed: 42, days: 2, end: END }),
    createSimulator({ seed: 43, days: 2, end: END }),
  ]);
});
afterAll(async () => {
  await Promise.all([a.close(), b.close(), other.close()]);
});

const ALL = '{namespace=~"ai-agents|knative-lambda|notifi|data"}';
const REQUESTS: [string, Record<string, string | number>][] = [
  [
    "/api/v1/query_range",
    {
      query: "sum by (service, code) (rate(http_requests_total[5m]))",
      start: END_S - DAY_S,
      end: END_S,
      step: 300,
    },
  ],
  [
    "/api/v1/query_range",
    { query: "container_memory_usage_bytes", start: END_S - DAY_S, end: END_S, step: 300 },
  ],
  [
    "/loki/api/v1/query_range",
    { query: ALL, start: ns(END_S - DAY_S), end: ns(END_S), limit: 3000, direction: "forward" },
  ],
  ["/api/search", { q: "{ status = error }", start: END_S - 2 * DAY_S, end: END_S, limit: 50 }],
  [
    "/api/search",
    { q: '{ resource.service.name = "agent-sre" }', start: END_S - DAY_S, end: END_S, limit: 100 },
  ],
];

describe("determinism", () => {
  it("same seed: the same ground truth and byte-identical responses", async () => {
    expect(a.groundTruth).toEqual(b.groundTruth);
    for (const [path, params] of REQUESTS) {
      const x = await get(a.url, path, params);
      const y = await get(b.url, path, params);
      expect(x.status).toBe(200);
      // Loki's stats carry the query's own execution time; everything else is identical.
      if (path.startsWith("/loki")) {
        expect(x.json.data.result).toEqual(y.json.data.result);
      } else {
        expect(x.text).toBe(y.text);
      }
    }
    const search = await get(a.url, "/api/search", {
      q: "{ status = error }",
      start: END_S - DAY_S,
      end: END_S,
      limit: 5,
    });
    for (const t of search.json.traces) {
      expect((await get(a.url, `/api/v2/traces/${t.traceID}`)).text).toBe(
        (await get(b.url, `/api/v2/traces/${t.traceID}`)).text,
      );
    }
  });

  it("another seed: another homelab", async () => {
    expect(other.groundTruth.incidents).not.toEqual(a.groundTruth.incidents);
    expect(other.groundTruth.secrets).not.toEqual(a.groundTruth.secrets);
    const [path, params] = REQUESTS[2];
    const x = await get(a.url, path, params);
    const y = await get(other.url, path, params);
    expect(x.json.data.result).not.toEqual(y.json.data.result);
  });

  it("a window split in two gives the same entries as the whole", async () => {
    const whole = await get(a.url, "/loki/api/v1/query_range", {
      query: ALL,
      start: ns(END_S - DAY_S),
      end: ns(END_S),
      limit: 5000,
      direction: "forward",
    });
    const mid = END_S - DAY_S / 2 + 0.123;
    const first = await get(a.url, "/loki/api/v1/query_range", {
      query: ALL,
      start: ns(END_S - DAY_S),
      end: ns(mid),
      limit: 5000,
      direction: "forward",
    });
    const second = await get(a.url, "/loki/api/v1/query_range", {
      query: ALL,
      start: ns(mid),
      end: ns(END_S),
      limit: 5000,
      direction: "forward",
    });
    const lines = (r: any) =>
      r.json.data.result
        .flatMap((s: any) => s.values.map((v: string[]) => `${v[0]} ${JSON.stringify(s.stream)} ${v[1]}`))
        .sort();
    expect([...lines(first), ...lines(second)].sort()).toEqual(lines(whole));

    const p = (start: number) =>
      get(a.url, "/api/v1/query_range", { query: "up", start, end: END_S, step: 60 });
    const long = await p(END_S - DAY_S);
    const short = await p(END_S - 3600);
    const pick = (r: any) =>
      new Map(
        r.json.data.result
          .map((s: any) => [JSON.stringify(s.metric), s.values.filter((v: number[]) => v[0] >= END_S - 3600)])
          .filter((e: [string, unknown[]]) => e[1].length > 0),
      );
    expect(pick(short)).toEqual(pick(long));

    const ids = async (start: number, end: number) =>
      (await get(a.url, "/api/search", { q: "{}", start, end, limit: 10_000 })).json.traces.map(
        (t: { traceID: string }) => t.traceID,
      );
    const all = new Set(await ids(END_S - DAY_S, END_S));
    const halves = new Set([
      ...(await ids(END_S - DAY_S, END_S - DAY_S / 2)),
      ...(await ids(END_S - DAY_S / 2, END_S)),
    ]);
    expect(halves).toEqual(all);
  });

  it("the same request answered again, after others filled and evicted caches, is the same", async () => {
    const [path, params] = REQUESTS[2];
    const before = await get(a.url, path, params);
    await get(a.url, "/loki/api/v1/query_range", {
      query: ALL,
      start: ns(END_S - 2 * DAY_S),
      end: ns(END_S),
      limit: 10,
    });
    const after = await get(a.url, path, params);
    expect(after.json.data.result).toEqual(before.json.data.result);
  });
});
