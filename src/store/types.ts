// The object store: a local directory by default, MinIO/S3 in production, with one layout:
//   raw/<agent>/<source>/<yyyy-mm-dd>/<segment>.jsonl.gz
//   datasets/<agent>/<dataset-id>/...
//   runs/<agent>/<run-id>/...
//   models/<agent>/<version>/...   models/<agent>/registry.json
//   locks/<agent>/run.json (the agent's lease: a run's, or store gc's)
//   locks/<agent>/cancel/<run-id>.json (a cancel request for the lease holder)
// Keys are "/"-separated relative paths. Every put is atomic: readers see the whole object or none.

export interface PutOptions {
  contentType?: string;
  /** User metadata (small string values), e.g. sha256 or version tags. */
  meta?: Record<string, string>;
}

export interface ObjectInfo {
  key: string;
  size: number;
  /** Last modification, ms since the epoch. */
  mtimeMs: number;
}

/** A small object with its ETag (an opaque version tag that changes with every write). */
export interface VersionedObject {
  body: Buffer;
  etag: string;
}

export interface ObjectStore {
  readonly kind: "fs" | "minio";
  /** A short description for logs and doctor, without credentials. */
  readonly description: string;
  put(key: string, data: Uint8Array | string, opts?: PutOptions): Promise<{ sha256: string; size: number }>;
  /** Uploads a local file (large artifacts); the file is streamed, not read into memory. */
  putFile(key: string, path: string, opts?: PutOptions): Promise<{ sha256: string; size: number }>;
  /** Throws NotFoundError when absent. */
  get(key: string): Promise<Buffer>;
  /** Downloads to a local file atomically. Throws NotFoundError when absent. */
  getFile(key: string, path: string): Promise<void>;
  stat(key: string): Promise<ObjectInfo | null>;
  /** A small object (at most one PUT) with its ETag, or null when absent. */
  getVersioned(key: string): Promise<VersionedObject | null>;
  /**
   * Compare-and-swap of a small object: writes only when the key is absent (ifMatch null, S3's
   * `If-None-Match: *`) or when its current ETag is ifMatch (`If-Match`). Returns the new ETag,
   * or null when the condition did not hold (another writer got there first). A retry after an
   * attempt whose answer was lost counts the write as its own when the object holds exactly
   * these bytes, so bodies should be unique per writer (a nonce) for an exact answer.
   */
  putIf(
    key: string,
    data: Uint8Array | string,
    ifMatch: string | null,
    opts?: PutOptions,
  ): Promise<string | null>;
  exists(key: string): Promise<boolean>;
  /** Every object under a prefix (recursive), sorted by key. */
  list(prefix: string): Promise<ObjectInfo[]>;
  delete(key: string): Promise<void>;
  /** Deletes every object under a prefix. */
  deletePrefix(prefix: string): Promise<void>;
  /** A time-limited download URL where the store supports it, else null. */
  presign?(key: string, expirySeconds: number): Promise<string | null>;
}

export class NotFoundError extends Error {
  override name = "NotFoundError";
  constructor(readonly key: string) {
    super(`not found in store: ${key}`);
  }
}

const KEY_RE = /^[A-Za-z0-9._@=+-]+(\/[A-Za-z0-9._@=+-]+)*$/;

/** Rejects keys that could escape the store root or collide with temporaries. */
export function checkKey(key: string): string {
  if (!KEY_RE.test(key) || key.split("/").some((s) => s === "." || s === ".." || s.includes(".tmp-"))) {
    throw new Error(`invalid store key: ${JSON.stringify(key)}`);
  }
  return key;
}

export function checkPrefix(prefix: string): string {
  if (prefix === "") return prefix;
  return `${checkKey(prefix.replace(/\/+$/, ""))}/`;
}
