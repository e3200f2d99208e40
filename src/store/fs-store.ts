// The local-directory store. Puts go through a temporary file and a rename, so a crash never
// leaves a torn object visible; temporaries are skipped by list(). Conditional puts hold a
// per-key lock file (O_EXCL) around read-compare-rename, so processes sharing the directory
// (one host, or an NFS mount) see a true compare-and-swap; the ETag is the md5 of the content.
// A delete removes the directories it leaves empty, up to the root; rmdir refuses a non-empty one,
// and a write whose directory went in between recreates it and tries again.
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { copyFile, mkdir, open, readdir, readFile, rename, rm, rmdir, stat } from "node:fs/promises";
import { dirname, join, relative, sep } from "node:path";
import { atomicWrite, sha256 } from "../util/fs.js";
import type { ObjectInfo, ObjectStore, PutOptions, VersionedObject } from "./types.js";
import { checkKey, checkPrefix, NotFoundError } from "./types.js";

/** A lock file older than this belongs to a writer that died inside its few-millisecond critical section. */
const CAS_LOCK_STALE_MS = 10_000;
const CAS_LOCK_WAIT_MS = 30_000;
/** Tries of a write whose directory a concurrent delete keeps removing. */
const DIR_ATTEMPTS = 5;

export class FsStore implements ObjectStore {
  readonly kind = "fs" as const;
  readonly description: string;

  constructor(readonly root: string) {
    this.description = `local directory ${root}`;
  }

  pathOf(key: string): string {
    return join(this.root, ...checkKey(key).split("/"));
  }

  async put(key: string, data: Uint8Array | string, _opts?: PutOptions) {
    const path = this.pathOf(key);
    await inDir(path, () => atomicWrite(path, data));
    return {
      sha256: sha256(data),
      size: typeof data === "string" ? Buffer.byteLength(data) : data.byteLength,
    };
  }

  async putFile(key: string, path: string, _opts?: PutOptions) {
    const dest = this.pathOf(key);
    const tmp = `${dest}.tmp-${process.pid}-${Date.now()}`;
    await inDir(dest, () => copyFile(path, tmp));
    await rename(tmp, dest);
    const h = createHash("sha256");
    let size = 0;
    for await (const chunk of createReadStream(dest)) {
      h.update(chunk as Buffer);
      size += (chunk as Buffer).length;
    }
    return { sha256: h.digest("hex"), size };
  }

  async get(key: string): Promise<Buffer> {
    try {
      return await readFile(this.pathOf(key));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") throw new NotFoundError(key);
      throw err;
    }
  }

  /** Copies through a temporary file and a rename; the object is never read into memory. */
  async getFile(key: string, path: string): Promise<void> {
    await mkdir(dirname(path), { recursive: true });
    const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
    try {
      await copyFile(this.pathOf(key), tmp);
      await rename(tmp, path);
    } catch (err) {
      await rm(tmp, { force: true });
      if ((err as NodeJS.ErrnoException).code === "ENOENT" && !(await this.exists(key)))
        throw new NotFoundError(key);
      throw err;
    }
  }

  async getVersioned(key: string): Promise<VersionedObject | null> {
    try {
      const body = await readFile(this.pathOf(key));
      return { body, etag: md5(body) };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw err;
    }
  }

  async putIf(key: string, data: Uint8Array | string, ifMatch: string | null, _opts?: PutOptions) {
    const path = this.pathOf(key);
    const release = await inDir(path, () => this.casLock(`${path}.tmp-cas`));
    try {
      const current = await this.getVersioned(key);
      if (ifMatch === null ? current !== null : current?.etag !== ifMatch) return null;
      await atomicWrite(path, data);
      return md5(data);
    } finally {
      await release();
    }
  }

  private async casLock(lock: string): Promise<() => Promise<void>> {
    const deadline = Date.now() + CAS_LOCK_WAIT_MS;
    for (let wait = 2; ; wait = Math.min(wait * 2, 50)) {
      try {
        await (await open(lock, "wx")).close();
        return () => rm(lock, { force: true });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      }
      const age = await stat(lock).then(
        (s) => Date.now() - s.mtimeMs,
        () => 0,
      );
      if (age > CAS_LOCK_STALE_MS) await rm(lock, { force: true });
      else if (Date.now() > deadline) throw new Error(`timed out waiting for ${lock}`);
      await new Promise((r) => setTimeout(r, wait));
    }
  }

  async stat(key: string): Promise<ObjectInfo | null> {
    try {
      const s = await stat(this.pathOf(key));
      return s.isFile() ? { key, size: s.size, mtimeMs: s.mtimeMs } : null;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw err;
    }
  }

  async exists(key: string): Promise<boolean> {
    return (await this.stat(key)) !== null;
  }

  /**
   * Removes what killed writers left under a prefix: temporary files (and CAS lock files) older
   * than olderThanMs. They are invisible to list() and would otherwise stay on disk for good.
   */
  async sweepLeftovers(prefix: string, olderThanMs: number): Promise<{ files: number; bytes: number }> {
    const dir = join(this.root, ...checkPrefix(prefix).split("/").filter(Boolean));
    const cutoff = Date.now() - olderThanMs;
    let files = 0;
    let bytes = 0;
    const walk = async (d: string): Promise<void> => {
      const entries = await readdir(d, { withFileTypes: true }).catch(() => []);
      for (const e of entries) {
        const full = join(d, e.name);
        if (e.isDirectory()) await walk(full);
        else if (e.isFile() && e.name.includes(".tmp-")) {
          const s = await stat(full).catch(() => null);
          if (!s || s.mtimeMs > cutoff) continue; // gone, or a write still in progress
          await rm(full, { force: true });
          files++;
          bytes += s.size;
        }
      }
    };
    await walk(dir);
    return { files, bytes };
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    const p = checkPrefix(prefix);
    const base = p ? join(this.root, ...p.slice(0, -1).split("/")) : this.root;
    const out: ObjectInfo[] = [];
    const walk = async (dir: string): Promise<void> => {
      let entries: import("node:fs").Dirent[];
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch (err) {
        if (
          (err as NodeJS.ErrnoException).code === "ENOENT" ||
          (err as NodeJS.ErrnoException).code === "ENOTDIR"
        )
          return;
        throw err;
      }
      for (const e of entries) {
        const full = join(dir, e.name);
        if (e.isDirectory()) await walk(full);
        else if (e.isFile() && !e.name.includes(".tmp-")) {
          const s = await stat(full).catch((err: NodeJS.ErrnoException) => {
            if (err.code === "ENOENT") return null; // deleted while listed
            throw err;
          });
          if (s)
            out.push({
              key: relative(this.root, full).split(sep).join("/"),
              size: s.size,
              mtimeMs: s.mtimeMs,
            });
        }
      }
    };
    await walk(base);
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async delete(key: string): Promise<void> {
    const path = this.pathOf(key);
    await rm(path, { force: true });
    await this.pruneDirs(dirname(path));
  }

  async deletePrefix(prefix: string): Promise<void> {
    const p = checkPrefix(prefix);
    if (!p) throw new Error("refusing to delete the whole store");
    const dir = join(this.root, ...p.slice(0, -1).split("/"));
    await rm(dir, { recursive: true, force: true });
    await this.pruneDirs(dirname(dir));
  }

  /** Removes dir and its parents while they are empty, up to (not including) the root. */
  private async pruneDirs(dir: string): Promise<void> {
    for (let d = dir; d.startsWith(this.root + sep); d = dirname(d)) {
      try {
        await rmdir(d);
      } catch {
        return; // not empty (another object, or a put's temporary file), or gone already
      }
    }
  }

  async presign(): Promise<string | null> {
    return null;
  }
}

/** Runs a write into path's directory, creating it, and again when a concurrent delete removed it. */
async function inDir<T>(path: string, write: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    await mkdir(dirname(path), { recursive: true });
    try {
      return await write();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT" || attempt >= DIR_ATTEMPTS) throw err;
    }
  }
}

function md5(data: Uint8Array | string): string {
  return createHash("md5").update(data).digest("hex");
}
