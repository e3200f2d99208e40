// The robustness probe: the variants agents paste, encoded as live queries with the clean labels,
// and scored per variant beside the same lines clean (and as serving answers the level).
import { describe, expect, it } from "vitest";
import type { LogEntryRecord } from "../../../src/pipeline/collect/records.js";
import { buildProbe, reformat, scoreProbe, variantsOf } from "../../../src/pipeline/evaluate/probe.js";
import { buildExamples, logTriage } from "../../../src/pipeline/tasks/index.js";

const T0 = Date.parse("2026-01-10T00:00:00Z");

function entry(minute: number, service: string, line: string): LogEntryRecord {
  return {
    kind: "log_entry",
    query: "q",
    ts_ns: `${T0 + minute * 60_000}000000`,
    labels: { service_name: service },
    line,
  };
}

describe("probe variants", () => {
  it("strips the timestamp prefix, cuts, re-quotes, and turns logfmt into JSON", () => {
    const v = variantsOf('<ts> level=error msg="db timeout after <num>s"');
    expect(v.prefix_stripped).toBe('level=error msg="db timeout after <num>s"');
    expect(v.truncated).toBe('<ts> level=error msg="db ti'); // 60% of 45 characters
    expect(v.requoted).toBe("<ts> level=error msg='db timeout after <num>s'");
    expect(v.reformatted).toBe('<ts> {"level":"error","msg":"db timeout after <num>s"}');
  });

  it("turns a JSON line into logfmt (placeholders where numbers were), and leaves what has no form alone", () => {
    expect(reformat('{"level":"warn","latency_ms":<num>,"msg":"slow query"}')).toBe(
      'level=warn latency_ms=<num> msg="slow query"',
    );
    expect(reformat("just words here")).toBeNull();
    expect(variantsOf("ok")).toEqual({});
    expect(Object.keys(variantsOf("[<ts>] INFO started worker pool of <num>")).sort()).toEqual([
      "prefix_stripped",
      "truncated",
    ]);
  });
});

describe("probe set and scores", () => {
  const built = buildExamples(
    logTriage,
    [
      entry(1, "db", '2026-01-10T00:01:00Z level=error msg="checkpoint failed after 30s"'),
      entry(2, "api", '{"level":"info","msg":"GET /orders 200","ms":12}'),
      entry(3, "api", "plain words only"),
    ],
    { window: { start: T0, end: T0 + 86_400_000 }, seqLen: 96 },
  );
  const v = built.vocab;
  const examples = built.examples;

  it("encodes each variant as a live query would be, with the clean line's labels", () => {
    const cases = buildProbe(examples, v);
    const of = (source: number) => cases.filter((c) => c.source === source).map((c) => c.variant);
    expect(of(0).sort()).toEqual(["prefix_stripped", "reformatted", "requoted", "truncated"]);
    expect(of(1).sort()).toEqual(["reformatted", "requoted", "truncated"]);
    expect(of(2)).toEqual([]);
    for (const c of cases) {
      expect(Array.from(c.example.labels)).toEqual(Array.from(examples[c.source].labels));
      expect(Array.from(c.example.inputs)).toEqual(Array.from(logTriage.encode({ line: c.line }, v).inputs));
    }
    expect(cases.find((c) => c.source === 1 && c.variant === "reformatted")!.line).toBe(
      'level=info msg="GET /orders <num>" ms=<num>',
    );
    // At most `max` lines, evenly spread.
    expect(new Set(buildProbe(examples, v, 1).map((c) => c.source))).toEqual(new Set([0]));
  });

  it("scores each variant beside the same lines clean, and the level as served", () => {
    const cases = buildProbe(examples, v);
    const level = logTriage.slots[0].position;
    const clean = examples.map((ex) => Int32Array.from(ex.labels));
    // A model right on every clean line that misreads the level of every cut line.
    const preds = cases.map((c) => {
      const p = Int32Array.from(c.example.labels);
      if (c.variant === "truncated") p[level] = v.classId("level:debug")!;
      return p;
    });
    const r = scoreProbe(cases, preds, examples, clean, v);
    expect(r.task).toBe("log_triage");
    expect(r.lines).toBe(2);
    const cut = r.variants.find((x) => x.variant === "truncated")!;
    expect(cut.examples).toBe(2);
    expect(cut.clean).toEqual({ exact_all: 1, level_accuracy: 1 });
    expect(cut.probe).toEqual({ exact_all: 0, level_accuracy: 0 });
    // Both cut lines still state their level in a field: serving reads it there.
    expect(cut.served_level_accuracy).toBe(1);
    const quoted = r.variants.find((x) => x.variant === "requoted")!;
    expect(quoted.probe).toEqual({ exact_all: 1, level_accuracy: 1 });
  });
});
