import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config/index.js";
import { writeSegment } from "../../src/pipeline/collect/raw-store.js";
import { runGate } from "../../src/pipeline/evaluate/gate.js";
import type { EvaluationResult } from "../../src/pipeline/evaluate.js";
import { addRunScan, readRunScans } from "../../src/pipeline/report/scan.js";
import { type DatasetSummary, renderReport, reportKey, writeRunReport } from "../../src/pipeline/report.js";
import { Pipeline, type RunRecord, type StageFns } from "../../src/pipeline/run.js";
import type { Finding, ScanResult } from "../../src/pipeline/scan/index.js";
import type { MetricsLine } from "../../src/pipeline/train.js";
import { FsStore } from "../../src/store/index.js";
import { findAll, parseXml, type XmlNode } from "./helpers/xml.js";

const gateCfg = parseConfig({}).gate;

function evaluation(): EvaluationResult {
  const tasks = {
    log_triage: {
      task: "log_triage",
      enabled: true,
      examples: 120,
      primary: "exact_all",
      direction: "higher" as const,
      candidate: { metrics: { exact_all: 0.82, level_accuracy: 0.95 }, score: 0.82 },
      champion: { metrics: { exact_all: 0.78 }, score: 0.78 },
      baselines: { majority: { metrics: { exact_all: 0.41 }, score: 0.41 } },
      best_baseline: "majority",
      judged: true,
      floor: 0.8,
      intervals: {
        baseline: { against: "majority", diff: 0.41, low: 0.352, high: 0.468, level: 0.95, resamples: 1000 },
        champion: {
          against: "v20261101-020000-000-abcd",
          diff: 0.04,
          low: -0.012,
          high: 0.093,
          level: 0.95,
          resamples: 1000,
        },
      },
    },
    trace_outcome: {
      task: "trace_outcome",
      enabled: true,
      examples: 90,
      primary: "mean_accuracy",
      direction: "higher" as const,
      candidate: { metrics: { mean_accuracy: 0.6 }, score: 0.6 },
      champion: { metrics: { mean_accuracy: 0.7 }, score: 0.7 },
      baselines: { majority_per_root_operation: { metrics: { mean_accuracy: 0.65 }, score: 0.65 } },
      best_baseline: "majority_per_root_operation",
      judged: true,
      floor: null,
    },
  };
  const gate = runGate(Object.values(tasks), gateCfg);
  return {
    schema: 1,
    agent: "sre",
    evaluated_at: "2026-11-29T12:00:00.000Z",
    dataset_id: "ds-20261128-0123456789ab",
    split: "val",
    examples: 210,
    candidate: { label: "candidate", version: null, run_id: "r1" },
    champion: { version: "v20261101-020000-000-abcd" },
    champion_note: null,
    tasks,
    halting: {
      candidate: { histogram: [10, 50, 100, 50], mean: 2.9, max_steps: 4 },
      champion: { histogram: [0, 20, 60, 130], mean: 3.5, max_steps: 4 },
    },
    gate,
    probe: {
      task: "log_triage",
      lines: 100,
      variants: [
        {
          variant: "prefix_stripped",
          examples: 80,
          clean: { exact_all: 0.8, level_accuracy: 0.95 },
          probe: { exact_all: 0.5, level_accuracy: 0.6 },
          served_level_accuracy: 0.9,
        },
      ],
    },
  };
}

function metrics(): MetricsLine[] {
  const out: MetricsLine[] = [];
  for (let step = 10; step <= 200; step += 10)
    out.push({
      kind: "train",
      step,
      at: "",
      loss: 4 / Math.sqrt(step),
      lm_loss: 3.5 / Math.sqrt(step),
      q_halt_loss: 0.1,
      tasks: {},
      token_accuracy: Math.min(0.95, step / 200),
      exact_accuracy: step / 400,
      q_halt_accuracy: 0.9,
      lr: 3e-4,
      samples_per_s: 40,
      halt_steps: 3,
    });
  for (const [step, score] of [
    [50, 0.4],
    [100, 0.6],
    [150, 0.7],
    [200, 0.68],
  ] as const)
    out.push({
      kind: "val",
      step,
      at: "",
      score,
      tasks: { log_triage: score + 0.1, trace_outcome: score - 0.1 },
      accuracy: { log_triage: { token_accuracy: score, exact_accuracy: score / 2 } },
      examples: 64,
      best: step === 150,
      halt_histogram: [1, 2, 3, 4],
    });
  return out;
}

const dataset: DatasetSummary = {
  id: "ds-20261128-0123456789ab",
  window: {
    start: "2026-11-25T00:00:00.000Z",
    end: "2026-11-29T00:00:00.000Z",
    split_at: "2026-11-28T04:48:00.000Z",
    days: 4,
  },
  counts: {
    train: 500,
    val: 210,
    by_task: { log_triage: { train: 300, val: 120 }, trace_outcome: { train: 200, val: 90 } },
  },
  sources: { loki: { enabled: true, segments: 4 }, tempo: { enabled: true, segments: 3 } },
  quality: {
    passed: true,
    failures: [],
    valid_ratio: 0.97,
    tasks: {
      log_triage: {
        status: "built",
        records_read: 1000,
        records_valid: 970,
        invalid: [{ reason: "unparseable <line>", count: 30, examples: [] }],
      },
      trace_outcome: { status: "built", records_read: 400, records_valid: 400, invalid: [] },
    },
  },
};

function run(): RunRecord {
  const stage = (
    name: "collect" | "build" | "train" | "evaluate" | "deploy",
    output: Record<string, unknown> = {},
  ) => ({
    name,
    requested: true,
    status: "succeeded" as const,
    started_at: "2026-11-29T11:00:00.000Z",
    ended_at: "2026-11-29T11:10:00.000Z",
    attempts: [
      {
        n: 1,
        started_at: "",
        ended_at: "",
        status: "failed" as const,
        error: "ECONNRESET <socket>",
        transient: true,
        pid: 1,
      },
      {
        n: 2,
        started_at: "",
        ended_at: "",
        status: "succeeded" as const,
        error: null,
        transient: null,
        pid: 1,
      },
    ],
    error: null,
    output,
  });
  return {
    schema: 1,
    id: "r20261129-110000-000-abcd",
    agent: "sre",
    status: "succeeded",
    trigger: { kind: "schedule", actor: "schedule", reason: "monthly <training>" },
    created_at: "2026-11-29T11:00:00.000Z",
    updated_at: "2026-11-29T11:50:00.000Z",
    ended_at: "2026-11-29T11:50:00.000Z",
    options: { from_scratch: false, dataset_id: null },
    stages: [
      stage("collect"),
      stage("build"),
      stage("train"),
      stage("evaluate"),
      stage("deploy", { version: "v20261129-115000-000-abcd", promoted_to: null }),
    ],
    config: {},
    code_version: { id: "0.1.0+gabc", package: "0.1.0", git: "abc", dist_sha256: null },
    dataset_id: dataset.id,
    parent_version: "v20261101-020000-000-abcd",
    model_version: "v20261129-115000-000-abcd",
    progress: null,
    resumes: [],
    log: [],
    error: null,
  };
}

function finding(
  service: string,
  start: string,
  minutes: number,
  score: number,
  record = "ERROR db timeout",
): Finding {
  return {
    service,
    start,
    end: new Date(Date.parse(start) + minutes * 60_000).toISOString(),
    score,
    signals: [
      { signal: "novel_template", share: 0.7 },
      { signal: "log_level", share: 0.3 },
    ],
    records: 12,
    anomalous: 4,
    evidence: [
      {
        time: start,
        source: "loki",
        record,
        expected: { level: "info 80%" },
        observed: { level: "error (p 3%)" },
        score: 6.2,
        signals: ["novel_template", "log_level"],
      },
    ],
    knowledge: [],
  };
}

/** A scan of [start, end) with the given findings. */
function scanOf(start: string, end: string, findings: Finding[]): ScanResult {
  return {
    agent: "sre",
    version: "v20261129-115000-000-abcd",
    window: { start, end },
    sources: ["loki", "tempo", "prometheus"],
    scanned: { logs: 900, traces: 40, series: 12 },
    inferences: 500,
    findings,
    note: findings.length ? null : "nothing in the window surprised the model past the thresholds",
    took_ms: 1200,
    at: end,
  };
}

function svgs(html: string): XmlNode[] {
  return [...html.matchAll(/<svg[\s\S]*?<\/svg>/g)].map((m) => parseXml(m[0]));
}

function chart(html: string, kind: string): XmlNode {
  const c = svgs(html).filter((s) => s.attrs["data-chart"] === kind);
  expect(c.length).toBeGreaterThan(0);
  return c[0];
}

describe("report.html", () => {
  const days = ["2026-11-25", "2026-11-26", "2026-11-27", "2026-11-28"];
  const html = renderReport({
    run: run(),
    metrics: metrics(),
    evaluation: evaluation(),
    dataset,
    coverage: {
      days,
      bytes: { loki: [100, 0, 300, 50], tempo: [10, 10, 0, 10] },
      segments: { loki: [1, 0, 2, 1], tempo: [1, 1, 0, 1] },
    },
    generatedAt: "2026-11-29T12:00:00.000Z",
  });

  it("is one self-contained file with every section", () => {
    for (const id of ["verdict", "curves", "tasks", "data", "halting", "stages"])
      expect(html).toContain(`<section id="${id}"`);
    expect(html).not.toMatch(/<script|<link|<img|src=|@import|url\(/i);
    // The only URL is the SVG namespace.
    expect(
      [...html.matchAll(/https?:\/\/[^"\s<]+/g)]
        .map((m) => m[0])
        .every((u) => u === "http://www.w3.org/2000/svg"),
    ).toBe(true);
    // Text from records is escaped, never markup.
    expect(html).toContain("monthly &lt;training&gt;");
    expect(html).toContain("ECONNRESET &lt;socket&gt;");
    expect(html).not.toContain("<training>");
  });

  it("draws the loss and accuracy curves through every logged step", () => {
    const loss = svgs(html).find((s) => s.attrs["aria-label"] === "Training loss")!;
    const path = findAll(loss, (n) => n.name === "path" && n.attrs["data-series"] === "loss")[0];
    const pts = path.attrs.d.split(/[ML]/).filter(Boolean);
    expect(pts).toHaveLength(20);
    const ys = pts.map((p) => Number(p.trim().split(" ")[1]));
    // Loss falls, so the line rises on screen (smaller y is higher up).
    for (let i = 1; i < ys.length; i++) expect(ys[i]).toBeGreaterThanOrEqual(ys[i - 1]);
    const [, , w, h] = loss.attrs.viewBox.split(" ").map(Number);
    for (const p of pts) {
      const [x, y] = p.trim().split(" ").map(Number);
      expect(x).toBeGreaterThanOrEqual(0);
      expect(x).toBeLessThanOrEqual(w);
      expect(y).toBeGreaterThanOrEqual(0);
      expect(y).toBeLessThanOrEqual(h);
    }
    expect(findAll(loss, (n) => n.attrs.class === "marker")[0].attrs["data-x"]).toBe("150");
    const acc = svgs(html).find((s) => s.attrs["aria-label"] === "Accuracy")!;
    const series = findAll(acc, (n) => n.name === "path").map((n) => [
      n.attrs["data-series"],
      n.attrs["data-points"],
    ]);
    expect(series).toEqual([
      ["train token acc", "20"],
      ["train exact", "20"],
      ["val score", "4"],
      ["val log_triage", "4"],
      ["val trace_outcome", "4"],
    ]);
  });

  it("draws each task's score against the best baseline and the champion, with heights in proportion", () => {
    const bars = findAll(chart(html, "bars"), (n) => n.attrs.class === "bar");
    const byKey = Object.fromEntries(
      bars.map((b) => [`${b.attrs["data-group"]}/${b.attrs["data-series"]}`, b]),
    );
    expect(Object.keys(byKey).sort()).toEqual([
      "log_triage/best baseline",
      "log_triage/candidate",
      "log_triage/champion",
      "trace_outcome/best baseline",
      "trace_outcome/candidate",
      "trace_outcome/champion",
    ]);
    expect(Number(byKey["log_triage/candidate"].attrs["data-value"])).toBe(0.82);
    expect(Number(byKey["trace_outcome/best baseline"].attrs["data-value"])).toBe(0.65);
    const h = (k: string) => Number(byKey[k].attrs.height);
    expect(h("log_triage/candidate") / h("log_triage/best baseline")).toBeCloseTo(0.82 / 0.41, 1);
    expect(h("trace_outcome/champion") / h("trace_outcome/candidate")).toBeCloseTo(0.7 / 0.6, 1);
    const floor = findAll(chart(html, "bars"), (n) => n.attrs.class === "floor");
    expect(floor.map((f) => [f.attrs["data-group"], f.attrs["data-value"]])).toEqual([["log_triage", "0.8"]]);
  });

  it("shows collection coverage per source per day, with empty days marked", () => {
    const cells = findAll(chart(html, "heat"), (n) => n.attrs.class === "cell");
    expect(cells).toHaveLength(8);
    const empty = cells
      .filter((c) => c.attrs["data-value"] === "0")
      .map((c) => `${c.attrs["data-row"]} ${c.attrs["data-day"]}`);
    expect(empty).toEqual(["loki 2026-11-26", "tempo 2026-11-27"]);
    for (const c of cells.filter((x) => x.attrs["data-value"] === "0")) expect(c.attrs.fill).toBe("#fde2e2");
    expect(html).toContain("97.0% of records valid");
    expect(html).toContain("unparseable &lt;line&gt; (30)");
  });

  it("shows the halting-steps distribution of the candidate and the champion", () => {
    const svg = svgs(html).find((s) => s.attrs["aria-label"]?.startsWith("Supervision steps"))!;
    const bars = findAll(svg, (n) => n.attrs.class === "bar");
    const cand = bars
      .filter((b) => b.attrs["data-series"] === "candidate")
      .map((b) => Number(b.attrs["data-value"]));
    expect(cand).toEqual([10 / 210, 50 / 210, 100 / 210, 50 / 210]);
    expect(bars.filter((b) => b.attrs["data-series"] === "champion")).toHaveLength(4);
  });

  it("states the gate verdict with its reasons", () => {
    // trace_outcome is below both its baseline and the champion: the gate fails.
    expect(html).toContain("FAILED · registered, not promoted");
    expect(html).toContain(
      "trace_outcome: mean_accuracy 0.600 does not beat the best baseline (majority_per_root_operation, 0.650)",
    );
    expect(html).toContain("trace_outcome: regresses against the champion: 0.600 vs 0.700");
    expect(html).toContain("log_triage: 0.820 reaches the floor of 0.800");
    expect(html).toMatch(/failed the gate<\/b>; it was registered but not promoted/);
    expect(html).toContain(
      "it beats the best baseline on 1 of 2 judged tasks (on 1 with the 95% interval of the difference above 0)",
    );
    // log_triage has intervals: the gate reads their lower bounds.
    expect(html).toContain(
      "log_triage: exact_all 0.820 beats the best baseline (majority, 0.410) by +0.410 [+0.352, +0.468] (95% paired bootstrap interval",
    );
    expect(html).toContain("log_triage: 0.820 vs champion 0.780: +0.040 [-0.012, +0.093]");
  });

  it("shows the robustness probe beside the clean score", () => {
    expect(html).toContain("Robustness: log lines as agents paste them");
    expect(html).toContain(
      '<tr><td>prefix stripped</td><td class="num">80</td><td class="num">80.0% → 50.0%</td><td class="num">95.0% → 60.0%</td><td class="num">90.0%</td></tr>',
    );
  });

  it("shows each task's paired intervals to the best baseline and the champion", () => {
    const row = html.slice(
      html.indexOf("<tr><td>log_triage"),
      html.indexOf("</tr>", html.indexOf("<tr><td>log_triage")),
    );
    // Above 0: evidence of a win; spanning 0: none either way.
    expect(row).toContain('<span class="ok">+0.410 [+0.352, +0.468]</span>');
    expect(row).toContain('<span class="muted">+0.040 [-0.012, +0.093]</span>');
    expect(row).toContain("baselines: majority 0.41");
    const trace = html.slice(html.indexOf("<tr><td>trace_outcome"));
    expect(trace.slice(0, trace.indexOf("</tr>"))).not.toContain("[");
  });
});

describe("report.html: the anomaly scan of the validation days", () => {
  // Two scans in the validation days (from 2026-11-28 04:48) and one before them, in training days.
  const early = scanOf("2026-11-28T06:00:00.000Z", "2026-11-28T08:00:00.000Z", [
    finding("postgres", "2026-11-28T06:20:00.000Z", 50, 91.3),
    finding("agent-sre", "2026-11-28T06:30:00.000Z", 35, 13.5, 'level=error msg="<db> & timeout"'),
  ]);
  const late = scanOf("2026-11-28T20:00:00.000Z", "2026-11-28T21:00:00.000Z", [
    finding("postgres", "2026-11-28T20:10:00.000Z", 5, 4.2),
  ]);
  const training = scanOf("2026-11-26T10:00:00.000Z", "2026-11-26T11:00:00.000Z", [
    finding("rabbitmq", "2026-11-26T10:10:00.000Z", 10, 50),
  ]);
  const render = (scans: ScanResult[]) =>
    renderReport({
      run: run(),
      metrics: metrics(),
      evaluation: evaluation(),
      dataset,
      coverage: null,
      scans,
      generatedAt: "2026-11-29T12:00:00.000Z",
    });
  const html = render([training, early, late]);

  it("draws a row per service and a bar per finding over its span, darker for a higher score", () => {
    const tl = chart(html, "timeline");
    const [, , w] = tl.attrs.viewBox.split(" ").map(Number);
    const bars = findAll(tl, (n) => n.attrs.class === "finding");
    // The validation days' three findings; the training-days scan is not shown.
    expect(
      bars.map((b) => `${b.attrs["data-service"]} ${b.attrs["data-start"]} ${b.attrs["data-score"]}`).sort(),
    ).toEqual(
      [
        "agent-sre 2026-11-28T06:30:00.000Z 13.5",
        "postgres 2026-11-28T06:20:00.000Z 91.3",
        "postgres 2026-11-28T20:10:00.000Z 4.2",
      ].sort(),
    );
    // Rows: the highest-scoring service first.
    const labels = findAll(
      tl,
      (n) => n.name === "text" && n.attrs["text-anchor"] === "end" && n.attrs["font-size"] === "12",
    );
    expect(labels.map((l) => l.text)).toEqual(["postgres", "agent-sre"]);
    // x is linear in time over the scanned span (06:00 to 21:00), widths in proportion to the spans.
    const t0 = Date.parse("2026-11-28T06:00:00.000Z");
    const t1 = Date.parse("2026-11-28T21:00:00.000Z");
    const x0 = Number(findAll(tl, (n) => n.attrs.class === "window")[0].attrs.x);
    const scale = (w - 12 - x0) / (t1 - t0);
    for (const b of bars) {
      expect(Number(b.attrs.x)).toBeCloseTo(x0 + (Date.parse(b.attrs["data-start"]) - t0) * scale, 0);
      const span = Date.parse(b.attrs["data-end"]) - Date.parse(b.attrs["data-start"]);
      expect(Number(b.attrs.width)).toBeCloseTo(Math.max(2, span * scale), 0);
    }
    const opacity = Object.fromEntries(
      bars.map((b) => [b.attrs["data-score"], Number(b.attrs["fill-opacity"])]),
    );
    expect(opacity["91.3"]).toBe(1);
    expect(opacity["13.5"]).toBeLessThan(opacity["91.3"]);
    expect(opacity["4.2"]).toBeLessThan(opacity["13.5"]);
    // The two scanned windows are shaded, the gap between them is not.
    expect(
      findAll(tl, (n) => n.attrs.class === "window").map(
        (r) => `${r.attrs["data-start"]} ${r.attrs["data-end"]}`,
      ),
    ).toEqual([
      "2026-11-28T06:00:00.000Z 2026-11-28T08:00:00.000Z",
      "2026-11-28T20:00:00.000Z 2026-11-28T21:00:00.000Z",
    ]);
  });

  it("lists the findings, highest score first, with their evidence escaped", () => {
    const section = html.slice(
      html.indexOf('<section id="scan"'),
      html.indexOf("</section>", html.indexOf('<section id="scan"')),
    );
    const rows = [...section.matchAll(/<tr><td>([^<]+)<\/td><td>([^<]+)<\/td><td class="num">([^<]+)</g)].map(
      (m) => `${m[1]} ${m[2]} ${m[3]}`,
    );
    expect(rows).toEqual([
      "postgres 2026-11-28 06:20–07:10 91.3",
      "agent-sre 2026-11-28 06:30–07:05 13.5",
      "postgres 2026-11-28 20:10–20:15 4.2",
    ]);
    expect(section).toContain("novel_template, log_level");
    expect(section).toContain("loki: level=error msg=&quot;&lt;db&gt; &amp; timeout&quot;");
    expect(section).not.toContain("<db>");
    expect(section).not.toContain("rabbitmq");
    expect(section).toContain(
      "2026-11-28 06:00–08:00 (900 log lines, 40 traces, 12 series; v20261129-115000-000-abcd)",
    );
    expect(html).not.toMatch(/<script/i);
  });

  it("says so when no scan of the validation days is stored, or a scan found nothing", () => {
    const none = render([training]);
    expect(none).toContain("No anomaly scan of the validation days");
    expect(svgs(none).some((s) => s.attrs["data-chart"] === "timeline")).toBe(false);
    const quiet = render([scanOf("2026-11-28T06:00:00.000Z", "2026-11-28T07:00:00.000Z", [])]);
    expect(findAll(chart(quiet, "timeline"), (n) => n.attrs.class === "finding")).toEqual([]);
    expect(quiet).toContain("No findings: nothing in the window surprised the model past the thresholds");
  });

  it("keeps one scan per window for the run, the newest", async () => {
    const store = new FsStore(mkdtempSync(join(tmpdir(), "trm-report-scan-")));
    const id = "r20261129-110000-000-abcd";
    expect(await readRunScans(store, "sre", id)).toEqual([]);
    await addRunScan(store, id, late);
    await addRunScan(store, id, early);
    await addRunScan(store, id, { ...early, findings: early.findings.slice(0, 1) });
    const kept = await readRunScans(store, "sre", id);
    expect(kept.map((s) => [s.window.start, s.findings.length])).toEqual([
      ["2026-11-28T06:00:00.000Z", 1],
      ["2026-11-28T20:00:00.000Z", 1],
    ]);
    // Scanned again once retention has deleted the window's raw days: it read nothing, and the
    // scan that did read them stays.
    const gone = { ...early, scanned: { logs: 0, traces: 0, series: 0 }, findings: [] };
    expect(await addRunScan(store, id, gone)).toBe(false);
    expect((await readRunScans(store, "sre", id)).map((s) => s.findings.length)).toEqual([1, 1]);
  });
});

describe("report.html for a run", () => {
  it("is written into the run folder when a run ends, from what the stages stored", async () => {
    const dir = mkdtempSync(join(tmpdir(), "trm-report-"));
    const config = parseConfig({ data_dir: join(dir, "data"), agents: { sre: {} } });
    const store = new FsStore(join(dir, "store"));
    await writeSegment(store, "sre", "loki", "2026-11-27", "s1", [
      { kind: "log_entry", query: "q", ts_ns: "1796000000000000000", labels: {}, line: "hello" },
    ]);
    await store.put(`datasets/sre/${dataset.id}/manifest.json`, JSON.stringify(dataset));
    const stages = {
      collect: async () => ({ records: 1 }),
      build: async () => ({ dataset_id: dataset.id }),
      train: async (ctx) => {
        await store.put(
          `runs/sre/${ctx.runId}/metrics.jsonl`,
          `${metrics()
            .map((m) => JSON.stringify(m))
            .join("\n")}\n`,
        );
        return { best_step: 150 };
      },
      evaluate: async (ctx) => {
        await store.put(`runs/sre/${ctx.runId}/evaluation.json`, JSON.stringify(evaluation()));
        return {};
      },
      deploy: async (ctx) => {
        // What the demo's scan step does: a scan of a validation-day window stored for the run.
        await addRunScan(
          store,
          ctx.runId,
          scanOf("2026-11-28T06:00:00.000Z", "2026-11-28T08:00:00.000Z", [
            finding("postgres", "2026-11-28T06:20:00.000Z", 50, 91.3),
          ]),
        );
        return { version: "v20261129-115000-000-abcd", promoted_to: null };
      },
    } as StageFns;
    const pipeline = new Pipeline({
      config,
      store,
      stages,
      onRunEnd: async (r) => void (await writeRunReport(store, r)),
    });
    const rec = await (await pipeline.startRun({ agent: "sre" })).done;
    const html = (await store.get(reportKey("sre", rec.id))).toString();
    for (const id of ["verdict", "curves", "tasks", "data", "halting", "scan", "stages"])
      expect(html).toContain(`<section id="${id}"`);
    expect(svgs(html).map((s) => s.attrs["data-chart"])).toEqual([
      "line",
      "line",
      "bars",
      "heat",
      "bars",
      "timeline",
    ]);
    expect(
      findAll(chart(html, "timeline"), (n) => n.attrs.class === "finding").map(
        (b) => b.attrs["data-service"],
      ),
    ).toEqual(["postgres"]);
    const cells = findAll(chart(html, "heat"), (n) => n.attrs.class === "cell");
    // The dataset window's four days, one source with data on one of them.
    expect(
      cells.map((c) => `${c.attrs["data-row"]} ${c.attrs["data-day"]} ${c.attrs["data-value"] !== "0"}`),
    ).toContain("loki 2026-11-27 true");
    expect(new Set(cells.map((c) => c.attrs["data-day"]))).toEqual(new Set(days4()));
  });
});

function days4() {
  return ["2026-11-25", "2026-11-26", "2026-11-27", "2026-11-28"];
}
