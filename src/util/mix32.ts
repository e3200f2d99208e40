// murmur3's 32-bit finaliser, the one integer mixer behind the dataset build's hashes and the
// simulator's randomness.

/** A cheap, well-mixed 32-bit integer hash. */
export function mix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
