// The one schema of the trm-forge config file. Every section validates in src/config/, and every
// default lives there, so `trm-forge doctor` and the docs can describe the whole config from one
// place. Each section has its own file beside this one; this file composes them and re-exports them.
import * as z from "zod";
import { DatasetSchema } from "./dataset.js";
import { ExternalRunnerSchema, ImportSchema } from "./external.js";
import { positiveInt } from "./fields.js";
import { KubernetesSchema } from "./kubernetes.js";
import { agentName } from "./names.js";
import { GateSchema, RetentionSchema, RunsSchema, ScanSchema, ScheduleSchema, TrainSchema } from "./runs.js";
import { ServerSchema, TokenSchema } from "./server.js";
import { KnowledgeSchema, OllamaSchema, ServeSchema, VllmSchema } from "./serving.js";
import { AgentSchema, CollectSchema } from "./sources.js";

export * from "./dataset.js";
export * from "./external.js";
export * from "./fields.js";
export * from "./kubernetes.js";
export * from "./runs.js";
export * from "./server.js";
export * from "./serving.js";
export * from "./sources.js";

/** Architecture of the TRM. Unset keys come from the preset; vocab and sequence length come from the dataset. */
export const ModelSchema = z
  .object({
    preset: z.enum(["7m", "small", "demo"]).default("7m"),
    backend: z.enum(["auto", "tensorflow", "native", "wasm", "cpu"]).default("auto"),
    hidden_size: positiveInt.optional(),
    num_heads: positiveInt.optional(),
    num_layers: positiveInt.optional(),
    expansion: z.number().positive().optional(),
    H_cycles: positiveInt.optional(),
    L_cycles: positiveInt.optional(),
    halt_max_steps: positiveInt.optional(),
    halt_exploration_prob: z.number().min(0).max(1).optional(),
    puzzle_emb_len: z.number().int().min(0).optional(),
    puzzle_emb_ndim: z.number().int().min(-1).optional(),
    pos_encodings: z.enum(["rope", "learned", "none"]).optional(),
    rope_theta: z.number().positive().optional(),
    rms_norm_eps: z.number().positive().optional(),
    mlp_t: z.boolean().optional(),
    loss_type: z.enum(["stablemax", "softmax"]).optional(),
  })
  .strict();

export const StoreSchema = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("fs") }).strict(),
  z
    .object({
      kind: z.literal("minio"),
      endpoint: z.string().min(1),
      port: z.number().int().min(1).max(65535).optional(),
      use_ssl: z.boolean().default(true),
      bucket: z.string().min(3),
      region: z.string().default("us-east-1"),
      path_style: z.boolean().default(true),
      /** Objects up to this size go up in one PUT; s3rver has no multipart, so tests set it above their largest object. */
      part_size_mb: z.number().int().min(5).default(64),
      access_key: z.object({ env: z.string() }).or(z.object({ file: z.string() })),
      secret_key: z.object({ env: z.string() }).or(z.object({ file: z.string() })),
      prefix: z.string().default(""),
      presign_expiry_s: z.number().int().min(0).max(604800).default(0),
    })
    .strict(),
]);

export const ConfigSchema = z
  .object({
    /** Where the local store, locks and caches live. */
    data_dir: z.string().default(".trm-forge"),
    log_level: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
    store: StoreSchema.default({ kind: "fs" }),
    model: ModelSchema.default({ preset: "7m", backend: "auto" }),
    dataset: DatasetSchema.prefault({}),
    /** Agents and the sources each collects from, keyed by agent name. */
    agents: z.record(agentName, AgentSchema).default({}),
    collect: CollectSchema.prefault({}),
    serve: ServeSchema.default(ServeSchema.parse({})),
    knowledge: KnowledgeSchema.default(KnowledgeSchema.parse({})),
    ollama: OllamaSchema.default(OllamaSchema.parse({})),
    vllm: VllmSchema.default(VllmSchema.parse({})),
    train: TrainSchema.prefault({}),
    gate: GateSchema.prefault({}),
    schedule: ScheduleSchema.prefault({}),
    runs: RunsSchema.prefault({}),
    retention: RetentionSchema.prefault({}),
    scan: ScanSchema.prefault({}),
    /** Where the train stage runs: in this process, as a Kubernetes Job (`kubernetes`), or a command of yours (`external`). */
    runner: z.enum(["in-process", "kubernetes", "external"]).default("in-process"),
    kubernetes: KubernetesSchema.prefault({}),
    /** runner: external: the trainer command, its output and its limits. */
    external: ExternalRunnerSchema.prefault({}),
    /** Weights trained elsewhere: where the MCP tool model_import may read them. */
    import: ImportSchema.prefault({}),
    server: ServerSchema.prefault({}),
    /** Bearer tokens for HTTP callers: references to env variables or files, never values. */
    tokens: z.array(TokenSchema).default([]),
  })
  .strict();

export type Config = z.infer<typeof ConfigSchema>;
export type ModelSection = z.infer<typeof ModelSchema>;
