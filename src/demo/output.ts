// How the demo talks: numbered steps with their wall and CPU time, a redrawn progress bar on a
// terminal (a line per tenth of the work elsewhere), the per-task table against the baselines.
import { formatInterval } from "../pipeline/evaluate/bootstrap.js";
import type { EvaluationResult } from "../pipeline/evaluate.js";
import type { RunEvent } from "../pipeline/run.js";
import { formatEta } from "../util/format.js";
import type { StepTime } from "./state.js";

export const STEPS = [
  ["simulator", "start the simulated homelab"],
  ["config", "write the demo config"],
  ["collect", "collect the simulated days over HTTP"],
  ["build", "build the dataset"],
  ["train", "train the TRM"],
  ["evaluate", "evaluate on the validation days"],
  ["deploy", "register and promote"],
  ["report", "write the report"],
  ["predict", "ask the model three questions"],
  ["scan", "ask what was wrong on a validation day"],
  ["serve", "serve it over MCP"],
] as const;
export type StepName = (typeof STEPS)[number][0];

export function stepTitle(name: StepName): string {
  const i = STEPS.findIndex(([n]) => n === name);
  return `${i + 1}/${STEPS.length} ${STEPS[i][1]}`;
}

export const secs = (s: number) => {
  if (s < 90) return `${s.toFixed(1)} s`;
  const r = Math.round(s); // rounded first: 599.6 s is 10 min 0 s, not 9 min 60 s
  return `${Math.floor(r / 60)} min ${r % 60} s`;
};

/** Wall and CPU time of a piece of work in this process (CPU counts every thread: the native kernels use two). */
export class Stopwatch {
  private wall = performance.now();
  private cpu = process.cpuUsage();
  read(): StepTime {
    const c = process.cpuUsage(this.cpu);
    return {
      wall_s: Math.round((performance.now() - this.wall) / 100) / 10,
      cpu_s: Math.round((c.user + c.system) / 1e5) / 10,
    };
  }
}

export interface Out {
  /** A finished line of the demo's story. */
  line(text?: string): void;
  /** Live progress: a redrawn bar on a terminal, a line per tenth elsewhere. */
  progress(stage: string, done: number | null, total: number | null, text: string): void;
  /** Clears the progress bar before other output. */
  clear(): void;
}

export function makeOut(stdout: NodeJS.WritableStream, bars: NodeJS.WriteStream | null): Out {
  const tty = Boolean(bars?.isTTY);
  let drawn = false;
  let last = 0;
  const tenths = new Map<string, number>();
  const clear = () => {
    if (drawn && bars) bars.write("\r\x1b[K");
    drawn = false;
  };
  return {
    line(text = "") {
      clear();
      stdout.write(`${text}\n`);
    },
    clear,
    progress(stage, done, total, text) {
      const frac = done !== null && total ? Math.min(1, done / total) : null;
      if (tty && bars) {
        const now = Date.now();
        if (now - last < 100 && frac !== 1) return;
        last = now;
        const bar =
          frac === null
            ? ""
            : `${"█".repeat(Math.round(frac * 28)).padEnd(28, "░")} ${`${Math.round(frac * 100)}`.padStart(3)}% `;
        clear();
        bars.write(`   ${bar}${text}`.slice(0, (bars.columns ?? 100) - 1));
        drawn = true;
        return;
      }
      if (frac === null) return;
      const tenth = Math.floor(frac * 10);
      if (tenth <= (tenths.get(stage) ?? 0)) return;
      tenths.set(stage, tenth);
      stdout.write(`   ${`${tenth * 10}%`.padStart(4)} ${text}\n`);
    },
  };
}

/** Draws a pipeline run's progress events. */
export function runProgress(out: Out): (e: RunEvent) => void {
  return (e) => {
    if (e.type === "progress") {
      const p = e.progress;
      const m = p.metrics;
      const text =
        p.stage === "train" && m.loss !== undefined
          ? `step ${p.step}/${p.total}  loss ${m.loss.toFixed(3)}  token acc ${(m.token_accuracy ?? 0).toFixed(3)}  eta ${formatEta(p.eta_s)}`
          : p.message;
      out.progress(p.stage, p.step, p.total, text);
    } else if (e.type === "log" && e.line.level === "error") {
      out.line(`   ${e.line.level}: ${e.line.msg}`);
    } else if (
      e.type === "log" &&
      e.line.level === "warn" &&
      e.line.stage !== "evaluate" &&
      e.line.stage !== "deploy"
    ) {
      // The gate's reasons and the promotion are told by the demo's own table and lines.
      out.line(`   ${e.line.level}: ${e.line.msg}`);
    } else if (e.type === "log" && e.line.stage === "train" && e.line.msg.startsWith("validation")) {
      out.line(`   ${e.line.msg}`);
    } else if (e.type === "retry") {
      out.line(
        `   ${e.stage}: attempt ${e.attempt} failed (${e.error}); retrying in ${Math.round(e.delay_ms / 1000)} s`,
      );
    }
  };
}

export interface TaskRow {
  task: string;
  metric: string;
  examples: number;
  model: number;
  baseline: number | null;
  baselineName: string | null;
  /**
   * Beats the best baseline: with an interval, its lower bound is above 0 (what the gate asks);
   * without, the point score is better. Higher is better for every primary metric of the four
   * tasks; the direction is kept anyway.
   */
  beats: boolean;
  /** The interval holds 0: neither side is ahead with confidence. */
  level: boolean;
  judged: boolean;
  /** Paired bootstrap 95% interval of model - best baseline, when the evaluation has one. */
  interval: { low: number; high: number } | null;
}

export function taskRows(ev: EvaluationResult): TaskRow[] {
  return Object.values(ev.tasks)
    .filter((t) => t.enabled && t.examples > 0)
    .map((t) => {
      const b = t.best_baseline ? t.baselines[t.best_baseline].score : null;
      // The interval is of the difference oriented so that positive means the model is better.
      const iv = t.intervals?.baseline;
      const better = b !== null && (t.direction === "lower" ? t.candidate.score < b : t.candidate.score > b);
      const beats = iv ? iv.low > 0 : better;
      const level = iv ? iv.low <= 0 && iv.high >= 0 : false;
      return {
        task: t.task,
        metric: t.primary,
        examples: t.examples,
        model: t.candidate.score,
        baseline: b,
        baselineName: t.best_baseline,
        beats,
        level,
        judged: t.judged,
        interval: iv ? { low: iv.low, high: iv.high } : null,
      };
    });
}

export function taskTable(rows: TaskRow[]): string[] {
  const head = ["task", "metric (validation days)", "model", "best baseline", "", "n"];
  const body = rows.map((r) => [
    r.task,
    r.metric,
    r.model.toFixed(3),
    r.baseline === null ? "–" : r.baseline.toFixed(3),
    r.baseline === null
      ? "no baseline"
      : `${r.beats ? "beats" : r.level ? "is level with" : "does not beat"} ${r.baselineName} (${r.interval ? `${formatInterval({ diff: r.model - r.baseline, ...r.interval })}, 95% CI` : `${r.model - r.baseline >= 0 ? "+" : ""}${(r.model - r.baseline).toFixed(3)}`})`,
    String(r.examples),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const fmt = (cells: string[]) =>
    `   ${cells.map((c, i) => (i === 2 || i === 3 || i === 5 ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join("  ")}`.trimEnd();
  return [fmt(head), `   ${widths.map((w) => "─".repeat(w)).join("  ")}`, ...body.map(fmt)];
}

export function timesTable(times: Partial<Record<StepName, StepTime>>): string[] {
  const lines = [`   ${"step".padEnd(44)} ${"wall".padStart(10)} ${"CPU".padStart(10)}`];
  let wall = 0;
  let cpu = 0;
  for (const [name] of STEPS) {
    const t = times[name];
    if (!t || name === "serve") continue;
    wall += t.wall_s;
    cpu += t.cpu_s;
    lines.push(
      `   ${stepTitle(name).padEnd(44)} ${secs(t.wall_s).padStart(10)} ${secs(t.cpu_s).padStart(10)}${t.earlier ? "  (an earlier run)" : ""}`,
    );
  }
  lines.push(`   ${"total".padEnd(44)} ${secs(wall).padStart(10)} ${secs(cpu).padStart(10)}`);
  return lines;
}
