// A lease object in the store: one run (or one store gc) per agent across every host that shares
// the store. It is
// taken with a conditional create (If-None-Match: *), renewed and released with If-Match on the
// ETag its holder last wrote, and expires at a time written in it. Only the holder can extend it
// (nobody else knows a matching ETag): a crashed holder cannot, and a stalled one that comes back
// after another host took over finds its ETag gone and stops. A taker replaces a free lease (expired,
// released, or left by a dead process on its own host) with If-Match on that lease's ETag, so of
// two takers exactly one wins. Expiry compares wall clocks across hosts: keep them in step (NTP)
// to well within the lease duration. A cancel request travels through the store too: a marker
// beside the lease (locks/<agent>/cancel/<run>.json) that the holder looks for while it holds it.
import { randomBytes } from "node:crypto";
import * as z from "zod";
import { WorkError } from "../../errors.js";
import { log } from "../../log.js";
import type { ObjectStore } from "../../store/index.js";
import { cancelKey, runLeaseKey } from "../../store/layout.js";
import { currentOwner, isStale, LockOwner, type LockResult } from "./lock.js";
import { CancelledError, SuspendSignal } from "./retry.js";

export const LeaseBody = z
  .object({
    owner: LockOwner,
    /** Makes every write unique, so an ETag names one write of one holder. */
    nonce: z.string(),
    renewed_at: z.string(),
    /** ms since the epoch. */
    expires_at: z.number(),
    released: z.boolean(),
  })
  .strict();
export type LeaseBody = z.infer<typeof LeaseBody>;

export type LeaseResult =
  | (Extract<LockResult, { acquired: true }> & {
      /**
       * Aborts (with a SuspendSignal: the work stops as for a shutdown, resumable by whoever holds
       * the lease now) when the lease is lost: taken over after a stall, or not renewed in time.
       */
      lost: AbortSignal;
      /**
       * Renews now, with a full lease from this moment, and says whether that renewal landed (false
       * when the lease was lost or released, or the store did not answer). Before work that checks
       * the lease (the run's gc), after the event loop was blocked for a while.
       */
      renew: () => Promise<boolean>;
      /** Resolves when the renewal or release in flight, if any, has been written. */
      settled: () => Promise<void>;
      /**
       * Aborts (with a CancelledError) when the cancel marker (LeaseOptions.cancelKey) appears;
       * the lease is still held and renewed while the work winds down.
       */
      cancelled: AbortSignal;
    })
  | Extract<LockResult, { acquired: false }>;

export interface LeaseOptions {
  /** How long a lease lasts without renewal. */
  ttlMs: number;
  /** How often the holder renews it; a third of ttlMs by default. */
  renewMs?: number;
  /** A key whose appearance asks the holder to stop (a cancel from any host). */
  cancelKey?: string;
  /** How often the holder looks for it; renewMs by default. */
  cancelPollMs?: number;
}

function parse(body: Buffer): LeaseBody | null {
  try {
    const r = LeaseBody.safeParse(JSON.parse(body.toString("utf8")));
    return r.success ? r.data : null;
  } catch {
    return null;
  }
}

/** Held: not released, not expired, and not left by a process known dead on this host. */
function isLive(lease: LeaseBody, now: number): boolean {
  return !lease.released && now < lease.expires_at && !isStale(lease.owner);
}

function encode(b: LeaseBody): string {
  return `${JSON.stringify(b)}\n`;
}

/**
 * Tries once to take the lease. When another holder has it, returns that holder's owner record
 * (whose `holder` is e.g. the winning run id).
 */
export async function tryLease(
  store: ObjectStore,
  key: string,
  purpose: string,
  holder: string | null,
  opts: LeaseOptions,
): Promise<LeaseResult> {
  const owner = currentOwner(purpose, holder);
  for (let attempt = 0; attempt < 5; attempt++) {
    const current = await store.getVersioned(key);
    const lease = current ? parse(current.body) : null;
    if (lease && isLive(lease, Date.now())) return { acquired: false, owner: lease.owner };
    const body: LeaseBody = {
      owner,
      nonce: randomBytes(8).toString("hex"),
      renewed_at: new Date().toISOString(),
      expires_at: Date.now() + opts.ttlMs,
      released: false,
    };
    const etag = await store.putIf(key, encode(body), current ? current.etag : null, {
      contentType: "application/json",
    });
    if (etag) return held(store, key, body, etag, opts);
    // Someone else wrote in between: look again (they may have just taken it).
  }
  const last = await store.getVersioned(key);
  const lease = last ? parse(last.body) : null;
  return { acquired: false, owner: lease && isLive(lease, Date.now()) ? lease.owner : null };
}

/** The live holder of a lease, or null when it is free. Takes nothing. */
export async function peekLease(store: ObjectStore, key: string): Promise<LockOwner | null> {
  const current = await store.getVersioned(key);
  const lease = current ? parse(current.body) : null;
  return lease && isLive(lease, Date.now()) ? lease.owner : null;
}

function held(
  store: ObjectStore,
  key: string,
  first: LeaseBody,
  firstEtag: string,
  opts: LeaseOptions,
): LeaseResult & { acquired: true } {
  let body = first;
  let etag: string | null = firstEtag;
  const lost = new AbortController();
  // Renewals and the release run one after another, never racing each other's If-Match.
  let chain: Promise<void> = Promise.resolve();
  const lose = (why: string) => {
    etag = null;
    log.warn(
      { lease: key, holder: first.owner.holder },
      `${why}; stopping here, to resume wherever it is held now`,
    );
    lost.abort(new SuspendSignal(why));
  };
  // A renewal that comes late (a blocked event loop) still succeeds while nobody has replaced the
  // lease: If-Match is the guard, and a taker's own If-Match write would have made it fail. Its
  // expiry is read off the clock when it is written, not when it was queued: a renewal queued
  // behind a long synchronous step must not write a lease that is already nearly over.
  // Whether the last write landed (renew() reports its own: the chain runs one write at a time).
  let landed = false;
  const write = (make: () => LeaseBody) =>
    (chain = chain.then(async () => {
      landed = false;
      if (!etag) return;
      const next = make();
      try {
        const e = await store.putIf(key, encode(next), etag, { contentType: "application/json" });
        if (e) {
          body = next;
          etag = e;
          landed = true;
        } else if (next.released) {
          etag = null;
        } else {
          lose(`lease ${key} was taken over by another holder`);
        }
      } catch (err) {
        // The store is unreachable: retried at the next renewal, until others may take it over.
        if (!next.released && Date.now() >= body.expires_at)
          lose(`lease ${key} expired while the store was unreachable (${(err as Error).message})`);
      }
    }));
  const renewal = (): LeaseBody => {
    const now = Date.now();
    return {
      ...body,
      nonce: randomBytes(8).toString("hex"),
      renewed_at: new Date(now).toISOString(),
      expires_at: now + opts.ttlMs,
    };
  };
  const timer = setInterval(
    () => void write(renewal),
    opts.renewMs ?? Math.max(10, Math.floor(opts.ttlMs / 3)),
  );
  timer.unref();
  const cancelled = new AbortController();
  let looking = false;
  const cancelPoll = opts.cancelKey
    ? setInterval(
        async () => {
          if (looking || cancelled.signal.aborted || !opts.cancelKey) return;
          looking = true;
          try {
            if (await store.exists(opts.cancelKey))
              cancelled.abort(new CancelledError("cancelled on request"));
          } catch {
            // The store is unreachable: look again at the next tick.
          } finally {
            looking = false;
          }
        },
        opts.cancelPollMs ?? opts.renewMs ?? Math.max(10, Math.floor(opts.ttlMs / 3)),
      )
    : null;
  cancelPoll?.unref();
  const stop = () => {
    clearInterval(timer);
    if (cancelPoll) clearInterval(cancelPoll);
  };
  lost.signal.addEventListener("abort", stop, { once: true });
  let released: Promise<void> | null = null;
  return {
    acquired: true,
    owner: first.owner,
    lost: lost.signal,
    cancelled: cancelled.signal,
    settled: () => chain,
    renew: async () => {
      if (released) return false;
      await write(renewal);
      return landed && !released && !lost.signal.aborted;
    },
    release: () => {
      released ??= (async () => {
        stop();
        await write(() => ({
          ...body,
          nonce: randomBytes(8).toString("hex"),
          expires_at: Date.now(),
          released: true,
        }));
      })();
      return released;
    },
  };
}

// ---- the agent's lease: one run, or one store gc, per agent across hosts ----

export { runLeaseKey };

/** How long a run waits for a store gc holding the agent's lease before it gives up. */
const RUN_WAITS_FOR_GC_MS = 5 * 60_000;
/** How long a store gc waits for another one. */
const GC_WAITS_FOR_GC_MS = 10 * 60_000;
const POLL_MS = 500;

function gcPurpose(agent: string): string {
  return `store gc ${agent}`;
}

/** Whether a lease owner is a store gc of the agent (not a run). */
export function isGcOwner(owner: LockOwner, agent: string): boolean {
  return owner.purpose === gcPurpose(agent);
}

function who(owner: LockOwner): string {
  return `pid ${owner.pid} on ${owner.host}, since ${owner.acquired_at}`;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Takes the agent's run lease for runId; when another run holds it, owner.holder is that run's id.
 * A store gc holding it is waited for (gc is short), up to a few minutes.
 */
export async function tryRunLease(
  store: ObjectStore,
  agent: string,
  runId: string,
  ttlMs: number,
  opts: { gcWaitMs?: number; pollMs?: number; cancelPollMs?: number } = {},
): Promise<LeaseResult> {
  const deadline = Date.now() + (opts.gcWaitMs ?? RUN_WAITS_FOR_GC_MS);
  for (;;) {
    const r = await tryLease(store, runLeaseKey(agent), `run ${agent}`, runId, {
      ttlMs,
      cancelKey: cancelKey(agent, runId),
      cancelPollMs: opts.cancelPollMs,
    });
    if (r.acquired || !r.owner || !isGcOwner(r.owner, agent)) return r;
    if (Date.now() >= deadline)
      throw new WorkError(
        `agent ${agent}: a store gc (${who(r.owner)}) still holds the agent's lease; start the run again once it has ended`,
      );
    await sleep(opts.pollMs ?? POLL_MS);
  }
}

export { cancelKey };

/** Asks a run to stop at its next step boundary: its lease holder sees the marker within cancelPollMs. */
export async function requestCancel(
  store: ObjectStore,
  agent: string,
  runId: string,
  at: Date,
): Promise<void> {
  await store.put(
    cancelKey(agent, runId),
    `${JSON.stringify({ run_id: runId, requested_at: at.toISOString() })}\n`,
    {
      contentType: "application/json",
    },
  );
}

/** Removes a run's cancel marker (when the run ends). */
export async function clearCancel(store: ObjectStore, agent: string, runId: string): Promise<void> {
  await store.delete(cancelKey(agent, runId));
}

/** The live holder of the agent's run lease (owner.holder is its run id), or null. */
export function peekRunLease(store: ObjectStore, agent: string): Promise<LockOwner | null> {
  return peekLease(store, runLeaseKey(agent));
}

/**
 * Runs fn holding the agent's lease as its store gc, so that no run of the agent and no other gc
 * work on its objects meanwhile, on any host sharing the store. Another gc is waited for; a run
 * is not (it runs gc itself when it ends): that fails at once, naming the run. fn gets a signal
 * that aborts if the lease is lost.
 */
export async function withGcLease<T>(
  store: ObjectStore,
  agent: string,
  ttlMs: number,
  fn: (lost: AbortSignal) => Promise<T>,
  opts: { waitMs?: number; pollMs?: number } = {},
): Promise<T> {
  const deadline = Date.now() + (opts.waitMs ?? GC_WAITS_FOR_GC_MS);
  for (;;) {
    const r = await tryLease(store, runLeaseKey(agent), gcPurpose(agent), null, { ttlMs });
    if (r.acquired) {
      try {
        return await fn(r.lost);
      } finally {
        await r.release();
      }
    }
    if (r.owner && !isGcOwner(r.owner, agent))
      throw new WorkError(
        `agent ${agent}: run ${r.owner.holder ?? "?"} holds the agent's lease (${who(r.owner)}); it runs gc when it ends, or try again after it`,
      );
    if (Date.now() >= deadline)
      throw new WorkError(
        `agent ${agent}: timed out waiting for another store gc${r.owner ? ` (${who(r.owner)})` : ""}`,
      );
    await sleep(opts.pollMs ?? POLL_MS);
  }
}
