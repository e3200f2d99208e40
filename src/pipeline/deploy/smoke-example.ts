// The stored validation example a version carries (smoke.json) so that the server can smoke-test
// it before switching to it. It lives with the version like the weights and the vocabulary.
import * as z from "zod";
import type { ObjectStore } from "../../store/index.js";
import { openDataset } from "../dataset/index.js";
import { type Example, PUZZLE_IDS, TASK_NAMES } from "../tasks/types.js";

export const SMOKE_ARTIFACT = "smoke.json";

export const SmokeExample = z
  .object({
    task: z.enum(TASK_NAMES),
    inputs: z.array(z.number().int().min(0)),
    puzzle_id: z.number().int().min(0),
    aux: z.array(z.number()).default([]),
    /** The example's labels (-100 where unsupervised), to report how the answer compares. */
    labels: z.array(z.number().int()).optional(),
  })
  .strict();
export type SmokeExample = z.infer<typeof SmokeExample>;

export interface SmokeArtifact {
  name: typeof SMOKE_ARTIFACT;
  data: string;
  contentType: string;
}

/** smoke.json from one validation example. */
export function smokeArtifact(example: Example): SmokeArtifact {
  const body: SmokeExample = {
    task: example.task,
    inputs: [...example.inputs],
    puzzle_id: PUZZLE_IDS[example.task],
    aux: [...example.aux].filter(Number.isFinite),
    labels: [...example.labels],
  };
  return { name: SMOKE_ARTIFACT, data: `${JSON.stringify(body)}\n`, contentType: "application/json" };
}

/** smoke.json from the first validation example of a dataset; null when it has none. */
export async function smokeArtifactFromDataset(
  store: ObjectStore,
  agent: string,
  datasetId: string,
): Promise<SmokeArtifact | null> {
  const ds = await openDataset(store, agent, datasetId);
  return ds.val.size > 0 ? smokeArtifact(ds.val.example(0)) : null;
}
