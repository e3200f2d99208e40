// What is MinIO-specific about publishing a version: object tags. The registry already uploads
// every artifact with its content type and user metadata (sha256, agent, version); tags add the
// same identity plus the gate verdict in a form bucket policies and lifecycle rules can match
// (S3 allows at most 10 tags per object). Presigned download URLs come from the store itself
// (see presignedArtifactUrls in targets.ts).
import * as Minio from "minio";
import type { Config } from "../../config/schema.js";
import { checkKey, checkPrefix } from "../../store/index.js";
import { resolveSecretRef } from "../../util/secret-ref.js";
import type { VersionManifest } from "./registry.js";
import { artifactKey } from "./registry.js";

export function minioClient(config: Config, env: NodeJS.ProcessEnv = process.env): Minio.Client | null {
  const s = config.store;
  if (s.kind !== "minio") return null;
  return new Minio.Client({
    endPoint: s.endpoint,
    port: s.port,
    useSSL: s.use_ssl,
    accessKey: resolveSecretRef(s.access_key, "store.access_key", env),
    secretKey: resolveSecretRef(s.secret_key, "store.secret_key", env),
    region: s.region,
    pathStyle: s.path_style,
    partSize: s.part_size_mb * 1024 * 1024,
  });
}

/** The tags a version's artifact carries. */
export function versionTags(manifest: VersionManifest, sha256: string): Record<string, string> {
  const gate = manifest.gate === null ? "none" : manifest.gate.passed ? "passed" : "failed";
  return { agent: manifest.agent, version: manifest.version, sha256, gate };
}

/**
 * Tags every artifact of a registered version. A no-op on the local store.
 * Returns the number of objects tagged.
 */
export async function tagVersionArtifacts(
  config: Config,
  manifest: VersionManifest,
  env: NodeJS.ProcessEnv = process.env,
): Promise<number> {
  const client = minioClient(config, env);
  if (!client || config.store.kind !== "minio") return 0;
  const prefix = config.store.prefix ? checkPrefix(config.store.prefix) : "";
  const bucket = config.store.bucket;
  let n = 0;
  for (const a of manifest.artifacts) {
    const name = prefix + checkKey(artifactKey(manifest.agent, manifest.version, a.name));
    await client.setObjectTagging(bucket, name, versionTags(manifest, a.sha256));
    n++;
  }
  return n;
}
