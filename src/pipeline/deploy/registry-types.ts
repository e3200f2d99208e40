// The registry's stored shapes (registry.json, a version's manifest.json) and its errors; the
// ModelRegistry (registry.ts) reads and writes them.
import * as z from "zod";
import { WorkError } from "../../errors.js";

export const ALIASES = ["champion", "challenger"] as const;
export type Alias = (typeof ALIASES)[number];

const Sha = z.string().regex(/^[0-9a-f]{64}$/);
export const ARTIFACT_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const VERSION_RE = /^v\d{8}-\d{6}-\d{3}-[0-9a-f]{4}$/;

export const ArtifactEntry = z
  .object({
    name: z.string().regex(ARTIFACT_NAME_RE),
    sha256: Sha,
    size: z.number().int().min(0),
    content_type: z.string().optional(),
  })
  .strict();
export type ArtifactEntry = z.infer<typeof ArtifactEntry>;

export const Lineage = z
  .object({
    run_id: z.string().nullable(),
    dataset_id: z.string().nullable(),
    /** The raw segments the dataset was built from, with their sha256. */
    raw_segments: z.array(z.object({ key: z.string(), sha256: Sha }).strict()),
    code_version: z.string(),
    /** The version this one was fine-tuned from; null when trained from scratch. */
    parent_version: z.string().nullable(),
  })
  .strict();
export type Lineage = z.infer<typeof Lineage>;

export const GateSummary = z
  .object({
    passed: z.boolean(),
    reasons: z.array(z.string()),
  })
  .strict();
export type GateSummary = z.infer<typeof GateSummary>;

export const VersionManifest = z
  .object({
    schema: z.literal(1),
    agent: z.string(),
    version: z.string().regex(VERSION_RE),
    created_at: z.string(),
    created_by: z.string(),
    artifacts: z.array(ArtifactEntry),
    lineage: Lineage,
    /** null when the version was never evaluated: such a version is never promoted without force. */
    gate: GateSummary.nullable(),
    /** Headline score per task (the task's primary metric), for listings. */
    scores: z.record(z.string(), z.number()),
  })
  .strict();
export type VersionManifest = z.infer<typeof VersionManifest>;

export const VersionEntry = z
  .object({
    version: z.string().regex(VERSION_RE),
    created_at: z.string(),
    manifest_sha256: Sha,
    gate_passed: z.boolean().nullable(),
    run_id: z.string().nullable(),
    parent_version: z.string().nullable(),
    scores: z.record(z.string(), z.number()),
  })
  .strict();
export type VersionEntry = z.infer<typeof VersionEntry>;

export const AliasMove = z
  .object({
    seq: z.number().int().min(1),
    at: z.string(),
    alias: z.enum(ALIASES),
    from: z.string().nullable(),
    to: z.string().nullable(),
    /** promote: a normal move; rollback: back to the previous champion; clear: alias removed. */
    action: z.enum(["promote", "rollback", "clear"]),
    /** Who moved it: "cli:<user>", "run:<run-id>", "mcp:<identity>", "schedule". */
    actor: z.string().min(1),
    reason: z.string(),
    /** True when the gate was overridden. */
    forced: z.boolean(),
  })
  .strict();
export type AliasMove = z.infer<typeof AliasMove>;

/** A version whose files retention deleted; its version entry stays (the index is append-only). */
export const PrunedEntry = z
  .object({
    version: z.string().regex(VERSION_RE),
    at: z.string(),
    /** The retention rule that chose it, e.g. "versions: beyond the newest 4". */
    rule: z.string(),
    actor: z.string().min(1),
  })
  .strict();
export type PrunedEntry = z.infer<typeof PrunedEntry>;

export const RegistryIndex = z
  .object({
    schema: z.literal(1),
    agent: z.string(),
    updated_at: z.string(),
    versions: z.array(VersionEntry),
    aliases: z.object({ champion: z.string().nullable(), challenger: z.string().nullable() }).strict(),
    history: z.array(AliasMove),
    /** Written once something was pruned; absent in older indexes. */
    pruned: z.array(PrunedEntry).optional(),
  })
  .strict();
export type RegistryIndex = z.infer<typeof RegistryIndex>;

export interface ArtifactInput {
  name: string;
  data: Uint8Array | string;
  contentType?: string;
}

export interface RegisterInput {
  artifacts: ArtifactInput[];
  /** Artifacts that name the version (e.g. the model card), made once its id is chosen. */
  versioned?: (version: string) => ArtifactInput[];
  lineage: Lineage;
  gate: GateSummary | null;
  scores?: Record<string, number>;
  /** Who registers it, e.g. "run:<run-id>". */
  createdBy: string;
  /** Stops before the index is written; uploaded files are removed. */
  signal?: AbortSignal;
}

export interface LoadedVersion {
  manifest: VersionManifest;
  /** Verified artifact bytes by name. */
  files: Map<string, Buffer>;
}

export class RegistryError extends WorkError {
  override name = "RegistryError";
}

/** An artifact (or manifest) whose bytes do not match the recorded sha256 or size. */
export class IntegrityError extends WorkError {
  override name = "IntegrityError";
}

/** A promotion refused because the version did not pass its gate (and force was not given). */
export class GateRefusedError extends WorkError {
  override name = "GateRefusedError";
}

export interface AliasEvent {
  agent: string;
  alias: Alias;
  from: string | null;
  to: string | null;
  action: AliasMove["action"];
}
