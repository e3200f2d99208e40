// The served model of the serve and server benches: random weights of a preset's shape with a task
// vocabulary, registered and promoted as an agent's champion, so serving loads it as it loads a
// trained one.
import * as tf from "@tensorflow/tfjs-core";
import type { Config } from "../config/schema.js";
import { resolveModelConfig, type TRMConfig } from "../model/config.js";
import { encodeSafetensors } from "../model/safetensors.js";
import { TRM } from "../model/trm.js";
import type { ModelRegistry } from "../pipeline/deploy/registry.js";
import { NUM_PUZZLE_IDENTIFIERS } from "../pipeline/tasks/types.js";
import { Vocab } from "../pipeline/tasks/vocab.js";
import { SERVICE_NAMES } from "../simulator/homelab.js";

export const SEQ_LEN = 128;
/** The services the champion names: the simulator's, the one services table. */
export const SERVICES = SERVICE_NAMES;

/** Registers and promotes a random-weight champion of `model`'s shape for `agent`. */
export async function registerRandomChampion(
  registry: ModelRegistry,
  agent: string,
  config: Config,
  model: Partial<Config["model"]>,
): Promise<{ version: string; cfg: TRMConfig }> {
  const vocab = Vocab.create({
    numBins: config.dataset.num_bins,
    encoding: { seq_len: SEQ_LEN, metric_forecast: { points: 24, step_ms: 3_600_000, z_max: 20 } },
    classes: SERVICES.map((s) => `service:${s}`),
  });
  const cfg = resolveModelConfig(model, {
    vocab_size: vocab.size,
    seq_len: SEQ_LEN,
    num_puzzle_identifiers: NUM_PUZZLE_IDENTIFIERS,
  });
  let weights: Uint8Array = new Uint8Array(0);
  tf.tidy(() => {
    const m = TRM.init(cfg, 7);
    weights = encodeSafetensors(m.exportTensors(), m.metadata());
    m.dispose();
  });
  const manifest = await registry.register(agent, {
    artifacts: [
      { name: "model.safetensors", data: weights },
      { name: "vocab.json", data: vocab.serialize() },
    ],
    lineage: {
      run_id: null,
      dataset_id: null,
      raw_segments: [],
      code_version: "bench",
      parent_version: null,
    },
    gate: { passed: true, reasons: [] },
    createdBy: "bench",
  });
  await registry.promote(agent, manifest.version, { actor: "bench", reason: "bench" });
  return { version: manifest.version, cfg };
}
