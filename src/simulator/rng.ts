// Deterministic randomness. Everything the simulator serves is a pure function of the seed and a
// key (a service, a time bucket, a trace index), so any time window can be generated on its own and
// overlapping or repeated requests always agree.

import { mix32 } from "../util/mix32.js";

function mixIn(h: number, n: number): number {
  return mix32((h ^ Math.imul(n | 0, 0x9e3779b1)) + 0x7f4a7c15);
}

/** Hash of a key made of strings and non-negative numbers (numbers up to 2^53 keep all their bits). */
export function hashKey(...parts: (string | number)[]): number {
  let h = 0x811c9dc5;
  for (const p of parts) {
    if (typeof p === "number") {
      const n = Math.floor(Math.abs(p));
      h = mixIn(mixIn(h, n % 0x100000000), Math.floor(n / 0x100000000));
    } else {
      for (let i = 0; i < p.length; i++) h = Math.imul(h ^ p.charCodeAt(i), 0x01000193);
      h = mixIn(h, p.length);
    }
  }
  return h >>> 0;
}

/** A uniform number in [0, 1) for an already-hashed key and an integer. */
export function unitAt(key: number, i: number): number {
  return mixIn(mixIn(key, i % 0x100000000), Math.floor(i / 0x100000000)) / 4294967296;
}

/** Smooth value noise in [-1, 1]: a random level every `period` units, eased in between. */
export function smoothNoise(key: number, t: number, period: number): number {
  const x = t / period;
  const i = Math.floor(x);
  const f = x - i;
  const a = unitAt(key, i) * 2 - 1;
  const b = unitAt(key, i + 1) * 2 - 1;
  const s = f * f * (3 - 2 * f);
  return a + (b - a) * s;
}

const ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/** mulberry32: small, fast, and good enough for synthetic data. */
export class Rng {
  private s: number;

  constructor(seed: number) {
    this.s = seed >>> 0;
  }

  static of(...parts: (string | number)[]): Rng {
    return new Rng(hashKey(...parts));
  }

  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  range(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next();
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }

  /** Picks by weight; `weights` need not sum to one. */
  weighted<T>(items: readonly T[], weights: readonly number[]): T {
    let total = 0;
    for (const w of weights) total += w;
    let u = this.next() * total;
    for (let i = 0; i < items.length; i++) {
      u -= weights[i];
      if (u < 0) return items[i];
    }
    return items[items.length - 1];
  }

  normal(): number {
    const u = 1 - this.next();
    const v = this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }

  lognormal(median: number, sigma: number): number {
    return median * Math.exp(sigma * this.normal());
  }

  poisson(lambda: number): number {
    if (lambda <= 0) return 0;
    if (lambda > 40) return Math.max(0, Math.round(lambda + Math.sqrt(lambda) * this.normal()));
    const limit = Math.exp(-lambda);
    let k = 0;
    let p = this.next();
    while (p > limit) {
      k++;
      p *= this.next();
    }
    return k;
  }

  hex(bytes: number): string {
    let s = "";
    for (let i = 0; i < bytes; i++) s += this.int(256).toString(16).padStart(2, "0");
    return s;
  }

  chars(n: number, alphabet = ALNUM): string {
    let s = "";
    for (let i = 0; i < n; i++) s += alphabet[this.int(alphabet.length)];
    return s;
  }

  uuid(): string {
    const h = this.hex(16);
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-${"89ab"[this.int(4)]}${h.slice(17, 20)}-${h.slice(20, 32)}`;
  }
}
