// The model module's public surface: the TRM engine, its training state, deep supervision with
// halting, safetensors I/O, the reference parity check, and backend selection.
export {
  type Batch,
  type Carry,
  type EvalMetrics,
  type EvalResult,
  evaluateBatch,
  type Prediction,
  predictBatch,
} from "./act.js";
export {
  type BackendPreference,
  type BackendReport,
  describeBackends,
  initBackend,
} from "./backend.js";
export {
  countParams,
  type DataShape,
  type Flops,
  flopsPerSample,
  type ParamCount,
  PRESETS,
  parseTRMConfig,
  resolveModelConfig,
  swigluWidth,
  type TRMConfig,
  type TRMConfigInput,
  TRMConfigSchema,
  totalLen,
} from "./config.js";
export { IGNORE_LABEL } from "./loss.js";
export { lrAt } from "./optim.js";
export { Rng, type RngState } from "./rng.js";
export {
  DEFAULT_MAX_FILE,
  decodeSafetensors,
  encodeSafetensors,
  readSafetensors,
  type SafetensorsContents,
  SafetensorsError,
  type StoredTensor,
  type TensorToWrite,
  toFloat32,
  toInt32,
  writeSafetensors,
} from "./safetensors.js";
export {
  Trainer,
  type TrainMetrics,
  type TrainOptions,
  type TrainOptionsInput,
  TrainOptionsSchema,
} from "./trainer.js";
export { configFromMetadata, TRM, type Weights, weightSpecs } from "./trm.js";
export { type TensorCheck, type VerifyReport, verifyContents, verifyFile } from "./verify.js";
