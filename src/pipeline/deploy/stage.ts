// The deploy stage: registers the run's model as a new immutable version (models/<agent>/<v>/ and
// the registry index), promotes it when it passed the gate, then runs the deploy hooks.
import type { Config } from "../../config/index.js";
import { decodeSafetensors } from "../../model/safetensors.js";
import { configFromMetadata } from "../../model/trm.js";
import type { ObjectStore } from "../../store/index.js";
import type { DeployOutput, StageContext } from "../contract.js";
import { datasetMemory } from "../dataset/index.js";
import { runDataset } from "../dataset/stage.js";
import { cardDataset, renderModelCard } from "../deploy/card.js";
import { knowledgeArtifact } from "../deploy/knowledge.js";
import type { Alias, ArtifactInput, ModelRegistry, VersionManifest } from "../deploy/registry.js";
import { smokeArtifact } from "../deploy/smoke-example.js";
import { deployStageHook } from "../deploy/targets.js";
import { evaluationRunKey, readEvaluation } from "../evaluate/stage.js";
import type { EvaluationResult } from "../evaluate.js";
import { MEMORY_ARTIFACT, serializeMemory } from "../tasks/index.js";
import { trainedModel } from "../train/stage.js";

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

export async function deployStage(ctx: StageContext, hooks: DeployHook[]): Promise<DeployOutput> {
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
    const best = await trainedModel(ctx);
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
        dataset: cardDataset(ds),
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
        // What the evaluation's candidate remembered: the same training split, built the same way.
        { name: MEMORY_ARTIFACT, data: serializeMemory(datasetMemory(ds)) },
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
      ? { status: "partial" as const, partial_reason: failed.map((f) => `${f.name}: ${f.reason}`).join("; ") }
      : {}),
  };
}
