import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { homelabDays, writeRawHomelab } from "../../../src/bench/homelab-raw.js";
import { parseConfig } from "../../../src/config/index.js";
import { WorkError } from "../../../src/errors.js";
import { writeSegment } from "../../../src/pipeline/collect/raw-store.js";
import type { SpanRecord } from "../../../src/pipeline/collect/records.js";
import {
  buildDataset,
  type Dataset,
  DatasetQualityError,
  latestDatasetId,
  listDatasets,
  openDataset,
} from "../../../src/pipeline/dataset/index.js";
import { hash53 } from "../../../src/pipeline/tasks/hash.js";
import { IGNORE, TASK_NAMES, vocabGrowth } from "../../../src/pipeline/tasks/index.js";
import { FsStore } from "../../../src/store/index.js";

const DAY = 86_400_000;
const END = Date.parse("2026-02-01T00:00:00Z");
const homelab = { agent: "sre", days: 10, files: 30, logLines: 3000, traces: 1500, series: 16 };

function config(extra: Record<string, unknown> = {}) {
  return parseConfig({ dataset: { window: "10d", ...extra } }).dataset;
}

function freshStore(): FsStore {
  return new FsStore(mkdtempSync(join(tmpdir(), "trm-ds-")));
}

describe("dataset build", () => {
  const store = freshStore();
  let ds: Dataset;
  let placed: Awaited<ReturnType<typeof writeRawHomelab>>;
  let firstId: string;

  beforeAll(async () => {
    placed = await writeRawHomelab({ store, ...homelab });
    const res = await buildDataset({ store, agent: "sre", config: config() });
    firstId = res.id;
    expect(res.reused).toBe(false);
    ds = await openDataset(store, "sre");
  });

  it("writes a manifest with the window, the segments read and the counts", async () => {
    const m = ds.manifest;
    expect(m.id).toMatch(/^ds-20260131-[0-9a-f]{12}$/);
    expect(m.window).toEqual({
      start: "2026-01-22T00:00:00.000Z",
      end: "2026-02-01T00:00:00.000Z",
      split_at: "2026-01-30T00:00:00.000Z",
      days: 10,
    });
    // 10 days of loki, tempo and prometheus, and one code segment.
    expect(m.segments).toHaveLength(31);
    for (const s of m.segments) expect(s.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(m.counts.train).toBe(ds.train.size);
    expect(m.counts.val).toBe(ds.val.size);
    for (const t of TASK_NAMES) {
      expect(m.counts.by_task[t].train).toBeGreaterThan(0);
      expect(m.counts.by_task[t].val).toBeGreaterThan(0);
      expect(m.quality.tasks[t].status).toBe("built");
      expect(Object.keys(m.quality.tasks[t].baselines).length).toBeGreaterThan(0);
    }
    expect(m.quality.passed).toBe(true);
    expect(m.vocab.size).toBe(ds.vocab.size);
    expect(m.vocab.revision).toBe(1);
    expect(await latestDatasetId(store, "sre")).toBe(m.id);
    expect((await listDatasets(store, "sre")).map((x) => x.id)).toEqual([m.id]);
  });

  it("splits by time: validation is the newest 20%, and no train input occurs in validation", () => {
    const splitAt = Date.parse(ds.manifest.window.split_at);
    const start = Date.parse(ds.manifest.window.start);
    const valTimes = ds.val
      .examples()
      .filter((e) => e.task !== "code_infill")
      .map((e) => e.time);
    expect(Math.min(...valTimes)).toBeGreaterThanOrEqual(splitAt);
    const train = ds.train.examples().filter((e) => e.task !== "code_infill");
    expect(Math.min(...train.map((e) => e.time))).toBeGreaterThanOrEqual(start);
    // metric_forecast: the last forecast point (one step per point) is before the split too.
    const K = ds.vocab.encoding.metric_forecast.points;
    const until = train.map((e) => (e.task === "metric_forecast" ? e.time + (K - 1) * 3_600_000 : e.time));
    expect(Math.max(...until)).toBeLessThan(splitAt);
    for (const t of TASK_NAMES) {
      const trainKeys = new Set(ds.train.examples(t).map((e) => hash53(e.inputs)));
      const val = ds.val.examples(t);
      // Validation marks the examples whose input train holds.
      for (const e of val) expect(e.inputSeenInTrain).toBe(trainKeys.has(hash53(e.inputs)));
      const seen = val.filter((e) => e.inputSeenInTrain).length;
      expect(ds.manifest.quality.tasks[t].val_inputs_seen_in_train).toBe(seen);
      expect(ds.val.indicesOf(t, { newInputsOnly: true })).toHaveLength(val.length - seen);
    }
    // Code windows that validation holds are dropped from train (drop_shared_inputs is on).
    expect(ds.manifest.quality.tasks.code_infill.val_inputs_seen_in_train).toBe(0);
    // Call paths repeat: with the rule off, validation shares inputs with train.
    expect(ds.manifest.quality.tasks.trace_outcome.val_inputs_seen_in_train).toBeGreaterThan(0);
    expect(ds.manifest.split.by_task.code_infill).toBe("file path");
  });

  it("drops train examples whose input validation holds when drop_shared_inputs is on", async () => {
    const res = await buildDataset({
      store,
      agent: "sre",
      config: config({
        tasks: {
          log_triage: { drop_shared_inputs: true },
          trace_outcome: { drop_shared_inputs: true, min_examples: 1 },
          metric_forecast: { drop_shared_inputs: true },
        },
      }),
    });
    const d = await openDataset(store, "sre", res.id);
    for (const t of TASK_NAMES) {
      const valKeys = new Set(d.val.examples(t).map((e) => hash53(e.inputs)));
      expect(
        d.train.examples(t).filter((e) => valKeys.has(hash53(e.inputs))),
        t,
      ).toEqual([]);
      expect(d.manifest.quality.tasks[t].val_inputs_seen_in_train).toBe(0);
    }
    expect(res.manifest.quality.tasks.trace_outcome.dropped_as_leaks).toBeGreaterThan(0);
  });

  it("keeps each code file on one side of the split", async () => {
    const code = freshStore();
    const files = Array.from({ length: 40 }, (_, f) => {
      const content = Array.from(
        { length: 40 },
        (_, i) => `let file${f}_value${i} = compute${f}(input${i});`,
      ).join("\n");
      return {
        kind: "code_file" as const,
        path: `src/f${f}.ts`,
        language: "typescript",
        size: content.length,
        sha256: "0".repeat(64),
        commit: null,
        content,
        redactions: 0,
        collected_at: "2026-01-31T03:00:00Z",
      };
    });
    await writeSegment(code, "sre", "code", "2026-01-31", "repo", files);
    const res = await buildDataset({
      store: code,
      agent: "sre",
      config: config({ tasks: { code_infill: { min_examples: 10 } } }),
    });
    expect(res.manifest.quality.tasks.log_triage.reason).toBe("no loki data in the window");
    const d = await openDataset(code, "sre");
    const fileOf = (e: { inputs: Int32Array }) => {
      const text = Buffer.from(Array.from(e.inputs, (t) => (t >= 4 && t < 260 ? t - 4 : 32))).toString(
        "latin1",
      );
      return new Set([...text.matchAll(/compute(\d+)\(/g)].map((m) => m[1]));
    };
    const trainFiles = new Set(d.train.examples("code_infill").flatMap((e) => [...fileOf(e)]));
    const valFiles = new Set(d.val.examples("code_infill").flatMap((e) => [...fileOf(e)]));
    expect(trainFiles.size).toBeGreaterThan(20);
    expect(valFiles.size).toBeGreaterThan(2);
    for (const f of valFiles) expect(trainFiles.has(f)).toBe(false);
  });

  it("labels log lines in incident with the windows the join found around the placed incidents", () => {
    expect(ds.incidents.length).toBeGreaterThan(0);
    for (const inc of placed) {
      const found = ds.incidents.find(
        (w) => w.service === inc.service && w.start < inc.end && w.end > inc.start,
      );
      expect(found, `${inc.service} ${new Date(inc.start).toISOString()}`).toBeDefined();
    }
    const dist = ds.manifest.quality.tasks.log_triage.label_distribution.incident;
    expect(dist.yes).toBeGreaterThan(0);
    expect(dist.no).toBeGreaterThan(dist.yes);
  });

  it("is deterministic: the same raw data and config give the same id and bytes", async () => {
    const other = freshStore();
    await writeRawHomelab({ store: other, ...homelab });
    const again = await buildDataset({ store: other, agent: "sre", config: config() });
    expect(again.id).toBe(firstId);
    for (const name of ["manifest.json", "train.bin", "val.bin", "vocab.json", "incidents.json"]) {
      const a = await store.get(`datasets/sre/${firstId}/${name}`);
      const b = await other.get(`datasets/sre/${firstId}/${name}`);
      expect(a.equals(b), name).toBe(true);
    }
    const same = await buildDataset({ store, agent: "sre", config: config() });
    expect(same.reused).toBe(true);
    const seeded = await buildDataset({ store: other, agent: "sre", config: config({ seed: 7 }) });
    expect(seeded.id).not.toBe(firstId);
    expect(await latestDatasetId(other, "sre")).toBe(seeded.id);
  });

  it("gives batches and examples the training loop and evaluation read", () => {
    const S = ds.train.seqLen;
    expect(S).toBe(128);
    const idx = ds.train.indicesOf("trace_outcome").slice(0, 3);
    const b = ds.train.batch(idx);
    expect(b.inputs).toHaveLength(3 * S);
    expect(Array.from(b.puzzleIds)).toEqual([4, 4, 4]);
    expect(Array.from(b.labels.slice(0, S))).toEqual(Array.from(ds.train.example(idx[0]).labels));
    // Every token fits the vocabulary; labels are tokens or ignored.
    expect(ds.train.inputs.reduce((a, b) => Math.max(a, b), 0)).toBeLessThan(ds.vocab.size);
    expect(ds.val.labels.every((l) => l === IGNORE || (l >= 0 && l < ds.vocab.size))).toBe(true);
    expect(ds.val.examples("metric_forecast")[0].aux.length).toBe(3 + 9 * 24);
  });

  it("grows the served model's vocabulary for a fine-tune, keeping every old id", async () => {
    const other = freshStore();
    await writeRawHomelab({ store: other, ...homelab });
    // A service the old vocabulary never saw, on every day.
    for (let d = 1; d <= 10; d++) {
      const t = END - d * DAY + 3_600_000;
      await writeSegment(
        other,
        "sre",
        "loki",
        new Date(t).toISOString().slice(0, 10),
        "new-service",
        Array.from({ length: 20 }, (_, i) => ({
          kind: "log_entry" as const,
          query: "q",
          ts_ns: `${t + i * 60_000}000000`,
          labels: { service_name: "billing" },
          line: `level=info invoice ${String.fromCharCode(97 + i)}${d} settled`,
        })),
      );
    }
    const old = ds.vocab;
    const res = await buildDataset({ store: other, agent: "sre", config: config(), baseVocab: old });
    const grown = res.vocab;
    expect(vocabGrowth(old, grown).added).toEqual([{ id: old.size, name: "service:billing" }]);
    expect(grown.revision).toBe(old.revision + 1);
    expect(grown.parentSha256).toBe(old.sha256());
    const reopened = await openDataset(other, "sre", res.id);
    const billing = reopened.train
      .examples("log_triage")
      .filter((e) => e.labels[1] === grown.classId("service:billing"));
    expect(billing.length).toBeGreaterThan(0);
    // Without the base vocabulary the same data numbers its classes afresh: ids move.
    const fresh = await buildDataset({ store: other, agent: "sre", config: config() });
    expect(() => vocabGrowth(old, fresh.vocab)).toThrow(/changed meaning/);
  });

  it("refuses a dataset whose files were altered", async () => {
    const other = freshStore();
    await writeRawHomelab({ store: other, ...homelab });
    const res = await buildDataset({ store: other, agent: "sre", config: config() });
    const key = `${res.prefix}val.bin`;
    const body = await other.get(key);
    body[body.length - 1] ^= 1;
    await other.put(key, body);
    await expect(openDataset(other, "sre")).rejects.toThrow(/val.bin does not match its checksum/);
    await other.delete(key);
    await expect(openDataset(other, "sre", res.id)).rejects.toThrow(/val.bin is missing/);
    await expect(openDataset(other, "sre", "ds-20200101-000000000000")).rejects.toThrow(/not found/);
  });

  it("skips a disabled source or task with a reason and still builds the rest", async () => {
    const res = await buildDataset({
      store,
      agent: "sre",
      config: config({ tasks: { metric_forecast: { enabled: false } } }),
      sources: { code: false },
    });
    const q = res.manifest.quality.tasks;
    expect(q.code_infill.status).toBe("skipped");
    expect(q.code_infill.reason).toBe("the code source is disabled for agent sre");
    expect(q.metric_forecast.reason).toBe("disabled in the config (dataset.tasks.metric_forecast.enabled)");
    expect(res.manifest.counts.by_task.code_infill).toEqual({ train: 0, val: 0 });
    expect(res.manifest.counts.by_task.log_triage.train).toBeGreaterThan(0);
  });

  it("keeps max_val_examples held out in place of max_examples' share, with the same train examples", async () => {
    const cap = (val?: number) =>
      config({ tasks: { log_triage: { max_examples: 400, ...(val ? { max_val_examples: val } : {}) } } });
    const shared = await buildDataset({ store, agent: "sre", config: cap() });
    const more = await buildDataset({ store, agent: "sre", config: cap(300) });
    expect(more.id).not.toBe(shared.id);
    const counts = (r: typeof shared) => r.manifest.counts.by_task.log_triage;
    expect(counts(shared)).toEqual({ train: 320, val: 80 });
    const q = more.manifest.quality.tasks.log_triage;
    expect(q.candidates.val).toBeGreaterThan(300);
    expect(counts(more)).toEqual({ train: 320, val: 300 });
    const inputsOf = async (id: string, split: "train" | "val") =>
      (await openDataset(store, "sre", id))[split]
        .examples("log_triage")
        .map((e) => Array.from(e.inputs).join(","))
        .sort();
    expect(await inputsOf(more.id, "train")).toEqual(await inputsOf(shared.id, "train"));
    // The larger sample holds the smaller one: the same seeded priorities pick both.
    const valMore = new Set(await inputsOf(more.id, "val"));
    for (const v of await inputsOf(shared.id, "val")) expect(valMore.has(v)).toBe(true);
  });

  it("fails clearly when a task has fewer examples than its minimum", async () => {
    const err = await buildDataset({
      store,
      agent: "sre",
      config: config({ tasks: { trace_outcome: { min_examples: 1_000_000 } } }),
    }).catch((e) => e);
    expect(err).toBeInstanceOf(DatasetQualityError);
    expect(err.message).toMatch(
      /trace_outcome has \d+ examples, fewer than its minimum 1000000 \(dataset.tasks.trace_outcome.min_examples\)/,
    );
    expect(err.report.passed).toBe(false);
    await expect(buildDataset({ store: freshStore(), agent: "sre", config: config() })).rejects.toThrow(
      /no raw data for agent "sre"/,
    );
  });
});

describe("dataset build on broken data", () => {
  const T = Date.parse("2026-01-25T12:00:00Z");
  const span = (id: string, parent: string | null, service: string): SpanRecord => ({
    trace_id: "b".repeat(32),
    span_id: id.padStart(16, "0"),
    parent_span_id: parent?.padStart(16, "0") ?? null,
    service,
    name: "op",
    kind: "server",
    start_ns: `${T}000000`,
    duration_ns: 1000,
    status: "ok",
    attributes: {},
  });

  async function writeBroken(store: FsStore, day: string) {
    await writeSegment(store, "sre", "loki", day, "broken", [
      { kind: "log_entry", query: "q", ts_ns: `${T}000000`, labels: { service_name: "api" }, line: "" },
      {
        kind: "log_entry",
        query: "q",
        ts_ns: `${T}000000`,
        labels: { service_name: "api" },
        line: `level=info ${"y".repeat(2_000_000)}`,
      },
      {
        kind: "log_entry",
        query: "q",
        ts_ns: `${T}000000`,
        labels: { service_name: "api" },
        line: "\ufffd\ufffd\u0001\u0002\ufffd",
      },
      {
        kind: "log_entry",
        query: "q",
        ts_ns: `${T}000000`,
        labels: { service_name: "api" },
        line: "level=warn caf\ufffd latin-1 bytes",
      },
    ]);
    await writeSegment(store, "sre", "tempo", day, "broken", [
      {
        kind: "trace",
        query: "q",
        trace_id: "c".repeat(32),
        root_service: "api",
        root_name: "op",
        start_ns: `${T}000000`,
        duration_ms: 1,
        spans: [span("1", null, "api"), span("2", "3", "db"), span("3", "2", "db")],
      },
      {
        kind: "trace",
        query: "q",
        trace_id: "d".repeat(32),
        root_service: "api",
        root_name: "op",
        start_ns: `${T}000000`,
        duration_ms: 1,
        spans: [span("1", null, "api"), span("2", "9", "db")],
      },
      {
        kind: "trace",
        query: "q",
        trace_id: "e".repeat(32),
        root_service: "",
        root_name: "",
        start_ns: `${T}000000`,
        duration_ms: 0,
        spans: [],
      },
    ]);
    await writeSegment(store, "sre", "prometheus", day, "broken", [
      {
        kind: "metric_series",
        query: "p95",
        promql: "histogram_quantile(0.95, x)",
        labels: { service: "api" },
        step_s: 3600,
        start: T / 1000,
        end: T / 1000,
        points: [
          [T / 1000, "NaN"],
          [T / 1000 + 3600, "NaN"],
        ],
      },
    ]);
    await store.put(`raw/sre/loki/${day}/torn.jsonl.gz`, Buffer.from("this is not gzip"));
  }

  it("gives examples or a clear reason for every broken record, and never crashes", async () => {
    const store = freshStore();
    await writeRawHomelab({ store, ...homelab });
    await writeBroken(store, "2026-01-25");
    const res = await buildDataset({ store, agent: "sre", config: config() });
    const q = res.manifest.quality.tasks;
    const reasons = (t: keyof typeof q) => Object.fromEntries(q[t].invalid.map((i) => [i.reason, i.count]));
    expect(reasons("log_triage")).toMatchObject({
      "empty line": 1,
      "not text (undecodable or control bytes)": 1,
    });
    expect(
      Object.keys(reasons("log_triage")).some((r) => r.startsWith("unreadable segment (not a gzip stream")),
    ).toBe(true);
    expect(q.log_triage.invalid.find((i) => i.reason === "empty line")?.examples).toEqual([
      "raw/sre/loki/2026-01-25/broken.jsonl.gz#1",
    ]);
    expect(reasons("trace_outcome")).toEqual({ "span parents form a cycle": 1, "trace has no spans": 1 });
    expect(q.trace_outcome.notes["spans whose parent is missing (counted as roots)"]).toBe(1);
    expect(reasons("metric_forecast")).toEqual({ "series has no finite values (NaN or Inf only)": 1 });
    // The huge line and the line with a few undecodable bytes became examples.
    const ds = await openDataset(store, "sre");
    const texts = ds.train
      .examples("log_triage")
      .map((e) =>
        Buffer.from(Array.from(e.inputs.slice(4), (t) => (t >= 4 && t < 260 ? t - 4 : 32))).toString("utf8"),
      );
    expect(texts.some((t) => t.startsWith("level=info yyyy"))).toBe(true);
    expect(texts.some((t) => t.startsWith("level=warn caf\ufffd"))).toBe(true);
    expect(res.manifest.quality.valid_ratio).toBeGreaterThan(0.99);
  });

  it("refuses data that is mostly broken, naming the reasons", async () => {
    const store = freshStore();
    for (let d = 0; d < 10; d++) {
      const day = new Date(END - (d + 1) * DAY).toISOString().slice(0, 10);
      await writeSegment(
        store,
        "sre",
        "loki",
        day,
        "x",
        Array.from({ length: 50 }, (_, i) => ({
          kind: "log_entry" as const,
          query: "q",
          ts_ns: `${END - (d + 1) * DAY + i * 1000}000000`,
          labels: { service_name: "api" },
          line: i < 10 ? `level=info ok ${i} ${d}` : "   ",
        })),
      );
    }
    const err = await buildDataset({ store, agent: "sre", config: config() }).catch((e) => e);
    expect(err).toBeInstanceOf(DatasetQualityError);
    expect(err).toBeInstanceOf(WorkError);
    expect(err.message).toMatch(
      /only 20% of records are valid, below 90% \(dataset.min_valid_ratio\): 400 × empty line/,
    );
    expect(err.report.tasks.code_infill.reason).toBe("no code data in the window");
  });
});

describe("dataset build, collected today", () => {
  it("ends the window at the newest record, not at midnight, so validation is not in the future", async () => {
    const store = freshStore();
    await writeRawHomelab({ store, ...homelab, days: 4 });
    // A 2-day window (the forecast needs a week of history, so it is off). A collection that ran at 01:30 on the next day: its day holds only the first 90 minutes.
    const cut = END + 90 * 60_000;
    const [today] = homelabDays({ ...homelab, days: 1, end: END + DAY }).days;
    const early = today.logs.filter((l) => Number(BigInt(l.ts_ns) / 1_000_000n) < cut);
    expect(early.length).toBeGreaterThan(0);
    await writeSegment(store, "sre", "loki", today.day, "homelab-0001", early);

    const res = await buildDataset({
      store,
      agent: "sre",
      config: config({ window: "2d", tasks: { metric_forecast: { enabled: false } } }),
    });
    const m = (await openDataset(store, "sre", res.id)).manifest;
    expect(m.window.end).toBe("2026-02-01T02:00:00.000Z");
    expect(m.window.split_at).toBe(new Date(END + 2 * 3_600_000 - 0.2 * 2 * DAY).toISOString());
    for (const t of ["log_triage", "trace_outcome"]) expect(m.counts.by_task[t].val, t).toBeGreaterThan(0);
  });

  /** The repository read 20 s past 02:00 on the day after END (its only copy), logs until `logsUntil`. */
  async function collectedPastTheHour(logsUntil = END + 2 * 3_600_000) {
    const store = freshStore();
    await writeRawHomelab({ store, ...homelab, days: 4, files: 0 });
    const cut = END + 2 * 3_600_000;
    const [today] = homelabDays({ ...homelab, days: 1, end: END + DAY }).days;
    await writeSegment(
      store,
      "sre",
      "loki",
      today.day,
      "homelab-0001",
      today.logs.filter((l) => Number(BigInt(l.ts_ns) / 1_000_000n) < logsUntil),
    );
    const snapshot = async (at: number, version: number) => {
      const files = Array.from({ length: 40 }, (_, i) => {
        const content =
          `export function step${i}(value: number) {\n  return value * ${i} + ${version};\n}\n`.repeat(8);
        return {
          kind: "code_file" as const,
          path: `src/mod${i % 4}/file${i}.ts`,
          language: "typescript",
          size: Buffer.byteLength(content),
          sha256: (i * 1000 + version).toString(16).padStart(64, "0"),
          commit: null,
          content,
          redactions: 0,
          collected_at: new Date(at).toISOString(),
        };
      });
      await writeSegment(
        store,
        "sre",
        "code",
        new Date(at).toISOString().slice(0, 10),
        `repo-${version}`,
        files,
      );
    };
    await snapshot(cut + 20_000, 1);
    const build = async () => {
      const res = await buildDataset({
        store,
        agent: "sre",
        config: config({ window: "2d", tasks: { metric_forecast: { enabled: false } } }),
      });
      return (await openDataset(store, "sre", res.id)).manifest;
    };
    return { snapshot, build, cut };
  }

  it("keeps the code snapshot a collection took after its newest event's hour inside the window", async () => {
    // As a demo started at 20:00:40 does: its homelab ends at 20:00, its logs a settle earlier.
    const { build } = await collectedPastTheHour();
    const m = await build();
    expect(m.window.end).toBe("2026-02-01T03:00:00.000Z");
    const c = m.counts.by_task.code_infill;
    expect(c.train + c.val).toBeGreaterThan(0);
  });

  it("keeps it too when the sources were quiet for hours before the collection", async () => {
    const { build } = await collectedPastTheHour(END + 30 * 60_000);
    const m = await build();
    expect(m.window.end).toBe("2026-02-01T03:00:00.000Z");
    const c = m.counts.by_task.code_infill;
    expect(c.train + c.val).toBeGreaterThan(0);
  });

  it("does not carry the window past the telemetry for a later collection's snapshot", async () => {
    // A rerun of the collection 23 hours on, with no new telemetry (the demo's homelab has ended).
    const { snapshot, build, cut } = await collectedPastTheHour();
    await snapshot(cut + 23 * 3_600_000, 2);
    const m = await build();
    expect(m.window.end).toBe("2026-02-01T03:00:00.000Z");
    for (const t of ["code_infill", "log_triage", "trace_outcome"])
      expect(m.counts.by_task[t].val, t).toBeGreaterThan(0);
  });
});
