import { describe, expect, it } from "vitest";
import {
  BIN_BASE,
  BYTE_BASE,
  FIXED_CLASSES,
  MASK,
  PAD,
  SEP,
  UNK,
  Vocab,
  VocabError,
  vocabGrowth,
} from "../../../src/pipeline/tasks/index.js";

const encoding = { seq_len: 64, metric_forecast: { points: 8, step_ms: 3_600_000, z_max: 20 } };

describe("Vocab", () => {
  it("orders specials, 256 bytes, bins, then classes", () => {
    const v = Vocab.create({ numBins: 64, encoding, classes: ["service:b", "service:a"] });
    expect([PAD, MASK, SEP, UNK]).toEqual([0, 1, 2, 3]);
    expect(v.byte(0)).toBe(4);
    expect(v.byte(255)).toBe(259);
    expect(v.bin(0)).toBe(260);
    expect(v.bin(63)).toBe(323);
    expect(v.classBase).toBe(324);
    expect(() => v.bin(64)).toThrow(VocabError);
    // Fixed classes first, then the data's classes sorted.
    expect(v.classes.slice(0, FIXED_CLASSES.length)).toEqual([...FIXED_CLASSES]);
    expect(v.classes.slice(FIXED_CLASSES.length)).toEqual(["service:a", "service:b"]);
    expect(v.size).toBe(324 + FIXED_CLASSES.length + 2);
    expect(v.className(v.classId("service:a")!)).toBe("service:a");
    expect(v.namespaceIds("service")).toEqual([
      v.classId("service:<other>"),
      v.classId("service:a"),
      v.classId("service:b"),
    ]);
    expect(v.isByte(BYTE_BASE + 10)).toBe(true);
    expect(v.isBin(BIN_BASE + 3)).toBe(true);
    expect(v.tokenName(v.classId("level:error")!)).toBe("level:error");
  });

  it("round-trips through vocab.json and rejects a tampered file", () => {
    const v = Vocab.create({ numBins: 32, encoding, classes: ["service:x"] });
    const back = Vocab.parse(v.serialize());
    expect(back.serialize()).toBe(v.serialize());
    expect(back.classId("service:x")).toBe(v.classId("service:x"));

    const json = JSON.parse(v.serialize());
    json.size += 1;
    expect(() => Vocab.fromJSON(json)).toThrow(/size/);
    const dup = JSON.parse(v.serialize());
    dup.classes.push("service:x");
    dup.size += 1;
    expect(() => Vocab.fromJSON(dup)).toThrow(/duplicate/);
    expect(() => Vocab.parse("{not json")).toThrow(/not JSON/);
    expect(() => Vocab.fromJSON({ ...JSON.parse(v.serialize()), version: 2 })).toThrow(/version/);
  });

  it("grows by appending: every old id keeps its meaning", () => {
    const v1 = Vocab.create({ numBins: 64, encoding, classes: ["service:api", "service:db"] });
    const v2 = v1.extend(["service:db", "service:queue", "service:cache"]);
    expect(v2.revision).toBe(2);
    expect(v2.parentSha256).toBe(v1.sha256());
    for (const name of v1.classes) expect(v2.classId(name)).toBe(v1.classId(name));
    expect(v2.classId("service:cache")).toBe(v1.size);
    expect(v2.classId("service:queue")).toBe(v1.size + 1);
    const growth = vocabGrowth(v1, v2);
    expect(growth).toEqual({
      oldSize: v1.size,
      newSize: v1.size + 2,
      added: [
        { id: v1.size, name: "service:cache" },
        { id: v1.size + 1, name: "service:queue" },
      ],
    });
    // Nothing new: the same vocabulary, same revision.
    expect(v2.extend(["service:api"])).toBe(v2);
    // A vocabulary built fresh from other data moves ids: growth refuses it.
    const fresh = Vocab.create({ numBins: 64, encoding, classes: ["service:cache", "service:api"] });
    expect(() => vocabGrowth(v1, fresh)).toThrow(/changed meaning/);
    const otherBins = Vocab.create({ numBins: 32, encoding, classes: ["service:api", "service:db"] });
    expect(() => vocabGrowth(v1, otherBins)).toThrow(/bin count/);
  });
});
