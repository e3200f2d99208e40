// Scores a model version on a frozen validation set (a dataset's val split: the newest unless
// one is named), per task with the task's own metrics, next to the champion and each task's
// baselines on the SAME examples, then runs the gate. The candidate and the champion answer
// with the EMA weights and early halting, exactly as serving answers.
import type { Config } from "../config/index.js";
import { WorkError } from "../errors.js";
import { validationScore } from "../metrics.js";
import { predictBatch } from "../model/act.js";
import { Rng } from "../model/rng.js";
import { decodeSafetensors } from "../model/safetensors.js";
import { TRM } from "../model/trm.js";
import { nextTurn } from "../util/turn.js";
import { CancelledError } from "./common/retry.js";
import type { Dataset } from "./dataset/index.js";
import { BOOTSTRAP_RESAMPLES, exampleScores, pairedInterval } from "./evaluate/bootstrap.js";
import type { GateVerdict, TaskEvaluation } from "./evaluate/gate.js";
import { runGate } from "./evaluate/gate.js";
import { buildProbe, type ProbeResult, scoreProbe } from "./evaluate/probe.js";
import { hashText } from "./tasks/hash.js";
import { answerTokens, getTask, type ModelMemory, scoreBaselines, scoreTask } from "./tasks/index.js";
import { type Example, PUZZLE_IDS, TASK_NAMES, type TaskName } from "./tasks/types.js";

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
  /** Why the champion was not scored, when there is one. */
  champion_note: string | null;
  /** How a model answered other than as it serves (a memory set aside), when it did. */
  notes?: string[];
  tasks: Record<string, TaskEvaluation>;
  halting: { candidate: HaltingStats; champion: HaltingStats | null };
  gate: GateVerdict;
  /** The candidate on log lines rewritten as agents paste them, beside the same lines clean. */
  probe?: ProbeResult | null;
}

export interface ModelUnderTest {
  /** "candidate", or the version id. */
  label: string;
  version: string | null;
  /** A model safetensors file (EMA weights + config in the metadata). */
  weights: Uint8Array;
  /** What it remembers of its training split (memory.json); null for versions from before it. */
  memory: ModelMemory | null;
}

export interface EvaluateInput {
  agent: string;
  config: Config;
  dataset: Dataset;
  candidate: ModelUnderTest;
  champion: ModelUnderTest | null;
  runId?: string | null;
  signal?: AbortSignal;
  /** Called between batches (StageContext.pause); a turn of the event loop by default. */
  pause?: () => Promise<void>;
  onProgress?: (p: { done: number; total: number; message: string }) => void;
  now?: () => Date;
}

export async function evaluateModels(input: EvaluateInput): Promise<EvaluationResult> {
  const { dataset, config } = input;
  const B = Math.max(8, config.train.batch_size);
  const pause = input.pause ?? nextTurn;
  const tasks = TASK_NAMES.filter(
    (t) => dataset.val.indicesOf(t).length > 0 || config.dataset.tasks[t].enabled,
  );
  const total = tasks.reduce((n, t) => n + dataset.val.indicesOf(t).length, 0) * (input.champion ? 2 : 1);
  let done = 0;
  const candidate = loadForEval(input.candidate, dataset);
  let champion: TRM | null = null;
  let championNote: string | null = null;
  if (input.champion) {
    try {
      champion = loadForEval(input.champion, dataset);
    } catch (err) {
      championNote = `the champion ${input.champion.label} cannot answer this dataset: ${(err as Error).message}`;
    }
  }
  const halting = { candidate: newHalting(candidate), champion: champion ? newHalting(champion) : null };
  const notes: string[] = [];
  const out: Record<string, TaskEvaluation> = {};
  let probe: ProbeResult | null = null;
  try {
    for (const task of tasks) {
      const t = getTask(task);
      const idx = dataset.val.indicesOf(task);
      const examples = idx.map((i) => dataset.val.example(i));
      const predict = async (model: TRM, memory: ModelMemory | null, stats: HaltingStats) => {
        const preds: Int32Array[] = [];
        for (let i = 0; i < idx.length; i += B) {
          // Pause between batches: a cancel arrives as a message, which a busy loop never reads.
          await pause();
          if (input.signal?.aborted) throw new CancelledError("evaluation cancelled");
          const b = dataset.val.batch(idx.slice(i, i + B));
          const p = predictWith(model, b);
          const L = model.cfg.seq_len;
          for (let j = 0; j < p.steps.length; j++) {
            const inputs = b.inputs.subarray(j * L, (j + 1) * L);
            preds.push(answerTokens(task, model.cfg, inputs, p, j, dataset.vocab, memory));
            stats.histogram[p.steps[j] - 1]++;
          }
          done += p.steps.length;
          input.onProgress?.({
            done,
            total,
            message: `${task}: ${Math.min(i + B, idx.length)}/${idx.length}`,
          });
        }
        return preds;
      };
      const score = (preds: Int32Array[]) => {
        const s = scoreTask(task, examples, preds, dataset.vocab);
        return { metrics: s.metrics, score: s.metrics[s.primary] };
      };
      // A memory that counts validation days (a version trained on newer data than this dataset's
      // validation split) would answer those very traces: that model answers from its weights.
      const firstVal = examples.reduce((m, ex) => Math.min(m, ex.time), Number.POSITIVE_INFINITY);
      const usable = (m: ModelUnderTest) => {
        if (!m.memory || m.memory.until === null || m.memory.until < firstVal || !getTask(task).memoryKey)
          return m.memory;
        notes.push(
          `${m.label}'s path memory counts traces up to ${new Date(m.memory.until).toISOString()}, inside these validation days: it answered ${task} from its weights alone`,
        );
        return null;
      };
      const candPreds = idx.length
        ? await predict(candidate, usable(input.candidate), halting.candidate)
        : null;
      const champPreds =
        champion && idx.length ? await predict(champion, usable(input.champion!), halting.champion!) : null;
      const cand = candPreds ? score(candPreds) : { metrics: {}, score: Number.NaN };
      const champ = champPreds ? score(champPreds) : null;
      const baselines: TaskEvaluation["baselines"] = {};
      let best: string | null = null;
      let intervals: TaskEvaluation["intervals"];
      if (candPreds) {
        const bs = scoreBaselines(task, dataset.train.examples(task), examples, dataset.vocab);
        for (const [name, s] of Object.entries(bs.scores))
          baselines[name] = { metrics: s.metrics, score: s.metrics[s.primary] };
        best = bs.best || null;
        // Paired bootstrap: the candidate and the other answered the same examples.
        const per = (preds: Int32Array[]) => exampleScores(task, examples, preds, dataset.vocab);
        const mine = per(candPreds);
        const opts = {
          direction: t.metrics[t.primary] ?? "higher",
          resamples: BOOTSTRAP_RESAMPLES,
          seed: hashText(task),
        };
        intervals = {
          baseline: best ? pairedInterval(mine, per(bs.predictions[best]), { ...opts, against: best }) : null,
          champion:
            champPreds && input.champion
              ? pairedInterval(mine, per(champPreds), { ...opts, against: input.champion.label })
              : null,
        };
      }
      if (task === "log_triage" && candPreds) {
        const cases = buildProbe(examples, dataset.vocab);
        if (cases.length) {
          const preds = await predictExamples(
            candidate,
            cases.map((c) => c.example),
            B,
            pause,
            input.signal,
          );
          probe = scoreProbe(cases, preds, examples, candPreds, dataset.vocab);
        }
      }
      out[task] = {
        task,
        enabled: config.dataset.tasks[task].enabled,
        examples: idx.length,
        primary: t.primary,
        direction: t.metrics[t.primary] ?? "higher",
        candidate: cand,
        champion: champ,
        baselines,
        best_baseline: best,
        judged: idx.length >= config.gate.min_examples,
        floor: config.gate.floors[task] ?? null,
        ...(intervals ? { intervals } : {}),
      };
    }
  } finally {
    candidate.dispose();
    champion?.dispose();
  }
  for (const h of [halting.candidate, halting.champion]) if (h) finishHalting(h);
  const gate = runGate(Object.values(out), config.gate);
  if (input.champion && !champion) {
    gate.checks.push({ task: "*", check: "regression", passed: false, detail: championNote! });
    gate.passed = false;
    gate.reasons = gate.checks.filter((c) => !c.passed).map((c) => c.detail);
  }
  publishValidationScores(
    input.agent,
    input.candidate.version ?? input.candidate.label,
    Object.fromEntries(Object.entries(out).map(([task, e]) => [task, e.candidate.score])),
  );
  return {
    schema: 1,
    agent: input.agent,
    evaluated_at: (input.now?.() ?? new Date()).toISOString(),
    dataset_id: dataset.id,
    split: "val",
    examples: Object.values(out).reduce((n, e) => n + e.examples, 0),
    candidate: {
      label: input.candidate.label,
      version: input.candidate.version,
      run_id: input.runId ?? null,
    },
    champion: input.champion?.version ? { version: input.champion.version } : null,
    champion_note: championNote,
    ...(notes.length ? { notes } : {}),
    tasks: out,
    halting,
    gate,
    probe,
  };
}

/**
 * The candidate's scores on this process's /metrics. Also called by a server with the output of
 * an evaluate stage that ran in a child process, whose own gauges die with it.
 */
export function publishValidationScores(
  agent: string,
  version: string,
  scores: Record<string, number | null>,
): void {
  for (const [task, score] of Object.entries(scores))
    if (typeof score === "number" && Number.isFinite(score))
      validationScore.set({ agent, task, version }, score);
}

/**
 * A model ready to answer the dataset's examples. A model from an older dataset meets a grown
 * vocabulary (new services): its table grows like a fresh model's, so it answers, just without
 * knowledge of the new classes, which is the honest comparison.
 */
function loadForEval(m: ModelUnderTest, dataset: Dataset): TRM {
  const model = TRM.fromSafetensors(decodeSafetensors(m.weights, m.label));
  try {
    if (model.cfg.seq_len !== dataset.manifest.seq_len)
      throw new WorkError(
        `its sequence length is ${model.cfg.seq_len}, the dataset's ${dataset.manifest.seq_len}`,
      );
    if (model.cfg.vocab_size > dataset.vocab.size)
      throw new WorkError(
        `its vocabulary (${model.cfg.vocab_size}) is larger than the dataset's (${dataset.vocab.size})`,
      );
    if (model.cfg.vocab_size < dataset.vocab.size) model.growVocab(dataset.vocab.size, new Rng(0));
    if (model.cfg.num_puzzle_identifiers < dataset.manifest.num_puzzle_identifiers)
      model.growPuzzleIds(dataset.manifest.num_puzzle_identifiers);
    return model;
  } catch (err) {
    model.dispose();
    throw err;
  }
}

/** Answers for examples outside the dataset (the probe's), in batches of B, yielding between them. */
async function predictExamples(
  model: TRM,
  examples: readonly Example[],
  B: number,
  pause: () => Promise<void>,
  signal?: AbortSignal,
): Promise<Int32Array[]> {
  const L = model.cfg.seq_len;
  const out: Int32Array[] = [];
  for (let i = 0; i < examples.length; i += B) {
    await pause();
    if (signal?.aborted) throw new CancelledError("evaluation cancelled");
    const chunk = examples.slice(i, i + B);
    const inputs = new Int32Array(chunk.length * L);
    for (let j = 0; j < chunk.length; j++) inputs.set(chunk[j].inputs, j * L);
    const puzzleIds = Int32Array.from(chunk, (ex) => PUZZLE_IDS[ex.task]);
    const p = predictWith(model, { inputs, puzzleIds });
    for (let j = 0; j < chunk.length; j++) out.push(p.predictions.slice(j * L, (j + 1) * L));
  }
  return out;
}

function predictWith(model: TRM, b: { inputs: Int32Array; puzzleIds: Int32Array }) {
  return predictBatch(model, model.weights, { tokens: b.inputs, puzzleIds: b.puzzleIds });
}

function newHalting(model: TRM): HaltingStats {
  return {
    histogram: new Array(model.cfg.halt_max_steps).fill(0),
    mean: 0,
    max_steps: model.cfg.halt_max_steps,
  };
}

function finishHalting(h: HaltingStats): void {
  const n = h.histogram.reduce((a, b) => a + b, 0);
  h.mean = n ? h.histogram.reduce((a, c, i) => a + c * (i + 1), 0) / n : 0;
}

export function isTaskName(t: string): t is TaskName {
  return (TASK_NAMES as readonly string[]).includes(t);
}
