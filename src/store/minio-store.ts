// The MinIO/S3 store. An S3 PUT is atomic: readers see the whole object or none, so no temporary
// key is needed. Every upload passes its size and stays at or below `partSize`, so the client never
// switches to multipart (s3rver, used in tests, has no multipart; MinIO does, and larger files
// still work there). Set part_size_mb above the largest object you expect when testing on s3rver.
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, open, rename, rm, stat } from "node:fs/promises";
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
} from "./types.js";

export interface MinioStoreOptions {
  endPoint: string;
  port?: number;
  useSSL: boolean;
  accessKey: string;
  secretKey: string;
  bucket: string;
  region: string;
  pathStyle: boolean;
  /** Bytes; uploads up to this size go in one PUT. */
  partSize: number;
  /** Prepended to every key, e.g. "trm-forge/". */
  prefix?: string;
}

const NOT_FOUND = new Set(["NoSuchKey", "NotFound", "NoSuchObject"]);

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

  private tooLarge(key: string, size: number): Error {
    return new Error(
      `${key}: ${size} bytes is larger than store.part_size_mb (${this.opts.partSize} bytes); raise it so the upload stays one PUT`,
    );
  }

  async put(key: string, data: Uint8Array | string, opts?: PutOptions) {
    const name = this.name(key);
    await this.ready();
    const buf =
      typeof data === "string"
        ? Buffer.from(data)
        : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    if (buf.length > this.opts.partSize) throw this.tooLarge(key, buf.length);
    await this.client.putObject(this.bucket, name, buf, buf.length, meta(opts));
    return { sha256: sha256(buf), size: buf.length };
  }

  async putFile(key: string, path: string, opts?: PutOptions) {
    const name = this.name(key);
    await this.ready();
    const { size } = await stat(path);
    if (size > this.opts.partSize) throw this.tooLarge(key, size);
    const h = createHash("sha256");
    for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
    await this.client.putObject(this.bucket, name, createReadStream(path), size, meta(opts));
    return { sha256: h.digest("hex"), size };
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

function meta(opts?: PutOptions): Record<string, string> {
  const m: Record<string, string> = { ...(opts?.meta ?? {}) };
  if (opts?.contentType) m["Content-Type"] = opts.contentType;
  return m;
}

function isNotFound(err: unknown): boolean {
  const code = (err as { code?: string } | null)?.code;
  return code !== undefined && NOT_FOUND.has(code);
}
