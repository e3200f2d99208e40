// The smoke test a new version passes before it is switched to: one prediction on a stored
// validation example (the version's smoke.json, written at registration), checked for sane
// output. It judges that the model runs, not how good it is: the gate did that.
import { artifactKey } from "../pipeline/deploy/registry.js";
import { SMOKE_ARTIFACT, SmokeExample } from "../pipeline/deploy/smoke-example.js";
import { type Encoded, TASK_NAMES } from "../pipeline/tasks/types.js";
import type { ObjectStore } from "../store/index.js";
import { sha256 } from "../util/fs.js";
import type { ServedModel } from "./served-model.js";

export { SMOKE_ARTIFACT, SmokeExample, smokeArtifact } from "../pipeline/deploy/smoke-example.js";

export interface SmokeResult {
  source: "smoke.json" | "neutral input";
  task: string;
  steps: number;
  /** Share of the example's supervised positions the model got right (null without labels). */
  label_accuracy: number | null;
}

/** Runs the smoke prediction on a model that is loaded but not yet served; throws on failure. */
export async function smokeTest(model: ServedModel, store: ObjectStore): Promise<SmokeResult> {
  const cfg = model.cfg;
  const hasExample = model.manifest?.artifacts.some((a) => a.name === SMOKE_ARTIFACT) ?? false;
  let ex: SmokeExample;
  if (hasExample) {
    // The registry verified the manifest; the artifact is checked against it here.
    const entry = model.manifest!.artifacts.find((a) => a.name === SMOKE_ARTIFACT)!;
    const body = await store.get(artifactKey(model.agent, model.version, SMOKE_ARTIFACT));
    if (sha256(body) !== entry.sha256)
      throw new Error(`${SMOKE_ARTIFACT} does not match its recorded sha256`);
    ex = SmokeExample.parse(JSON.parse(body.toString("utf8")));
  } else {
    // Versions registered without an example still get a run through every layer.
    ex = { task: TASK_NAMES[0], inputs: new Array(cfg.seq_len).fill(0), puzzle_id: 0, aux: [] };
  }
  if (ex.inputs.length !== cfg.seq_len)
    throw new Error(`the smoke example has ${ex.inputs.length} tokens; the model takes ${cfg.seq_len}`);
  const encoded: Encoded = {
    task: ex.task,
    puzzleId: ex.puzzle_id,
    inputs: Int32Array.from(ex.inputs),
    readouts: [],
    aux: Float64Array.from(ex.aux),
  };
  if (!model.acquire()) throw new Error("model was freed before its smoke test");
  try {
    const out = await model.predict(encoded);
    if (!(out.steps >= 1 && out.steps <= cfg.halt_max_steps))
      throw new Error(`used ${out.steps} supervision steps, outside 1..${cfg.halt_max_steps}`);
    const V = model.vocab.size;
    let accurate = 0;
    let supervised = 0;
    for (let p = 0; p < cfg.seq_len; p++) {
      let sum = 0;
      let best = 0;
      for (let v = 0; v < V; v++) {
        const x = out.probs[p * V + v];
        if (!Number.isFinite(x) || x < 0)
          throw new Error(`non-finite or negative probability at position ${p}`);
        sum += x;
        if (x > out.probs[p * V + best]) best = v;
      }
      if (Math.abs(sum - 1) > 1e-3) throw new Error(`probabilities at position ${p} sum to ${sum}, not 1`);
      const label = ex.labels?.[p];
      if (label !== undefined && label >= 0) {
        supervised++;
        if (best === label) accurate++;
      }
    }
    if (!Number.isFinite(out.haltConfidence)) throw new Error("q_halt is not finite");
    return {
      source: hasExample ? "smoke.json" : "neutral input",
      task: ex.task,
      steps: out.steps,
      label_accuracy: supervised ? accurate / supervised : null,
    };
  } finally {
    model.release();
  }
}
