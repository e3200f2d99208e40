// The knowledge card (knowledge.md): what the pipeline learned about the homelab, distilled for the
// agents' language models (the SYSTEM of the Ollama model, the system turn of the vLLM template).
// Every number in it is counted from the collected records or the evaluation; nothing is guessed.
// It is bounded (about max_tokens, at ~4 characters a token): sections shrink their lists until
// the card fits.

import type { Config, KnowledgeSection } from "../../config/schema.js";
import type { ObjectStore } from "../../store/index.js";
import { pct } from "../../util/format.js";
import { listSegments, readSegment } from "../collect/raw-store.js";
import type {
  CodeFileRecord,
  LogEntryRecord,
  MetricSeriesRecord,
  SourceName,
  TraceRecord,
} from "../collect/records.js";
import { IncidentJoin, type IncidentWindow, incidentSettings } from "../incidents.js";
import { normaliseLogLine } from "../tasks/log-normalize.js";
import { logFacts, nsToMs } from "../tasks/log-triage.js";

export const DEFAULT_SERVICE_LABELS = ["service_name", "service", "app", "job", "container"] as const;

/** An incident window from the incident join, with what showed it. */
export interface KnowledgeIncident {
  service: string;
  start: number;
  end: number;
  /** Short facts, e.g. "trace error ratio 0.42 > 0.2", "up == 0". */
  evidence: string[];
}

/** One task's validation score for the evaluation section. */
export interface KnowledgeScore {
  task: string;
  metric: string;
  model: number;
  baseline?: number;
  baselineName?: string;
}

export interface Edge {
  from: string;
  to: string;
  calls: number;
  errors: number;
  p95Ms: number;
}

export interface ErrorSignature {
  service: string;
  signature: string;
  count: number;
  firstSeen: number;
  lastSeen: number;
}

export interface SeriesBaseline {
  series: string;
  points: number;
  p5: number;
  median: number;
  p95: number;
  /** Points outside [q1 - 3·IQR, q3 + 3·IQR]. */
  anomalies: number;
  firstAnomaly: number | null;
  worst: number | null;
}

export interface CodeMap {
  files: number;
  languages: { language: string; files: number; bytes: number }[];
  modules: { path: string; files: number }[];
  configFiles: string[];
}

export interface KnowledgeFacts {
  agent: string;
  window: { start: number; end: number };
  traces: number;
  logLines: number;
  errorLines: number;
  edges: Edge[];
  entrypoints: { service: string; operation: string; traces: number }[];
  errors: ErrorSignature[];
  incidents: KnowledgeIncident[];
  series: SeriesBaseline[];
  code: CodeMap;
  scores: KnowledgeScore[];
}

const CONFIG_FILE_RE =
  /(^|\/)(Dockerfile|Containerfile|Makefile|docker-compose\.ya?ml|compose\.ya?ml|kustomization\.ya?ml|Chart\.yaml|values\.ya?ml|package\.json|go\.mod|Cargo\.toml|pyproject\.toml|requirements\.txt|tsconfig\.json|\.env\.example)$|\.(ya?ml|toml|ini|conf|cfg|properties)$/i;

/** Streams records in and keeps only the aggregates the card needs (memory bounded by distinct keys). */
export class KnowledgeCollector {
  private traces = 0;
  private logLines = 0;
  private errorLines = 0;
  private readonly edges = new Map<string, { calls: number; errors: number; durations: number[] }>();
  private readonly entry = new Map<string, number>();
  private readonly errors = new Map<string, ErrorSignature>();
  private readonly series = new Map<string, { values: number[]; times: number[] }>();
  private readonly codePaths = new Map<string, { language: string; size: number }>();

  constructor(
    private readonly serviceLabels: readonly string[] = DEFAULT_SERVICE_LABELS,
    /** When given, the incident join sees the same records, and its windows go into the card. */
    readonly join: IncidentJoin | null = null,
  ) {}

  addTrace(t: TraceRecord): void {
    this.traces++;
    this.join?.addTrace(t);
    bump(this.entry, `${t.root_service}\u0000${t.root_name}`);
    const byId = new Map(t.spans.map((s) => [s.span_id, s]));
    for (const s of t.spans) {
      const parent = s.parent_span_id ? byId.get(s.parent_span_id) : undefined;
      if (!parent || parent.service === s.service) continue;
      const key = `${parent.service}\u0000${s.service}`;
      let e = this.edges.get(key);
      if (!e) {
        e = { calls: 0, errors: 0, durations: [] };
        this.edges.set(key, e);
      }
      e.calls++;
      if (s.status === "error") e.errors++;
      e.durations.push(s.duration_ns / 1e6);
    }
  }

  addLog(r: LogEntryRecord): void {
    this.logLines++;
    const facts = logFacts(r, this.serviceLabels);
    this.join?.addLog(facts);
    if (facts.level !== "error" && facts.level !== "fatal") return;
    this.errorLines++;
    const service = facts.service ?? "(unknown)";
    const signature = normaliseLogLine(r.line.slice(0, 512)).slice(0, 160);
    const key = `${service}\u0000${signature}`;
    const t = nsToMs(r.ts_ns);
    const e = this.errors.get(key);
    if (!e) this.errors.set(key, { service, signature, count: 1, firstSeen: t, lastSeen: t });
    else {
      e.count++;
      e.firstSeen = Math.min(e.firstSeen, t);
      e.lastSeen = Math.max(e.lastSeen, t);
    }
  }

  addSeries(r: MetricSeriesRecord): void {
    this.join?.addSeries(r);
    const name = seriesName(r);
    let s = this.series.get(name);
    if (!s) {
      s = { values: [], times: [] };
      this.series.set(name, s);
    }
    for (const [t, v] of r.points) {
      if (typeof v !== "number" || !Number.isFinite(v)) continue;
      s.values.push(v);
      s.times.push(t * 1000);
    }
  }

  addCode(r: CodeFileRecord): void {
    // The same file may be collected on many days: the latest record wins.
    this.codePaths.set(r.path, { language: r.language, size: r.size });
  }

  facts(
    agent: string,
    window: { start: number; end: number },
    extra: { incidents?: KnowledgeIncident[]; scores?: KnowledgeScore[] } = {},
  ): KnowledgeFacts {
    const edges: Edge[] = [...this.edges.entries()].map(([k, e]) => {
      const [from, to] = k.split("\u0000");
      const p95Ms = Math.round(quantile(sorted(e.durations), 0.95) * 1000) / 1000;
      return { from, to, calls: e.calls, errors: e.errors, p95Ms };
    });
    edges.sort((a, b) => b.calls - a.calls || a.from.localeCompare(b.from) || a.to.localeCompare(b.to));
    const entrypoints = [...this.entry.entries()]
      .map(([k, n]) => {
        const [service, operation] = k.split("\u0000");
        return { service, operation, traces: n };
      })
      .sort((a, b) => b.traces - a.traces || a.service.localeCompare(b.service));
    const errors = [...this.errors.values()].sort(
      (a, b) =>
        b.count - a.count || a.service.localeCompare(b.service) || a.signature.localeCompare(b.signature),
    );
    const series: SeriesBaseline[] = [];
    for (const [name, s] of this.series) {
      if (s.values.length === 0) continue;
      const v = sorted(s.values);
      const q1 = quantile(v, 0.25);
      const q3 = quantile(v, 0.75);
      const iqr = q3 - q1;
      const lo = q1 - 3 * iqr;
      const hi = q3 + 3 * iqr;
      let anomalies = 0;
      let firstAnomaly: number | null = null;
      let worst: number | null = null;
      const median = quantile(v, 0.5);
      for (let i = 0; i < s.values.length; i++) {
        const x = s.values[i];
        if (iqr > 0 ? x < lo || x > hi : x !== median) {
          anomalies++;
          if (firstAnomaly === null || s.times[i] < firstAnomaly) firstAnomaly = s.times[i];
          if (worst === null || Math.abs(x - median) > Math.abs(worst - median)) worst = x;
        }
      }
      series.push({
        series: name,
        points: v.length,
        p5: quantile(v, 0.05),
        median,
        p95: quantile(v, 0.95),
        anomalies,
        firstAnomaly,
        worst,
      });
    }
    series.sort((a, b) => b.anomalies - a.anomalies || a.series.localeCompare(b.series));

    const langs = new Map<string, { files: number; bytes: number }>();
    const modules = new Map<string, number>();
    const configFiles: string[] = [];
    for (const [path, f] of this.codePaths) {
      const l = langs.get(f.language) ?? { files: 0, bytes: 0 };
      l.files++;
      l.bytes += f.size;
      langs.set(f.language, l);
      const parts = path.split("/");
      bump(modules, parts.length > 1 ? `${parts[0]}/` : "(root)");
      if (CONFIG_FILE_RE.test(path)) configFiles.push(path);
    }
    const code: CodeMap = {
      files: this.codePaths.size,
      languages: [...langs.entries()]
        .map(([language, l]) => ({ language, ...l }))
        .sort((a, b) => b.files - a.files || a.language.localeCompare(b.language)),
      modules: [...modules.entries()]
        .map(([path, files]) => ({ path, files }))
        .sort((a, b) => b.files - a.files || a.path.localeCompare(b.path)),
      configFiles: configFiles.sort((a, b) => depth(a) - depth(b) || a.localeCompare(b)),
    };
    return {
      agent,
      window,
      traces: this.traces,
      logLines: this.logLines,
      errorLines: this.errorLines,
      edges,
      entrypoints,
      errors,
      incidents: [...(extra.incidents ?? this.join?.windows().map(incidentFact) ?? [])].sort(
        (a, b) => a.start - b.start,
      ),
      series,
      code,
      scores: extra.scores ?? [],
    };
  }
}

/** Reads the agent's raw records in the window from the store into a collector. */
export async function collectKnowledge(
  store: ObjectStore,
  agent: string,
  window: { start: number; end: number },
  serviceLabels: readonly string[] = DEFAULT_SERVICE_LABELS,
  join: IncidentJoin | null = null,
): Promise<KnowledgeCollector> {
  const c = new KnowledgeCollector(serviceLabels, join);
  const fromDay = new Date(window.start).toISOString().slice(0, 10);
  const toDay = new Date(window.end).toISOString().slice(0, 10);
  const inWindow = (ms: number) => ms >= window.start && ms < window.end;
  const sources: SourceName[] = ["tempo", "loki", "prometheus", "code"];
  for (const source of sources) {
    for (const ref of await listSegments(store, agent, source, { fromDay, toDay })) {
      const { records } = await readSegment(store, ref);
      for (const r of records) {
        if (r.kind === "trace") {
          if (inWindow(nsToMs(r.start_ns))) c.addTrace(r);
        } else if (r.kind === "log_entry") {
          if (inWindow(nsToMs(r.ts_ns))) c.addLog(r);
        } else if (r.kind === "metric_series") {
          c.addSeries({ ...r, points: r.points.filter(([t]) => inWindow(t * 1000)) });
        } else c.addCode(r);
      }
    }
  }
  return c;
}

/** One incident window of the join, in the card's words. */
export function incidentFact(w: IncidentWindow): KnowledgeIncident {
  const evidence = w.evidence.map((e) => {
    const n = `${e.buckets} bucket${e.buckets === 1 ? "" : "s"}`;
    if (e.signal === "trace_errors")
      return `trace error ratio up to ${num(e.peak)} (threshold ${num(e.threshold)}) in ${n}`;
    if (e.signal === "up_down") return `up == 0 (${num(e.peak)} down samples at worst) in ${n}`;
    return `up to ${num(e.peak)} error log lines per bucket (baseline limit ${num(e.threshold)}) in ${n}`;
  });
  return { service: w.service, start: w.start, end: w.end, evidence };
}

/**
 * The card for an agent from the raw store over a window: topology, error signatures, the
 * incident join (with the dataset's incident settings), metric baselines, code map, and the
 * validation scores when given.
 */
export async function buildKnowledgeCard(opts: {
  config: Config;
  store: ObjectStore;
  agent: string;
  window: { start: number; end: number };
  version?: string;
  scores?: KnowledgeScore[];
}): Promise<{ markdown: string; tokens: number; trimmed: boolean; facts: KnowledgeFacts }> {
  const ds = opts.config.dataset;
  const join = new IncidentJoin(incidentSettings(ds.incidents), opts.window, ds.service_labels);
  const c = await collectKnowledge(opts.store, opts.agent, opts.window, ds.service_labels, join);
  const facts = c.facts(opts.agent, opts.window, { scores: opts.scores });
  return { ...renderKnowledgeCard(facts, opts.config.knowledge, { version: opts.version }), facts };
}

/** knowledge.md as a registry artifact, for the registration of a version. */
export async function knowledgeArtifact(opts: Parameters<typeof buildKnowledgeCard>[0]): Promise<{
  name: "knowledge.md";
  data: string;
  contentType: string;
}> {
  const card = await buildKnowledgeCard(opts);
  return { name: "knowledge.md", data: card.markdown, contentType: "text/markdown; charset=utf-8" };
}

interface Limits {
  edges: number;
  errorsPerService: number;
  incidents: number;
  series: number;
  entrypoints: number;
  modules: number;
  configFiles: number;
}

/** Renders the card within the token budget; returns the markdown and its estimated token count. */
export function renderKnowledgeCard(
  facts: KnowledgeFacts,
  cfg: KnowledgeSection,
  opts: { version?: string } = {},
): { markdown: string; tokens: number; trimmed: boolean } {
  let limits: Limits = {
    edges: cfg.top_edges,
    errorsPerService: cfg.top_errors_per_service,
    incidents: cfg.max_incidents,
    series: cfg.max_series,
    entrypoints: 10,
    modules: 15,
    configFiles: 25,
  };
  let trimmed = false;
  for (let round = 0; round < 12; round++) {
    const md = render(facts, limits, opts.version, trimmed);
    const tokens = estimateTokens(md);
    if (tokens <= cfg.max_tokens) return { markdown: md, tokens, trimmed };
    trimmed = true;
    limits = {
      edges: shrink(limits.edges),
      errorsPerService: shrink(limits.errorsPerService),
      incidents: shrink(limits.incidents),
      series: shrink(limits.series),
      entrypoints: shrink(limits.entrypoints),
      modules: shrink(limits.modules),
      configFiles: shrink(limits.configFiles),
    };
  }
  // Still too long (e.g. enormous signatures): cut at the budget on a line boundary.
  const md = render(facts, limits, opts.version, true);
  const cut = md.slice(0, cfg.max_tokens * 4 - 80);
  const out = `${cut.slice(0, cut.lastIndexOf("\n"))}\n\n_(cut to fit ${cfg.max_tokens} tokens)_\n`;
  return { markdown: out, tokens: estimateTokens(out), trimmed: true };
}

/** ~4 characters per token, the usual rule for English and code with BPE tokenizers. */
export function estimateTokens(text: string): number {
  return Math.ceil(text.length / 4);
}

function shrink(n: number): number {
  return n <= 1 ? n : Math.max(1, Math.floor(n * 0.6));
}

function render(f: KnowledgeFacts, l: Limits, version: string | undefined, trimmed: boolean): string {
  const out: string[] = [];
  const day = (ms: number) => new Date(ms).toISOString().slice(0, 16).replace("T", " ");
  out.push(`# What ${f.agent} knows about its homelab`);
  out.push("");
  out.push(
    `Distilled by trm-forge${version ? ` for model version ${version}` : ""} from data collected ${day(f.window.start)} to ${day(f.window.end)} UTC: ${f.traces} traces, ${f.logLines} log lines (${f.errorLines} at error level or worse), ${f.series.length} metric series, ${f.code.files} code files. Every number below is counted from that data. Use it as background; check live data before acting.${trimmed ? " Lists are cut to the largest entries." : ""}`,
  );

  out.push("", "## Service topology (from traces)");
  if (f.edges.length === 0) out.push("No cross-service calls in the traces.");
  else {
    out.push("| caller | callee | calls | error ratio | p95 latency |", "|---|---|---:|---:|---:|");
    for (const e of f.edges.slice(0, l.edges))
      out.push(
        `| ${cell(e.from)} | ${cell(e.to)} | ${e.calls} | ${pct(e.errors / e.calls)} | ${ms(e.p95Ms)} |`,
      );
    if (f.edges.length > l.edges) out.push(`(${f.edges.length - l.edges} smaller edges not shown)`);
  }
  if (f.entrypoints.length) {
    out.push(
      "",
      `Entry points: ${f.entrypoints
        .slice(0, l.entrypoints)
        .map((e) => `${e.service} \`${e.operation}\` (${e.traces} traces)`)
        .join("; ")}.`,
    );
  }

  out.push("", "## Top error signatures per service (from logs)");
  if (f.errors.length === 0) out.push("No error-level log lines.");
  else {
    const byService = new Map<string, ErrorSignature[]>();
    for (const e of f.errors) {
      const list = byService.get(e.service) ?? [];
      list.push(e);
      byService.set(e.service, list);
    }
    const services = [...byService.entries()].sort(
      (a, b) => sum(b[1].map((e) => e.count)) - sum(a[1].map((e) => e.count)) || a[0].localeCompare(b[0]),
    );
    for (const [service, list] of services) {
      out.push(`### ${service} (${sum(list.map((e) => e.count))} error lines)`);
      for (const e of list.slice(0, l.errorsPerService))
        out.push(
          `- ${e.count}× \`${e.signature.replaceAll("`", "'")}\` (first ${day(e.firstSeen)}, last ${day(e.lastSeen)})`,
        );
      if (list.length > l.errorsPerService)
        out.push(`- (${list.length - l.errorsPerService} rarer signatures)`);
    }
  }

  out.push("", "## Incidents (from the incident join)");
  if (f.incidents.length === 0) out.push("No incident windows in this period.");
  else {
    for (const i of f.incidents.slice(0, l.incidents))
      out.push(
        `- ${i.service}: ${day(i.start)} to ${day(i.end)} (${Math.round((i.end - i.start) / 60000)} min)${i.evidence.length ? `: ${i.evidence.join("; ")}` : ""}`,
      );
    if (f.incidents.length > l.incidents)
      out.push(`- (${f.incidents.length - l.incidents} earlier incidents)`);
  }

  out.push("", "## Metric baselines and anomalies (from Prometheus)");
  if (f.series.length === 0) out.push("No metric series.");
  else {
    out.push(
      "| series | typical range (p5 to p95) | median | anomalies (beyond 3 IQR) |",
      "|---|---|---:|---|",
    );
    for (const s of f.series.slice(0, l.series))
      out.push(
        `| ${cell(s.series)} | ${num(s.p5)} to ${num(s.p95)} | ${num(s.median)} | ${
          s.anomalies
            ? `${s.anomalies} of ${s.points} points, first ${day(s.firstAnomaly!)}, extreme ${num(s.worst!)}`
            : `none in ${s.points} points`
        } |`,
      );
    if (f.series.length > l.series) out.push(`(${f.series.length - l.series} quieter series not shown)`);
  }

  out.push("", "## Code map (from the repository)");
  if (f.code.files === 0) out.push("No code collected.");
  else {
    out.push(
      `Languages: ${f.code.languages.map((x) => `${x.language} (${x.files} files, ${kb(x.bytes)})`).join(", ")}.`,
    );
    out.push(
      `Top-level modules: ${f.code.modules
        .slice(0, l.modules)
        .map((m) => `${m.path} (${m.files})`)
        .join(
          ", ",
        )}${f.code.modules.length > l.modules ? `, and ${f.code.modules.length - l.modules} more` : ""}.`,
    );
    if (f.code.configFiles.length)
      out.push(
        `Config files: ${f.code.configFiles
          .slice(0, l.configFiles)
          .map((p) => `\`${p}\``)
          .join(
            ", ",
          )}${f.code.configFiles.length > l.configFiles ? `, and ${f.code.configFiles.length - l.configFiles} more` : ""}.`,
      );
  }

  if (f.scores.length) {
    out.push("", "## How well the TRM predicts this homelab (validation)");
    for (const s of f.scores)
      out.push(
        `- ${s.task}: ${s.metric} ${num(s.model)}${s.baseline !== undefined ? ` (baseline${s.baselineName ? ` ${s.baselineName}` : ""} ${num(s.baseline)})` : ""}`,
      );
  }
  return `${out.join("\n")}\n`;
}

function seriesName(r: MetricSeriesRecord): string {
  const name = r.labels.__name__ ?? r.query;
  const keys = Object.keys(r.labels)
    .filter((k) => k !== "__name__")
    .sort();
  const labels = keys.map((k) => `${k}="${r.labels[k]}"`).join(",");
  return labels ? `${name}{${labels}}` : name;
}

function bump(m: Map<string, number>, k: string): void {
  m.set(k, (m.get(k) ?? 0) + 1);
}

function sorted(v: number[]): Float64Array {
  return Float64Array.from(v).sort();
}

/** Linear-interpolated quantile of sorted values. */
export function quantile(v: ArrayLike<number>, q: number): number {
  if (v.length === 0) return Number.NaN;
  const pos = (v.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return v[lo] + (v[hi] - v[lo]) * (pos - lo);
}

function sum(v: number[]): number {
  return v.reduce((a, b) => a + b, 0);
}

function depth(p: string): number {
  return p.split("/").length;
}

function cell(s: string): string {
  return s.replaceAll("|", "\\|");
}

function ms(x: number): string {
  return x >= 1000 ? `${(x / 1000).toFixed(2)} s` : `${x.toFixed(x < 10 ? 1 : 0)} ms`;
}

function kb(bytes: number): string {
  return bytes >= 1 << 20 ? `${(bytes / (1 << 20)).toFixed(1)} MiB` : `${(bytes / 1024).toFixed(1)} KiB`;
}

function num(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  const a = Math.abs(x);
  if (a !== 0 && (a >= 1e6 || a < 1e-3)) return x.toExponential(2);
  return Number(x.toPrecision(4)).toString();
}
