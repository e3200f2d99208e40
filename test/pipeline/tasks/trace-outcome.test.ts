import { describe, expect, it } from "vitest";
import type { SpanRecord, TraceRecord } from "../../../src/pipeline/collect/records.js";
import {
  analyseTrace,
  BYTE_BASE,
  buildExamples,
  buildMemory,
  IGNORE,
  latencyBucket,
  latencyDrivers,
  MemoryError,
  normalisePath,
  parseMemory,
  pathText,
  recall,
  SEP,
  scoreTask,
  serializeMemory,
  TaskInputError,
  traceOutcome,
  tracePath,
} from "../../../src/pipeline/tasks/index.js";

const T0 = Date.parse("2026-01-10T00:00:00Z");
const window = { start: T0, end: T0 + 86_400_000 };
const MS = 1_000_000;

let idSeq = 0;
function span(
  id: string,
  parent: string | null,
  service: string,
  name: string,
  startMs: number,
  durMs: number,
  status: SpanRecord["status"] = "ok",
): SpanRecord {
  return {
    trace_id: "a".repeat(32),
    span_id: id.padStart(16, "0"),
    parent_span_id: parent === null ? null : parent.padStart(16, "0"),
    service,
    name,
    kind: "server",
    start_ns: String(BigInt(T0 + 3_600_000) * BigInt(MS) + BigInt(Math.round(startMs * MS))),
    duration_ns: durMs * MS,
    status,
    attributes: {},
  };
}

function trace(spans: SpanRecord[], durationMs = 0, minute = 60): TraceRecord {
  idSeq++;
  return {
    kind: "trace",
    query: "q",
    trace_id: idSeq.toString(16).padStart(32, "0"),
    root_service: spans[0]?.service ?? "",
    root_name: spans[0]?.name ?? "",
    start_ns: `${T0 + minute * 60_000}000000`,
    duration_ms: durationMs,
    spans,
  };
}

describe("trace analysis", () => {
  it("orders the path root first, then by start time, collapsing repeats", () => {
    const spans = [
      span("3", "1", "db", "SELECT", 30, 5),
      span("2", "1", "db", "SELECT", 10, 5),
      span("4", "1", "db", "SELECT", 20, 5),
      span("5", "1", "cache", "GET", 40, 5),
      span("1", null, "api", "GET /x", 0, 50),
    ];
    const f = analyseTrace(spans);
    if (typeof f === "string") throw new Error(f);
    expect(f.path).toEqual(["api:GET /x", "db:SELECT*3", "cache:GET"]);
    expect(f.rootOperation).toBe("api:GET /x");
    expect(tracePath(spans)).toEqual(f.path);
    // As text, a hop in the same service as the one before names the service once.
    expect(pathText(["api:GET /x", "api:auth", "db:SELECT*3", "db:COMMIT", "api:render"])).toBe(
      "api:GET /x,auth;db:SELECT*3,COMMIT;api:render",
    );
  });

  it("blames the deepest error span", () => {
    const f = analyseTrace([
      span("1", null, "api", "GET", 0, 100),
      span("2", "1", "db", "query", 10, 30, "error"),
      span("3", "1", "cache", "get", 50, 40),
      span("4", "3", "disk", "read", 55, 10, "error"),
    ]);
    if (typeof f === "string") throw new Error(f);
    expect(f.status).toBe("error");
    expect(f.culprit).toBe("disk");
    expect(f.durationMs).toBe(100);
  });

  it("blames the longest self time when nothing failed", () => {
    // api: 100 - (60 + 20) = 20 ms of its own; db: 60 ms; cache: 20 ms.
    const f = analyseTrace([
      span("1", null, "api", "GET", 0, 100),
      span("2", "1", "db", "query", 10, 60),
      span("3", "1", "cache", "get", 75, 20),
    ]);
    if (typeof f === "string") throw new Error(f);
    expect(f.status).toBe("ok");
    expect(f.culprit).toBe("db");
    // Overlapping children are counted once: api keeps 200 - 100 = 100 ms, more than any child.
    const g = analyseTrace([
      span("1", null, "api", "GET", 0, 200),
      span("2", "1", "db", "query", 0, 90),
      span("3", "1", "cache", "get", 10, 90),
    ]);
    if (typeof g === "string") throw new Error(g);
    expect(g.culprit).toBe("api");
  });

  it("survives missing parents and refuses cycles", () => {
    const orphan = analyseTrace([span("1", null, "api", "GET", 0, 10), span("2", "99", "db", "q", 1, 5)]);
    if (typeof orphan === "string") throw new Error(orphan);
    expect(orphan.orphans).toBe(1);
    expect(orphan.path).toEqual(["api:GET", "db:q"]);
    // No span without a parent: the earliest orphan is the root.
    const cut = analyseTrace([span("2", "98", "db", "q", 5, 5), span("3", "97", "api", "GET", 1, 10)]);
    if (typeof cut === "string") throw new Error(cut);
    expect(cut.path[0]).toBe("api:GET");
    expect(
      analyseTrace([
        span("1", null, "api", "GET", 0, 10),
        span("2", "3", "a", "x", 1, 1),
        span("3", "2", "b", "y", 2, 1),
      ]),
    ).toBe("span parents form a cycle");
    expect(analyseTrace([span("1", "1", "api", "GET", 0, 10)])).toBe("span is its own parent");
    expect(analyseTrace([])).toBe("trace has no spans");
  });

  it("buckets latency at 100 ms, 1 s and 5 s", () => {
    expect([99, 100, 999, 1000, 4999, 5000].map(latencyBucket)).toEqual([
      "<100ms",
      "<1s",
      "<1s",
      "<5s",
      "<5s",
      ">=5s",
    ]);
  });
});

describe("trace_outcome", () => {
  it("labels status, latency and culprit at fixed slots and gives reasons for broken traces", () => {
    const built = buildExamples(
      traceOutcome,
      [
        trace([span("1", null, "api", "GET", 0, 150), span("2", "1", "db", "q", 10, 30, "error")], 150),
        trace([]),
        trace([
          span("1", null, "api", "GET", 0, 10),
          span("2", "3", "a", "x", 1, 1),
          span("3", "2", "b", "y", 2, 1),
        ]),
        trace([span("1", null, "api", "GET", 0, 10), span("2", "77", "db", "q", 1, 1)]),
        trace([span("1", null, "api", "GET", 0, 10)], 10, -30),
      ],
      { window, seqLen: 48 },
    );
    const v = built.vocab;
    expect(built.examples).toHaveLength(2);
    const ex = built.examples[0];
    expect(Array.from(ex.inputs.slice(0, 4))).toEqual(
      [..."slc"].map((c) => BYTE_BASE + c.charCodeAt(0)).concat(SEP),
    );
    expect(traceOutcome.describe(ex, v)).toEqual({
      input: "api:GET;db:q [llm - r0 q0 n2]",
      labels: { status: "error", latency: "<1s", culprit: "db" },
    });
    expect(Array.from(ex.labels.slice(3)).every((l) => l === IGNORE)).toBe(true);
    expect(built.invalid.map((i) => i.reason)).toEqual(["trace has no spans", "span parents form a cycle"]);
    expect(built.notes).toEqual({ "spans whose parent is missing (counted as roots)": 1 });
    expect(built.skipped).toEqual({ "outside the window": 1 });

    const enc = traceOutcome.encode({ path: ["api:GET", "db:q"] }, v);
    expect(Array.from(enc.inputs)).toEqual(Array.from(ex.inputs));
    expect(traceOutcome.decode({ tokens: ex.labels }, enc, v)).toEqual({
      status: { value: "error", confidence: 1 },
      latency: { value: "<1s", confidence: 1 },
      culprit: { value: "db", confidence: 1 },
    });
    // A long path is cut to the sequence length.
    const long = traceOutcome.encode({ path: Array.from({ length: 40 }, (_, i) => `svc${i}:op`) }, v);
    expect(long.inputs).toHaveLength(48);
    expect(() => traceOutcome.encode({ path: [] }, v)).toThrow(TaskInputError);
  });

  it("writes what drives latency before the path: LLMs called, repeated calls, queue hops, spans", () => {
    const path = [
      "api:POST /chat",
      "api:GET",
      "bruno:GET /m",
      "api:GET",
      "bruno:GET /m",
      "bruno:chat llama3.1:8b",
      "api:notify publish",
      "rabbitmq:basic.publish notify",
      "rabbitmq:basic.deliver notify*2",
      "sre:chat qwen2.5:32b",
    ];
    // GET and GET /m each came twice (a retry), deliver twice in a row (a redelivery); four queue spans.
    expect(latencyDrivers(path)).toBe("llm llama3.1:8b,qwen2.5:32b r3 q4 n11");
    expect(latencyDrivers(["a:x"])).toBe("llm - r0 q0 n1");
    const v = buildExamples(traceOutcome, [], { window, seqLen: 64 }).vocab;
    const enc = traceOutcome.encode({ path }, v);
    const drivers = "llm llama3.1:8b,qwen2.5:32b r3 q4 n11";
    // Slots, SEP, the drivers, SEP, then as much of the path as fits: the drivers survive the cut.
    expect(Array.from(enc.inputs.slice(4, 4 + drivers.length))).toEqual(
      [...drivers].map((c) => BYTE_BASE + c.charCodeAt(0)),
    );
    expect(enc.inputs[4 + drivers.length]).toBe(SEP);
    expect(enc.inputs[5 + drivers.length]).toBe(BYTE_BASE + "a".charCodeAt(0));
    expect(enc.inputs[63]).not.toBe(0);
  });

  it("has a majority-per-root-operation baseline", () => {
    const mk = (root: string, status: "ok" | "error", minute: number) =>
      trace([span("1", null, "api", root, 0, 50), span("2", "1", "db", "q", 1, 5, status)], 50, minute);
    const all = buildExamples(
      traceOutcome,
      [
        mk("a", "ok", 1),
        mk("a", "ok", 2),
        mk("a", "error", 3),
        mk("b", "error", 4),
        mk("b", "error", 5),
        mk("b", "ok", 6),
        // validation
        mk("a", "error", 7),
        mk("b", "error", 8),
        mk("c", "error", 9),
      ],
      { window, seqLen: 48 },
    );
    const v = all.vocab;
    const train = all.examples.slice(0, 6);
    const val = all.examples.slice(6);
    const [b] = traceOutcome.baselines(train, v);
    expect(b.name).toBe("majority_per_root_operation");
    const statuses = val.map((ex) => v.className(b.predict(ex)[0]));
    // a -> ok, b -> error, unseen c -> the overall majority (a 3:3 tie goes to the lower id, ok).
    expect(statuses).toEqual(["status:ok", "status:error", "status:ok"]);
    const s = scoreTask(
      "trace_outcome",
      val,
      val.map((ex) => b.predict(ex)),
      v,
    );
    expect(s.metrics.status_accuracy).toBeCloseTo(1 / 3);
    expect(s.metrics.latency_accuracy).toBe(1);
    // Culprit: the failing db span in error traces, the root's own time (api) in ok ones; the
    // baseline says api for a and c, db for b.
    expect(s.metrics.culprit_accuracy).toBeCloseTo(1 / 3);
    expect(s.metrics.mean_accuracy).toBeCloseTo(5 / 9);
    expect(s.metrics.exact_all).toBeCloseTo(1 / 3);
    expect(s.primary).toBe("mean_accuracy");
  });
});

describe("trace_outcome: the path memory", () => {
  const mk = (leaf: string, status: "ok" | "error", minute: number) =>
    trace([span("1", null, "api", "GET", 0, 50), span("2", "1", leaf, "q", 1, 5, status)], 50, minute);
  const built = buildExamples(
    traceOutcome,
    [
      // train: through db once (failed), through cache twice (once each), through mq three times
      mk("db", "error", 1),
      mk("cache", "ok", 2),
      mk("cache", "error", 3),
      mk("mq", "ok", 4),
      mk("mq", "ok", 5),
      mk("mq", "ok", 6),
      // asked: db, cache, and a path never seen in train
      mk("db", "ok", 7),
      mk("cache", "ok", 8),
      mk("s3", "ok", 9),
    ],
    { window, seqLen: 48 },
  );
  const v = built.vocab;
  const train = built.examples.slice(0, 6);
  const [db, cache, unseen] = built.examples.slice(6);
  const memory = parseMemory(serializeMemory(buildMemory([traceOutcome], () => train, v)));
  const V = v.size;
  const L = 48;
  /** A model that says "ok" at 0.9 and spreads the rest over every other id. */
  const modelSaysOk = () => {
    const probs = new Float32Array(L * V).fill(0.1 / (V - 1));
    probs[v.classId("status:ok")!] = 0.9;
    return probs;
  };
  const statusOf = (probs: Float32Array, ex: typeof db) =>
    traceOutcome.decode({ probs }, traceOutcome.encode({ path: pathOf(ex) }, v), v).status;
  const pathOf = (ex: typeof db) => {
    const text = String.fromCharCode(
      ...Array.from(ex.inputs)
        .filter((t) => t >= BYTE_BASE)
        .map((t) => t - BYTE_BASE),
    );
    return text.slice(text.indexOf("api:")).split(";");
  };

  it("answers a path seen in train by its outcomes, weighing the model as one example", () => {
    const p = modelSaysOk();
    expect(recall(memory, traceOutcome, db.inputs, p, v)).toBe(1);
    // (1 + 0.1 x model) / 2 for error against (0 + 0.9 x model) / 2 for ok: the one example wins.
    const st = statusOf(p, db);
    expect(st.value).toBe("error");
    const okShare = 0.9 / (0.9 + 0.1 / (V - 1));
    expect(st.confidence).toBeCloseTo((1 + (1 - okShare)) / 2, 5);
    // Only the slot's classes keep mass, and they sum to 1.
    const row = p.subarray(0, V);
    const ids = v.namespaceIds("status");
    expect(ids.reduce((a, id) => a + row[id], 0)).toBeCloseTo(1, 6);
    expect(row.reduce((a, x) => a + x, 0)).toBeCloseTo(1, 6);
  });

  it("lets the model decide where the examples disagree, and leaves an unseen path to it", () => {
    const p = modelSaysOk();
    expect(recall(memory, traceOutcome, cache.inputs, p, v)).toBe(2);
    expect(statusOf(p, cache).value).toBe("ok");
    const q = modelSaysOk();
    const before = q.slice();
    expect(recall(memory, traceOutcome, unseen.inputs, q, v)).toBe(0);
    expect(q).toEqual(before);
    // A version without a memory answers from the model alone.
    expect(recall(null, traceOutcome, db.inputs, q, v)).toBe(0);
    expect(q).toEqual(before);
  });

  it("matches the per-path majority wherever a path was seen, since both group by its signature", () => {
    const [, path] = traceOutcome.baselines(train, v);
    let checked = 0;
    for (const ex of built.examples) {
      const p = new Float32Array(L * V).fill(1 / V);
      if (!recall(memory, traceOutcome, ex.inputs, p, v)) continue;
      const mine = traceOutcome.decode({ probs: p }, traceOutcome.encode({ path: pathOf(ex) }, v), v);
      const base = path.predict(ex);
      expect(v.classId(`status:${mine.status.value}`)).toBe(base[0]);
      expect(v.classId(`service:${mine.culprit.value}`)).toBe(base[2]);
      checked++;
    }
    // db twice, cache three times (a 1:1 tie a uniform model leaves to the lower id, as the
    // baseline does), mq three times; the unseen path is the model's alone.
    expect(checked).toBe(8);
  });

  it("encodes a queried path as the build writes a trace's: parts trimmed, repeats collapsed", () => {
    const enc = (path: string[]) => Array.from(traceOutcome.encode({ path }, v).inputs);
    expect(enc([" api : GET ", "db:q"])).toEqual(enc(["api:GET", "db:q"]));
    expect(enc(["api:GET", "db:q", "db:q*2"])).toEqual(enc(["api:GET", "db:q*3"]));
    expect(enc(["api:GET", "db:q", "db:q"])).not.toEqual(enc(["api:GET", "db:q"]));
    expect(enc(["api:GET", "db:q", "db:q*2 "])).toEqual(enc(["api:GET", "db:q*3"]));
    // A count no build writes stays part of the name.
    expect(normalisePath(["db:q*99999999999", "db:q"])).toEqual(["db:q*99999999999", "db:q"]);
    // What the build wrote for the db trace is what the query encodes.
    expect(enc(["api:GET", "db:q"])).toEqual(Array.from(db.inputs));
  });

  it("records the newest training time it counts", () => {
    const file = buildMemory([traceOutcome], () => train, v);
    expect(file.until).toBe(new Date(Math.max(...train.map((ex) => ex.time))).toISOString());
    expect(memory.until).toBe(Math.max(...train.map((ex) => ex.time)));
    expect(buildMemory([traceOutcome], () => [], v).until).toBeNull();
  });

  it("ignores remembered classes the vocabulary lacks", () => {
    const file = buildMemory([traceOutcome], () => train, v);
    const key = traceOutcome.memoryKey!(db.inputs);
    // Another version's culprit, "ghost", outnumbers db's own: it must not take the mass.
    file.tasks.trace_outcome[key][2]["service:ghost"] = 5;
    const p = modelSaysOk();
    expect(recall(parseMemory(serializeMemory(file)), traceOutcome, db.inputs, p, v)).toBe(1);
    const culprits = v.namespaceIds("service").map((id) => p[2 * V + id]);
    expect(culprits.reduce((a, x) => a + x, 0)).toBeCloseTo(1, 6);
    expect(v.className(v.namespaceIds("service")[culprits.indexOf(Math.max(...culprits))])).toBe(
      "service:db",
    );
  });

  it("refuses a memory.json that is not one, naming what is wrong", () => {
    expect(() => parseMemory("{", "m.json")).toThrow(MemoryError);
    expect(() => parseMemory("{", "m.json")).toThrow(/m.json: not JSON/);
    expect(() => parseMemory(JSON.stringify({ schema: 2, strength: 1, tasks: {} }))).toThrow(/schema/);
    expect(() =>
      parseMemory(
        JSON.stringify({
          schema: 1,
          strength: 1,
          until: null,
          tasks: { trace_outcome: { k: [{ "status:ok": -1 }] } },
        }),
      ),
    ).toThrow(/tasks\.trace_outcome\.k\.0/);
  });
});
