// Small deterministic hashing and random numbers for the dataset build: sampling, masking and
// leak checks must give the same answer on every machine and in every processing order.

import { mix32 } from "../../util/mix32.js";

const FNV_PRIME = 0x01000193;

/** A 53-bit hash (a safe integer) of bytes or token ids, from two independent 32-bit lanes. */
export function hash53(data: ArrayLike<number>, seed = 0): number {
  let a = (0x811c9dc5 ^ seed) >>> 0;
  let b = (0x050c5d1f ^ Math.imul(seed, 0x9e3779b1)) >>> 0;
  for (let i = 0; i < data.length; i++) {
    const v = data[i] | 0;
    a = Math.imul(a ^ (v & 0xffff), FNV_PRIME);
    a = Math.imul(a ^ (v >>> 16), FNV_PRIME);
    b = Math.imul(b ^ v, 0x5bd1e995);
    b ^= b >>> 15;
  }
  a = mix32(a ^ data.length);
  b = mix32(b + Math.imul(data.length, 0x27d4eb2f));
  return (b & 0x1fffff) * 0x100000000 + a;
}

const encoder = new TextEncoder();

/** hash53 of a string's UTF-8 bytes. */
export function hashText(text: string, seed = 0): number {
  return hash53(encoder.encode(text), seed);
}

/** Combines hashes (and small integers) into one. */
export function hashParts(...parts: number[]): number {
  const words: number[] = [];
  for (const p of parts) {
    words.push((p % 0x100000000) >>> 0, Math.floor(p / 0x100000000) >>> 0);
  }
  return hash53(words, 0x5eed);
}

/** A counter passed through the mixer above: uniform floats in [0, 1), reproducible from the seed. */
export function rng(seed: number): () => number {
  let s = mix32((seed ^ Math.floor(seed / 0x100000000)) >>> 0);
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    return mix32(s) / 4294967296;
  };
}
