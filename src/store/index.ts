import { join } from "node:path";
import type { Config } from "../config/index.js";
import { resolveSecretRef } from "../util/secret-ref.js";
import { FsStore } from "./fs-store.js";
import { MinioStore } from "./minio-store.js";
import type { ObjectStore } from "./types.js";

export { FsStore } from "./fs-store.js";
export { MinioStore, type MinioStoreOptions } from "./minio-store.js";
export type { ObjectInfo, ObjectStore, PutOptions } from "./types.js";
export { checkKey, checkPrefix, NotFoundError } from "./types.js";

/**
 * The store the config names: a local directory at <data_dir>/store (the default), or MinIO/S3
 * with credentials read from the env variables or files the config references.
 */
export function openStore(config: Config, env: NodeJS.ProcessEnv = process.env): ObjectStore {
  const s = config.store;
  if (s.kind === "fs") return new FsStore(join(config.data_dir, "store"));
  return new MinioStore({
    endPoint: s.endpoint,
    port: s.port,
    useSSL: s.use_ssl,
    accessKey: resolveSecretRef(s.access_key, "store.access_key", env),
    secretKey: resolveSecretRef(s.secret_key, "store.secret_key", env),
    bucket: s.bucket,
    region: s.region,
    pathStyle: s.path_style,
    partSize: s.part_size_mb * 1024 * 1024,
    prefix: s.prefix || undefined,
  });
}
