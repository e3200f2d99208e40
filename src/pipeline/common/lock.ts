// Exclusive lock files in the data directory: one run per agent, one registry writer at a time.
// A lock is a small JSON file created with O_EXCL. Its owner is a pid on a host, plus the process
// start time so a recycled pid does not keep a dead owner's lock alive. A lock whose owner is
// gone (kill -9, power cut) is stale and may be taken over.
//
// Liveness can only be checked on the same host, so these files coordinate one host. Across hosts
// the run lock is a lease in the store (lease.ts) and the registry index a compare-and-swap on its
// ETag; a file lock here only queues one host's writers ahead of that.
import { readFileSync } from "node:fs";
import { mkdir, open, readFile, rm, stat } from "node:fs/promises";
import { hostname } from "node:os";
import { dirname, join } from "node:path";
import * as z from "zod";

export const LockOwner = z
  .object({
    pid: z.number().int(),
    host: z.string(),
    /** /proc start time of the owner (Linux), so a reused pid is not taken for the owner. */
    proc_start: z.string().nullable(),
    acquired_at: z.string(),
    purpose: z.string(),
    /** What the lock protects, e.g. the run id holding an agent's run lock. */
    holder: z.string().nullable(),
  })
  .strict();
export type LockOwner = z.infer<typeof LockOwner>;

export type LockResult =
  | { acquired: true; owner: LockOwner; release: () => Promise<void> }
  | { acquired: false; owner: LockOwner | null };

/** Lock paths live under <data_dir>/locks/. */
export function lockPath(dataDir: string, name: string): string {
  return join(dataDir, "locks", `${name}.lock`);
}

function procStart(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Field 22 (starttime); the command name in field 2 may hold spaces, so count after ")".
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return rest[19] ?? null;
  } catch {
    return null;
  }
}

const selfStart = procStart(process.pid);

/** This process as a lock owner. */
export function currentOwner(purpose: string, holder: string | null): LockOwner {
  return {
    pid: process.pid,
    host: hostname(),
    proc_start: selfStart,
    acquired_at: new Date().toISOString(),
    purpose,
    holder,
  };
}

/** True when the owner is certainly gone: same host, and its pid is dead or belongs to another process. */
export function isStale(owner: LockOwner): boolean {
  if (owner.host !== hostname()) return false;
  if (owner.pid === process.pid) return owner.proc_start !== selfStart;
  try {
    process.kill(owner.pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "ESRCH";
  }
  if (owner.proc_start === null) return false;
  const now = procStart(owner.pid);
  return now !== null && now !== owner.proc_start;
}

async function readOwner(path: string): Promise<{ text: string; owner: LockOwner | null } | null> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw err;
  }
  try {
    const r = LockOwner.safeParse(JSON.parse(text));
    return { text, owner: r.success ? r.data : null };
  } catch {
    return { text, owner: null };
  }
}

/**
 * Tries once to take the lock. When it is held by a live owner, returns that owner. A stale lock
 * (or an unreadable one older than a few seconds: a crash between create and write) is removed
 * and taken over.
 */
export async function tryLock(
  path: string,
  purpose: string,
  holder: string | null = null,
): Promise<LockResult> {
  await mkdir(dirname(path), { recursive: true });
  const owner = currentOwner(purpose, holder);
  const body = `${JSON.stringify(owner)}\n`;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fh = await open(path, "wx");
      try {
        await fh.writeFile(body);
        await fh.sync();
      } finally {
        await fh.close();
      }
      return { acquired: true, owner, release: () => releaseLock(path, body) };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
    const current = await readOwner(path);
    if (!current) continue;
    const stale = current.owner ? isStale(current.owner) : await unreadableAndOld(path);
    if (!stale) return { acquired: false, owner: current.owner };
    // Re-read just before removing, so a lock that another process took over meanwhile survives.
    const again = await readOwner(path);
    if (again && again.text === current.text) await rm(path, { force: true });
  }
  const current = await readOwner(path);
  return { acquired: false, owner: current?.owner ?? null };
}

/** The live owner of a lock, or null when it is free or its owner is gone. Takes nothing. */
export async function peekLock(path: string): Promise<LockOwner | null> {
  const current = await readOwner(path);
  if (!current) return null;
  if (!current.owner)
    return (await unreadableAndOld(path))
      ? null
      : { pid: -1, host: "?", proc_start: null, acquired_at: "", purpose: "unreadable lock", holder: null };
  return isStale(current.owner) ? null : current.owner;
}

async function unreadableAndOld(path: string): Promise<boolean> {
  try {
    return Date.now() - (await stat(path)).mtimeMs > 5000;
  } catch {
    return true;
  }
}

async function releaseLock(path: string, body: string): Promise<void> {
  const current = await readOwner(path);
  if (current && current.text === body) await rm(path, { force: true });
}

const inProcess = new Map<string, Promise<unknown>>();

/**
 * Runs fn while holding the lock, waiting for it up to timeoutMs. Callers in this process queue
 * on an in-process chain first, so they never contend for the file with each other.
 */
export async function withLock<T>(
  path: string,
  purpose: string,
  fn: () => Promise<T>,
  opts: { timeoutMs?: number; pollMs?: number } = {},
): Promise<T> {
  const prev = inProcess.get(path) ?? Promise.resolve();
  const run = prev.catch(() => undefined).then(() => holdAndRun(path, purpose, fn, opts));
  const tail = run.catch(() => undefined);
  inProcess.set(path, tail);
  try {
    return await run;
  } finally {
    if (inProcess.get(path) === tail) inProcess.delete(path);
  }
}

async function holdAndRun<T>(
  path: string,
  purpose: string,
  fn: () => Promise<T>,
  opts: { timeoutMs?: number; pollMs?: number },
): Promise<T> {
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
  for (;;) {
    const r = await tryLock(path, purpose);
    if (r.acquired) {
      try {
        return await fn();
      } finally {
        await r.release();
      }
    }
    if (Date.now() > deadline) {
      const who = r.owner ? `pid ${r.owner.pid} on ${r.owner.host} (${r.owner.purpose})` : "an unknown owner";
      throw new Error(`timed out waiting for lock ${path}, held by ${who}`);
    }
    await new Promise((res) => setTimeout(res, opts.pollMs ?? 50));
  }
}
