// The one schema of the trm-forge config file. Every section validates here, and every default
// lives here, so `trm-forge doctor` and the docs can describe the whole config from one place.
import * as z from "zod";

const positiveInt = z.number().int().positive();

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
  })
  .strict();

export type Config = z.infer<typeof ConfigSchema>;
export type ModelSection = z.infer<typeof ModelSchema>;
