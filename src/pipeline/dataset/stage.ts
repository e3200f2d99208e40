import { WorkError } from "../../errors.js";
import { datasetExamples } from "../../metrics.js";
import type { BuildOutput, StageContext } from "../contract.js";
import { buildDataset, type Dataset, DatasetQualityError, openDataset } from "../dataset/index.js";
import type { ModelRegistry } from "../deploy/registry.js";
import { Vocab } from "../tasks/vocab.js";

export async function buildStage(ctx: StageContext): Promise<BuildOutput> {
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

/** The run's dataset, as the orchestrator decided it before the stage (decideDataset in run.ts). */
export async function runDataset(ctx: StageContext): Promise<Dataset> {
  const id = ctx.record.dataset_id;
  if (!id)
    throw new WorkError(`agent ${ctx.agent} has no dataset yet: run the collect and build stages first`);
  return openDataset(ctx.store, ctx.agent, id);
}
