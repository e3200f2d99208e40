// Training checkpoints in the store, under runs/<agent>/<run>/checkpoints/:
//   step-00000200/{state.safetensors, manifest.json}             the whole training state
//   best-00000400/{model.safetensors, raw.safetensors, manifest.json}   the best model so far
// The files go first and manifest.json (their sha256 and sizes) last, so a checkpoint without a
// manifest is incomplete and ignored; a file that does not match its manifest is refused.
import * as z from "zod";
import { WorkError } from "../../errors.js";
import { NotFoundError, type ObjectStore } from "../../store/index.js";
import { checkpointDir, checkpointsPrefix } from "../../store/layout.js";
import { sha256 } from "../../util/fs.js";

export const DataOrder = z
  .object({ epoch: z.number().int().min(0), cursor: z.number().int().min(0) })
  .strict();
export type DataOrder = z.infer<typeof DataOrder>;

export const EarlyStop = z
  .object({
    best_step: z.number().int().min(0),
    best_score: z.number().nullable(),
    evals_since_best: z.number().int().min(0),
  })
  .strict();
export type EarlyStop = z.infer<typeof EarlyStop>;

export const CheckpointManifest = z
  .object({
    schema: z.literal(1),
    kind: z.enum(["state", "best"]),
    step: z.number().int().min(0),
    created_at: z.string(),
    files: z.array(
      z.object({ name: z.string(), sha256: z.string(), size: z.number().int().min(0) }).strict(),
    ),
    data: DataOrder,
    early_stop: EarlyStop,
    /** Validation score of this checkpoint's model (best checkpoints). */
    score: z.number().nullable(),
  })
  .strict();
export type CheckpointManifest = z.infer<typeof CheckpointManifest>;

export interface Checkpoint {
  dir: string;
  manifest: CheckpointManifest;
}

const DIR_RE = /\/(step|best)-(\d{8})\/manifest\.json$/;

export { checkpointDir };

export async function saveCheckpoint(
  store: ObjectStore,
  prefix: string,
  info: Omit<CheckpointManifest, "schema" | "files" | "created_at">,
  files: { name: string; data: Uint8Array }[],
): Promise<Checkpoint> {
  const dir = checkpointDir(prefix, info.kind, info.step);
  const entries: CheckpointManifest["files"] = [];
  for (const f of files) {
    await store.put(`${dir}/${f.name}`, f.data, { contentType: "application/octet-stream" });
    entries.push({ name: f.name, sha256: sha256(f.data), size: f.data.byteLength });
  }
  const manifest: CheckpointManifest = {
    schema: 1,
    ...info,
    files: entries,
    created_at: new Date().toISOString(),
  };
  await store.put(
    `${dir}/manifest.json`,
    `${JSON.stringify(CheckpointManifest.parse(manifest), null, 2)}\n`,
    {
      contentType: "application/json",
    },
  );
  return { dir, manifest };
}

/** Complete checkpoints of a kind, oldest step first. */
export async function listCheckpoints(
  store: ObjectStore,
  prefix: string,
  kind: "state" | "best",
): Promise<Checkpoint[]> {
  const out: Checkpoint[] = [];
  for (const o of await store.list(checkpointsPrefix(prefix))) {
    const m = DIR_RE.exec(o.key);
    if (!m || (m[1] === "step") !== (kind === "state")) continue;
    const dir = o.key.slice(0, -"/manifest.json".length);
    try {
      const manifest = CheckpointManifest.parse(JSON.parse((await store.get(o.key)).toString("utf8")));
      out.push({ dir, manifest });
    } catch (err) {
      if (err instanceof NotFoundError) continue;
      throw new WorkError(
        `${o.key} is not a valid checkpoint manifest: ${(err as Error).message.split("\n")[0]}`,
      );
    }
  }
  return out.sort((a, b) => a.manifest.step - b.manifest.step);
}

export async function latestCheckpoint(
  store: ObjectStore,
  prefix: string,
  kind: "state" | "best",
): Promise<Checkpoint | null> {
  return (await listCheckpoints(store, prefix, kind)).at(-1) ?? null;
}

/** One file of a checkpoint, checked against its manifest. */
export async function readCheckpointFile(
  store: ObjectStore,
  ckpt: Checkpoint,
  name: string,
): Promise<Buffer> {
  const entry = ckpt.manifest.files.find((f) => f.name === name);
  if (!entry) throw new WorkError(`checkpoint ${ckpt.dir} has no ${name}`);
  let body: Buffer;
  try {
    body = await store.get(`${ckpt.dir}/${name}`);
  } catch (err) {
    if (err instanceof NotFoundError) throw new WorkError(`checkpoint file ${ckpt.dir}/${name} is missing`);
    throw err;
  }
  if (body.length !== entry.size || sha256(body) !== entry.sha256)
    throw new WorkError(
      `checkpoint file ${ckpt.dir}/${name} does not match its manifest (truncated or altered)`,
    );
  return body;
}

/**
 * Removes all but the newest `keep` checkpoints of a kind (manifest first, so none is seen
 * half-deleted); with `onlyStep`, removes just that one.
 */
export async function pruneCheckpoints(
  store: ObjectStore,
  prefix: string,
  kind: "state" | "best",
  keep: number,
  onlyStep?: number,
): Promise<void> {
  const all = await listCheckpoints(store, prefix, kind);
  const doomed =
    onlyStep === undefined
      ? all.slice(0, Math.max(0, all.length - keep))
      : all.filter((c) => c.manifest.step === onlyStep);
  for (const c of doomed) {
    await store.delete(`${c.dir}/manifest.json`);
    await store.deletePrefix(`${c.dir}/`);
  }
}
