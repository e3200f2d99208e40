// report.html of a run: one self-contained file (inline CSS and SVG, no scripts, no network)
// that tells a person in a minute what the run did: the verdict first, then the curves, the
// scores against the baselines and the champion, the data it learned from, how long the model
// thinks before it answers, what the anomaly scan found in the validation days, and what each
// stage did.

import * as z from "zod";
import type { ObjectStore } from "../store/index.js";
import { NotFoundError } from "../store/index.js";
import { datasetManifestKey, runEvaluationKey, runReportKey } from "../store/layout.js";
import { pct } from "../util/format.js";
import { listSegments } from "./collect/raw-store.js";
import { SOURCES } from "./collect/records.js";
import { type RunRecord, runPrefix, stageOutput } from "./contract.js";
import { formatInterval, type PairedInterval } from "./evaluate/bootstrap.js";
import type { ProbeResult } from "./evaluate/probe.js";
import type { EvaluationResult } from "./evaluate.js";
import { COLORS, esc, fmt, groupedBars, heatStrip, lineChart, TASK_COLORS } from "./report/charts.js";
import { readRunScans, scanSection, scansWithin } from "./report/scan.js";
import type { ScanResult } from "./scan/types.js";
import { type MetricsLine, readRunMetrics, type TrainLogLine, type ValLogLine } from "./train.js";

/** The part of a dataset manifest the report shows (the dataset module's Manifest has it). */
export const DatasetSummary = z.looseObject({
  id: z.string(),
  window: z.looseObject({ start: z.string(), end: z.string(), split_at: z.string(), days: z.number() }),
  counts: z.looseObject({
    train: z.number(),
    val: z.number(),
    by_task: z.record(z.string(), z.object({ train: z.number(), val: z.number() })),
  }),
  sources: z.record(z.string(), z.object({ enabled: z.boolean(), segments: z.number() })),
  quality: z.looseObject({
    passed: z.boolean(),
    failures: z.array(z.string()),
    valid_ratio: z.number(),
    tasks: z.record(
      z.string(),
      z.looseObject({
        status: z.string(),
        reason: z.string().optional(),
        records_read: z.number(),
        records_valid: z.number(),
        invalid: z.array(z.looseObject({ reason: z.string(), count: z.number() })),
        dropped_as_leaks: z.number().optional(),
      }),
    ),
  }),
});
export type DatasetSummary = z.infer<typeof DatasetSummary>;

export interface Coverage {
  days: string[];
  /** bytes[source][i] = compressed bytes collected for days[i]. */
  bytes: Record<string, number[]>;
  segments: Record<string, number[]>;
}

export interface ReportInput {
  run: RunRecord;
  metrics: MetricsLine[];
  evaluation: EvaluationResult | null;
  dataset: DatasetSummary | null;
  coverage: Coverage | null;
  /** Anomaly scans stored for the run (report/scan.ts); those in the validation days are shown. */
  scans?: ScanResult[];
  generatedAt: string;
}

export const reportKey = runReportKey;

/** Gathers what the report shows from the store and writes report.html beside run.json. */
export async function writeRunReport(store: ObjectStore, run: RunRecord, now = new Date()): Promise<string> {
  const input = await loadReportInput(store, run, now);
  const key = reportKey(run.agent, run.id);
  await store.put(key, renderReport(input), { contentType: "text/html; charset=utf-8" });
  return key;
}

export async function loadReportInput(
  store: ObjectStore,
  run: RunRecord,
  now = new Date(),
): Promise<ReportInput> {
  const prefix = runPrefix(run.agent, run.id);
  const metrics = await readRunMetrics(store, prefix);
  const evaluation = await readJson<EvaluationResult>(store, runEvaluationKey(run.agent, run.id));
  let dataset: DatasetSummary | null = null;
  if (run.dataset_id) {
    const raw = await readJson<unknown>(store, datasetManifestKey(run.agent, run.dataset_id));
    const parsed = DatasetSummary.safeParse(raw);
    dataset = parsed.success ? parsed.data : null;
  }
  const end = dataset ? new Date(dataset.window.end) : now;
  const days = dataset ? Math.max(1, Math.ceil(dataset.window.days)) : 30;
  const coverage = await collectCoverage(store, run.agent, end, days);
  const scans = await readRunScans(store, run.agent, run.id);
  return { run, metrics, evaluation, dataset, coverage, scans, generatedAt: now.toISOString() };
}

async function readJson<T>(store: ObjectStore, key: string): Promise<T | null> {
  try {
    return JSON.parse((await store.get(key)).toString("utf8")) as T;
  } catch (err) {
    if (err instanceof NotFoundError || err instanceof SyntaxError) return null;
    throw err;
  }
}

/** Bytes and segments collected per source per day, over the `days` days before `end`. */
export async function collectCoverage(
  store: ObjectStore,
  agent: string,
  end: Date,
  days: number,
): Promise<Coverage> {
  const list: string[] = [];
  // The window's end is exclusive: a window ending at midnight ends with the day before.
  const e = new Date(end.getTime() - 1);
  const last = Date.UTC(e.getUTCFullYear(), e.getUTCMonth(), e.getUTCDate());
  for (let i = days - 1; i >= 0; i--) list.push(new Date(last - i * 86_400_000).toISOString().slice(0, 10));
  const bytes: Record<string, number[]> = {};
  const segments: Record<string, number[]> = {};
  for (const source of SOURCES) {
    const segs = await listSegments(store, agent, source, { fromDay: list[0], toDay: list[list.length - 1] });
    if (segs.length === 0 && source === "code") continue;
    bytes[source] = list.map(() => 0);
    segments[source] = list.map(() => 0);
    for (const s of segs) {
      const i = list.indexOf(s.day);
      if (i < 0) continue;
      bytes[source][i] += s.size;
      segments[source][i]++;
    }
  }
  return { days: list, bytes, segments };
}

// ---- rendering ----------------------------------------------------------------------------

const STATUS_COLOR: Record<string, string> = {
  succeeded: COLORS.pass,
  partial: COLORS.accent,
  failed: COLORS.fail,
  cancelled: COLORS.muted,
  running: COLORS.candidate,
  pending: "#d1d5db",
  skipped: "#e5e7eb",
};

function pill(text: string, color: string): string {
  return `<span class="pill" style="background:${color}">${esc(text)}</span>`;
}

function duration(a: string | null, b: string | null): string {
  if (!a) return "–";
  const s = ((b ? Date.parse(b) : Date.now()) - Date.parse(a)) / 1000;
  if (s < 90) return `${s.toFixed(1)} s`;
  if (s < 5400) return `${(s / 60).toFixed(1)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

export function renderReport(r: ReportInput): string {
  const run = r.run;
  const train = r.metrics.filter((m): m is TrainLogLine => m.kind === "train");
  const val = r.metrics.filter((m): m is ValLogLine => m.kind === "val");
  const e = r.evaluation;
  const promoted = stageOutput(run, "deploy")?.promoted_to ?? null;
  const headline = summarySentence(run, e, promoted);
  const sections = [
    section("verdict", "Verdict", verdict(e, promoted, run)),
    section("curves", "Training curves", curves(train, val)),
    section("tasks", "Scores per task", taskBars(e)),
    section("data", "Data", dataQuality(r.dataset, r.coverage)),
    section("halting", "Thinking steps", halting(e, val)),
    section("scan", "Anomaly scan of the validation days", scanPart(r)),
    section("stages", "Stages", stages(run)),
  ];
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(`${run.agent} · run ${run.id}`)}</title>
<style>${CSS}</style></head>
<body><main>
<header>
  <div class="kicker">trm-forge · ${esc(run.agent)}</div>
  <h1>Run ${esc(run.id)} ${pill(run.status, STATUS_COLOR[run.status] ?? COLORS.muted)}</h1>
  <p class="lead">${headline}</p>
  <dl class="facts">
    <div><dt>trigger</dt><dd>${esc(run.trigger.kind)} · ${esc(run.trigger.actor)}${run.trigger.reason ? ` · ${esc(run.trigger.reason)}` : ""}</dd></div>
    <div><dt>started</dt><dd>${esc(run.created_at.replace("T", " ").slice(0, 19))} UTC</dd></div>
    <div><dt>duration</dt><dd>${duration(run.created_at, run.ended_at)}</dd></div>
    <div><dt>dataset</dt><dd>${esc(run.dataset_id ?? "–")}</dd></div>
    <div><dt>model version</dt><dd>${esc(run.model_version ?? "–")}</dd></div>
    <div><dt>fine-tuned from</dt><dd>${esc(run.parent_version ?? (run.options.from_scratch ? "from scratch (asked)" : "from scratch"))}</dd></div>
    <div><dt>code</dt><dd>${esc(run.code_version.id)}</dd></div>
  </dl>
</header>
${sections.join("\n")}
<footer>Generated ${esc(r.generatedAt)} · one self-contained file: no scripts, no network.</footer>
</main></body></html>
`;
}

function scanPart(r: ReportInput): string {
  const validation = r.dataset ? { start: r.dataset.window.split_at, end: r.dataset.window.end } : null;
  const scans = r.scans ?? [];
  return scanSection(validation ? scansWithin(scans, validation) : scans, validation);
}

function summarySentence(run: RunRecord, e: EvaluationResult | null, promoted: string | null): string {
  if (run.status === "failed") return `The run <b>failed</b>: ${esc(run.error ?? "see the stages below")}.`;
  if (run.status === "cancelled")
    return "The run was <b>cancelled</b>; it can be resumed from where it stopped.";
  if (run.status === "running") return "The run is still in progress.";
  if (!e) return "The run finished without evaluating a model.";
  const tasks = Object.values(e.tasks).filter((t) => t.enabled && t.judged);
  const beat = tasks.filter(
    (t) => t.best_baseline && better(t, t.candidate.score, t.baselines[t.best_baseline].score),
  );
  const sure = beat.filter((t) => (t.intervals?.baseline?.low ?? Number.NEGATIVE_INFINITY) > 0).length;
  const gate = e.gate.passed ? "<b class=ok>passed the gate</b>" : "<b class=bad>failed the gate</b>";
  const where = promoted
    ? ` and is now the <b>${esc(promoted)}</b>`
    : e.gate.passed
      ? ""
      : "; it was registered but not promoted";
  return `The candidate ${gate}${where}: it beats the best baseline on ${beat.length} of ${tasks.length} judged task${tasks.length === 1 ? "" : "s"}${beat.some((t) => t.intervals?.baseline) ? ` (on ${sure} with the 95% interval of the difference above 0)` : ""}${e.champion ? ` and was compared with champion ${esc(e.champion.version)} on the same ${e.examples} examples` : ` (${e.examples} validation examples; no champion yet)`}.`;
}

function better(t: { direction: "higher" | "lower" }, a: number, b: number): boolean {
  return t.direction === "higher" ? a > b : a < b;
}

function section(id: string, title: string, body: string): string {
  return `<section id="${id}" class="card"><h2>${esc(title)}</h2>${body}</section>`;
}

function verdict(e: EvaluationResult | null, promoted: string | null, run: RunRecord): string {
  if (!e) {
    const why = run.stages.find((s) => s.name === "evaluate")?.status ?? "skipped";
    return `<p class="muted">No evaluation in this run (evaluate: ${esc(why)}). A version without a gate verdict is never promoted automatically.</p>`;
  }
  const head = e.gate.passed
    ? `<div class="verdict ok">PASSED${promoted ? ` · promoted to ${esc(promoted)}` : ""}</div>`
    : `<div class="verdict bad">FAILED · registered, not promoted</div>`;
  const items = e.gate.checks
    .map(
      (c) =>
        `<li class="${c.passed ? "ok" : "bad"}"><span class="mark">${c.passed ? "✓" : "✗"}</span> <span class="check">${esc(c.check)}</span> ${esc(c.detail)}</li>`,
    )
    .join("");
  return `${head}<ul class="checks">${items}</ul>${e.champion_note ? `<p class="muted">${esc(e.champion_note)}</p>` : ""}${(e.notes ?? []).map((n) => `<p class="muted">${esc(n)}</p>`).join("")}`;
}

function curves(train: TrainLogLine[], val: ValLogLine[]): string {
  const best = val.filter((v) => v.best).at(-1);
  const marker = best ? { x: best.step, label: `best @ ${best.step}` } : undefined;
  const loss = lineChart({
    title: "Training loss",
    xLabel: "step",
    yLabel: "loss",
    series: [
      { name: "loss", color: COLORS.candidate, points: train.map((m) => [m.step, m.loss]) },
      { name: "lm loss", color: COLORS.teal, points: train.map((m) => [m.step, m.lm_loss]), dashed: true },
    ],
    marker,
  });
  const tasks = [...new Set(val.flatMap((v) => Object.keys(v.tasks)))];
  const acc = lineChart({
    title: "Accuracy",
    xLabel: "step",
    yLabel: "accuracy / score",
    yMin: 0,
    yMax: 1,
    series: [
      { name: "train token acc", color: "#93c5fd", points: train.map((m) => [m.step, m.token_accuracy]) },
      { name: "train exact", color: "#c4b5fd", points: train.map((m) => [m.step, m.exact_accuracy]) },
      { name: "val score", color: COLORS.ink, points: val.map((v) => [v.step, v.score]), dots: true },
      ...tasks.map((t, i) => ({
        name: `val ${t}`,
        color: TASK_COLORS[i % TASK_COLORS.length],
        points: val.filter((v) => t in v.tasks).map((v): [number, number] => [v.step, v.tasks[t]]),
        dashed: true,
      })),
    ],
    marker,
  });
  const lastTrain = train.at(-1);
  const note = lastTrain
    ? `<p class="muted">Last logged step ${lastTrain.step}: loss ${fmt(lastTrain.loss)}, token accuracy ${pct(lastTrain.token_accuracy)}, ${fmt(lastTrain.samples_per_s)} samples/s, lr ${fmt(lastTrain.lr)}. Validation uses the EMA weights with early halting, as serving does${best ? `; the best score ${fmt(best.score)} was at step ${best.step} and is the model kept` : ""}.</p>`
    : `<p class="muted">No training in this run.</p>`;
  return `<div class="grid2">${loss}${acc}</div>${note}`;
}

function taskBars(e: EvaluationResult | null): string {
  if (!e) return `<p class="muted">No evaluation in this run.</p>`;
  const tasks = Object.values(e.tasks).filter((t) => t.examples > 0);
  const chart = groupedBars({
    title: "Primary score per task",
    yLabel: "score",
    yMax: 1,
    format: (v) => `${(v * 100).toFixed(0)}%`,
    groups: tasks.map((t) => ({
      label: t.task,
      floor: t.floor,
      bars: [
        { name: "candidate", value: t.candidate.score, color: COLORS.candidate },
        { name: "champion", value: t.champion?.score ?? null, color: COLORS.champion },
        {
          name: "best baseline",
          value: t.best_baseline ? t.baselines[t.best_baseline].score : null,
          color: COLORS.baseline,
        },
      ],
    })),
  });
  const rows = Object.values(e.tasks)
    .map((t) => {
      const b = t.best_baseline ? t.baselines[t.best_baseline] : null;
      const others = Object.entries(t.candidate.metrics)
        .filter(([k]) => k !== t.primary)
        .map(([k, v]) => `${esc(k)} ${fmt(v)}`)
        .join(" · ");
      const all = Object.entries(t.baselines)
        .map(([k, v]) => `${esc(k)} ${fmt(v.score)}`)
        .join(" · ");
      return `<tr><td>${esc(t.task)}${t.enabled ? "" : " <span class=muted>(disabled)</span>"}</td><td>${esc(t.primary)}</td><td class="num">${pct(t.candidate.score)}</td><td class="num">${t.champion ? pct(t.champion.score) : "–"}</td><td class="num">${b ? `${pct(b.score)} <span class=muted>${esc(t.best_baseline!)}</span>` : "–"}</td><td class="num">${intervalCell(t.intervals?.baseline)}</td><td class="num">${intervalCell(t.intervals?.champion)}</td><td class="num">${t.examples}${t.judged ? "" : " <span class=muted>(not judged)</span>"}</td><td class="muted small">${others}${all ? `<br>baselines: ${all}` : ""}</td></tr>`;
    })
    .join("");
  return `${chart}<table><thead><tr><th>task</th><th>metric</th><th>candidate</th><th>champion${e.champion ? ` <span class=muted>${esc(e.champion.version)}</span>` : ""}</th><th>best baseline</th><th>− best baseline <span class=muted>95% CI</span></th><th>− champion <span class=muted>95% CI</span></th><th>examples</th><th>other metrics (candidate)</th></tr></thead><tbody>${rows}</tbody></table><p class="muted">All three answered the same ${e.examples} validation examples of ${esc(e.dataset_id)}. The differences are the candidate's minus the other's (positive: the candidate is better), with a paired bootstrap 95% interval over those examples; an interval that spans 0 is no evidence either way. A red dashed line marks a configured floor.</p>${probeTable(e.probe)}`;
}

/** The robustness probe: log lines as agents paste them, beside the same lines clean. */
function probeTable(p: ProbeResult | null | undefined): string {
  if (!p?.variants.length) return "";
  const rows = p.variants
    .map(
      (v) =>
        `<tr><td>${esc(v.variant.replace("_", " "))}</td><td class="num">${v.examples}</td><td class="num">${pct(v.clean.exact_all)} → ${pct(v.probe.exact_all)}</td><td class="num">${pct(v.clean.level_accuracy)} → ${pct(v.probe.level_accuracy)}</td><td class="num">${pct(v.served_level_accuracy)}</td></tr>`,
    )
    .join("");
  return `<h3>Robustness: log lines as agents paste them</h3><table><thead><tr><th>variant</th><th>lines</th><th>exact_all clean → variant</th><th>level accuracy clean → variant</th><th>level as served</th></tr></thead><tbody>${rows}</tbody></table><p class="muted">${p.lines} validation lines of ${esc(p.task)}, rewritten: the timestamp prefix stripped, cut to 60%, quotes swapped, logfmt as JSON and JSON as logfmt; the labels stay the clean line's. "As served" takes a level the line states in a field (level=…, "level": …) as stated, as serving does.</p>`;
}

/** "+0.024 [-0.003, +0.046]", red when the interval is below 0, grey when it spans 0. */
function intervalCell(iv: PairedInterval | null | undefined): string {
  if (!iv) return "–";
  const cls = iv.low > 0 ? "ok" : iv.high < 0 ? "bad" : "muted";
  return `<span class="${cls}">${esc(formatInterval(iv))}</span>`;
}

function dataQuality(d: DatasetSummary | null, c: Coverage | null): string {
  const parts: string[] = [];
  if (c) {
    const rows = Object.keys(c.bytes).map((s) => ({
      label: s,
      snapshot: s === "code",
      values: c.bytes[s],
      notes: c.bytes[s].map((b, i) =>
        b ? `${c.segments[s][i]} segment(s), ${(b / 1024).toFixed(1)} KiB` : "nothing collected",
      ),
    }));
    parts.push(heatStrip({ title: "Collection coverage per source per day", days: c.days, rows }));
    const missing = rows
      .filter((r) => !r.snapshot)
      .map((r) => `${r.label} ${r.values.filter((v) => v === 0).length}`)
      .join(", ");
    parts.push(`<p class="muted">Days without data in the window: ${esc(missing)}.</p>`);
  }
  if (d) {
    const q = d.quality;
    const rows = Object.entries(q.tasks)
      .map(([task, t]) => {
        const n = d.counts.by_task[task] ?? { train: 0, val: 0 };
        const invalid = t.invalid.reduce((a, b) => a + b.count, 0);
        const top = t.invalid
          .slice()
          .sort((a, b) => b.count - a.count)
          .slice(0, 2)
          .map((i) => `${esc(i.reason)} (${i.count})`)
          .join(", ");
        return `<tr><td>${esc(task)}</td><td>${pill(t.status, t.status === "built" ? COLORS.pass : COLORS.muted)}</td><td class="num">${t.records_read}</td><td class="num">${t.records_read ? pct(t.records_valid / t.records_read) : "–"}</td><td class="num">${n.train}</td><td class="num">${n.val}</td><td class="num">${invalid}</td><td class="muted small">${t.reason ? esc(t.reason) : top}</td></tr>`;
      })
      .join("");
    parts.push(
      `<p>Dataset <b>${esc(d.id)}</b>: ${esc(d.window.start.slice(0, 10))} to ${esc(d.window.end.slice(0, 10))} (${fmt(d.window.days)} days), validation from ${esc(d.window.split_at.slice(0, 16).replace("T", " "))}. Quality ${q.passed ? `<b class=ok>passed</b>` : `<b class=bad>failed</b>`}, ${pct(q.valid_ratio)} of records valid.</p>`,
      q.failures.length
        ? `<ul class="checks">${q.failures.map((f) => `<li class="bad"><span class="mark">✗</span> ${esc(f)}</li>`).join("")}</ul>`
        : "",
      `<table><thead><tr><th>task</th><th>status</th><th>records</th><th>valid</th><th>train</th><th>val</th><th>invalid</th><th>top reasons</th></tr></thead><tbody>${rows}</tbody></table>`,
    );
  } else parts.push(`<p class="muted">No dataset recorded for this run.</p>`);
  return parts.join("");
}

function halting(e: EvaluationResult | null, val: ValLogLine[]): string {
  const cand = e?.halting.candidate.histogram ?? val.at(-1)?.halt_histogram ?? null;
  if (!cand || cand.every((v) => v === 0)) return `<p class="muted">No answers were scored in this run.</p>`;
  const champ = e?.halting.champion?.histogram ?? null;
  const share = (h: number[]) => {
    const n = h.reduce((a, b) => a + b, 0) || 1;
    return h.map((v) => v / n);
  };
  const c = share(cand);
  const ch = champ ? share(champ) : null;
  const chart = groupedBars({
    title: "Supervision steps used per answer (early halting)",
    yLabel: "share of answers",
    format: (v) => `${(v * 100).toFixed(0)}%`,
    groups: c.map((v, i) => ({
      label: String(i + 1),
      bars: [
        { name: "candidate", value: v, color: COLORS.candidate },
        ...(ch ? [{ name: "champion", value: ch[i] ?? 0, color: COLORS.champion }] : []),
      ],
    })),
  });
  const mean = e
    ? e.halting.candidate.mean
    : cand.reduce((a, v, i) => a + v * (i + 1), 0) / (cand.reduce((a, b) => a + b, 0) || 1);
  return `${chart}<p class="muted">The model stops thinking when its halting head is confident (q_halt &gt; 0), at most ${cand.length} steps. Mean ${fmt(mean)} steps${e?.halting.champion ? `; the champion ${fmt(e.halting.champion.mean)}` : ""}. Fewer steps means faster answers; all steps on every answer means the halting head never became confident.</p>`;
}

function stages(run: RunRecord): string {
  const rows = run.stages
    .map((s) => {
      const att = s.attempts.length
        ? s.attempts
            .map(
              (a) =>
                `#${a.n} ${esc(a.status)}${a.transient ? " (transient)" : ""}${a.error ? `: ${esc(a.error)}` : ""}`,
            )
            .join("<br>")
        : "–";
      const out = Object.entries(s.output)
        .filter(([, v]) => v === null || ["string", "number", "boolean"].includes(typeof v))
        .slice(0, 6)
        .map(([k, v]) => `${esc(k)}: ${esc(typeof v === "number" ? fmt(v) : String(v))}`)
        .join(" · ");
      return `<tr><td>${esc(s.name)}</td><td>${pill(s.status, STATUS_COLOR[s.status] ?? COLORS.muted)}</td><td class="num">${duration(s.started_at, s.ended_at)}</td><td class="small">${att}</td><td class="muted small">${out}</td></tr>`;
    })
    .join("");
  const resumes = run.resumes.length
    ? `<p class="muted">Resumed ${run.resumes.length}×: ${run.resumes.map((r) => `${esc(r.at.slice(0, 19))} from ${esc(r.from_stage ?? "–")} (${esc(r.reason)})`).join("; ")}.</p>`
    : "";
  return `<table><thead><tr><th>stage</th><th>status</th><th>time</th><th>attempts</th><th>output</th></tr></thead><tbody>${rows}</tbody></table>${resumes}`;
}

const CSS = `
:root{--ink:#1f2937;--muted:#6b7280;--line:#e5e7eb;--bg:#f3f4f6;--ok:#16a34a;--bad:#dc2626}
*{box-sizing:border-box}body{margin:0;background:var(--bg);color:var(--ink);font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{max-width:1180px;margin:0 auto;padding:28px 20px 40px}
header{margin-bottom:18px}.kicker{color:var(--muted);text-transform:uppercase;letter-spacing:.08em;font-size:12px}
h1{margin:4px 0 8px;font-size:26px;display:flex;gap:10px;align-items:center;flex-wrap:wrap}h2{margin:0 0 12px;font-size:17px}
.lead{font-size:16px;margin:0 0 14px;max-width:900px}
.facts{display:grid;grid-template-columns:repeat(auto-fit,minmax(160px,1fr));gap:8px 16px;margin:0}
.facts div{background:#fff;border:1px solid var(--line);border-radius:8px;padding:6px 10px}.facts dt{font-size:11px;color:var(--muted)}.facts dd{margin:0;font-weight:600;word-break:break-all}
.card{background:#fff;border:1px solid var(--line);border-radius:12px;padding:18px 20px;margin:14px 0;box-shadow:0 1px 2px rgba(0,0,0,.04)}
.grid2{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:14px}
.pill{display:inline-block;color:#fff;border-radius:999px;padding:1px 10px;font-size:12px;font-weight:600;vertical-align:middle}
.verdict{display:inline-block;font-weight:800;letter-spacing:.04em;border-radius:8px;padding:6px 14px;margin-bottom:8px}
.verdict.ok{background:#dcfce7;color:#166534}.verdict.bad{background:#fee2e2;color:#991b1b}
.checks{list-style:none;padding:0;margin:6px 0}.checks li{padding:3px 0}.checks .mark{display:inline-block;width:18px;font-weight:700}
.checks li.ok .mark{color:var(--ok)}.checks li.bad .mark{color:var(--bad)}.check{color:var(--muted);font-size:12px;text-transform:uppercase;margin-right:4px}
b.ok,.ok b,span.ok{color:var(--ok)}b.bad,span.bad{color:var(--bad)}
table{border-collapse:collapse;width:100%;margin-top:10px;font-size:13px}th,td{text-align:left;padding:6px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{font-size:12px;color:var(--muted);font-weight:600}td.num{text-align:right;white-space:nowrap}.muted{color:var(--muted)}.small{font-size:12px}
svg.chart{display:block;max-width:100%;height:auto;margin-top:4px}
footer{color:var(--muted);font-size:12px;text-align:center;margin-top:24px}
`;
