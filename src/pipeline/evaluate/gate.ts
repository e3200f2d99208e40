// The evaluation gate: given per-task scores of the candidate, the champion and the baselines on
// the same examples, decide whether the candidate may be promoted, and say why in sentences.
//   - every enabled task beats its best baseline (by more than gate.baseline_margin);
//   - no task regresses against the champion by more than gate.max_regression;
//   - a task with a floor in gate.floors reaches it.
// With gate.compare "interval", both comparisons ask for evidence: the lower bound of the paired
// bootstrap interval of the difference must clear the margin (beats), and must not fall below
// -max_regression (a non-inferiority test against the champion). A task without an interval (an
// evaluation made before intervals existed) is judged on its point difference, and says so.
// Tasks with fewer validation examples than gate.min_examples are reported but not judged; a
// candidate with no judged task at all fails (there is nothing to trust).
import type { GateSection } from "../../config/schema.js";
import { formatInterval, type PairedInterval } from "./bootstrap.js";

export interface ScoreSet {
  /** Every metric of the task (from the task's own scoring code). */
  metrics: Record<string, number>;
  /** The primary metric's value. */
  score: number;
}

export interface TaskEvaluation {
  task: string;
  enabled: boolean;
  examples: number;
  primary: string;
  direction: "higher" | "lower";
  candidate: ScoreSet;
  champion: ScoreSet | null;
  baselines: Record<string, ScoreSet>;
  best_baseline: string | null;
  /** False when there were too few examples to judge the task. */
  judged: boolean;
  floor: number | null;
  /**
   * Paired bootstrap intervals of the candidate's difference (positive: the candidate is better)
   * to the best baseline and to the champion; absent in evaluations made before they existed.
   */
  intervals?: { baseline: PairedInterval | null; champion: PairedInterval | null };
}

export interface GateCheck {
  task: string;
  check: "baseline" | "regression" | "floor" | "examples" | "overall";
  passed: boolean;
  detail: string;
}

export interface GateVerdict {
  passed: boolean;
  /** Sentences for people: the failures when it failed, what it cleared when it passed. */
  reasons: string[];
  checks: GateCheck[];
}

const n3 = (v: number) => v.toFixed(3);
const pctLevel = (iv: PairedInterval) => `${Math.round(iv.level * 100)}% paired bootstrap`;

export function runGate(tasks: TaskEvaluation[], gate: GateSection): GateVerdict {
  const checks: GateCheck[] = [];
  let judged = 0;
  for (const t of tasks) {
    if (!t.enabled) continue;
    const better = (a: number, b: number) => (t.direction === "higher" ? a - b : b - a);
    if (!t.judged) {
      checks.push({
        task: t.task,
        check: "examples",
        passed: t.floor === null,
        detail:
          t.floor === null
            ? `${t.task}: not judged, only ${t.examples} validation examples (gate.min_examples is ${gate.min_examples})`
            : `${t.task}: has a floor of ${n3(t.floor)} but only ${t.examples} validation examples to check it on`,
      });
      continue;
    }
    judged++;
    const c = t.candidate.score;
    const byInterval = gate.compare === "interval";
    if (t.best_baseline) {
      const b = t.baselines[t.best_baseline].score;
      const iv = byInterval ? (t.intervals?.baseline ?? null) : null;
      const margin = better(c, b);
      const ok = (iv ? iv.low : margin) > gate.baseline_margin;
      const over = gate.baseline_margin > 0 ? ` by more than ${n3(gate.baseline_margin)}` : "";
      checks.push({
        task: t.task,
        check: "baseline",
        passed: ok,
        detail: iv
          ? ok
            ? `${t.task}: ${t.primary} ${n3(c)} beats the best baseline (${t.best_baseline}, ${n3(b)}) by ${formatInterval(iv)} (${pctLevel(iv)} interval; its lower bound is above ${n3(gate.baseline_margin)})`
            : `${t.task}: ${t.primary} ${n3(c)} does not beat the best baseline (${t.best_baseline}, ${n3(b)})${over} with confidence: the difference is ${formatInterval(iv)} (${pctLevel(iv)} interval; its lower bound is not above ${n3(gate.baseline_margin)})`
          : ok
            ? `${t.task}: ${t.primary} ${n3(c)} beats the best baseline (${t.best_baseline}, ${n3(b)}) by ${n3(margin)}`
            : `${t.task}: ${t.primary} ${n3(c)} does not beat the best baseline (${t.best_baseline}, ${n3(b)})${over}`,
      });
    } else {
      checks.push({
        task: t.task,
        check: "baseline",
        passed: true,
        detail: `${t.task}: has no baseline to compare with`,
      });
    }
    if (t.champion) {
      const ch = t.champion.score;
      const drop = better(ch, c);
      const iv = byInterval ? (t.intervals?.champion ?? null) : null;
      if (iv) {
        const ok = iv.low >= -gate.max_regression - 1e-12;
        checks.push({
          task: t.task,
          check: "regression",
          passed: ok,
          detail: ok
            ? `${t.task}: ${n3(c)} vs champion ${n3(ch)}: ${formatInterval(iv)} (${pctLevel(iv)} interval; its lower bound is within the tolerance of ${n3(gate.max_regression)})`
            : `${t.task}: may regress against the champion: ${n3(c)} vs ${n3(ch)}, ${formatInterval(iv)} (${pctLevel(iv)} interval; its lower bound is below -${n3(gate.max_regression)})`,
        });
      } else {
        const ok = drop <= gate.max_regression + 1e-12;
        checks.push({
          task: t.task,
          check: "regression",
          passed: ok,
          detail: ok
            ? `${t.task}: ${n3(c)} vs champion ${n3(ch)} (${drop > 0 ? `-${n3(drop)}, within the tolerance of ${n3(gate.max_regression)}` : `+${n3(-drop)}`})`
            : `${t.task}: regresses against the champion: ${n3(c)} vs ${n3(ch)} (-${n3(drop)}, tolerance ${n3(gate.max_regression)})`,
        });
      }
    }
    if (t.floor !== null) {
      const ok = better(c, t.floor) >= 0;
      checks.push({
        task: t.task,
        check: "floor",
        passed: ok,
        detail: ok
          ? `${t.task}: ${n3(c)} reaches the floor of ${n3(t.floor)}`
          : `${t.task}: ${n3(c)} is below the floor of ${n3(t.floor)}`,
      });
    }
  }
  if (judged === 0)
    checks.push({
      task: "*",
      check: "overall",
      passed: false,
      detail: "no enabled task had enough validation examples to judge the candidate",
    });
  const failed = checks.filter((c) => !c.passed);
  return {
    passed: failed.length === 0,
    reasons: failed.length ? failed.map((c) => c.detail) : checks.map((c) => c.detail),
    checks,
  };
}
