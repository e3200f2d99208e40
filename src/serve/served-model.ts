// One model version held for serving: its TRM (EMA weights, as saved in the version) in the
// inference worker, its vocabulary, and a batcher. Requests hold a lease while they run; a retired model frees its
// tensors once the last lease is returned, so a swap never pulls weights from under a request.
import type { TRMConfig } from "../model/config.js";
import type { ModelRegistry, VersionManifest } from "../pipeline/deploy/registry.js";
import { versionMemory } from "../pipeline/deploy/version-memory.js";
import { getTask, type ModelMemory, recall } from "../pipeline/tasks/index.js";
import type { Encoded } from "../pipeline/tasks/types.js";
import { Vocab } from "../pipeline/tasks/vocab.js";
import { artifactKey } from "../store/layout.js";
import { Batcher } from "./batcher.js";
import type { InferenceWorker, SampleOutput } from "./worker.js";

export type { SampleOutput };

/** A sample's output, and how many training examples had its input (0 where nothing is remembered). */
export type RecalledOutput = SampleOutput & { seen: number };

/** Artifact names of a model version that serving reads. */
export const WEIGHTS_ARTIFACT = "model.safetensors";
export const VOCAB_ARTIFACT = "vocab.json";

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
    /** Where the model's forward passes run, and its id there. */
    private readonly worker: InferenceWorker,
    private readonly id: number,
    readonly cfg: TRMConfig,
    readonly vocab: Vocab,
    readonly manifest: VersionManifest | null,
    batching: BatchingOptions,
    /** What the version remembers of its training split (memory.json), applied to every answer. */
    readonly memory: ModelMemory | null = null,
  ) {
    if (cfg.vocab_size < vocab.size)
      throw new Error(
        `${agent} ${version}: the model has ${cfg.vocab_size} token ids but vocab.json has ${vocab.size}`,
      );
    this.batcher = new Batcher((inputs) => this.infer(inputs), batching.maxBatchSize, batching.maxWaitMs);
  }

  /** Whether the version remembers its training outcomes for the task (its memory.json has it). */
  remembers(task: string): boolean {
    return Boolean(getTask(task).memoryKey) && (this.memory?.tasks.has(task) ?? false);
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

  /** Runs one encoded query through the batcher, then recalls the version's memory; the caller holds a lease. */
  async predict(encoded: Encoded): Promise<RecalledOutput> {
    if (this.disposed) throw new Error(`${this.agent} ${this.version} was unloaded`);
    if (encoded.inputs.length !== this.cfg.seq_len)
      throw new Error(
        `encoded input has ${encoded.inputs.length} tokens; the model takes ${this.cfg.seq_len}`,
      );
    const out = await this.batcher.submit(encoded);
    return {
      ...out,
      seen: recall(this.memory, getTask(encoded.task), encoded.inputs, out.probs, this.vocab),
    };
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
    void this.worker.unload(this.id);
    if (this.retiring?.timer) clearTimeout(this.retiring.timer);
    this.retiring?.resolve();
  }

  private infer(inputs: Encoded[]): Promise<SampleOutput[]> {
    const L = this.cfg.seq_len;
    const tokens = new Int32Array(inputs.length * L);
    const puzzleIds = new Int32Array(inputs.length);
    inputs.forEach((e, i) => {
      tokens.set(e.inputs, i * L);
      puzzleIds[i] = e.puzzleId < this.cfg.num_puzzle_identifiers ? e.puzzleId : 0;
    });
    return this.worker.infer(this.id, tokens, puzzleIds, this.vocab.size);
  }
}

/** Loads a version from the registry (every artifact's sha256 checked) into a ServedModel. */
export async function loadServedModel(
  registry: ModelRegistry,
  agent: string,
  version: string,
  batching: BatchingOptions,
  worker: InferenceWorker,
): Promise<ServedModel> {
  const loaded = await registry.load(agent, version, [WEIGHTS_ARTIFACT, VOCAB_ARTIFACT]);
  const vocab = Vocab.parse(loaded.files.get(VOCAB_ARTIFACT)!);
  const memory = await versionMemory(registry, agent, version, loaded.manifest);
  const source = artifactKey(agent, version, WEIGHTS_ARTIFACT);
  const { id, cfg } = await worker.load(loaded.files.get(WEIGHTS_ARTIFACT)!, source);
  try {
    return new ServedModel(agent, version, worker, id, cfg, vocab, loaded.manifest, batching, memory);
  } catch (err) {
    await worker.unload(id);
    throw err;
  }
}
