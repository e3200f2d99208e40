// Which failures are worth another attempt, and how long to wait before it.

/** Thrown (or wrapped) by a stage for a failure that may pass on its own: a timeout, an upload error. */
export class TransientError extends Error {
  override name = "TransientError";
  readonly transient = true;
}

/** A run stopped by its AbortSignal; the stage and the run are marked cancelled. */
export class CancelledError extends Error {
  override name = "CancelledError";
}

const NETWORK_CODES = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "ECONNABORTED",
  "ETIMEDOUT",
  "EPIPE",
  "EAI_AGAIN",
  "ENETUNREACH",
  "EHOSTUNREACH",
  "UND_ERR_SOCKET",
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_HEADERS_TIMEOUT",
  "UND_ERR_BODY_TIMEOUT",
  "SlowDown",
  "RequestTimeout",
  "InternalError",
  "ServiceUnavailable",
]);

/**
 * Transient: marked so (`transient: true`), a network error code, a timeout, or an HTTP status
 * of 408, 425, 429 or 5xx anywhere in the cause chain. Everything else (bad data, bad config,
 * a bug) fails at once: retrying it would only repeat it.
 */
export function isTransient(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    if (typeof e !== "object") break;
    const x = e as {
      transient?: unknown;
      code?: unknown;
      name?: unknown;
      status?: unknown;
      statusCode?: unknown;
    };
    if (x.transient === true) return true;
    if (x.transient === false) return false;
    if (typeof x.code === "string" && NETWORK_CODES.has(x.code)) return true;
    if (x.name === "TimeoutError") return true;
    const status =
      typeof x.status === "number" ? x.status : typeof x.statusCode === "number" ? x.statusCode : null;
    if (
      status !== null &&
      (status === 408 || status === 425 || status === 429 || (status >= 500 && status < 600))
    )
      return true;
  }
  return false;
}

/** Exponential: base, 2·base, 4·base... capped at max. */
export function backoffMs(attempt: number, baseMs: number, maxMs: number): number {
  return Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
}

/** Waits, or rejects with CancelledError as soon as the signal aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new CancelledError("cancelled"));
    const t = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(new CancelledError("cancelled"));
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** The abort reason of a shutdown: the run stops at a step boundary but stays resumable. */
export class SuspendSignal extends Error {
  override name = "SuspendSignal";
}

export function isSuspend(signal?: AbortSignal): boolean {
  return Boolean(signal?.aborted && signal.reason instanceof SuspendSignal);
}

export function isCancel(err: unknown, signal?: AbortSignal): boolean {
  if (err instanceof CancelledError) return true;
  return Boolean(signal?.aborted && (err as { name?: string } | null)?.name === "AbortError");
}
