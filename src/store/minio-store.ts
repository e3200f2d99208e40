// The MinIO/S3 store. An S3 PUT is atomic: readers see the whole object or none, so no temporary
// key is needed. Objects up to `partSize` go up in one PUT; larger ones as a multipart upload
// (initiate, parts in order with a retry each, complete), which is just as atomic: the object
// appears at complete. A failed upload is aborted so no parts linger. The client's own
// putObject is not used for multipart: it resumes any unfinished upload of the same key (another
// writer's too), never aborts, and does not retry a part.
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, open, rename, rm, stat } from "node:fs/promises";
import type { IncomingHttpHeaders } from "node:http";
import { dirname } from "node:path";
import { pipeline } from "node:stream/promises";
import * as Minio from "minio";
import { sha256 } from "../util/fs.js";
import {
  checkKey,
  checkPrefix,
  NotFoundError,
  type ObjectInfo,
  type ObjectStore,
  type PutOptions,
  type VersionedObject,
} from "./types.js";

/** Attempts per part (a part is idempotent: the same bytes under the same number). */
const PART_ATTEMPTS = 3;
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
}

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
    });
    this.bucket = opts.bucket;
    this.prefix = opts.prefix ? checkPrefix(opts.prefix) : "";
    const scheme = opts.useSSL ? "https" : "http";
    this.description = `minio ${scheme}://${opts.endPoint}${opts.port ? `:${opts.port}` : ""}/${opts.bucket}/${this.prefix}`;
  }

  private name(key: string): string {
    return this.prefix + checkKey(key);
  }

  /** Creates the bucket on first use. */
  private ready(): Promise<void> {
    this.bucketReady ??= (async () => {
      if (!(await this.client.bucketExists(this.bucket))) {
        try {
          await this.client.makeBucket(this.bucket, this.opts.region);
        } catch (err) {
          // Another process may have created it in between.
          if (!(await this.client.bucketExists(this.bucket))) throw err;
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
      await this.client.putObject(this.bucket, name, buf, buf.length, headers(opts));
    } else {
      await this.multipart(name, buf.length, headers(opts), async (offset, length) =>
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
      await this.client.putObject(this.bucket, name, createReadStream(path), size, headers(opts));
    } else {
      // One part in memory at a time.
      const fh = await open(path, "r");
      try {
        await this.multipart(name, size, headers(opts), async (offset, length) => {
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
    name: string,
    size: number,
    hdrs: Record<string, string>,
    readPart: (offset: number, length: number) => Promise<Buffer>,
  ): Promise<void> {
    const partSize = Math.max(this.opts.partSize, Math.ceil(size / MAX_PARTS / MiB) * MiB);
    const uploadID = await this.client.initiateNewMultipartUpload(this.bucket, name, hdrs);
    try {
      const parts: { part: number; etag: string }[] = [];
      for (let offset = 0, partNumber = 1; offset < size; offset += partSize, partNumber++) {
        const body = await readPart(offset, Math.min(partSize, size - offset));
        const md5 = createHash("md5").update(body).digest("base64");
        const etag = await retry(PART_ATTEMPTS, async () => {
          const r = await this.client.uploadPart(
            {
              bucketName: this.bucket,
              objectName: name,
              uploadID,
              partNumber,
              headers: { "Content-Length": String(body.length), "Content-MD5": md5 },
            },
            body,
          );
          if (!r.etag) throw new Error(`part ${partNumber} of ${name}: no ETag in the answer`);
          return r.etag;
        });
        parts.push({ part: partNumber, etag });
      }
      await this.client.completeMultipartUpload(this.bucket, name, uploadID, parts);
    } catch (err) {
      await this.client.abortMultipartUpload(this.bucket, name, uploadID).catch(() => undefined);
      throw err;
    }
  }

  async get(key: string): Promise<Buffer> {
    const name = this.name(key);
    await this.ready();
    try {
      const stream = await this.client.getObject(this.bucket, name);
      const chunks: Buffer[] = [];
      for await (const c of stream) chunks.push(c as Buffer);
      return Buffer.concat(chunks);
    } catch (err) {
      if (isNotFound(err)) throw new NotFoundError(key);
      throw err;
    }
  }

  async getFile(key: string, path: string): Promise<void> {
    const name = this.name(key);
    await this.ready();
    await mkdir(dirname(path), { recursive: true });
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
  }

  async getVersioned(key: string): Promise<VersionedObject | null> {
    const name = this.name(key);
    await this.ready();
    let stream: Awaited<ReturnType<Minio.Client["getObject"]>>;
    try {
      stream = await this.client.getObject(this.bucket, name);
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
    // The client hands back the HTTP response itself: its ETag names exactly these bytes.
    const etag = unquote((stream as unknown as { headers?: IncomingHttpHeaders }).headers?.etag ?? "");
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
  }

  async putIf(key: string, data: Uint8Array | string, ifMatch: string | null, opts?: PutOptions) {
    const name = this.name(key);
    await this.ready();
    const buf = toBuffer(data);
    if (buf.length > this.opts.partSize)
      throw new Error(`${key}: a conditional put must fit one PUT (${this.opts.partSize} bytes)`);
    const cond = ifMatch === null ? { "If-None-Match": "*" } : { "If-Match": `"${ifMatch}"` };
    try {
      const r = await this.client.putObject(this.bucket, name, buf, buf.length, {
        ...headers(opts),
        ...cond,
      });
      return unquote(r.etag);
    } catch (err) {
      const code = (err as { code?: string } | null)?.code;
      // If-Match on a key that is gone fails as NoSuchKey: the condition did not hold either.
      if (code !== undefined && (CONDITION_FAILED.has(code) || (ifMatch !== null && NOT_FOUND.has(code))))
        return null;
      throw err;
    }
  }

  async stat(key: string): Promise<ObjectInfo | null> {
    const name = this.name(key);
    await this.ready();
    try {
      const s = await this.client.statObject(this.bucket, name);
      return { key, size: s.size, mtimeMs: s.lastModified.getTime() };
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  async exists(key: string): Promise<boolean> {
    return (await this.stat(key)) !== null;
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    const p = checkPrefix(prefix);
    await this.ready();
    const out: ObjectInfo[] = [];
    const stream = this.client.listObjectsV2(this.bucket, this.prefix + p, true);
    for await (const item of stream as AsyncIterable<Minio.BucketItem>) {
      if (!item.name) continue;
      out.push({
        key: item.name.slice(this.prefix.length),
        size: item.size,
        mtimeMs: item.lastModified.getTime(),
      });
    }
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async delete(key: string): Promise<void> {
    const name = this.name(key);
    await this.ready();
    await this.client.removeObject(this.bucket, name);
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

async function retry<T>(attempts: number, fn: () => Promise<T>): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await fn();
    } catch (err) {
      if (i >= attempts) throw err;
      await new Promise((r) => setTimeout(r, 100 * 2 ** i));
    }
  }
}

function isNotFound(err: unknown): boolean {
  const code = (err as { code?: string } | null)?.code;
  return code !== undefined && NOT_FOUND.has(code);
}
