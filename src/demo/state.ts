// What a demo data directory remembers between runs (demo.json): the simulated window, the
// settings, the pipeline run and each step's time. A rerun reads it to reuse what was built: the
// same homelab (seed and end time), the run to resume or the model to serve.
import { randomBytes } from "node:crypto";
import { chmod, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import * as z from "zod";
import { WorkError } from "../errors.js";
import { atomicWriteJson } from "../util/fs.js";

export const StepTime = z.object({
  wall_s: z.number(),
  cpu_s: z.number(),
  /** Set when the step ran in an earlier invocation of the demo. */
  earlier: z.boolean().optional(),
});
export type StepTime = z.infer<typeof StepTime>;

export const DemoState = z.object({
  schema: z.literal(1),
  created_at: z.string(),
  settings: z.object({
    days: z.number(),
    seed: z.number().int(),
    steps: z.number().int(),
    examples: z.number().int(),
    // Demos from before these settings used 20% of examples and the simulator's default traces.
    valExamples: z.number().int().default(600),
    tracesPerDay: z.number().int().default(160),
  }),
  /** End of the simulated window (ms): a rerun serves the same homelab. */
  simulator_end: z.number(),
  run_id: z.string().nullable(),
  /** Step name -> time it took; only finished steps. */
  times: z.record(z.string(), StepTime),
});
export type DemoState = z.infer<typeof DemoState>;

export const stateFile = (dir: string) => join(dir, "demo.json");
export const tokenFile = (dir: string) => join(dir, "agent-sre.token");
export const configFile = (dir: string) => join(dir, "trm-forge.yaml");

export async function readState(dir: string): Promise<DemoState | null> {
  let text: string;
  try {
    text = await readFile(stateFile(dir), "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw err;
  }
  const parsed = DemoState.safeParse(JSON.parse(text));
  if (!parsed.success)
    throw new WorkError(
      `${stateFile(dir)} is not a demo state file (${parsed.error.issues[0]?.message}); start over with --fresh`,
    );
  return parsed.data;
}

export async function writeState(dir: string, state: DemoState): Promise<void> {
  await atomicWriteJson(stateFile(dir), state);
}

/** The agent's bearer token for the MCP server: made once, readable by the owner only. */
export async function ensureToken(dir: string): Promise<string> {
  const path = tokenFile(dir);
  try {
    const existing = (await readFile(path, "utf8")).trim();
    if (existing.length >= 32) return path;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  await writeFile(path, `${randomBytes(32).toString("hex")}\n`, { mode: 0o600 });
  await chmod(path, 0o600);
  return path;
}
