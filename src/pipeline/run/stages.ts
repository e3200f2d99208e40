// The five real stages. Each reads what the previous one wrote to the store, so any stage can
// run alone (or again, after a crash):
//   collect   raw/<agent>/...                 (collection module)
//   build     datasets/<agent>/<id>/...       (dataset module; the champion's vocabulary grows)
//   train     runs/<agent>/<run>/checkpoints  (the training loop; fine-tunes the champion)
//   evaluate  runs/<agent>/<run>/evaluation.json
//   deploy    models/<agent>/<version>/ + registry.json, then the deploy targets
import type { Config } from "../../config/index.js";
import { WorkError } from "../../errors.js";
import { datasetExamples } from "../../metrics.js";
import { activeBackend, initBackend } from "../../model/backend.js";
import { resolveModelConfig, type TRMConfig } from "../../model/config.js";
import { decodeSafetensors } from "../../model/safetensors.js";
import { configFromMetadata } from "../../model/trm.js";
import { NotFoundError, type ObjectStore } from "../../store/index.js";
import { collect } from "../collect/index.js";
import { CancelledError, TransientError } from "../common/retry.js";
import {
  buildDataset,
  type Dataset,
  DatasetQualityError,
  latestDatasetId,
  openDataset,
} from "../dataset/index.js";
import { renderModelCard } from "../deploy/card.js";
import { knowledgeArtifact } from "../deploy/knowledge.js";
import type { Alias, ArtifactInput, ModelRegistry, VersionManifest } from "../deploy/registry.js";
import { smokeArtifact } from "../deploy/smoke-example.js";
import { deployStageHook } from "../deploy/targets.js";
import { type EvaluationResult, evaluateModels, type ModelUnderTest } from "../evaluate.js";
import { runPrefix } from "../record.js";
import type { StageContext, StageFns } from "../run.js";
import { scoreTask } from "../tasks/index.js";
import { Vocab } from "../tasks/vocab.js";
import { latestCheckpoint, readCheckpointFile } from "../train/checkpoint.js";
import { type TrainResult, train as trainLoop } from "../train.js";

/** What a deploy target sees. */
export interface DeployContext {
  agent: string;
  runId: string;
  config: Config;
  store: ObjectStore;
  registry: ModelRegistry;
  signal: AbortSignal;
  log: StageContext["log"];
  datasetId: string | null;
  /** The dataset's window, ms since the epoch (the knowledge card reads the raw store over it). */
  datasetWindow: { start: number; end: number } | null;
  evaluation: EvaluationResult | null;
}

export interface RegisteredContext extends DeployContext {
  version: string;
  manifest: VersionManifest;
  /** Where the gate sent the version: champion, challenger, or nowhere (null). */
  promotedTo: Alias | null;
  /** The champion before this deploy. */
  previousChampion: string | null;
}

/**
 * What the deploy stage does besides the registry (issue 6: knowledge card, Ollama, vLLM).
 * `artifacts` adds files to the immutable version before it is registered (knowledge.md);
 * `deploy` runs after the alias decision. A hook that throws or answers "partial" marks the
 * deploy stage partial, never failed: the model is registered and promoted either way.
 */
export interface DeployHook {
  name: string;
  artifacts?(ctx: DeployContext): Promise<ArtifactInput[]>;
  deploy?(
    ctx: RegisteredContext,
  ): Promise<{ status?: "ok" | "partial" | "skipped"; reason?: string | null; detail?: unknown } | undefined>;
}

/** The hooks of issue 6: knowledge.md in every version, then the enabled targets (Ollama, vLLM) publish the champion. */
export function defaultDeployHooks(): DeployHook[] {
  return [
    {
      name: "knowledge",
      async artifacts(ctx) {
        if (!ctx.datasetWindow) return [];
        const scores = ctx.evaluation
          ? Object.values(ctx.evaluation.tasks)
              .filter((t) => Number.isFinite(t.candidate.score))
              .map((t) => ({
                task: t.task,
                metric: t.primary,
                model: t.candidate.score,
                ...(t.best_baseline
                  ? { baseline: t.baselines[t.best_baseline].score, baselineName: t.best_baseline }
                  : {}),
              }))
          : undefined;
        return [
          await knowledgeArtifact({
            config: ctx.config,
            store: ctx.store,
            agent: ctx.agent,
            window: ctx.datasetWindow,
            scores,
          }),
        ];
      },
    },
    {
      name: "targets",
      async deploy(ctx) {
        const out = await deployStageHook({
          config: ctx.config,
          store: ctx.store,
          registry: ctx.registry,
          agent: ctx.agent,
          registered: ctx.manifest,
        });
        return {
          status: out.status === "partial" ? "partial" : out.status === "skipped" ? "skipped" : "ok",
          reason: (out.partial_reason as string | null) ?? (out.reason as string | undefined) ?? null,
          detail: out.download_urls
            ? {
                targets: out.targets,
                download_urls: out.download_urls,
                download_urls_expire_s: out.download_urls_expire_s,
              }
            : out.targets,
        };
      },
    },
  ];
}

export interface StageOptions {
  /** Default: defaultDeployHooks(). */
  deployHooks?: DeployHook[];
}

export function realStages(opts: StageOptions = {}): StageFns {
  return {
    collect: collectStage,
    build: buildStage,
    train: trainStage,
    evaluate: evaluateStage,
    deploy: (ctx) => deployStage(ctx, opts.deployHooks ?? defaultDeployHooks()),
  };
}

// ---- collect --------------------------------------------------------------------------------

async function collectStage(ctx: StageContext) {
  const report = await collect(ctx.config, {
    agent: ctx.agent,
    store: ctx.store,
    signal: ctx.signal,
    now: ctx.now().getTime(),
    onQuery: (q) => {
      ctx.progress({
        message: `${q.source}/${q.query}: ${q.records} records (${q.status})`,
        step: null,
        total: null,
        eta_s: null,
        metrics: {},
      });
    },
  });
  if (report.status === "cancelled") throw new CancelledError("collection cancelled");
  const errors = report.sources.flatMap((s) => s.queries.flatMap((q) => q.errors));
  const out = {
    collection_report: report.report_key,
    records: report.totals.records,
    segments: report.totals.segments,
    errors: report.totals.errors,
    sources: Object.fromEntries(report.sources.map((s) => [s.source, s.status])),
  };
  if (report.status === "failed") {
    const msg = `every source failed: ${errors.slice(0, 3).join("; ")}`;
    // Sources that are down or slow may be back in a minute; a bad credential will not.
    if (errors.some((e) => /timed? ?out|timeout|ECONN|EAI_AGAIN|socket|network|\b5\d\d\b|\b429\b/i.test(e)))
      throw new TransientError(msg);
    throw new WorkError(msg);
  }
  if (report.status === "partial")
    return {
      ...out,
      status: "partial",
      partial_reason: `some queries failed: ${errors.slice(0, 3).join("; ")}`,
    };
  return out;
}

// ---- build ----------------------------------------------------------------------------------

async function buildStage(ctx: StageContext) {
  const baseVocab = ctx.fromScratch ? undefined : await championVocab(ctx.registry, ctx.agent);
  const sources = Object.fromEntries(
    Object.entries(ctx.config.agents[ctx.agent].sources).map(([s, v]) => [
      s,
      Boolean(v && (v as { enabled: boolean }).enabled),
    ]),
  );
  let result: Awaited<ReturnType<typeof buildDataset>>;
  try {
    result = await buildDataset({
      store: ctx.store,
      agent: ctx.agent,
      config: ctx.config.dataset,
      sources,
      baseVocab: baseVocab ?? undefined,
      signal: ctx.signal,
      onProgress: (p) =>
        ctx.progress({
          message: `reading ${p.source} ${p.done}/${p.total}`,
          step: p.done,
          total: p.total,
          eta_s: null,
          metrics: {},
        }),
    });
  } catch (err) {
    // Refused data is not transient: the quality report says why, task by task.
    if (err instanceof DatasetQualityError) throw new WorkError(err.message);
    throw err;
  }
  const m = result.manifest;
  for (const [task, n] of Object.entries(m.counts.by_task)) {
    datasetExamples.set({ agent: ctx.agent, task, split: "train" }, n.train);
    datasetExamples.set({ agent: ctx.agent, task, split: "val" }, n.val);
  }
  await ctx.setRunFields({ dataset_id: result.id });
  return {
    dataset_id: result.id,
    reused: result.reused,
    examples: { train: m.counts.train, val: m.counts.val },
    vocab_size: result.vocab.size,
    grew_from_champion: Boolean(baseVocab),
    quality_passed: m.quality.passed,
  };
}

async function championVocab(registry: ModelRegistry, agent: string): Promise<Vocab | null> {
  const index = await registry.read(agent);
  if (!index.aliases.champion) return null;
  return Vocab.parse(await registry.readArtifact(agent, index.aliases.champion, "vocab.json"));
}

/** The run's dataset: the one build made, the one the caller named, else the newest. */
async function runDataset(ctx: StageContext): Promise<Dataset> {
  const id =
    ctx.record.dataset_id ?? ctx.record.options.dataset_id ?? (await latestDatasetId(ctx.store, ctx.agent));
  if (!id)
    throw new WorkError(`agent ${ctx.agent} has no dataset yet: run the collect and build stages first`);
  if (!ctx.record.dataset_id) await ctx.setRunFields({ dataset_id: id });
  return openDataset(ctx.store, ctx.agent, id);
}

// ---- train ----------------------------------------------------------------------------------

async function trainStage(ctx: StageContext) {
  await initBackend(ctx.config.model.backend);
  const ds = await runDataset(ctx);
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
    init,
    store: ctx.store,
    prefix,
    signal: ctx.signal,
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
      else if (e.kind === "start" && e.resumed_from !== null)
        ctx.log("info", `resumed training from the checkpoint at step ${e.resumed_from}`);
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
  if (init) await ctx.setRunFields({ parent_version: init.version });
  else if (res.fine_tuned_from) await ctx.setRunFields({ parent_version: res.fine_tuned_from });
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
    model_config: model,
    ...(note ? { note } : {}),
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

// ---- evaluate -------------------------------------------------------------------------------

export function evaluationRunKey(agent: string, runId: string): string {
  return `${runPrefix(agent, runId)}/evaluation.json`;
}

async function bestModel(ctx: StageContext): Promise<{ model: Buffer; raw: Buffer; step: number }> {
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

async function evaluateStage(ctx: StageContext) {
  await initBackend(ctx.config.model.backend);
  const ds = await runDataset(ctx);
  const cand = await bestModel(ctx);
  const index = await ctx.registry.read(ctx.agent);
  let champion: ModelUnderTest | null = null;
  if (index.aliases.champion)
    champion = {
      label: index.aliases.champion,
      version: index.aliases.champion,
      weights: await ctx.registry.readArtifact(ctx.agent, index.aliases.champion, "model.safetensors"),
    };
  const result = await evaluateModels({
    agent: ctx.agent,
    config: ctx.config,
    dataset: ds,
    candidate: { label: "candidate", version: null, weights: cand.model },
    champion,
    runId: ctx.runId,
    signal: ctx.signal,
    onProgress: (p) =>
      ctx.progress({ message: p.message, step: p.done, total: p.total, eta_s: null, metrics: {} }),
    now: ctx.now,
  });
  const key = evaluationRunKey(ctx.agent, ctx.runId);
  await ctx.store.put(key, `${JSON.stringify(result, null, 2)}\n`, { contentType: "application/json" });
  for (const r of result.gate.reasons) ctx.log(result.gate.passed ? "info" : "warn", r);
  return {
    evaluation: key,
    gate: { passed: result.gate.passed, reasons: result.gate.reasons },
    scores: Object.fromEntries(Object.entries(result.tasks).map(([t, e]) => [t, e.candidate.score])),
    champion: result.champion?.version ?? null,
  };
}

async function readEvaluation(store: ObjectStore, key: string): Promise<EvaluationResult | null> {
  try {
    return JSON.parse((await store.get(key)).toString("utf8")) as EvaluationResult;
  } catch (err) {
    if (err instanceof NotFoundError) return null;
    throw err;
  }
}

// ---- deploy ---------------------------------------------------------------------------------

async function deployStage(ctx: StageContext, hooks: DeployHook[]) {
  const ds = await runDataset(ctx);
  const evaluation = await readEvaluation(ctx.store, evaluationRunKey(ctx.agent, ctx.runId));
  const trainOut = ctx.record.stages.find((s) => s.name === "train")?.output ?? {};
  const dctx: DeployContext = {
    agent: ctx.agent,
    runId: ctx.runId,
    config: ctx.config,
    store: ctx.store,
    registry: ctx.registry,
    signal: ctx.signal,
    log: ctx.log,
    datasetId: ds.id,
    datasetWindow: { start: Date.parse(ds.manifest.window.start), end: Date.parse(ds.manifest.window.end) },
    evaluation,
  };
  const before = await ctx.registry.read(ctx.agent);
  // A deploy that was interrupted after registering must not register the same run twice.
  let version = before.versions.find((v) => v.run_id === ctx.runId)?.version ?? null;
  let manifest: VersionManifest;
  if (version) {
    manifest = await ctx.registry.getManifest(ctx.agent, version);
    ctx.log("info", `version ${version} was already registered by this run`);
  } else {
    const best = await bestModel(ctx);
    const modelCfg = configFromMetadata(decodeSafetensors(best.model, "candidate").metadata, "candidate");
    const lineage = {
      run_id: ctx.runId,
      dataset_id: ds.id,
      raw_segments: ds.manifest.segments.map((s) => ({ key: s.key, sha256: s.sha256 })),
      code_version: ctx.record.code_version.id,
      parent_version: (trainOut.parent_version as string | null | undefined) ?? null,
    };
    const extra: ArtifactInput[] = [];
    for (const h of hooks) {
      if (!h.artifacts) continue;
      try {
        extra.push(...(await h.artifacts(dctx)));
      } catch (err) {
        ctx.log("warn", `deploy hook ${h.name}: its artifacts failed: ${(err as Error).message}`);
      }
    }
    const gatePassed = evaluation?.gate.passed ?? false;
    const wouldPromote: Alias | null = gatePassed
      ? ctx.config.gate.auto_promote
        ? "champion"
        : "challenger"
      : null;
    const params = (trainOut.params as number | undefined) ?? 0;
    const card = (v: string) =>
      renderModelCard({
        agent: ctx.agent,
        version: v,
        createdAt: ctx.now().toISOString(),
        model: { params, ...modelCfg },
        training: {
          steps: (trainOut.steps as number) ?? best.step,
          best_step: best.step,
          stopped: String(trainOut.stopped ?? "max_steps"),
          seed: ctx.config.train.seed,
          lr: ctx.config.train.lr,
          batch_size: ctx.config.train.batch_size,
          fine_tuned_from: lineage.parent_version,
        },
        dataset: {
          id: ds.id,
          window: ds.manifest.window,
          counts: ds.manifest.counts.by_task,
          sources: ds.manifest.sources,
        },
        evaluation,
        promotedTo: wouldPromote,
        lineage,
      });
    manifest = await ctx.registry.register(ctx.agent, {
      artifacts: [
        { name: "model.safetensors", data: best.model },
        { name: "raw.safetensors", data: best.raw },
        {
          name: "config.json",
          data: `${JSON.stringify({ model: modelCfg, train: ctx.config.train }, null, 2)}\n`,
        },
        { name: "vocab.json", data: ds.vocab.serialize() },
        {
          name: "metrics.json",
          data: `${JSON.stringify({ evaluation, training: trainOut }, null, 2)}\n`,
        },
        // One validation example, for the server's smoke test before it switches to this version.
        ...(ds.val.size > 0 ? [smokeArtifact(ds.val.example(0))] : []),
        ...extra,
      ],
      versioned: (v) => [{ name: "card.md", data: card(v) }],
      lineage,
      gate: evaluation ? { passed: evaluation.gate.passed, reasons: evaluation.gate.reasons } : null,
      scores: evaluation
        ? Object.fromEntries(
            Object.entries(evaluation.tasks)
              .filter(([, e]) => Number.isFinite(e.candidate.score))
              .map(([t, e]) => [t, e.candidate.score]),
          )
        : {},
      createdBy: `run:${ctx.runId}`,
      signal: ctx.signal,
    });
    version = manifest.version;
  }
  await ctx.setRunFields({ model_version: version });

  const gatePassed = manifest.gate?.passed === true;
  let promotedTo: Alias | null = null;
  const index = await ctx.registry.read(ctx.agent);
  if (gatePassed) {
    promotedTo = ctx.config.gate.auto_promote ? "champion" : "challenger";
    if (index.aliases[promotedTo] !== version)
      await ctx.registry.promote(ctx.agent, version, {
        alias: promotedTo,
        actor: `run:${ctx.runId}`,
        reason: `gate passed (${ctx.config.gate.auto_promote ? "auto_promote" : "auto_promote off: challenger"})`,
      });
  } else
    ctx.log(
      "warn",
      `version ${version} is registered but not promoted: ${manifest.gate ? "it failed the gate" : "it was not evaluated"}`,
    );

  const results: {
    name: string;
    status: "ok" | "partial" | "failed" | "skipped";
    reason: string | null;
    detail: unknown;
  }[] = [];
  for (const h of hooks) {
    if (!h.deploy) continue;
    try {
      const r = await h.deploy({
        ...dctx,
        version,
        manifest,
        promotedTo,
        previousChampion: before.aliases.champion,
      });
      results.push({
        name: h.name,
        status: r?.status ?? "ok",
        reason: r?.reason ?? null,
        detail: r?.detail ?? null,
      });
      if (r?.status === "partial") ctx.log("warn", `deploy hook ${h.name} partly failed: ${r.reason}`);
    } catch (err) {
      ctx.log("warn", `deploy hook ${h.name} failed: ${(err as Error).message}`);
      results.push({ name: h.name, status: "failed", reason: (err as Error).message, detail: null });
    }
  }
  const failed = results.filter((r) => r.status === "failed" || r.status === "partial");
  return {
    version,
    gate_passed: gatePassed,
    promoted_to: promotedTo,
    previous_champion: before.aliases.champion,
    hooks: results,
    ...(failed.length
      ? { status: "partial", partial_reason: failed.map((f) => `${f.name}: ${f.reason}`).join("; ") }
      : {}),
  };
}
