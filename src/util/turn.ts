// A turn of the event loop, for code that computes synchronously for a while: awaited between
// pieces, it lets I/O callbacks and messages (a cancel) through.
export const nextTurn = (): Promise<void> => new Promise((r) => setImmediate(r));
