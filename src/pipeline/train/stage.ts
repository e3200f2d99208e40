import { WorkError } from "../../errors.js";
import { activeBackend, initBackend } from "../../model/backend.js";
import { resolveModelConfig, type TRMConfig } from "../../model/config.js";
import { decodeSafetensors } from "../../model/safetensors.js";
import { configFromMetadata } from "../../model/trm.js";
import type { StageContext, TrainOutput } from "../contract.js";
import { candidateMemory, type Dataset } from "../dataset/index.js";
import { runDataset } from "../dataset/stage.js";
import type { ModelRegistry } from "../deploy/registry.js";
import { runPrefix } from "../record.js";
import { answerTokens, scoreTask } from "../tasks/index.js";
import { latestCheckpoint, readCheckpointFile } from "../train/checkpoint.js";
import { type TrainResult, train as trainLoop } from "../train.js";

export async function trainStage(ctx: StageContext): Promise<TrainOutput> {
  await initBackend(ctx.config.model.backend);
  const ds = await runDataset(ctx);
  const memory = candidateMemory(ds);
  const model = resolveModelConfig(ctx.config.model, {
    vocab_size: ds.vocab.size,
    seq_len: ds.manifest.seq_len,
    num_puzzle_identifiers: ds.manifest.num_puzzle_identifiers,
  });
  let init: { weights: Uint8Array; version: string } | null = null;
  let note: string | null = null;
  const prefix = runPrefix(ctx.agent, ctx.runId);
  const resuming = (await latestCheckpoint(ctx.store, prefix, "state")) !== null;
  if (!ctx.fromScratch && !resuming) {
    const champ = (await ctx.registry.read(ctx.agent)).aliases.champion;
    if (champ) {
      const bytes = await readChampionWeights(ctx.registry, ctx.agent, champ);
      const why = incompatible(configFromMetadata(decodeSafetensors(bytes, champ).metadata, champ), model);
      if (why) {
        note = `trained from scratch: the champion ${champ} cannot be fine-tuned (${why})`;
        ctx.log("warn", note);
      } else {
        init = { weights: bytes, version: champ };
        ctx.log("info", `fine-tuning the champion ${champ}`);
      }
    }
  }
  const label = (e: { step: number }) => `step ${e.step}/${ctx.config.train.max_steps}`;
  const res: TrainResult = await trainLoop({
    settings: ctx.config.train,
    model,
    train: ds.train,
    val: ds.val,
    scoreVal: (indices, predictions) => scoreByTask(ds, indices, predictions),
    // The candidate answers with its path memory, as evaluation and serving will.
    answerVal: (i, inputs, out, j) => answerTokens(ds.val.tasks[i], model, inputs, out, j, ds.vocab, memory),
    init,
    store: ctx.store,
    prefix,
    signal: ctx.signal,
    pause: ctx.pause,
    onEvent: (e) => {
      if (e.kind === "step")
        ctx.progress(
          {
            message: `${label(e)} loss ${e.loss.toFixed(4)} acc ${e.token_accuracy.toFixed(3)} exact ${e.exact_accuracy.toFixed(3)}`,
            step: e.step,
            total: e.max_steps,
            eta_s: e.eta_s,
            metrics: {
              loss: e.loss,
              lr: e.lr,
              token_accuracy: e.token_accuracy,
              exact_accuracy: e.exact_accuracy,
              samples_per_s: e.samples_per_s,
              ...(e.halt_steps !== null ? { halt_steps: e.halt_steps } : {}),
            },
          },
          e,
        );
      else if (e.kind === "val")
        ctx.log(
          "info",
          `validation at step ${e.step}: ${e.score.toFixed(4)}${e.improved ? " (best so far)" : ` (best ${e.best_score?.toFixed(4)} at ${e.best_step}, patience ${e.patience_left})`}`,
        );
      else if (e.kind === "start") {
        if (e.resumed_from !== null)
          ctx.log("info", `resumed training from the checkpoint at step ${e.resumed_from}`);
        if (ctx.config.train.matmul !== e.matmul)
          ctx.log(
            "warn",
            `train.matmul is ${ctx.config.train.matmul}, but training runs its products in ${e.matmul}: bf16 needs the native backend and a CPU with AVX-512 BF16`,
          );
      }
      if (e.kind !== "step")
        ctx.progress(
          {
            message: e.kind,
            step: "step" in e ? e.step : null,
            total: ctx.config.train.max_steps,
            eta_s: null,
            metrics: {},
          },
          e,
        );
    },
  });
  return {
    dataset_id: ds.id,
    parent_version: res.fine_tuned_from,
    best_dir: res.best_dir,
    best_step: res.best_step,
    best_score: res.best_score,
    steps: res.steps,
    stopped: res.stopped,
    resumed_from_step: res.resumed_from_step,
    params: res.params,
    samples_per_s: res.samples_per_s,
    backend: activeBackend(),
    matmul: res.matmul,
    model_config: model,
    ...(note ? { note } : {}),
  };
}

/** The run's best checkpoint: what evaluate scores and deploy registers. */
export async function trainedModel(ctx: StageContext): Promise<{ model: Buffer; raw: Buffer; step: number }> {
  const prefix = runPrefix(ctx.agent, ctx.runId);
  const best = await latestCheckpoint(ctx.store, prefix, "best");
  if (!best)
    throw new WorkError(
      `run ${ctx.runId} has no trained model: the train stage has to run first in this run`,
    );
  return {
    model: await readCheckpointFile(ctx.store, best, "model.safetensors"),
    raw: await readCheckpointFile(ctx.store, best, "raw.safetensors"),
    step: best.manifest.step,
  };
}

async function readChampionWeights(
  registry: ModelRegistry,
  agent: string,
  version: string,
): Promise<Uint8Array> {
  const m = await registry.getManifest(agent, version);
  const name = m.artifacts.some((a) => a.name === "raw.safetensors")
    ? "raw.safetensors"
    : "model.safetensors";
  return registry.readArtifact(agent, version, name, m);
}

function incompatible(parent: TRMConfig, next: TRMConfig): string | null {
  const keys = [
    "hidden_size",
    "num_heads",
    "num_layers",
    "expansion",
    "seq_len",
    "puzzle_emb_len",
    "puzzle_emb_ndim",
    "pos_encodings",
    "mlp_t",
  ] as const;
  for (const k of keys) if (parent[k] !== next[k]) return `${k} ${parent[k]} -> ${next[k]}`;
  if (parent.vocab_size > next.vocab_size)
    return `vocabulary shrank ${parent.vocab_size} -> ${next.vocab_size}`;
  return null;
}

/** The validation score in training: the mean over tasks of each task's primary metric. */
function scoreByTask(ds: Dataset, indices: number[], predictions: Int32Array[]) {
  const byTask = new Map<string, { ex: number[]; preds: Int32Array[] }>();
  indices.forEach((i, k) => {
    const t = ds.val.tasks[i];
    if (!byTask.has(t)) byTask.set(t, { ex: [], preds: [] });
    byTask.get(t)!.ex.push(i);
    byTask.get(t)!.preds.push(predictions[k]);
  });
  const tasks: Record<string, number> = {};
  for (const [t, v] of byTask) {
    const s = scoreTask(
      t as never,
      v.ex.map((i) => ds.val.example(i)),
      v.preds,
      ds.vocab,
    );
    tasks[t] = s.metrics[s.primary];
  }
  const vals = Object.values(tasks);
  return { score: vals.reduce((a, b) => a + b, 0) / Math.max(1, vals.length), tasks };
}
