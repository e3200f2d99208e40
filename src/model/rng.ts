// A small seeded PRNG (xoshiro128**) whose whole state is four uint32 words, so weight init,
// halting exploration and data order are reproducible and a checkpoint can resume them exactly.

/** sqrt of the variance of a standard normal truncated at +-2 (JAX's truncated-normal correction). */
export const TRUNC2_STD = Math.sqrt(1 - (4 * Math.exp(-2)) / Math.sqrt(2 * Math.PI) / erf(2 / Math.SQRT2));

export type RngState = [number, number, number, number];

export class Rng {
  private s: Uint32Array;

  constructor(seed: number | RngState) {
    this.s = new Uint32Array(4);
    if (Array.isArray(seed)) {
      if (seed.length !== 4 || !seed.every((w) => Number.isInteger(w) && w >= 0 && w <= 0xffffffff))
        throw new Error("rng state must be four uint32 words");
      if (seed.every((w) => w === 0)) throw new Error("rng state must not be all zero");
      this.s.set(seed);
      return;
    }
    if (!Number.isSafeInteger(seed)) throw new Error(`rng seed must be an integer, got ${seed}`);
    // splitmix32 spreads any integer seed (the high half too) over the four words.
    let x = (seed >>> 0) ^ Math.floor(seed / 2 ** 32);
    for (let i = 0; i < 4; i++) {
      x = (x + 0x9e3779b9) >>> 0;
      let t = x;
      t = Math.imul(t ^ (t >>> 16), 0x21f0aaad);
      t = Math.imul(t ^ (t >>> 15), 0x735a2d97);
      this.s[i] = (t ^ (t >>> 15)) >>> 0;
    }
    if (this.s.every((w) => w === 0)) this.s[0] = 1;
  }

  state(): RngState {
    return [this.s[0]!, this.s[1]!, this.s[2]!, this.s[3]!];
  }

  /** Next uint32. */
  nextU32(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1]!, 5), 7), 9) >>> 0;
    const t = (s[1]! << 9) >>> 0;
    s[2]! ^= s[0]!;
    s[3]! ^= s[1]!;
    s[1]! ^= s[2]!;
    s[0]! ^= s[3]!;
    s[2]! ^= t;
    s[3] = rotl(s[3]!, 11);
    return result;
  }

  /** Uniform in [0, 1) with 53 random bits. */
  uniform(): number {
    const hi = this.nextU32() >>> 5;
    const lo = this.nextU32() >>> 6;
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** Uniform integer in [lo, hi) without modulo bias. */
  int(lo: number, hi: number): number {
    const n = hi - lo;
    if (!Number.isInteger(n) || n <= 0 || n > 0x100000000)
      throw new Error(`bad integer range [${lo}, ${hi})`);
    const limit = 0x100000000 - (0x100000000 % n);
    for (;;) {
      const r = this.nextU32();
      if (r < limit) return lo + (r % n);
    }
  }

  /** Standard normal (Box-Muller; one value per pair, so no hidden cached state). */
  normal(): number {
    let u = this.uniform();
    while (u === 0) u = this.uniform();
    const v = this.uniform();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }

  /**
   * Truncated normal as the reference initialises weights: a standard normal resampled outside
   * +-2, scaled so the truncated distribution has standard deviation `std`.
   */
  truncNormal(n: number, std: number): Float32Array {
    const out = new Float32Array(n);
    if (std === 0) return out;
    const scale = std / TRUNC2_STD;
    for (let i = 0; i < n; i++) {
      let x = this.normal();
      while (Math.abs(x) > 2) x = this.normal();
      out[i] = x * scale;
    }
    return out;
  }

  /** Fisher-Yates, in place. */
  shuffle<T>(a: T[] | Int32Array | Uint32Array): typeof a {
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.int(0, i + 1);
      const t = a[i]!;
      a[i] = a[j]!;
      a[j] = t;
    }
    return a;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/** erf by its Taylor series (exact to double precision for |x| <= 3); only used for the constant above. */
function erf(x: number): number {
  let sum = x;
  let term = x;
  for (let n = 1; n < 80; n++) {
    term *= (-x * x) / n;
    sum += term / (2 * n + 1);
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}
