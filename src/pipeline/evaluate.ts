// Scores a model version on a frozen validation set, per task, next to the champion and each
// task's baselines on the SAME examples, and runs the gate.
import type { GateVerdict, TaskEvaluation } from "./evaluate/gate.js";

export {
  type GateCheck,
  type GateVerdict,
  runGate,
  type ScoreSet,
  type TaskEvaluation,
} from "./evaluate/gate.js";

/** How many supervision steps answers took with early halting (what serving does). */
export interface HaltingStats {
  /** histogram[i] = answers that used i+1 steps. */
  histogram: number[];
  mean: number;
  max_steps: number;
}

export interface EvaluationResult {
  schema: 1;
  agent: string;
  evaluated_at: string;
  dataset_id: string;
  split: "val";
  /** Validation examples scored (all tasks). */
  examples: number;
  candidate: { label: string; version: string | null; run_id: string | null };
  champion: { version: string } | null;
  tasks: Record<string, TaskEvaluation>;
  halting: { candidate: HaltingStats; champion: HaltingStats | null };
  gate: GateVerdict;
}
