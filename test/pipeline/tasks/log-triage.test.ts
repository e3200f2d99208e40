import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";
import { describe, expect, it } from "vitest";
import type { LogEntryRecord } from "../../../src/pipeline/collect/records.js";
import { IncidentIndex } from "../../../src/pipeline/incidents.js";
import {
  BYTE_BASE,
  buildExamples,
  IGNORE,
  logLevel,
  logTriage,
  normaliseLogLine,
  SEP,
  scoreBaselines,
  scoreTask,
  TaskInputError,
} from "../../../src/pipeline/tasks/index.js";
import { statedLevel } from "../../../src/pipeline/tasks/log-normalize.js";

const T0 = Date.parse("2026-01-10T00:00:00Z");
const window = { start: T0, end: T0 + 86_400_000 };

function entry(
  minute: number,
  service: string | null,
  line: string,
  labels: Record<string, string> = {},
): LogEntryRecord {
  return {
    kind: "log_entry",
    query: "q",
    ts_ns: `${T0 + minute * 60_000}000000`,
    labels: service ? { service_name: service, ...labels } : labels,
    line,
  };
}

describe("log normalisation", () => {
  it("turns variable parts into placeholders and keeps words", () => {
    expect(
      normaliseLogLine(
        "2026-01-10T12:00:01.123Z GET /api/v2/users/42 from 10.0.3.7:8080 id=550e8400-e29b-41d4-a716-446655440000 span=af3d9c2b1e7f took 12ms http2",
      ),
    ).toBe("<ts> GET /api/v2/users/<num> from <ip> id=<uuid> span=<hex> took <num>ms http2");
    expect(normaliseLogLine("  retry 3 of 5 at 12:30:45 deadbeef  ")).toBe(
      "retry <num> of <num> at <ts> deadbeef",
    );
    expect(normaliseLogLine("token <redacted:jwt> rejected")).toBe("token <redacted:jwt> rejected");
  });

  it("reads the level from labels first, then the line", () => {
    expect(logLevel("whatever", { level: "WARNING" })).toBe("warn");
    expect(logLevel('{"level":"error","msg":"x"}', {})).toBe("error");
    expect(logLevel('ts=1 level=debug msg="x"', {})).toBe("debug");
    expect(logLevel("[FATAL] disk gone", {})).toBe("fatal");
    expect(logLevel("E0110 12:00:00.000000 1 controller.go:42] sync failed", {})).toBe("error");
    expect(logLevel("2026-01-10 INFO started", {})).toBe("info");
    expect(logLevel("nothing here", {}, { detected_level: "err" })).toBe("error");
    expect(logLevel("nothing here", {})).toBe("unknown");
    expect(logLevel("2026/12/01 10:00:00 [emerg] 1#1: bind() failed", {})).toBe("fatal");
    // The header's bracket, then a bare word near the start, before a bracket deeper in the message.
    expect(logLevel("2026-12-01 10:00:00.123 [main] ERROR c.f.Bar - got [info] from x", {})).toBe("error");
    expect(logLevel("2026-12-01 10:00:00 [warn] <0.1.0> upstream said [error]", {})).toBe("warn");
    expect(logLevel("worker-a handled it [error] late", {})).toBe("error");
  });

  it("states a level only where the line has a field for it", () => {
    const stated: [string, string | null][] = [
      ['level=error msg="db timeout"', "error"],
      ['{"severity":"critical","msg":"x"}', "fatal"],
      // Bracketed, first or after tokens with digits: rabbitmq, nginx, a python format with brackets.
      ["2026-12-01 20:45:04.565500+00:00 [error] <0.24766.0> closing AMQP connection", "error"],
      ["2026/12/01 10:00:00 [alert] 123#0: *4 worker process exited", "fatal"],
      ["[2026-12-01 10:00:00,123] [WARNING] pool exhausted", "warn"],
      ["  [info] started", "info"],
      ["12345 [debug] cache hit", "debug"],
      // A bare word, prose before the bracket, a fourth token, or another bracket earlier in the line.
      ["ERROR db timeout", null],
      ["2026-12-01 10:00:00.123 [main] ERROR c.f.Bar - boom", null],
      ["got [error] from upstream", null],
      ["2026-12-01 10:00:00 1 2 [error] late", null],
      ["[12:00:00](info) [error] x", null],
      ['msg="level=error"', null],
    ];
    for (const [line, level] of stated) expect(statedLevel(line), line).toBe(level);
  });

  it("reads a line of long digit tokens without backtracking", async () => {
    // A header pattern that can match a token several ways runs for minutes on this line, and a
    // regular expression cannot be interrupted: so it runs in a worker (the built module) that
    // is terminated if it has not answered in 5 s.
    const line = `${"1".repeat(511)} ${"1".repeat(511)} ${"1".repeat(1022)} x`;
    const mod = pathToFileURL(resolve("dist/pipeline/tasks/log-normalize.js")).href;
    const src = `import { statedLevel } from ${JSON.stringify(mod)}; import { parentPort } from "node:worker_threads"; parentPort.postMessage(statedLevel(${JSON.stringify(line)}));`;
    const worker = new Worker(new URL(`data:text/javascript,${encodeURIComponent(src)}`));
    let timer: NodeJS.Timeout | undefined;
    const answer = await new Promise((res, rej) => {
      timer = setTimeout(() => rej(new Error("statedLevel did not answer in 5 s")), 5000);
      worker.once("message", res);
      worker.once("error", rej);
    }).finally(() => {
      clearTimeout(timer);
      return worker.terminate();
    });
    expect(answer).toBeNull();
  });
});

describe("log_triage", () => {
  const records = [
    entry(10, "api", 'level=info msg="GET /orders 200"'),
    entry(20, "api", 'level=info msg="GET /orders 200"'),
    entry(30, "db", 'level=error msg="checkpoint failed"'),
    entry(40, "db", ""), // empty
    entry(50, "db", "\u0000\u0001\ufffd\ufffd\ufffd\ufffdok"), // binary
    entry(60, null, "level=info no service"),
    entry(-5, "api", "before the window"),
    entry(70, "api", `level=warn ${"x".repeat(100_000)}`), // huge
  ];

  it("labels level, service and incident at fixed slots, everything else ignored", () => {
    const incidents = new IncidentIndex(
      [{ service: "db", start: T0 + 25 * 60_000, end: T0 + 35 * 60_000, evidence: [] }],
      0,
    );
    const built = buildExamples(logTriage, records, { window, seqLen: 64, incidents });
    expect(built.examples).toHaveLength(4);
    const [a, , c, huge] = built.examples;
    const v = built.vocab;
    expect(Array.from(a.inputs.slice(0, 4))).toEqual(
      [..."lsi"].map((c) => BYTE_BASE + c.charCodeAt(0)).concat(SEP),
    );
    expect(a.labels[0]).toBe(v.classId("level:info"));
    expect(a.labels[1]).toBe(v.classId("service:api"));
    expect(a.labels[2]).toBe(v.classId("incident:no"));
    expect(Array.from(a.labels.slice(3)).every((l) => l === IGNORE)).toBe(true);
    expect(c.labels[0]).toBe(v.classId("level:error"));
    expect(c.labels[2]).toBe(v.classId("incident:yes"));
    expect(logTriage.describe(c, v)).toEqual({
      input: 'level=error msg="checkpoint failed"',
      labels: { level: "error", service: "db", incident: "yes" },
    });
    // A huge line is cut to the sequence length.
    expect(huge.inputs).toHaveLength(64);
    expect(logTriage.describe(huge, v).input).toBe(`level=warn ${"x".repeat(64 - 4 - 11)}`);
    expect(built.invalid.map((i) => i.reason)).toEqual([
      "empty line",
      "not text (undecodable or control bytes)",
      expect.stringMatching(/^no service label \(looked for service_name/),
    ]);
    expect(built.invalid[0].ref).toEqual({ segment: "(memory)", line: 4 });
    expect(built.skipped).toEqual({ "outside the window": 1 });
  });

  it("encodes a live query exactly as the build does, and decodes answers with confidence", () => {
    const built = buildExamples(logTriage, records.slice(0, 3), { window, seqLen: 64 });
    const v = built.vocab;
    const enc = logTriage.encode({ line: records[2].line }, v);
    expect(Array.from(enc.inputs)).toEqual(Array.from(built.examples[2].inputs));
    expect(enc.puzzleId).toBe(2);
    // Token output: the labels themselves decode to the labelled answer.
    // The line states its level (level=error): that is the answer's level, said to come from
    // the input, with what the model answered beside it.
    expect(logTriage.decode({ tokens: built.examples[2].labels }, enc, v)).toEqual({
      level: { value: "error", confidence: 1 },
      service: { value: "db", confidence: 1 },
      incident: { value: false, confidence: 1 },
      level_source: "input",
      model_level: "error",
    });
    // A line that does not state it leaves the level to the model.
    const plain = logTriage.encode({ line: 'msg="checkpoint failed"' }, v);
    // Probabilities: the answer is the most likely class of the slot's namespace, its
    // probability renormalised over that namespace.
    const probs = new Float32Array(64 * v.size);
    const set = (pos: number, id: number, p: number) => {
      probs[pos * v.size + id] = p;
    };
    set(0, v.classId("level:warn")!, 0.6);
    set(0, v.classId("level:info")!, 0.2);
    set(0, v.byte(65), 0.2); // not a level: ignored
    set(1, v.classId("service:api")!, 0.9);
    set(1, v.classId("service:db")!, 0.1);
    set(2, v.classId("incident:yes")!, 0.3);
    set(2, v.classId("incident:no")!, 0.1);
    expect(logTriage.decode({ probs }, enc, v)).toMatchObject({
      level: { value: "error", confidence: 1 },
      level_source: "input",
      model_level: "warn",
    });
    const a = logTriage.decode({ probs }, plain, v);
    expect(a.level_source).toBeUndefined();
    expect(a.level.value).toBe("warn");
    expect(a.level.confidence).toBeCloseTo(0.75, 6);
    expect(a.service).toEqual({ value: "api", confidence: expect.closeTo(0.9, 6) });
    expect(a.incident.value).toBe(true);
    expect(a.incident.confidence).toBeCloseTo(0.75, 6);
    // A byte where a class belongs decodes to "no answer".
    const bad = Int32Array.from(built.examples[2].labels);
    bad[0] = v.byte(65);
    expect(logTriage.decode({ tokens: bad }, plain, v).level).toEqual({ value: null, confidence: 0 });
    expect(() => logTriage.encode({ line: "  " }, v)).toThrow(TaskInputError);
    expect(() => logTriage.encode({} as never, v)).toThrow(TaskInputError);
  });

  it("has a majority baseline per label, scored like the model", () => {
    const train = buildExamples(
      logTriage,
      [entry(1, "api", "level=info a"), entry(2, "api", "level=info b"), entry(3, "db", "level=error c")],
      { window, seqLen: 64 },
    );
    const v = train.vocab;
    const val = buildExamples(
      logTriage,
      [entry(4, "api", "level=info d"), entry(5, "db", "level=info e"), entry(6, "db", "level=error f")],
      { window, seqLen: 64, vocab: v },
    ).examples;
    const [majority] = logTriage.baselines(train.examples, v);
    const p = majority.predict(val[0]);
    expect([p[0], p[1], p[2]]).toEqual([
      v.classId("level:info"),
      v.classId("service:api"),
      v.classId("incident:no"),
    ]);
    const score = scoreTask(
      "log_triage",
      val,
      val.map((ex) => majority.predict(ex)),
      v,
    );
    expect(score.primary).toBe("exact_all");
    expect(score.metrics.level_accuracy).toBeCloseTo(2 / 3);
    expect(score.metrics.service_accuracy).toBeCloseTo(1 / 3);
    expect(score.metrics.incident_accuracy).toBe(1);
    expect(score.metrics.exact_all).toBeCloseTo(1 / 3);
    // Perfect predictions score 1 everywhere.
    const perfect = scoreTask(
      "log_triage",
      val,
      val.map((ex) => ex.labels),
      v,
    );
    expect(perfect.metrics.exact_all).toBe(1);
    const b = scoreBaselines("log_triage", train.examples, val, v);
    expect(b.best).toBe("majority");
    expect(b.scores.majority.metrics).toEqual(score.metrics);
    expect(() => scoreTask("log_triage", val, [], v)).toThrow(/predictions/);
  });
});
