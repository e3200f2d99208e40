// `runner: external` (a trainer of your own, e.g. PyTorch on a GPU) and `import` (weights trained
// elsewhere, registered through the same evaluation and gate).
import * as z from "zod";
import { positiveInt } from "./fields.js";

/** Placeholders an external command's argv may hold; each is replaced by a plain string. */
export const EXTERNAL_PLACEHOLDERS = [
  "{export_dir}",
  "{output_dir}",
  "{config_file}",
  "{run_id}",
  "{agent}",
  "{max_steps}",
  "{batch_size}",
  "{lr}",
  "{seed}",
] as const;

export const ExternalRunnerSchema = z
  .object({
    /**
     * The trainer's argv (no shell): e.g. ["python3", "trainers/torch/train.py", "train", "--data",
     * "{export_dir}", "--config", "{config_file}", "--out", "{output_dir}"]. Required with runner: external.
     */
    command: z.array(z.string().min(1)).min(1).optional(),
    /** Working directory of the command (default: the server's). */
    cwd: z.string().min(1).optional(),
    /** Extra environment for the command (values are plain strings; secrets belong in the server's env). */
    env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/), z.string()).default({}),
    /** The weights file the command leaves in {output_dir}. */
    output: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, "a plain file name")
      .default("model.safetensors"),
    /** Tensor names in that file: the reference's, or the official TinyRecursiveModels state_dict's. */
    format: z.enum(["safetensors", "trm-repo"]).default("safetensors"),
    /** The command is stopped after this long. */
    timeout_s: positiveInt.default(86_400),
    /** After SIGTERM (cancel, timeout), how long before SIGKILL. */
    kill_grace_s: z.number().min(0).default(10),
    /** How often the trainer's log file is read for progress. */
    poll_interval_s: z.number().positive().default(1),
  })
  .strict();
export type ExternalRunnerSection = z.infer<typeof ExternalRunnerSchema>;

export const ImportSchema = z
  .object({
    /**
     * The only directory the MCP tool model_import reads from (files and folders under it). Unset:
     * the tool is disabled. The CLI reads any path its user can.
     */
    dir: z.string().min(1).nullable().default(null),
    /** Largest weights file read (bytes). */
    max_bytes: positiveInt.default(1024 * 1024 * 1024),
  })
  .strict();
export type ImportSection = z.infer<typeof ImportSchema>;
