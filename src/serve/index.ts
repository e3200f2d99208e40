// The served TRM: what the MCP server, the CLI and the benchmark use.
export { Batcher } from "./batcher.js";
export {
  loadServedModel,
  type SampleOutput,
  ServedModel,
  VOCAB_ARTIFACT,
  WEIGHTS_ARTIFACT,
} from "./served-model.js";
export {
  type AgentStatus,
  ModelServer,
  type ModelServerOptions,
  minConfidence,
  PredictInput,
  type PredictResult,
  type ServedModelStatus,
  ServeError,
  type SwapRecord,
  textQuery,
} from "./server.js";
export {
  answerValues,
  readShadowFile,
  readShadowReport,
  ShadowRecorder,
  type ShadowReport,
  type ShadowTaskSummary,
  shadowKey,
} from "./shadow.js";
export { SMOKE_ARTIFACT, SmokeExample, type SmokeResult, smokeArtifact, smokeTest } from "./smoke.js";
