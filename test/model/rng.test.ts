import { describe, expect, it } from "vitest";
import { Rng, TRUNC2_STD } from "../../src/model/rng.js";

describe("Rng", () => {
  it("is reproducible from a seed and resumes exactly from its state", () => {
    const a = new Rng(42);
    const b = new Rng(42);
    expect(Array.from({ length: 5 }, () => a.nextU32())).toEqual(
      Array.from({ length: 5 }, () => b.nextU32()),
    );
    const saved = a.state();
    const next = [a.uniform(), a.int(0, 10), a.normal()];
    const c = new Rng(JSON.parse(JSON.stringify(saved)));
    expect([c.uniform(), c.int(0, 10), c.normal()]).toEqual(next);
    expect(new Rng(43).nextU32()).not.toBe(new Rng(42).nextU32());
    // Seeds beyond 32 bits still differ.
    expect(new Rng(2 ** 40).nextU32()).not.toBe(new Rng(0).nextU32());
  });

  it("draws in range with the right moments", () => {
    const r = new Rng(1);
    const counts = new Array(5).fill(0);
    let sum = 0;
    let sq = 0;
    for (let i = 0; i < 20000; i++) {
      const u = r.uniform();
      expect(u >= 0 && u < 1).toBe(true);
      counts[r.int(2, 7) - 2]++;
      const z = r.normal();
      sum += z;
      sq += z * z;
    }
    for (const c of counts) expect(Math.abs(c - 4000)).toBeLessThan(300);
    expect(Math.abs(sum / 20000)).toBeLessThan(0.03);
    expect(Math.abs(sq / 20000 - 1)).toBeLessThan(0.05);
  });

  it("truncated normal: cut at 2 sigma of the underlying normal, std as asked", () => {
    expect(TRUNC2_STD).toBeCloseTo(0.8796, 4);
    const x = new Rng(7).truncNormal(50000, 0.5);
    let sq = 0;
    for (const v of x) {
      expect(Math.abs(v)).toBeLessThanOrEqual((2 * 0.5) / TRUNC2_STD + 1e-6);
      sq += v * v;
    }
    expect(Math.sqrt(sq / x.length)).toBeCloseTo(0.5, 2);
  });

  it("shuffles as a permutation, reproducibly", () => {
    const a = new Rng(3).shuffle(Array.from({ length: 100 }, (_, i) => i));
    expect([...a].sort((p, q) => p - q)).toEqual(Array.from({ length: 100 }, (_, i) => i));
    expect(new Rng(3).shuffle(Array.from({ length: 100 }, (_, i) => i))).toEqual(a);
    expect(() => new Rng([0, 0, 0, 0])).toThrow(/all zero/);
    expect(() => new Rng(1.5)).toThrow(/integer/);
  });
});
