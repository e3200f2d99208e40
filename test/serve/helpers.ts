// Model versions for the serving tests: a tiny TRM with a real vocabulary, registered through the
// real registry, so serving loads them exactly as it loads trained ones.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs-core";
import { parseConfig } from "../../src/config/index.js";
import type { Config } from "../../src/config/schema.js";
import { parseTRMConfig } from "../../src/model/config.js";
import { encodeSafetensors, type TensorToWrite } from "../../src/model/safetensors.js";
import { TRM } from "../../src/model/trm.js";
import { type ArtifactInput, ModelRegistry } from "../../src/pipeline/deploy/registry.js";
import { smokeArtifact } from "../../src/pipeline/deploy/smoke-example.js";
import {
  getTask,
  MEMORY_ARTIFACT,
  type MemoryFile,
  serializeMemory,
} from "../../src/pipeline/tasks/index.js";
import { IGNORE, Vocab } from "../../src/pipeline/tasks/vocab.js";
import { FsStore } from "../../src/store/index.js";

export const SEQ_LEN = 16;

export function testVocab(): Vocab {
  return Vocab.create({
    numBins: 8,
    encoding: { seq_len: SEQ_LEN, metric_forecast: { points: 4, step_ms: 60_000, z_max: 4 } },
    classes: ["service:api", "service:db"],
  });
}

export function testServeEnv(serve: Record<string, unknown> = {}) {
  const dir = mkdtempSync(join(tmpdir(), "trm-serve-"));
  const store = new FsStore(join(dir, "store"));
  const registry = new ModelRegistry(store);
  const config: Config = parseConfig({
    data_dir: dir,
    model: { backend: "cpu" },
    serve: { poll_interval_ms: 200, max_wait_ms: 2, ...serve },
  });
  return { dir, store, registry, config };
}

export interface VersionOptions {
  seed?: number;
  /** Output head weights of ±3e38: finite, so the model loads, but its logits overflow float32 to Inf. */
  hugeHead?: boolean;
  /** A vocabulary bigger than the model's token table: the load fails. */
  vocab?: Vocab;
  halt?: number;
  /** A memory.json to register with the version (tasks/memory.ts). */
  memory?: MemoryFile;
}

/** The tiny TRM's weights and vocabulary, plus its smoke example (one encoded log line). */
export function tinyArtifacts(o: VersionOptions = {}): ArtifactInput[] {
  const vocab = testVocab();
  const cfg = parseTRMConfig({
    vocab_size: vocab.size,
    seq_len: SEQ_LEN,
    hidden_size: 16,
    num_heads: 1,
    num_layers: 1,
    expansion: 2,
    H_cycles: 1,
    L_cycles: 1,
    halt_max_steps: o.halt ?? 2,
    pos_encodings: "none",
    puzzle_emb_len: 2,
    puzzle_emb_ndim: 16,
    num_puzzle_identifiers: 5,
  });
  let weights: Uint8Array = new Uint8Array(0);
  // In a scope: TRM.init leaves its initial-value tensors behind, and this test counts tensors.
  tf.tidy(() => {
    const model = TRM.init(cfg, o.seed ?? 1);
    const tensors = model.exportTensors() as Map<string, TensorToWrite>;
    if (o.hugeHead) {
      const head = tensors.get("lm_head.weight")!;
      tensors.set("lm_head.weight", {
        ...head,
        data: (head.data as Float32Array).map((x) => Math.sign(x) * 3e38),
      });
    }
    weights = encodeSafetensors(tensors, model.metadata());
    model.dispose();
  });
  // A stored validation example: one encoded log line.
  const enc = getTask("log_triage").encode({ line: "ERROR db timeout after 30s" }, vocab);
  const labels = new Int32Array(SEQ_LEN).fill(IGNORE);
  labels[enc.readouts[0].position] = vocab.classId("level:error")!;
  const smoke = smokeArtifact({
    task: "log_triage",
    inputs: enc.inputs,
    labels,
    time: 0,
    aux: new Float64Array(0),
  });
  return [
    { name: "model.safetensors", data: weights },
    { name: "vocab.json", data: (o.vocab ?? vocab).serialize() },
    smoke,
    ...(o.memory ? [{ name: MEMORY_ARTIFACT, data: serializeMemory(o.memory) }] : []),
  ];
}

/** Registers a version whose gate passed and returns its id. */
export async function registerVersion(
  registry: ModelRegistry,
  agent: string,
  o: VersionOptions = {},
): Promise<string> {
  const manifest = await registry.register(agent, {
    artifacts: tinyArtifacts(o),
    lineage: { run_id: null, dataset_id: null, raw_segments: [], code_version: "test", parent_version: null },
    gate: { passed: true, reasons: [] },
    createdBy: "test",
  });
  return manifest.version;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
