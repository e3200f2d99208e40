// The simulated Loki keeps Loki's rules: start inclusive, end exclusive, nanosecond strings, at
// most 5,000 entries, plain-text errors; and its total order makes logcli-style pagination give
// exactly the entries of one big request, including where a page ends inside a run of entries
// that share a timestamp.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createSimulator, type Simulator } from "../../src/simulator/index.js";
import { DAY_S, END, END_S, get, ns } from "./helpers.js";

let sim: Simulator;
const ALL = '{namespace=~"ai-agents|knative-lambda|notifi|data"}';

beforeAll(async () => {
  sim = await createSimulator({ seed: 3, days: 3, end: END });
});
afterAll(async () => {
  await sim.close();
});

interface Entry {
  ts: bigint;
  key: string;
  line: string;
}

function flatten(json: any): Entry[] {
  const out: Entry[] = [];
  for (const s of json.data.result) {
    const key = JSON.stringify(s.stream);
    for (const [ts, line] of s.values) out.push({ ts: BigInt(ts), key, line });
  }
  return out;
}

const id = (e: Entry) => `${e.ts}|${e.key}|${e.line}`;

/** Entries come grouped by stream; a client restores the global order itself. */
function byTime(a: Entry, b: Entry): number {
  return a.ts < b.ts
    ? -1
    : a.ts > b.ts
      ? 1
      : a.key < b.key
        ? -1
        : a.key > b.key
          ? 1
          : a.line < b.line
            ? -1
            : a.line > b.line
              ? 1
              : 0;
}

async function page(query: string, start: bigint, end: bigint, limit: number, direction: string) {
  const r = await get(sim.url, "/loki/api/v1/query_range", {
    query,
    start: `${start}`,
    end: `${end}`,
    limit,
    direction,
  });
  expect(r.status, r.text).toBe(200);
  const entries = flatten(r.json).sort(byTime);
  return direction === "forward" ? entries : entries.reverse();
}

/**
 * logcli's pagination: move the window by the last timestamp of each batch and drop the entries
 * at that timestamp already seen. Returns the entries, and how many times a page boundary fell
 * inside a run of equal timestamps.
 */
async function paginate(
  query: string,
  start: bigint,
  end: bigint,
  limit: number,
  direction: "forward" | "backward",
) {
  const got: Entry[] = [];
  let seenAtBoundary = new Set<string>();
  let splits = 0;
  let boundaryTs = -1n;
  let lo = start;
  let hi = end;
  for (let guard = 0; guard < 10_000; guard++) {
    const batch = await page(query, lo, hi, limit, direction);
    const fresh = batch.filter((e) => !seenAtBoundary.has(id(e)));
    // A split: this page starts with more entries at the timestamp the last page ended on.
    if (seenAtBoundary.size && fresh.length && fresh[0].ts === boundaryTs) splits++;
    got.push(...fresh);
    if (batch.length < limit) break;
    const boundary = batch[batch.length - 1].ts;
    boundaryTs = boundary;
    seenAtBoundary = new Set(got.filter((e) => e.ts === boundary).map(id));
    if (direction === "forward") lo = boundary;
    else hi = boundary + 1n;
  }
  return { got, splits };
}

describe("query_range pagination", () => {
  it("gives every entry exactly once, in order, for any page size and either direction", async () => {
    const start = BigInt(ns(END_S - 8 * 3600));
    const end = BigInt(ns(END_S));
    const all = flatten(
      (
        await get(sim.url, "/loki/api/v1/query_range", {
          query: ALL,
          start: `${start}`,
          end: `${end}`,
          limit: 5000,
          direction: "forward",
        })
      ).json,
    );
    // Entries are not merged across streams: the global order is ours to restore.
    all.sort(byTime);
    expect(all.length).toBeGreaterThan(200);
    expect(all.length).toBeLessThan(5000);
    // The fixture has what the test is about: runs of entries that share a timestamp.
    const runs = all.filter((e, i) => i > 0 && e.ts === all[i - 1].ts).length;
    expect(runs).toBeGreaterThan(5);

    let splits = 0;
    for (const limit of [5, 13, 101]) {
      for (const direction of ["forward", "backward"] as const) {
        const p = await paginate(ALL, start, end, limit, direction);
        splits += p.splits;
        const want = direction === "forward" ? all : [...all].reverse();
        expect(p.got.map(id)).toEqual(want.map(id));
        expect(new Set(p.got.map(id)).size).toBe(p.got.length);
        // Page after page, time never goes back (or forward, for backward).
        const ts = p.got.map((e) => e.ts);
        for (let i = 1; i < ts.length; i++) {
          if (direction === "forward") expect(ts[i] >= ts[i - 1]).toBe(true);
          else expect(ts[i] <= ts[i - 1]).toBe(true);
        }
      }
    }
    // At least one page ended in the middle of a run of equal timestamps, and nothing was lost.
    expect(splits).toBeGreaterThan(0);
  });

  it("keeps start inclusive and end exclusive, to the nanosecond", async () => {
    const batch = await page(ALL, BigInt(ns(END_S - 3600)), BigInt(ns(END_S)), 20, "forward");
    const t = batch[5].ts;
    const from = await page(ALL, t, t + 1n, 5000, "forward");
    expect(from.length).toBeGreaterThan(0);
    expect(from.every((e) => e.ts === t)).toBe(true);
    const before = await page(ALL, t - 1_000_000n, t, 5000, "forward");
    expect(before.every((e) => e.ts < t)).toBe(true);
  });

  it("answers newest first by default, 100 entries by default, values as [ns string, line]", async () => {
    const r = await get(sim.url, "/loki/api/v1/query_range", {
      query: ALL,
      start: ns(END_S - DAY_S),
      end: ns(END_S),
    });
    const entries = flatten(r.json);
    expect(entries).toHaveLength(100);
    const times = entries.map((e) => e.ts).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const oldest = times[0];
    expect(times[times.length - 1] > BigInt(ns(END_S - 3600))).toBe(true);
    for (const s of r.json.data.result) {
      for (const [ts] of s.values) expect(ts).toMatch(/^\d{19}$/);
      // Within a stream: newest first.
      const t = s.values.map((v: [string, string]) => BigInt(v[0]));
      for (let i = 1; i < t.length; i++) expect(t[i] <= t[i - 1]).toBe(true);
    }
    expect(oldest > 0n).toBe(true);
  });
});

describe("LogQL", () => {
  const window = { start: ns(END_S - DAY_S), end: ns(END_S), limit: 5000 };

  it("selects streams by label and filters lines", async () => {
    const r = await get(sim.url, "/loki/api/v1/query_range", {
      ...window,
      query: '{namespace="knative-lambda"} |= "error"',
    });
    const entries = flatten(r.json);
    expect(entries.length).toBeGreaterThan(0);
    for (const s of r.json.data.result) expect(s.stream.namespace).toBe("knative-lambda");
    for (const e of entries) expect(e.line).toContain("error");
    const notInfo = flatten(
      (
        await get(sim.url, "/loki/api/v1/query_range", {
          ...window,
          query: '{service_name=~"lambda-.*"} != "info" |~ "level.:.(warn|error)"',
        })
      ).json,
    );
    for (const e of notInfo) {
      expect(e.line).not.toContain("info");
      expect(e.line).toMatch(/level.:.(warn|error)/);
    }
  });

  it("| json adds the line's fields as labels, and marks lines that are not JSON", async () => {
    const r = await get(sim.url, "/loki/api/v1/query_range", {
      ...window,
      query: '{namespace="ai-agents"} | json',
    });
    const streams = r.json.data.result;
    expect(streams.length).toBeGreaterThan(10);
    for (const s of streams) {
      expect(s.stream.logger).toBeDefined();
      expect(["debug", "info", "warning", "error", "critical"]).toContain(s.stream.level);
      for (const [, line] of s.values) expect(JSON.parse(line).event).toBe(s.stream.event);
    }
    const mixed = await get(sim.url, "/loki/api/v1/query_range", {
      ...window,
      query: '{namespace="data"} | json',
    });
    const errors = mixed.json.data.result.filter((s: any) => s.stream.__error__ === "JSONParserErr");
    expect(errors.length).toBeGreaterThan(0);
    const dropped = await get(sim.url, "/loki/api/v1/query_range", {
      ...window,
      query: '{namespace="data"} | json | __error__=""',
    });
    expect(dropped.json.data.result).toEqual([]);
  });

  it("| logfmt and numeric label filters", async () => {
    const r = await get(sim.url, "/loki/api/v1/query_range", {
      ...window,
      query: '{service_name="api-gateway"} | logfmt | status >= 400 | drop caller',
    });
    const streams = r.json.data.result;
    expect(streams.length).toBeGreaterThan(0);
    for (const s of streams) {
      expect(Number(s.stream.status)).toBeGreaterThanOrEqual(400);
      expect(s.stream.caller).toBeUndefined();
    }
  });

  it("answers errors in plain text, as Loki does", async () => {
    const cases: [Record<string, string | number>, RegExp][] = [
      [
        { ...window, query: ALL, limit: 5001 },
        /^max entries limit per query exceeded, limit > max_entries_limit \(5001 > 5000\)\n$/,
      ],
      [
        { query: ALL, start: ns(END_S - 31 * DAY_S), end: ns(END_S) },
        /^the query time range exceeds the limit \(query length: 744h0m0s, limit: 30d1h\)\n$/,
      ],
      [
        { query: ALL, start: ns(END_S), end: ns(END_S) },
        /^end timestamp must not be before or equal to start time\n$/,
      ],
      [{ ...window, query: '{namespace="data"' }, /^parse error at line 1, col/],
      [{ ...window, query: '{namespace=~".*"}' }, /^queries require at least one regexp or equality matcher/],
      [{ ...window, query: 'sum(count_over_time({namespace="data"}[5m]))' }, /metric queries/],
      [
        { ...window, query: '{namespace="data"} | line_format "{{.msg}}"' },
        /does not serve the "line_format" stage/,
      ],
    ];
    for (const [params, message] of cases) {
      const r = await get(sim.url, "/loki/api/v1/query_range", params);
      expect(r.status, String(params.query)).toBe(400);
      expect(r.type).toBe("text/plain; charset=utf-8");
      expect(r.text).toMatch(message);
    }
    const instant = await get(sim.url, "/loki/api/v1/query", { query: ALL });
    expect(instant.status).toBe(400);
    expect(instant.text).toContain("log queries are not supported as an instant query type");
  });

  it("lists labels and values, reports readiness and its limits", async () => {
    const labels = await get(sim.url, "/loki/api/v1/labels");
    expect(labels.json).toEqual({
      status: "success",
      data: ["app", "container", "namespace", "pod", "service_name"],
    });
    const ns = await get(sim.url, "/loki/api/v1/label/namespace/values");
    expect(ns.json.data).toEqual(["ai-agents", "data", "knative-lambda", "notifi"]);
    expect((await get(sim.url, "/ready")).text).toBe("ready\n");
    const config = await get(sim.url, "/config");
    expect(config.text).toContain("max_query_length: 721h");
  });
});
