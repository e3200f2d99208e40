// Waiting inside code that computes synchronously for a while.

/** A turn of the event loop: awaited between pieces, it lets I/O callbacks and messages (a cancel) through. */
export const nextTurn = (): Promise<void> => new Promise((r) => setImmediate(r));

/** p's value, or `otherwise` once ms have passed first (p keeps running; its rejection is dropped). */
export async function within<T, U>(p: Promise<T>, ms: number, otherwise: U): Promise<T | U> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<U>((r) => {
        timer = setTimeout(() => r(otherwise), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
