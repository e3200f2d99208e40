import { describe, expect, it } from "vitest";
import type { CodeFileRecord } from "../../../src/pipeline/collect/records.js";
import {
  BYTE_BASE,
  buildExamples,
  chooseMask,
  codeInfill,
  codeWindows,
  type Example,
  IGNORE,
  labelSpans,
  MASK,
  scoreTask,
  TaskInputError,
  Vocab,
} from "../../../src/pipeline/tasks/index.js";

const T0 = Date.parse("2026-01-10T00:00:00Z");
const window = { start: T0 - 86_400_000, end: T0 + 86_400_000 };
const settings = { mask_fraction: 0.15, max_spans: 3, max_windows_per_file: 16 };
const enc = new TextEncoder();
/** "abcdef" with spans at 0 (3 bytes) and at `second` (2 bytes). */
const encodeTwoSpans = (vocab: Vocab, second: number) =>
  codeInfill.encode(
    {
      text: "abcdef",
      spans: [
        { start: 0, length: 3 },
        { start: second, length: 2 },
      ],
    },
    vocab,
  );

function file(path: string, content: string, collectedAt = "2026-01-10T03:00:00Z"): CodeFileRecord {
  return {
    kind: "code_file",
    path,
    language: "typescript",
    size: content.length,
    sha256: "0".repeat(64),
    commit: null,
    content,
    redactions: 0,
    collected_at: collectedAt,
  };
}

const SOURCE = Array.from({ length: 60 }, (_, i) => `const handler${i} = respond(request, ${i * 7});`).join(
  "\n",
);

describe("code windows and masks", () => {
  it("cuts windows no longer than the sequence, starting at line starts", () => {
    const bytes = enc.encode(SOURCE);
    const ws = codeWindows(bytes, 128, 16);
    expect(ws.length).toBeGreaterThan(5);
    for (const [a, b] of ws) {
      expect(b - a).toBeLessThanOrEqual(128);
      expect(a === 0 || bytes[a - 1] === 0x0a).toBe(true);
    }
    expect(codeWindows(bytes, 128, 3)).toHaveLength(3);
    expect(codeWindows(new Uint8Array(0), 128, 3)).toEqual([]);
  });

  it("masks one to three word spans, about 15% of the window, the same way for the same bytes", () => {
    const w = enc.encode(
      "const answer = compute(alpha, beta) + offset * 42; // the result is cached in resultCache for later\n",
    );
    const m = chooseMask(w, 7, settings);
    expect(m.length).toBeGreaterThanOrEqual(1);
    expect(m.length).toBeLessThanOrEqual(3);
    const masked = m.reduce((a, [x, y]) => a + y - x, 0);
    expect(masked).toBeLessThanOrEqual(Math.round(0.15 * w.length));
    expect(masked).toBeGreaterThanOrEqual(Math.round(0.05 * w.length));
    const word = /[A-Za-z0-9_$]/;
    for (const [a, b] of m)
      for (let i = a; i < b; i++) expect(word.test(String.fromCharCode(w[i]))).toBe(true);
    // Spans never touch: a byte that is not masked separates them.
    for (let i = 1; i < m.length; i++) expect(m[i][0]).toBeGreaterThan(m[i - 1][1]);
    expect(chooseMask(w, 7, settings)).toEqual(m);
    const others = [1, 2, 3, 4, 5].map((seed) => JSON.stringify(chooseMask(w, seed, settings)));
    expect(new Set([JSON.stringify(m), ...others]).size).toBeGreaterThan(1);
    // Only punctuation: a non-blank stretch is masked instead.
    const p = chooseMask(enc.encode("{ } ( ) [ ] ;; --> <== !!"), 1, settings);
    expect(p).toHaveLength(1);
    expect(chooseMask(enc.encode("     \n\n   "), 1, settings)).toEqual([]);
  });
});

describe("code_infill", () => {
  it("labels the masked bytes and nothing else", () => {
    const built = buildExamples(codeInfill, [file("src/a.ts", SOURCE)], { window, seqLen: 128, settings });
    expect(built.examples.length).toBeGreaterThan(5);
    const bytes = enc.encode(SOURCE);
    const [a] = codeWindows(bytes, 128, 16)[0];
    const ex = built.examples[0];
    let masked = 0;
    for (let i = 0; i < 128; i++) {
      if (ex.labels[i] === IGNORE) {
        if (a + i < bytes.length && ex.inputs[i] !== 0) expect(ex.inputs[i]).toBe(BYTE_BASE + bytes[a + i]);
      } else {
        masked++;
        expect(ex.inputs[i]).toBe(MASK);
        expect(ex.labels[i]).toBe(BYTE_BASE + bytes[a + i]);
      }
    }
    expect(masked).toBeGreaterThan(0);
    const spans = labelSpans(ex.labels);
    expect(spans.length).toBeGreaterThanOrEqual(1);
    expect(spans.length).toBeLessThanOrEqual(3);
  });

  it("keeps the newest version of a path and explains what it cannot use", () => {
    const built = buildExamples(
      codeInfill,
      [
        file("src/a.ts", "export const newest = computeTheNewestValue(alpha, beta, gamma, delta);\n"),
        file(
          "src/a.ts",
          "export const oldest = computeTheOldestValue(alpha, beta, gamma, delta);\n",
          "2026-01-09T03:00:00Z",
        ),
        file("src/bin.dat", `\u0000\u0000\u0000${"\ufffd".repeat(40)}`),
        file("src/empty.ts", ""),
        file("src/blank.ts", "   \n\n   \n"),
        file("src/later.ts", "export const x = 1;\n", "2026-01-12T03:00:00Z"),
      ],
      { window, seqLen: 128, settings },
    );
    expect(built.examples).toHaveLength(1);
    expect(codeInfill.describe(built.examples[0], built.vocab).input).toContain("ewest");
    expect(built.invalid.map((i) => i.reason)).toEqual(["binary or undecodable content"]);
    expect(built.skipped).toEqual({
      "older version of a file": 1,
      "empty file": 1,
      "window is nearly blank": 1,
      "file gave no window": 1,
      "collected after the window": 1,
    });
  });

  it("has a byte-bigram baseline counted on train", () => {
    const vocab = Vocab.create({
      numBins: 64,
      encoding: { seq_len: 16, metric_forecast: { points: 2, step_ms: 1, z_max: 20 } },
    });
    const mk = (text: string, maskAt: number[]): Example => {
      const inputs = new Int32Array(16);
      const labels = new Int32Array(16).fill(IGNORE);
      enc.encode(text).forEach((b, i) => {
        inputs[i] = BYTE_BASE + b;
      });
      for (const i of maskAt) {
        labels[i] = inputs[i];
        inputs[i] = MASK;
      }
      return { task: "code_infill", inputs, labels, time: 0, aux: new Float64Array(0) };
    };
    // After "a" comes "b" (3 times) more often than "c" (once); after "b" comes "a".
    const train = [mk("abababac", [1])];
    const [bigram] = codeInfill.baselines(train, vocab);
    expect(bigram.name).toBe("byte_bigram");
    const val = mk("xaxxabzz", [2, 5, 6]);
    const pred = bigram.predict(val);
    // Position 2 follows "a" -> "b"; position 5 follows "a" -> "b"; position 6 follows the
    // baseline's own "b" -> "a".
    expect(String.fromCharCode(pred[2] - BYTE_BASE, pred[5] - BYTE_BASE, pred[6] - BYTE_BASE)).toBe("bba");
    const s = scoreTask("code_infill", [val], [pred], vocab);
    // Truth at 2, 5, 6 is "x", "b", "z": one byte of three right; spans [2] and [5,6] both wrong.
    expect(s.metrics.masked_token_accuracy).toBeCloseTo(1 / 3);
    expect(s.metrics.exact_span_accuracy).toBe(0);
    const fixed = Int32Array.from(pred);
    fixed[2] = BYTE_BASE + 0x78;
    expect(scoreTask("code_infill", [val], [fixed], vocab).metrics.exact_span_accuracy).toBe(0.5);
  });

  it("encodes a live query and decodes the filled spans", () => {
    const vocab = Vocab.create({
      numBins: 64,
      encoding: { seq_len: 32, metric_forecast: { points: 2, step_ms: 1, z_max: 20 } },
    });
    const q = { text: "let total = price * count;", spans: [{ start: 4, length: 5 }] };
    const e = codeInfill.encode(q, vocab);
    expect(e.readouts.map((r) => r.position)).toEqual([4, 5, 6, 7, 8]);
    expect(Array.from(e.inputs.slice(4, 9))).toEqual(Array(5).fill(MASK));
    const out = Int32Array.from(e.inputs);
    Array.from(enc.encode("total")).forEach((b, i) => {
      out[4 + i] = BYTE_BASE + b;
    });
    expect(codeInfill.decode({ tokens: out }, e, vocab)).toEqual({
      spans: [{ start: 4, length: 5, text: "total", confidence: 1 }],
    });
    expect(() =>
      codeInfill.encode({ text: "x".repeat(33), spans: [{ start: 0, length: 1 }] }, vocab),
    ).toThrow(TaskInputError);
    expect(() => codeInfill.encode({ text: "abc", spans: [{ start: 2, length: 5 }] }, vocab)).toThrow(
      /past the text/,
    );
    expect(() => encodeTwoSpans(vocab, 2)).toThrow(/overlap/);
  });
});

describe("code_infill's answer from probabilities", () => {
  const vocab = Vocab.create({
    numBins: 8,
    encoding: { seq_len: 64, metric_forecast: { points: 2, step_ms: 1, z_max: 20 } },
  });
  const V = vocab.size;
  /** Probabilities [64 * V] with `bytes` most likely at `from..` and the rest of the mass spread. */
  const probsFavouring = (from: number, text: string, p = 0.3) => {
    const probs = new Float32Array(64 * V).fill(0.7 / (V - 1));
    Array.from(enc.encode(text)).forEach((b, i) => {
      probs[(from + i) * V + BYTE_BASE + b] = p;
    });
    return probs;
  };
  // "alpha" twice, "gamma" once, "omega" once; the span is 5 bytes at 0.
  const text = "xxxxx = alpha + alpha * gamma - omega;";
  const e = codeInfill.encode({ text, spans: [{ start: 0, length: 5 }] }, vocab);

  it("copies the window's identifier the model and its count make most likely", () => {
    // The model leans a little to "omega" (1.1x per byte): its count (1) against alpha's (2) loses.
    let chosen = codeInfill.choose!(e.inputs, probsFavouring(0, "omega", (1.1 * 0.7) / (V - 1)), vocab);
    expect(new TextDecoder().decode(Uint8Array.from(chosen.slice(0, 5), (t) => t - BYTE_BASE))).toBe("alpha");
    // A clear lean to "gamma" wins over alpha's count.
    chosen = codeInfill.choose!(e.inputs, probsFavouring(0, "gamma", 0.3), vocab);
    expect(new TextDecoder().decode(Uint8Array.from(chosen.slice(0, 5), (t) => t - BYTE_BASE))).toBe("gamma");
    // The text the model likes best but the window does not hold is never answered.
    chosen = codeInfill.choose!(e.inputs, probsFavouring(0, "zzzzz", 0.9), vocab);
    expect(["alpha", "gamma", "omega"]).toContain(
      new TextDecoder().decode(Uint8Array.from(chosen.slice(0, 5), (t) => t - BYTE_BASE)),
    );
  });

  it("serves the same answer, with the chosen bytes' probability as confidence", () => {
    // The byte-wise arg-max would answer "omega"; the copy decision answers "alpha".
    const base = 0.7 / (V - 1);
    const a = codeInfill.decode({ probs: probsFavouring(0, "omega", 1.1 * base) }, e, vocab);
    expect(a.spans).toHaveLength(1);
    expect(a.spans[0].text).toBe("alpha");
    // Each row's bytes hold 255 x base + 1.1 x base; "alpha" has base at four positions and
    // 1.1 x base at the last, the "a" it shares with "omega".
    const rowBytes = 256.1 * base;
    expect(a.spans[0].confidence).toBeCloseTo((4 * base + 1.1 * base) / rowBytes / 5, 5);
  });

  it("refuses spans that touch, which would read as one", () => {
    expect(() => encodeTwoSpans(vocab, 3)).toThrow(/touch/);
  });

  it("answers the model's most likely bytes where the window has no identifier to copy", () => {
    const bare = codeInfill.encode({ text: "xxxxx = (1 + 2);", spans: [{ start: 0, length: 5 }] }, vocab);
    // Only "1" and "2" are identifiers here, both shorter than the span.
    const probs = probsFavouring(0, "hello", 0.3);
    // A non-byte token is likelier still at the first position: a byte is answered all the same.
    probs[0 * V + MASK] = 0.5;
    const chosen = codeInfill.choose!(bare.inputs, probs, vocab);
    expect(new TextDecoder().decode(Uint8Array.from(chosen.slice(0, 5), (t) => t - BYTE_BASE))).toBe("hello");
  });
});
