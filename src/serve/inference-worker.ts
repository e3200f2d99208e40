// The worker thread that runs the served models (started by worker.ts). A forward pass of the
// recursion is tens to hundreds of milliseconds of kernels; here it never holds up the server's
// event loop (the MCP tools, /healthz, /metrics). The models live in this thread; the main thread
// sends token batches and gets probabilities back, their buffers transferred, not copied.
import { parentPort } from "node:worker_threads";
import * as tf from "@tensorflow/tfjs-core";
import { outputProbs, predictBatch } from "../model/act.js";
import { type BackendPreference, initBackend } from "../model/backend.js";
import { decodeSafetensors } from "../model/safetensors.js";
import { TRM } from "../model/trm.js";
import type { ToInferenceWorker, WorkerReply } from "./worker.js";

const models = new Map<number, TRM>();
let ready: Promise<unknown> = Promise.resolve();

function reply(msg: WorkerReply, transfer: ArrayBuffer[] = []): void {
  parentPort!.postMessage(msg, transfer);
}

function load(id: number, weights: Uint8Array, source: string): void {
  const before = tf.memory().numTensors;
  let model: TRM | null = null;
  try {
    model = TRM.fromSafetensors(decodeSafetensors(weights, source), source);
    models.set(id, model);
  } catch (err) {
    model?.dispose();
    // Nothing of a failed load may stay behind.
    if (tf.memory().numTensors > before) throw new Error(`${(err as Error).message} (and tensors leaked)`);
    throw err;
  }
}

/** Probabilities per sample [seq_len * vocabSize], under the loss normalisation the model trained with. */
function infer(id: number, tokens: Int32Array, puzzleIds: Int32Array, vocabSize: number) {
  const model = models.get(id);
  if (!model) throw new Error(`model ${id} is not loaded in the inference worker`);
  const cfg = model.cfg;
  const L = cfg.seq_len;
  const V = cfg.vocab_size;
  const pred = predictBatch(model, model.weights, { tokens, puzzleIds });
  const out = [];
  for (let b = 0; b < puzzleIds.length; b++) {
    const probs = outputProbs(cfg, pred.logits, b * L * V, vocabSize);
    out.push({ probs, steps: pred.steps[b], haltConfidence: 1 / (1 + Math.exp(-pred.qHalt[b])) });
  }
  return out;
}

parentPort!.on("message", (msg: ToInferenceWorker) => {
  // Backend set-up is async; everything after it waits for it, in order.
  ready = ready.then(async () => {
    try {
      switch (msg.type) {
        case "init":
          await initBackend(msg.backend as BackendPreference);
          return reply({ type: "ok", req: msg.req });
        case "load": {
          load(msg.id, msg.weights, msg.source);
          return reply({ type: "loaded", req: msg.req, cfg: models.get(msg.id)!.cfg });
        }
        case "infer": {
          const outputs = infer(msg.id, msg.tokens, msg.puzzleIds, msg.vocabSize);
          return reply(
            { type: "outputs", req: msg.req, outputs },
            outputs.map((o) => o.probs.buffer as ArrayBuffer),
          );
        }
        case "unload":
          models.get(msg.id)?.dispose();
          models.delete(msg.id);
          return reply({ type: "ok", req: msg.req });
        case "memory":
          return reply({ type: "memory", req: msg.req, tensors: tf.memory().numTensors });
      }
    } catch (err) {
      reply({ type: "error", req: msg.req, message: (err as Error).message ?? String(err) });
    }
  });
});
