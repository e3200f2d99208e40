// One model version held in memory for serving: its TRM (EMA weights, as saved in the version),
// its vocabulary, and a batcher. Requests hold a lease while they run; a retired model frees its
// tensors once the last lease is returned, so a swap never pulls weights from under a request.
import * as tf from "@tensorflow/tfjs-core";
import { predictBatch } from "../model/act.js";
import { decodeSafetensors } from "../model/safetensors.js";
import { TRM } from "../model/trm.js";
import type { ModelRegistry, VersionManifest } from "../pipeline/deploy/registry.js";
import type { Encoded } from "../pipeline/tasks/types.js";
import { Vocab } from "../pipeline/tasks/vocab.js";
import { Batcher } from "./batcher.js";

/** Artifact names of a model version that serving reads. */
export const WEIGHTS_ARTIFACT = "model.safetensors";
export const VOCAB_ARTIFACT = "vocab.json";

/** What inference gives back for one sample. */
export interface SampleOutput {
  /** Probabilities [seq_len * vocab.size] under the model's loss normalisation (stablemax or softmax). */
  probs: Float32Array;
  /** Supervision steps used (1..N_sup): the sample stopped when q_halt > 0. */
  steps: number;
  /** sigmoid(q_halt): the model's own belief that its whole answer is right. */
  haltConfidence: number;
}

export interface BatchingOptions {
  maxBatchSize: number;
  maxWaitMs: number;
}

export class ServedModel {
  private leases = 0;
  private retiring: { resolve: () => void; timer: NodeJS.Timeout | null } | null = null;
  private disposed = false;
  readonly batcher: Batcher<Encoded, SampleOutput>;
  readonly loadedAt = new Date();

  constructor(
    readonly agent: string,
    readonly version: string,
    readonly model: TRM,
    readonly vocab: Vocab,
    readonly manifest: VersionManifest | null,
    batching: BatchingOptions,
  ) {
    if (model.cfg.vocab_size < vocab.size)
      throw new Error(
        `${agent} ${version}: the model has ${model.cfg.vocab_size} token ids but vocab.json has ${vocab.size}`,
      );
    this.batcher = new Batcher((inputs) => this.infer(inputs), batching.maxBatchSize, batching.maxWaitMs);
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  get inFlight(): number {
    return this.leases;
  }

  /** Takes a lease; false when the model is already freed (the caller must use the current one). */
  acquire(): boolean {
    if (this.disposed) return false;
    this.leases++;
    return true;
  }

  release(): void {
    this.leases--;
    if (this.leases === 0 && this.retiring) this.dispose();
  }

  /** Runs one encoded query through the batcher; the caller holds a lease. */
  predict(encoded: Encoded): Promise<SampleOutput> {
    if (this.disposed) return Promise.reject(new Error(`${this.agent} ${this.version} was unloaded`));
    if (encoded.inputs.length !== this.model.cfg.seq_len)
      return Promise.reject(
        new Error(
          `encoded input has ${encoded.inputs.length} tokens; the model takes ${this.model.cfg.seq_len}`,
        ),
      );
    return this.batcher.submit(encoded);
  }

  /**
   * Frees the tensors once the in-flight requests are done, or after `timeoutMs` regardless (a
   * request stuck that long has failed anyway). Resolves when freed.
   */
  retire(timeoutMs: number): Promise<void> {
    if (this.disposed) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = this.leases > 0 ? setTimeout(() => this.dispose(), timeoutMs) : null;
      timer?.unref();
      this.retiring = { resolve, timer };
      if (this.leases === 0) this.dispose();
    });
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.model.dispose();
    if (this.retiring?.timer) clearTimeout(this.retiring.timer);
    this.retiring?.resolve();
  }

  private infer(inputs: Encoded[]): SampleOutput[] {
    const cfg = this.model.cfg;
    const L = cfg.seq_len;
    const V = cfg.vocab_size;
    const Vv = this.vocab.size;
    const tokens = new Int32Array(inputs.length * L);
    const puzzleIds = new Int32Array(inputs.length);
    inputs.forEach((e, i) => {
      tokens.set(e.inputs, i * L);
      puzzleIds[i] = e.puzzleId < cfg.num_puzzle_identifiers ? e.puzzleId : 0;
    });
    const pred = predictBatch(this.model, this.model.weights, { tokens, puzzleIds });
    const stable = cfg.loss_type === "stablemax";
    return inputs.map((_, b) => {
      const probs = new Float32Array(L * Vv);
      for (let p = 0; p < L; p++) {
        const off = (b * L + p) * V;
        let sum = 0;
        let max = Number.NEGATIVE_INFINITY;
        if (!stable) for (let v = 0; v < V; v++) max = Math.max(max, pred.logits[off + v]);
        for (let v = 0; v < V; v++) {
          const x = pred.logits[off + v];
          // stablemax s(x) = x + 1 for x >= 0, 1 / (1 - x) below: the normalisation the loss trained.
          const s = stable ? (x >= 0 ? x + 1 : 1 / (1 - x)) : Math.exp(x - max);
          sum += s;
          if (v < Vv) probs[p * Vv + v] = s;
        }
        for (let v = 0; v < Vv; v++) probs[p * Vv + v] /= sum;
      }
      return { probs, steps: pred.steps[b], haltConfidence: 1 / (1 + Math.exp(-pred.qHalt[b])) };
    });
  }
}

/** Loads a version from the registry (every artifact's sha256 checked) into a ServedModel. */
export async function loadServedModel(
  registry: ModelRegistry,
  agent: string,
  version: string,
  batching: BatchingOptions,
): Promise<ServedModel> {
  const loaded = await registry.load(agent, version, [WEIGHTS_ARTIFACT, VOCAB_ARTIFACT]);
  const vocab = Vocab.parse(loaded.files.get(VOCAB_ARTIFACT)!);
  const source = `models/${agent}/${version}/${WEIGHTS_ARTIFACT}`;
  const before = tf.memory().numTensors;
  let model: TRM | null = null;
  try {
    model = TRM.fromSafetensors(decodeSafetensors(loaded.files.get(WEIGHTS_ARTIFACT)!, source), source);
    return new ServedModel(agent, version, model, vocab, loaded.manifest, batching);
  } catch (err) {
    model?.dispose();
    // Nothing of a failed load may stay behind.
    if (tf.memory().numTensors > before) throw new Error(`${(err as Error).message} (and tensors leaked)`);
    throw err;
  }
}
