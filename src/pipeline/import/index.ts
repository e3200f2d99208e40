// `models import` and the MCP tool model_import: weights trained elsewhere (PyTorch, the official
// repository) are checked against a dataset, scored on its validation split beside the baselines
// and the champion, registered as a version whose card says where they came from, and promoted
// only when the gate passes, as for any run.
import type { Config } from "../../config/index.js";
import { initBackend } from "../../model/backend.js";
import { countParams, resolveModelConfig } from "../../model/config.js";
import type { ObjectStore } from "../../store/index.js";
import { type Dataset, datasetMemory, openDataset } from "../dataset/index.js";
import { cardDataset, renderModelCard } from "../deploy/card.js";
import type { Alias, ModelRegistry } from "../deploy/registry.js";
import { smokeArtifact } from "../deploy/smoke-example.js";
import { registeredModel } from "../evaluate/stage.js";
import { evaluateModels, type ModelUnderTest } from "../evaluate.js";
import { codeVersion } from "../run/code-version.js";
import { asMemory, MEMORY_ARTIFACT, serializeMemory } from "../tasks/index.js";
import { type ImportFormat, readImportWeights, type WeightsOrigin } from "./weights.js";

export {
  IMPORT_FORMATS,
  ImportError,
  type ImportFormat,
  readImportWeights,
  type WeightsOrigin,
} from "./weights.js";

export interface ImportOptions {
  config: Config;
  store: ObjectStore;
  registry: ModelRegistry;
  agent: string;
  path: string;
  format?: ImportFormat;
  /** The dataset the weights were trained on (default: the newest). */
  datasetId?: string;
  /** Who imports, for the manifest and the alias history ("cli:<user>", "mcp:<token>"). */
  actor: string;
  signal?: AbortSignal;
  onProgress?: (p: { done: number; total: number; message: string }) => void;
}

export interface ImportResult {
  agent: string;
  version: string;
  dataset_id: string;
  origin: WeightsOrigin;
  gate: { passed: boolean; reasons: string[] };
  scores: Record<string, number>;
  promoted_to: Alias | null;
  champion_before: string | null;
}

/** The agent's model section resolved at the dataset's shape: what a file without a config is checked against. */
export function configForDataset(config: Config, ds: Dataset) {
  return resolveModelConfig(config.model, {
    vocab_size: ds.vocab.size,
    seq_len: ds.manifest.seq_len,
    num_puzzle_identifiers: ds.manifest.num_puzzle_identifiers,
  });
}

export async function importModel(o: ImportOptions): Promise<ImportResult> {
  await initBackend(o.config.model.backend);
  const ds = await openDataset(o.store, o.agent, o.datasetId);
  const checked = await readImportWeights({
    path: o.path,
    format: o.format,
    dataset: ds,
    fallbackConfig: configForDataset(o.config, ds),
    maxBytes: o.config.import.max_bytes,
  });
  const index = await o.registry.read(o.agent);
  const championBefore = index.aliases.champion;
  const champion: ModelUnderTest | null = championBefore
    ? await registeredModel(o.registry, o.agent, championBefore)
    : null;
  const memory = datasetMemory(ds);
  const evaluation = await evaluateModels({
    agent: o.agent,
    config: o.config,
    dataset: ds,
    candidate: { label: "imported", version: null, weights: checked.model, memory: asMemory(memory) },
    champion,
    signal: o.signal,
    onProgress: o.onProgress,
  });
  o.signal?.throwIfAborted();

  const lineage = {
    run_id: null,
    dataset_id: ds.id,
    raw_segments: ds.manifest.segments.map((s) => ({ key: s.key, sha256: s.sha256 })),
    code_version: codeVersion().id,
    parent_version: null,
  };
  const wouldPromote: Alias | null = evaluation.gate.passed
    ? o.config.gate.auto_promote
      ? "champion"
      : "challenger"
    : null;
  const scores = Object.fromEntries(
    Object.entries(evaluation.tasks)
      .filter(([, e]) => Number.isFinite(e.candidate.score))
      .map(([t, e]) => [t, e.candidate.score]),
  );
  const params = countParams(checked.config).trainable;
  const card = (v: string) =>
    `${renderModelCard({
      agent: o.agent,
      version: v,
      createdAt: new Date().toISOString(),
      model: { params, ...checked.config },
      training: null,
      dataset: cardDataset(ds),
      evaluation,
      promotedTo: wouldPromote,
      lineage,
    })}\n${originSection(checked.origin, o.actor, ds.id)}`;
  const manifest = await o.registry.register(o.agent, {
    artifacts: [
      { name: "model.safetensors", data: checked.model },
      // Fine-tuning reads raw.safetensors: an import has no separate live weights.
      { name: "raw.safetensors", data: checked.model },
      // The evaluation travels in metrics.json, as a run's does.
      { name: "config.json", data: `${JSON.stringify({ model: checked.config }, null, 2)}\n` },
      { name: "vocab.json", data: ds.vocab.serialize() },
      {
        name: "metrics.json",
        data: `${JSON.stringify({ evaluation, import: checked.origin }, null, 2)}\n`,
      },
      { name: MEMORY_ARTIFACT, data: serializeMemory(memory) },
      ...(ds.val.size > 0 ? [smokeArtifact(ds.val.example(0))] : []),
    ],
    versioned: (v) => [{ name: "card.md", data: card(v) }],
    lineage,
    gate: { passed: evaluation.gate.passed, reasons: evaluation.gate.reasons },
    scores,
    createdBy: `import:${o.actor}`,
    signal: o.signal,
  });
  const version = manifest.version;
  if (wouldPromote)
    await o.registry.promote(o.agent, version, {
      alias: wouldPromote,
      actor: o.actor,
      reason: `imported weights passed the gate (${o.config.gate.auto_promote ? "auto_promote" : "auto_promote off: challenger"})`,
    });
  return {
    agent: o.agent,
    version,
    dataset_id: ds.id,
    origin: checked.origin,
    gate: { passed: evaluation.gate.passed, reasons: evaluation.gate.reasons },
    scores,
    promoted_to: wouldPromote,
    champion_before: championBefore,
  };
}

/** The card's account of where the weights came from (appended: the card has no training section for them). */
export function originSection(origin: WeightsOrigin, actor: string, datasetId: string): string {
  const meta = Object.entries(origin.metadata)
    .map(([k, v]) => `${k}=${v}`)
    .join(", ");
  return [
    "## Origin",
    "",
    `Imported, not trained by trm-forge: \`${origin.file}\` (${origin.format === "trm-repo" ? "official TinyRecursiveModels state_dict names" : "reference safetensors names"}, ` +
      `${origin.tensors} tensors, ${origin.bytes} bytes, sha256 ${origin.sha256}), by ${actor}.`,
    `- config: ${origin.config_from === "metadata" ? "from the file's trm_config" : origin.config_from === "trm_config.json" ? "from trm_config.json beside it" : "the agent's model section (the file carries none)"}`,
    `- vocabulary: checked against dataset ${datasetId} ${origin.vocab_check === "content" ? "by content" : "by size only (no vocab.json or vocab_sha256 came with it)"}`,
    ...(meta ? [`- the writer's metadata: ${meta}`] : []),
    "- the weights were checked for missing, extra, misshapen and non-finite tensors before scoring.",
    "",
  ].join("\n");
}
