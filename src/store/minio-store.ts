// The MinIO/S3 store. An S3 PUT is atomic: readers see the whole object or none, so no temporary
// key is needed. Objects up to `partSize` go up in one PUT; larger ones as a multipart upload
// (initiate, parts in order with a retry each, complete), which is just as atomic: the object
// appears at complete. A failed upload is aborted so no parts linger. The client's own
// putObject is not used for multipart: it resumes any unfinished upload of the same key (another
// writer's too), never aborts, and does not retry a part.
//
// Every request that can be repeated is retried on a transient failure (a dropped connection, a
// timeout, 5xx, S3's SlowDown) with a bounded, jittered exponential backoff. The client's own
// retry is off: it logs with console.warn, resends a consumed stream, and turns a 503 into an
// error without its status or S3 code. A transport of ours turns such answers into errors that
// keep both, before the client sees them.
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, open, rename, rm, stat } from "node:fs/promises";
import * as http from "node:http";
import * as https from "node:https";
import { dirname } from "node:path";
import { pipeline } from "node:stream/promises";
import * as Minio from "minio";
import { log } from "../log.js";
import { sha256 } from "../util/fs.js";
import type { ObjectInfo, ObjectStore, PutOptions, VersionedObject } from "./types.js";
import { checkKey, checkPrefix, NotFoundError } from "./types.js";

/** S3 allows at most this many parts; larger objects get larger parts. */
const MAX_PARTS = 10_000;
const MiB = 1024 * 1024;

export interface MinioStoreOptions {
  endPoint: string;
  port?: number;
  useSSL: boolean;
  accessKey: string;
  secretKey: string;
  bucket: string;
  region: string;
  pathStyle: boolean;
  /** Bytes; uploads up to this size go in one PUT, larger ones in parts of this size. */
  partSize: number;
  /** Prepended to every key, e.g. "trm-forge/". */
  prefix?: string;
  /** Retries of a request that failed transiently; the defaults ride out a MinIO restart of a few seconds. */
  retry?: Partial<RetryPolicy>;
}

export interface RetryPolicy {
  /** Tries in all, the first included. */
  attempts: number;
  /** The n-th retry waits between half and all of min(maxDelayMs, baseDelayMs * 2^(n-1)). */
  baseDelayMs: number;
  maxDelayMs: number;
}

const DEFAULT_RETRY: RetryPolicy = { attempts: 6, baseDelayMs: 250, maxDelayMs: 8000 };

const NOT_FOUND = new Set(["NoSuchKey", "NotFound", "NoSuchObject"]);
/** A conditional write that lost: 412, or S3's 409 for two conditional writes racing. */
const CONDITION_FAILED = new Set(["PreconditionFailed", "ConditionalRequestConflict"]);

export class MinioStore implements ObjectStore {
  readonly kind = "minio" as const;
  readonly description: string;
  private readonly client: Minio.Client;
  private readonly bucket: string;
  private readonly prefix: string;
  private bucketReady: Promise<void> | null = null;
  private readonly retry: RetryPolicy;

  constructor(private readonly opts: MinioStoreOptions) {
    this.client = new Minio.Client({
      endPoint: opts.endPoint,
      port: opts.port,
      useSSL: opts.useSSL,
      accessKey: opts.accessKey,
      secretKey: opts.secretKey,
      region: opts.region,
      pathStyle: opts.pathStyle,
      partSize: opts.partSize,
      transport: failFastTransport(opts.useSSL),
      retryOptions: { disableRetry: true },
    });
    this.retry = { ...DEFAULT_RETRY, ...opts.retry };
    this.bucket = opts.bucket;
    this.prefix = opts.prefix ? checkPrefix(opts.prefix) : "";
    const scheme = opts.useSSL ? "https" : "http";
    this.description = `minio ${scheme}://${opts.endPoint}${opts.port ? `:${opts.port}` : ""}/${opts.bucket}/${this.prefix}`;
  }

  private name(key: string): string {
    return this.prefix + checkKey(key);
  }

  /**
   * Runs one repeatable request, again after a transient failure, at most retry.attempts times.
   * fn gets the attempt number: above 1, an earlier try may have taken effect unseen.
   */
  private async retrying<T>(op: string, key: string, fn: (attempt: number) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn(attempt);
      } catch (err) {
        if (!isTransientFailure(err)) throw err;
        if (attempt >= this.retry.attempts) throw new StoreRequestError(op, key, attempt, err);
        const cap = Math.min(this.retry.maxDelayMs, this.retry.baseDelayMs * 2 ** (attempt - 1));
        const wait = Math.round(cap / 2 + (Math.random() * cap) / 2);
        log.warn({ op, key, attempt, wait_ms: wait, cause: describe(err) }, "store request failed, retrying");
        await new Promise((r) => setTimeout(r, wait));
      }
    }
  }

  /** Creates the bucket on first use. */
  private ready(): Promise<void> {
    this.bucketReady ??= (async () => {
      const exists = () =>
        this.retrying("HEAD bucket", this.bucket, () => this.client.bucketExists(this.bucket));
      if (!(await exists())) {
        try {
          await this.retrying("PUT bucket", this.bucket, () =>
            this.client.makeBucket(this.bucket, this.opts.region),
          );
        } catch (err) {
          // Another process may have created it in between (or a retry found our own first try's).
          if (!(await exists())) throw err;
        }
      }
    })().catch((err) => {
      this.bucketReady = null;
      throw err;
    });
    return this.bucketReady;
  }

  async put(key: string, data: Uint8Array | string, opts?: PutOptions) {
    const name = this.name(key);
    await this.ready();
    const buf = toBuffer(data);
    if (buf.length <= this.opts.partSize) {
      await this.retrying("PUT", key, () =>
        this.client.putObject(this.bucket, name, buf, buf.length, headers(opts)),
      );
    } else {
      await this.multipart(key, buf.length, headers(opts), async (offset, length) =>
        buf.subarray(offset, offset + length),
      );
    }
    return { sha256: sha256(buf), size: buf.length };
  }

  async putFile(key: string, path: string, opts?: PutOptions) {
    const name = this.name(key);
    await this.ready();
    const { size } = await stat(path);
    const h = createHash("sha256");
    for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
    if (size <= this.opts.partSize) {
      // A fresh stream per attempt: a retry resends the file from its start.
      await this.retrying("PUT", key, () =>
        this.client.putObject(this.bucket, name, createReadStream(path), size, headers(opts)),
      );
    } else {
      // One part in memory at a time.
      const fh = await open(path, "r");
      try {
        await this.multipart(key, size, headers(opts), async (offset, length) => {
          const part = Buffer.allocUnsafe(length);
          let got = 0;
          while (got < length) {
            const { bytesRead } = await fh.read(part, got, length - got, offset + got);
            if (bytesRead === 0) throw new Error(`${path} shrank while it was uploaded`);
            got += bytesRead;
          }
          return part;
        });
      } finally {
        await fh.close();
      }
    }
    return { sha256: h.digest("hex"), size };
  }

  /** A multipart upload of `size` bytes read part by part; aborted (parts removed) on any failure. */
  private async multipart(
    key: string,
    size: number,
    hdrs: Record<string, string>,
    readPart: (offset: number, length: number) => Promise<Buffer>,
  ): Promise<void> {
    const name = this.name(key);
    const partSize = Math.max(this.opts.partSize, Math.ceil(size / MAX_PARTS / MiB) * MiB);
    // A retried initiate may leave an empty upload of the first try behind: it holds no parts.
    const uploadID = await this.retrying("initiate multipart upload", key, () =>
      this.client.initiateNewMultipartUpload(this.bucket, name, hdrs),
    );
    try {
      const parts: { part: number; etag: string }[] = [];
      const md5s: Buffer[] = [];
      for (let offset = 0, partNumber = 1; offset < size; offset += partSize, partNumber++) {
        const body = await readPart(offset, Math.min(partSize, size - offset));
        const md5 = createHash("md5").update(body).digest();
        // A part is idempotent: the same bytes under the same number.
        const etag = await this.retrying(`upload part ${partNumber}`, key, async () => {
          const r = await this.client.uploadPart(
            {
              bucketName: this.bucket,
              objectName: name,
              uploadID,
              partNumber,
              headers: { "Content-Length": String(body.length), "Content-MD5": md5.toString("base64") },
            },
            body,
          );
          if (!r.etag) throw new Error(`part ${partNumber} of ${name}: no ETag in the answer`);
          return r.etag;
        });
        parts.push({ part: partNumber, etag });
        md5s.push(md5);
      }
      // The ETag S3 gives the completed object: md5 of the parts' md5s, then "-<parts>".
      const expected = `${createHash("md5").update(Buffer.concat(md5s)).digest("hex")}-${parts.length}`;
      await this.retrying("complete multipart upload", key, async (attempt) => {
        try {
          await this.client.completeMultipartUpload(this.bucket, name, uploadID, parts);
        } catch (err) {
          // An earlier try completed it unseen: the upload is gone and the object is ours.
          const code = (err as { code?: string } | null)?.code;
          if (attempt > 1 && code === "NoSuchUpload" && (await this.etagOf(key)) === expected) return;
          throw err;
        }
      });
    } catch (err) {
      await this.retrying("abort multipart upload", key, () =>
        this.client.abortMultipartUpload(this.bucket, name, uploadID),
      ).catch(() => undefined);
      throw err;
    }
  }

  private async etagOf(key: string): Promise<string | null> {
    try {
      return unquote((await this.client.statObject(this.bucket, this.name(key))).etag);
    } catch {
      return null;
    }
  }

  async get(key: string): Promise<Buffer> {
    const name = this.name(key);
    await this.ready();
    return this.retrying("GET", key, async () => {
      try {
        const stream = await this.client.getObject(this.bucket, name);
        const chunks: Buffer[] = [];
        for await (const c of stream) chunks.push(c as Buffer);
        return Buffer.concat(chunks);
      } catch (err) {
        if (isNotFound(err)) throw new NotFoundError(key);
        throw err;
      }
    });
  }

  async getFile(key: string, path: string): Promise<void> {
    const name = this.name(key);
    await this.ready();
    await mkdir(dirname(path), { recursive: true });
    await this.retrying("GET", key, async () => {
      const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
      try {
        const stream = await this.client.getObject(this.bucket, name);
        const fh = await open(tmp, "w");
        try {
          await pipeline(stream, fh.createWriteStream());
          await fh.sync().catch(() => {});
        } finally {
          await fh.close().catch(() => {});
        }
        await rename(tmp, path);
      } catch (err) {
        await rm(tmp, { force: true });
        if (isNotFound(err)) throw new NotFoundError(key);
        throw err;
      }
    });
  }

  async getVersioned(key: string): Promise<VersionedObject | null> {
    const name = this.name(key);
    await this.ready();
    return this.retrying("GET", key, async () => {
      let stream: Awaited<ReturnType<Minio.Client["getObject"]>>;
      try {
        stream = await this.client.getObject(this.bucket, name);
      } catch (err) {
        if (isNotFound(err)) return null;
        throw err;
      }
      // The client hands back the HTTP response itself: its ETag names exactly these bytes.
      const etag = unquote((stream as unknown as { headers?: http.IncomingHttpHeaders }).headers?.etag ?? "");
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const c of stream) {
        size += (c as Buffer).length;
        if (size > this.opts.partSize) {
          stream.destroy();
          throw new Error(`${key}: larger than one PUT (${this.opts.partSize} bytes), not a small object`);
        }
        chunks.push(c as Buffer);
      }
      if (!etag) throw new Error(`${key}: the store sent no ETag`);
      return { body: Buffer.concat(chunks), etag };
    });
  }

  async putIf(key: string, data: Uint8Array | string, ifMatch: string | null, opts?: PutOptions) {
    const name = this.name(key);
    await this.ready();
    const buf = toBuffer(data);
    if (buf.length > this.opts.partSize)
      throw new Error(`${key}: a conditional put must fit one PUT (${this.opts.partSize} bytes)`);
    const cond = ifMatch === null ? { "If-None-Match": "*" } : { "If-Match": `"${ifMatch}"` };
    return this.retrying("conditional PUT", key, async (attempt) => {
      try {
        const r = await this.client.putObject(this.bucket, name, buf, buf.length, {
          ...headers(opts),
          ...cond,
        });
        return unquote(r.etag);
      } catch (err) {
        const code = (err as { code?: string } | null)?.code;
        // If-Match on a key that is gone fails as NoSuchKey: the condition did not hold either.
        if (code === undefined || !(CONDITION_FAILED.has(code) || (ifMatch !== null && NOT_FOUND.has(code))))
          throw err;
        // After a try whose answer was lost, the condition may fail because that try wrote: the
        // object then holds exactly our bytes (callers make bodies unique, e.g. the lease's nonce).
        if (attempt > 1) {
          const now = await this.getVersioned(key);
          if (now?.body.equals(buf)) return now.etag;
        }
        return null;
      }
    });
  }

  async stat(key: string): Promise<ObjectInfo | null> {
    const name = this.name(key);
    await this.ready();
    return this.retrying("HEAD", key, async () => {
      try {
        const s = await this.client.statObject(this.bucket, name);
        return { key, size: s.size, mtimeMs: s.lastModified.getTime() };
      } catch (err) {
        if (isNotFound(err)) return null;
        throw err;
      }
    });
  }

  async exists(key: string): Promise<boolean> {
    return (await this.stat(key)) !== null;
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    const p = checkPrefix(prefix);
    await this.ready();
    // A listing that breaks off is started again from the beginning.
    const out = await this.retrying("LIST", p, async () => {
      const items: ObjectInfo[] = [];
      const stream = this.client.listObjectsV2(this.bucket, this.prefix + p, true);
      for await (const item of stream as AsyncIterable<Minio.BucketItem>) {
        if (!item.name) continue;
        items.push({
          key: item.name.slice(this.prefix.length),
          size: item.size,
          mtimeMs: item.lastModified.getTime(),
        });
      }
      return items;
    });
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async delete(key: string): Promise<void> {
    const name = this.name(key);
    await this.ready();
    // S3 answers a DELETE of a missing key with success, so a repeated one is harmless.
    await this.retrying("DELETE", key, () => this.client.removeObject(this.bucket, name));
  }

  async deletePrefix(prefix: string): Promise<void> {
    const p = checkPrefix(prefix);
    if (!p) throw new Error("refusing to delete the whole store");
    for (const o of await this.list(p)) await this.delete(o.key);
  }

  async presign(key: string, expirySeconds: number): Promise<string | null> {
    await this.ready();
    return this.client.presignedGetObject(this.bucket, this.name(key), expirySeconds);
  }
}

/** A request that kept failing transiently; `transient` so a stage may still be retried as a whole. */
export class StoreRequestError extends Error {
  override name = "StoreRequestError";
  readonly transient = true;
  constructor(op: string, key: string, attempts: number, cause: unknown) {
    super(`store ${op} ${key}: failed ${attempts} times on transient errors; last: ${describe(cause)}`, {
      cause,
    });
  }
}

/** An answer the store gives when overloaded or restarting: its status and S3 error code kept. */
class StoreHttpError extends Error {
  override name = "StoreHttpError";
  constructor(
    readonly statusCode: number,
    readonly code: string,
  ) {
    super(`HTTP ${statusCode}${code ? ` ${code}` : ""}`);
  }
}

/** The statuses the client would retry itself (minio-go's list). */
const RETRY_STATUS = new Set([408, 429, 499, 500, 502, 503, 504, 520]);
const NETWORK_CODES = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EAI_AGAIN",
  "ENETUNREACH",
  "EHOSTUNREACH",
]);
/** S3 error codes that say "try again" whatever the status. */
const TRANSIENT_S3_CODES = new Set(["SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout"]);

function isTransientFailure(err: unknown): boolean {
  if (err instanceof StoreHttpError) return true;
  const e = err as { code?: unknown; message?: unknown } | null;
  if (typeof e?.code === "string" && (NETWORK_CODES.has(e.code) || TRANSIENT_S3_CODES.has(e.code)))
    return true;
  return e?.message === "socket hang up";
}

function describe(err: unknown): string {
  const e = err as { code?: unknown; message?: unknown } | null;
  const msg = typeof e?.message === "string" && e.message ? e.message : String(err);
  return typeof e?.code === "string" && !msg.includes(e.code) ? `${msg} (${e.code})` : msg;
}

/** Bytes of an error body read for its S3 code; a longer body is cut off. */
const ERROR_BODY_MAX = 16 * 1024;

/**
 * http(s).request for the client, except that an answer with a retryable status fails the request
 * with a StoreHttpError (read from S3's XML error body, when there is one) instead of reaching the client.
 */
function failFastTransport(useSSL: boolean): Pick<typeof http, "request"> {
  const base = useSSL ? https : http;
  const request = (opts: http.RequestOptions, cb?: (res: http.IncomingMessage) => void) => {
    const req = base.request(opts, (res) => {
      const status = res.statusCode ?? 0;
      if (!RETRY_STATUS.has(status)) return cb?.(res);
      let body = "";
      let failed = false;
      const fail = () => {
        if (failed) return;
        failed = true;
        req.emit("error", new StoreHttpError(status, /<Code>([^<]{1,64})<\/Code>/.exec(body)?.[1] ?? ""));
      };
      res.on("data", (c: Buffer) => {
        body += c.toString("utf8");
        if (body.length > ERROR_BODY_MAX) res.destroy();
      });
      res.once("end", fail);
      res.once("error", fail);
      res.once("close", () => {
        if (!res.complete) fail();
      });
    });
    return req;
  };
  return { request: request as unknown as typeof http.request };
}

/** Content type and user metadata as S3 headers (x-amz-meta-*), for one PUT and for initiate alike. */
function headers(opts?: PutOptions): Record<string, string> {
  const h: Record<string, string> = {};
  for (const [k, v] of Object.entries(opts?.meta ?? {})) h[`x-amz-meta-${k}`] = v;
  if (opts?.contentType) h["Content-Type"] = opts.contentType;
  return h;
}

function toBuffer(data: Uint8Array | string): Buffer {
  return typeof data === "string"
    ? Buffer.from(data)
    : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

function unquote(etag: string): string {
  return etag.replace(/^"|"$/g, "");
}

function isNotFound(err: unknown): boolean {
  const code = (err as { code?: string } | null)?.code;
  return code !== undefined && NOT_FOUND.has(code);
}
