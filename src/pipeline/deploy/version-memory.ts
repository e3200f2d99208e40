// A version's memory.json (tasks/memory.ts), as evaluation and serving read it.
import { MEMORY_ARTIFACT, type ModelMemory, parseMemory } from "../tasks/memory.js";
import { artifactKey, type ModelRegistry, type VersionManifest } from "./registry.js";

/** The version's memory, verified like every artifact; null for a version registered without one. */
export async function versionMemory(
  registry: ModelRegistry,
  agent: string,
  version: string,
  manifest?: VersionManifest,
): Promise<ModelMemory | null> {
  const m = manifest ?? (await registry.getManifest(agent, version));
  if (!m.artifacts.some((a) => a.name === MEMORY_ARTIFACT)) return null;
  const body = await registry.readArtifact(agent, version, MEMORY_ARTIFACT, m);
  return parseMemory(body, artifactKey(agent, version, MEMORY_ARTIFACT));
}
