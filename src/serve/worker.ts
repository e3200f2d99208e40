// The main thread's side of the inference worker (inference-worker.ts): one worker thread holds
// every served model and runs their batches, one at a time. A worker that dies (a native fault,
// out of memory) fails the requests it had, and the next request starts a fresh worker that
// loads the same models again from the weights kept here.
import { Worker } from "node:worker_threads";
import { log } from "../log.js";
import type { TRMConfig } from "../model/config.js";
import { builtEntry } from "../util/entry.js";

/** What inference gives back for one sample. */
export interface SampleOutput {
  /** Probabilities [seq_len * vocab.size] under the model's loss normalisation (stablemax or softmax). */
  probs: Float32Array;
  /** Supervision steps used (1..N_sup): the sample stopped when q_halt > 0. */
  steps: number;
  /** sigmoid(q_halt): the model's own belief that its whole answer is right. */
  haltConfidence: number;
}

export type ToInferenceWorker =
  | { type: "init"; req: number; backend: string }
  | { type: "load"; req: number; id: number; weights: Uint8Array; source: string }
  | { type: "infer"; req: number; id: number; tokens: Int32Array; puzzleIds: Int32Array; vocabSize: number }
  | { type: "unload"; req: number; id: number }
  | { type: "memory"; req: number };

export type WorkerReply =
  | { type: "ok"; req: number }
  | { type: "loaded"; req: number; cfg: TRMConfig }
  | { type: "outputs"; req: number; outputs: SampleOutput[] }
  | { type: "memory"; req: number; tensors: number }
  | { type: "error"; req: number; message: string };

type Pending = { resolve: (r: WorkerReply) => void; reject: (e: Error) => void };
type Body<T> = T extends unknown ? Omit<T, "req"> : never;

export class InferenceWorker {
  private worker: Worker | null = null;
  private readonly pending = new Map<number, Pending>();
  private readonly models = new Map<number, { weights: Uint8Array; source: string }>();
  private nextReq = 1;
  private nextId = 1;
  private closed = false;

  constructor(private readonly backend: string) {}

  /** Loads a model's weights (a safetensors file) into the worker; resolves with its config. */
  async load(weights: Uint8Array, source: string): Promise<{ id: number; cfg: TRMConfig }> {
    const id = this.nextId++;
    // A copy of exactly the view: a Buffer may sit in a larger pooled ArrayBuffer that cloning would copy whole.
    weights = new Uint8Array(weights);
    const r = await this.request({ type: "load", id, weights, source });
    if (r.type !== "loaded") throw new Error(`inference worker: unexpected reply ${r.type} to load`);
    this.models.set(id, { weights, source });
    return { id, cfg: r.cfg };
  }

  async infer(
    id: number,
    tokens: Int32Array,
    puzzleIds: Int32Array,
    vocabSize: number,
  ): Promise<SampleOutput[]> {
    const r = await this.request({ type: "infer", id, tokens, puzzleIds, vocabSize }, [
      tokens.buffer as ArrayBuffer,
      puzzleIds.buffer as ArrayBuffer,
    ]);
    if (r.type !== "outputs") throw new Error(`inference worker: unexpected reply ${r.type} to infer`);
    return r.outputs;
  }

  /** Frees a model in the worker (a no-op when the worker is gone: its models went with it). */
  async unload(id: number): Promise<void> {
    if (!this.models.delete(id) || !this.worker) return;
    await this.request({ type: "unload", id }).catch(() => undefined);
  }

  /** Tensors alive in the worker (0 when it is not running): a freed model leaves none behind. */
  async tensors(): Promise<number> {
    if (!this.worker) return 0;
    const r = await this.request({ type: "memory" });
    return r.type === "memory" ? r.tensors : 0;
  }

  async close(): Promise<void> {
    this.closed = true;
    const w = this.worker;
    this.worker = null;
    this.models.clear();
    await w?.terminate();
  }

  private start(): Worker {
    if (this.closed) throw new Error("the inference worker is closed");
    const w = new Worker(builtEntry(import.meta.url, "./inference-worker.js"));
    // Requests in flight keep the process alive through their callers; an idle worker does not.
    w.unref();
    w.on("message", (r: WorkerReply) => {
      const p = this.pending.get(r.req);
      this.pending.delete(r.req);
      if (!p) return;
      if (r.type === "error") p.reject(new Error(r.message));
      else p.resolve(r);
    });
    const gone = (why: string) => {
      if (this.worker !== w) return;
      this.worker = null;
      if (!this.closed) log.error({ why }, "the inference worker stopped; the next request starts another");
      for (const [req, p] of this.pending) {
        this.pending.delete(req);
        p.reject(new Error(`the inference worker stopped (${why}); try again`));
      }
    };
    w.on("error", (err) => gone(err.message));
    w.on("exit", (code) => gone(`exit code ${code}`));
    this.worker = w;
    // Messages are handled in order: the backend first, then the models it held before.
    this.post(w, { type: "init", backend: this.backend }).catch((err: Error) =>
      log.error({ err: err.message }, "the inference worker cannot set up its backend"),
    );
    for (const [id, m] of this.models) this.post(w, { type: "load", id, ...m }).catch(() => undefined);
    return w;
  }

  private post(w: Worker, body: Body<ToInferenceWorker>, transfer: ArrayBuffer[] = []): Promise<WorkerReply> {
    const req = this.nextReq++;
    return new Promise<WorkerReply>((resolve, reject) => {
      this.pending.set(req, { resolve, reject });
      w.postMessage({ ...body, req }, transfer);
    });
  }

  private request(body: Body<ToInferenceWorker>, transfer: ArrayBuffer[] = []): Promise<WorkerReply> {
    let w: Worker;
    try {
      w = this.worker ?? this.start();
    } catch (err) {
      return Promise.reject(err);
    }
    return this.post(w, body, transfer);
  }
}
