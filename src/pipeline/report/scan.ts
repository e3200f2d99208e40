// The anomaly scan in a run's report: scans of the run's validation days stored beside run.json
// (the demo's scan step stores one; `trm-forge scan --run` adds more), their findings as a table and
// a per-service timeline: one row per service, a bar per finding over its span, darker for a
// higher score, on the scanned windows.
import * as z from "zod";
import type { ObjectStore } from "../../store/index.js";
import { NotFoundError } from "../../store/index.js";
import { runPrefix } from "../contract.js";
import { type Finding, ScanResult } from "../scan/types.js";
import { COLORS, esc, fmt } from "./charts.js";

/** Scans kept per run: the newest, one per window. */
export const MAX_RUN_SCANS = 20;
/** Services drawn as rows, the highest-scoring first. */
const MAX_ROWS = 12;

const RunScans = z.object({ schema: z.literal(1), scans: z.array(ScanResult).max(MAX_RUN_SCANS) }).strict();

export const runScansKey = (agent: string, runId: string) => `${runPrefix(agent, runId)}/scans.json`;

/** The scans stored for a run, oldest window first; none when nothing was stored. */
export async function readRunScans(store: ObjectStore, agent: string, runId: string): Promise<ScanResult[]> {
  try {
    const raw = JSON.parse((await store.get(runScansKey(agent, runId))).toString("utf8"));
    return RunScans.parse(raw).scans;
  } catch (err) {
    // A missing or unreadable file leaves the report without its scan section, never without a report.
    if (err instanceof NotFoundError || err instanceof SyntaxError || err instanceof z.ZodError) return [];
    throw err;
  }
}

/**
 * Adds a scan to the run's (one put); a scan of the same window replaces the older one, except
 * one that read nothing (retention has deleted the window's raw days since): then the earlier
 * scan stays, and this returns false.
 */
export async function addRunScan(store: ObjectStore, runId: string, scan: ScanResult): Promise<boolean> {
  const same = (a: ScanResult) => a.window.start === scan.window.start && a.window.end === scan.window.end;
  const read = (a: ScanResult) => a.scanned.logs + a.scanned.traces + a.scanned.series;
  const earlier = await readRunScans(store, scan.agent, runId);
  if (read(scan) === 0 && earlier.some((s) => same(s) && read(s) > 0)) return false;
  const scans = [...earlier.filter((s) => !same(s)), scan]
    .sort((a, b) => (a.window.start < b.window.start ? -1 : a.window.start > b.window.start ? 1 : 0))
    .slice(-MAX_RUN_SCANS);
  await store.put(runScansKey(scan.agent, runId), `${JSON.stringify({ schema: 1, scans }, null, 1)}\n`, {
    contentType: "application/json",
  });
  return true;
}

/** The scans whose window lies in [start, end), the validation days. */
export function scansWithin(scans: ScanResult[], span: { start: string; end: string }): ScanResult[] {
  const s = Date.parse(span.start);
  const e = Date.parse(span.end);
  return scans.filter((x) => Date.parse(x.window.start) >= s && Date.parse(x.window.end) <= e);
}

const clock = (iso: string) => iso.slice(0, 16).replace("T", " ");
const f1 = (n: number) => (Math.round(n * 10) / 10).toString();

/** One row per service, a bar per finding over its span; the scanned windows shaded behind. */
export function scanTimeline(scans: ScanResult[], width = 760): string {
  const findings = scans.flatMap((s) => s.findings);
  const title = "Findings per service over the scanned windows";
  const top = new Map<string, number>();
  for (const f of findings) top.set(f.service, Math.max(top.get(f.service) ?? 0, f.score));
  const services = [...top.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).map(([s]) => s);
  const rows = services.slice(0, MAX_ROWS);
  const labelW = 140;
  const top0 = 26;
  const rowH = 22;
  const h = top0 + Math.max(1, rows.length) * rowH + 34;
  const t0 = Math.min(...scans.map((s) => Date.parse(s.window.start)));
  const t1 = Math.max(...scans.map((s) => Date.parse(s.window.end)));
  const span = Math.max(1, t1 - t0);
  const x = (t: number) => labelW + ((Math.min(t1, Math.max(t0, t)) - t0) / span) * (width - labelW - 12);
  const max = Math.max(...findings.map((f) => f.score), 0);
  const parts: string[] = [];
  for (const s of scans) {
    const a = x(Date.parse(s.window.start));
    const b = x(Date.parse(s.window.end));
    parts.push(
      `<rect class="window" data-start="${esc(s.window.start)}" data-end="${esc(s.window.end)}" x="${f1(a)}" y="${top0 - 4}" width="${f1(Math.max(1, b - a))}" height="${rows.length * rowH + 4}" fill="#f3f4f6"><title>scanned ${esc(clock(s.window.start))} to ${esc(clock(s.window.end))} UTC by ${esc(s.version)}</title></rect>`,
    );
  }
  rows.forEach((service, i) => {
    const y = top0 + i * rowH;
    parts.push(
      `<text x="${labelW - 8}" y="${y + 13}" text-anchor="end" font-size="12" fill="${COLORS.ink}">${esc(service)}</text>`,
      `<line x1="${labelW}" x2="${width - 12}" y1="${y + rowH - 2}" y2="${y + rowH - 2}" stroke="${COLORS.grid}"/>`,
    );
    for (const f of findings.filter((g) => g.service === service)) {
      const a = x(Date.parse(f.start));
      const b = x(Date.parse(f.end));
      const shade = max > 0 ? 0.3 + 0.7 * (f.score / max) : 1;
      parts.push(
        `<rect class="finding" data-service="${esc(service)}" data-start="${esc(f.start)}" data-end="${esc(f.end)}" data-score="${f.score}" x="${f1(a)}" y="${y + 2}" width="${f1(Math.max(2, b - a))}" height="${rowH - 6}" rx="2" fill="${COLORS.fail}" fill-opacity="${Math.round(shade * 100) / 100}"><title>${esc(findingTitle(f))}</title></rect>`,
      );
    }
  });
  const axisY = top0 + Math.max(1, rows.length) * rowH + 14;
  parts.push(
    `<text x="${labelW}" y="${axisY}" font-size="11" fill="${COLORS.muted}">${esc(clock(new Date(t0).toISOString()))} UTC</text>`,
    `<text x="${width - 12}" y="${axisY}" text-anchor="end" font-size="11" fill="${COLORS.muted}">${esc(clock(new Date(t1).toISOString()))} UTC</text>`,
    `<text x="${labelW}" y="${axisY + 16}" font-size="10" fill="${COLORS.muted}">a bar per finding over its span, darker = higher score · grey = scanned${services.length > rows.length ? ` · ${services.length - rows.length} more services in the table` : ""}</text>`,
  );
  if (!rows.length)
    parts.push(
      `<text class="empty" x="${(labelW + width) / 2}" y="${top0 + 14}" text-anchor="middle" font-size="12" fill="${COLORS.muted}">nothing surprised the model in the scanned windows</text>`,
    );
  return `<svg xmlns="http://www.w3.org/2000/svg" class="chart" data-chart="timeline" viewBox="0 0 ${width} ${h}" width="100%" role="img" aria-label="${esc(title)}"><title>${esc(title)}</title>${parts.join("")}</svg>`;
}

function findingTitle(f: Finding): string {
  return `${f.service} ${clock(f.start)}–${f.end.slice(11, 16)} UTC: score ${fmt(f.score)} (${f.signals.map((s) => s.signal).join(", ")})`;
}

/** The report's scan section: the timeline, then the findings of every scan, highest score first. */
export function scanSection(scans: ScanResult[], validation: { start: string; end: string } | null): string {
  const where = validation
    ? `the validation days (${esc(clock(validation.start))} to ${esc(clock(validation.end))} UTC)`
    : "this run's data";
  if (!scans.length)
    return `<p class="muted">No anomaly scan of ${where} is stored for this run. The demo stores one; <code>trm-forge scan --agent A --end TIME --run RUN</code> adds one.</p>`;
  const windows = scans
    .map(
      (s) =>
        `${esc(clock(s.window.start))}–${esc(s.window.end.slice(11, 16))} (${s.scanned.logs} log lines, ${s.scanned.traces} traces, ${s.scanned.series} series; ${s.version})`,
    )
    .join("; ");
  const rows = scans
    .flatMap((s) => s.findings)
    .sort((a, b) => b.score - a.score)
    .map((f) => {
      const e = f.evidence[0];
      return `<tr><td>${esc(f.service)}</td><td>${esc(clock(f.start))}–${esc(f.end.slice(11, 16))}</td><td class="num">${fmt(f.score)}</td><td>${esc(f.signals.map((s) => s.signal).join(", "))}</td><td>${e ? `${esc(e.source)}: ${esc(e.record.slice(0, 140))}` : "–"}</td><td>${f.knowledge.length ? esc(f.knowledge.map((k) => `${k.kind}: ${k.text.slice(0, 80)}`).join("; ")) : "–"}</td></tr>`;
    });
  return `<p>What the model did not expect in ${where}: ${windows}.</p>
${scanTimeline(scans)}
${rows.length ? `<table class="findings"><thead><tr><th>service</th><th>span (UTC)</th><th>score</th><th>signals</th><th>evidence</th><th>knowledge card</th></tr></thead><tbody>${rows.join("")}</tbody></table>` : `<p class="muted">No findings: ${esc(scans.map((s) => s.note ?? "nothing surprised the model").join("; "))}</p>`}`;
}
