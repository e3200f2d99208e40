// model_import: weights trained elsewhere, read from the one folder the config allows
// (import.dir), checked, evaluated and registered; the gate decides promotion (src/pipeline/import).
import { realpath } from "node:fs/promises";
import { isAbsolute, relative, resolve, sep } from "node:path";
import * as z from "zod";
import { UsageError } from "../errors.js";
import { IMPORT_FORMATS, importModel } from "../pipeline/import/index.js";
import { AgentName, defineTool, pct } from "./common.js";

/**
 * The real path of `requested` inside the import folder. Refuses `..`, absolute paths elsewhere,
 * and links that lead out of it: the folder is the only thing this tool may read.
 */
export async function pathInImportDir(dir: string, requested: string): Promise<string> {
  const root = await realpath(dir).catch(() => {
    throw new UsageError("model_import: the configured import.dir does not exist on the server");
  });
  const joined = isAbsolute(requested) ? requested : resolve(root, requested);
  const outside = (p: string) => {
    const rel = relative(root, p);
    return rel === ".." || rel.startsWith(`..${sep}`) || isAbsolute(rel);
  };
  if (requested.split(/[\\/]/).includes("..") || outside(joined))
    throw new UsageError(
      `path "${requested}" is outside the import folder: give a path inside it, without ..`,
    );
  const real = await realpath(joined).catch(() => {
    throw new UsageError(`"${requested}" does not exist in the import folder`);
  });
  if (outside(real)) throw new UsageError(`path "${requested}" leads outside the import folder (a link)`);
  return real;
}

export const modelImport = defineTool({
  name: "model_import",
  title: "Import trained weights",
  description:
    "Registers weights trained outside trm-forge (the project's PyTorch trainer, the official TinyRecursiveModels repository) from the server's import folder: " +
    "checks every tensor (missing, extra, shape, NaN) and the vocabulary against the dataset, scores them on its validation split beside the baselines and the champion, " +
    "registers a version whose card says where the weights came from, and promotes it only when the gate passes. " +
    "Disabled unless the server's config sets import.dir. Next: model_card on the version, model_promote with force only if you accept the gate's reasons.",
  scope: "promote",
  input: z
    .object({
      agent: AgentName.optional(),
      path: z
        .string()
        .min(1)
        .max(500)
        .describe(
          "A .safetensors file or a folder holding model.safetensors, relative to the import folder.",
        ),
      format: z
        .enum(IMPORT_FORMATS)
        .optional()
        .describe(
          "Tensor names: safetensors (the reference's) or trm-repo (the official repository's); default detected.",
        ),
      dataset_id: z
        .string()
        .regex(/^ds-\d{8}-[0-9a-f]{12}$/, "a dataset id such as ds-20260101-0123456789ab")
        .optional()
        .describe("The dataset the weights were trained on (default: the newest)."),
    })
    .strict(),
  output: z
    .object({
      agent: z.string(),
      version: z.string(),
      dataset_id: z.string(),
      origin: z
        .object({
          file: z.string(),
          format: z.enum(IMPORT_FORMATS),
          sha256: z.string(),
          bytes: z.number().int(),
          tensors: z.number().int(),
          config_from: z.string(),
          vocab_check: z.string(),
        })
        .strict(),
      gate: z.object({ passed: z.boolean(), reasons: z.array(z.string()) }).strict(),
      scores: z.record(z.string(), z.number()),
      promoted_to: z.string().nullable(),
      champion_before: z.string().nullable(),
    })
    .strict(),
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false },
  async run(args, call, env) {
    const agent = call.agent(args.agent);
    const dir = env.ctx.config.import.dir;
    if (!dir) throw new UsageError("model_import is disabled on this server: its config sets no import.dir");
    const path = await pathInImportDir(dir, args.path);
    const r = await importModel({
      config: env.ctx.config,
      store: env.ctx.store,
      registry: env.ctx.registry,
      agent,
      path,
      format: args.format,
      datasetId: args.dataset_id,
      actor: call.actor,
      signal: call.signal,
      onProgress: (p) => void call.progress(p.done, p.total, p.message),
    });
    const { metadata: _m, ...origin } = r.origin;
    return {
      data: {
        agent,
        version: r.version,
        dataset_id: r.dataset_id,
        origin,
        gate: r.gate,
        scores: r.scores,
        promoted_to: r.promoted_to,
        champion_before: r.champion_before,
      },
      text: [
        `${agent} ${r.version}: imported ${r.origin.file} (${r.origin.format}), evaluated on ${r.dataset_id}: ` +
          Object.entries(r.scores)
            .map(([t, x]) => `${t} ${pct(x)}`)
            .join(", "),
        `gate ${r.gate.passed ? "passed" : "FAILED"}: ${r.gate.reasons.join("; ")}`,
        r.promoted_to
          ? `promoted to ${r.promoted_to}`
          : `not promoted; the champion stays ${r.champion_before ?? "unset"}`,
      ].join("\n"),
    };
  },
});
