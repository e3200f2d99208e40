import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import { beforeAll, describe, expect, it } from "vitest";
import { ConfigError } from "../../src/errors.js";
import {
  countParams,
  flopsPerSample,
  PRESETS,
  parseTRMConfig,
  resolveModelConfig,
  swigluWidth,
} from "../../src/model/config.js";
import { TRM, weightSpecs } from "../../src/model/trm.js";

const SUDOKU = { vocab_size: 11, seq_len: 81 };

beforeAll(async () => {
  await tf.setBackend("cpu");
});

describe("TRMConfig", () => {
  it("takes the reference's JSON as is (the trm_config of a fixture)", () => {
    const c = parseTRMConfig(
      JSON.parse(
        '{"vocab_size": 12, "seq_len": 16, "hidden_size": 64, "num_heads": 4, "num_layers": 2, "expansion": 4.0, "H_cycles": 3, "L_cycles": 6, "halt_max_steps": 4, "halt_exploration_prob": 0.1, "no_ACT_continue": true, "puzzle_emb_len": 16, "puzzle_emb_ndim": 64, "num_puzzle_identifiers": 5, "pos_encodings": "rope", "rope_theta": 10000.0, "rms_norm_eps": 1e-05, "mlp_t": false, "loss_type": "stablemax"}',
      ),
    );
    expect(c.hidden_size).toBe(64);
    expect(c.num_puzzle_identifiers).toBe(5);
  });

  it("applies the reference's __post_init__: ndim -1 means hidden, 0 means no prefix", () => {
    expect(parseTRMConfig({ hidden_size: 96, num_heads: 4 }).puzzle_emb_ndim).toBe(96);
    const none = parseTRMConfig({ puzzle_emb_ndim: 0, puzzle_emb_len: 16 });
    expect(none.puzzle_emb_len).toBe(0);
    expect(() =>
      parseTRMConfig({ hidden_size: 32, num_heads: 4, puzzle_emb_len: 1, puzzle_emb_ndim: 33 }),
    ).toThrow(/puzzle_emb_ndim 33 must fit into puzzle_emb_len \* hidden_size/);
  });

  it("rejects configs the network cannot run, naming the key", () => {
    expect(() => parseTRMConfig({ hidden_size: 40, num_heads: 3 })).toThrow(ConfigError);
    expect(() => parseTRMConfig({ hidden_size: 40, num_heads: 3 })).toThrow(/not divisible by num_heads 3/);
    // RoPE rotates halves of each head: an odd head size cannot be rotated...
    expect(() => parseTRMConfig({ hidden_size: 35, num_heads: 5 })).toThrow(/RoPE needs an even head size/);
    // ...but learned positions or mlp_t do not care.
    expect(parseTRMConfig({ hidden_size: 35, num_heads: 5, pos_encodings: "learned" }).hidden_size).toBe(35);
    expect(() => parseTRMConfig({ pos_encodings: "alibi" })).toThrow(/pos_encodings/);
    expect(() => parseTRMConfig({ hidden: 5 })).toThrow(/hidden/);
    expect(() => parseTRMConfig({ vocab_size: 0 })).toThrow(/vocab_size/);
    expect(() => parseTRMConfig({ no_ACT_continue: false })).toThrow(/not supported/);
  });

  it("SwiGLU width: round(e * size * 2/3) rounded up to 256", () => {
    expect(swigluWidth(512, 4)).toBe(1536);
    expect(swigluWidth(128, 4)).toBe(512);
    expect(swigluWidth(97, 4)).toBe(512);
    expect(swigluWidth(916, 4)).toBe(2560);
    expect(swigluWidth(64, 4)).toBe(256);
    // Python's round() sends the tie 256.5 (0.75 * 513 * 2/3) to 256, so the width stays 256 (ref_trm.py agrees).
    expect(swigluWidth(513, 0.75)).toBe(256);
    expect(swigluWidth(514, 0.75)).toBe(512);
  });
});

describe("parameter counts", () => {
  it("the paper's Sudoku attention net has exactly 6,828,034 trainable parameters, counted from the built model", () => {
    const cfg = parseTRMConfig({ ...SUDOKU });
    expect(countParams(cfg).trainable).toBe(6_828_034);
    const m = TRM.init(cfg, 0);
    expect(m.parameterCount()).toBe(6_828_034);
    // The task table is a buffer: 1 identifier x 512, not counted, and it starts at zero.
    expect(m.puzzleEmb.length).toBe(512);
    expect(m.puzzleEmb.every((v) => v === 0)).toBe(true);
    // LeCun truncated normal: std 1/sqrt(fan_in), cut at 2 sigma of the underlying normal.
    const stats = (t: ArrayLike<number>) => {
      let ss = 0;
      let max = 0;
      for (let i = 0; i < t.length; i++) {
        ss += t[i]! * t[i]!;
        max = Math.max(max, Math.abs(t[i]!));
      }
      return { std: Math.sqrt(ss / t.length), max };
    };
    for (const [name, fanIn] of [
      ["layers.0.mlp.gate_up.weight", 512],
      ["layers.1.mlp.down.weight", 1536],
      ["embed_tokens.weight", 512],
    ] as const) {
      const s = stats(m.weights.get(name)!.dataSync());
      expect(s.std / (1 / Math.sqrt(fanIn)), name).toBeCloseTo(1, 1);
      expect(s.max).toBeLessThanOrEqual(2 / Math.sqrt(fanIn) / 0.8796 + 1e-6);
    }
    expect(stats(m.hInit.dataSync()).std).toBeGreaterThan(0.85);
    expect(stats(m.hInit.dataSync()).std).toBeLessThan(1.15);
    // The halting head starts at q = -5 for every input.
    expect(
      m.weights
        .get("q_head.weight")!
        .dataSync()
        .every((v) => v === 0),
    ).toBe(true);
    expect(Array.from(m.weights.get("q_head.bias")!.dataSync())).toEqual([-5, -5]);
    m.dispose();
  });

  it("the MLP variant (mlp_t, no positions) has exactly 5,028,866", () => {
    const cfg = parseTRMConfig({ ...SUDOKU, mlp_t: true, pos_encodings: "none" });
    expect(countParams(cfg).trainable).toBe(5_028_866);
    const m = TRM.init(cfg, 0);
    expect(m.parameterCount()).toBe(5_028_866);
    m.dispose();
  });

  it("matches the reference's table for other shapes (formula and weight specs agree)", () => {
    const cases: [object, number][] = [
      [{ vocab_size: 6, seq_len: 900, L_cycles: 4 }, 6_822_914],
      [{ vocab_size: 12, seq_len: 900, L_cycles: 4 }, 6_829_058],
      [{ vocab_size: 6, seq_len: 900, mlp_t: true, pos_encodings: "none" }, 18_795_522],
    ];
    for (const [c, n] of cases) {
      const cfg = parseTRMConfig(c);
      expect(countParams(cfg).trainable).toBe(n);
      const fromSpecs = weightSpecs(cfg).reduce((a, s) => a + s.torchShape.reduce((x, y) => x * y, 1), 0);
      expect(fromSpecs).toBe(n);
    }
    const learned = parseTRMConfig({
      hidden_size: 32,
      num_heads: 2,
      seq_len: 9,
      vocab_size: 7,
      puzzle_emb_ndim: 0,
      pos_encodings: "learned",
    });
    const m = TRM.init(learned, 0);
    expect(m.parameterCount()).toBe(countParams(learned).trainable);
    m.dispose();
  });
});

describe("FLOPs per sample", () => {
  it("reproduces the notes' figures for the 7M Sudoku config", () => {
    const f = flopsPerSample(parseTRMConfig({ ...SUDOKU }));
    expect(f.per_net_call).toBe(2 * 97 * (6_815_744 + 2048 * 97));
    expect(f.net_calls).toBe(21);
    expect(f.forward / 1e9).toBeCloseTo(28.6, 1);
    expect(f.train / 1e9).toBeCloseTo(47.6, 1);
    const mlp = flopsPerSample(parseTRMConfig({ ...SUDOKU, mlp_t: true, pos_encodings: "none" }));
    expect(mlp.train / 1e9).toBeCloseTo(42.7, 1);
    expect(mlp.forward / 1e9).toBeCloseTo(25.6, 1);
    const maze = flopsPerSample(parseTRMConfig({ vocab_size: 6, seq_len: 900, L_cycles: 4 }));
    expect(maze.train / 1e9).toBeCloseTo(398.1, 0);
  });
});

describe("resolveModelConfig", () => {
  const data = { vocab_size: 260, seq_len: 64, num_puzzle_identifiers: 4 };

  it("a preset plus the dataset's shape", () => {
    const c = resolveModelConfig({ preset: "7m", backend: "auto" }, data);
    expect(c).toMatchObject({
      hidden_size: 512,
      num_heads: 8,
      num_layers: 2,
      H_cycles: 3,
      L_cycles: 6,
      halt_max_steps: 16,
    });
    expect(c).toMatchObject({
      vocab_size: 260,
      seq_len: 64,
      num_puzzle_identifiers: 4,
      puzzle_emb_ndim: 512,
    });
    for (const preset of Object.keys(PRESETS) as (keyof typeof PRESETS)[]) {
      const p = resolveModelConfig({ preset }, data);
      expect(p.hidden_size % p.num_heads).toBe(0);
    }
    expect(resolveModelConfig({ preset: "demo" }, data).hidden_size).toBe(64);
  });

  it("explicit keys override the preset; unset (undefined) keys do not", () => {
    const c = resolveModelConfig(
      { preset: "demo", L_cycles: 5, mlp_t: undefined, pos_encodings: "learned" },
      data,
    );
    expect(c.L_cycles).toBe(5);
    expect(c.mlp_t).toBe(false);
    expect(c.pos_encodings).toBe("learned");
  });

  it("a bad combination is a config error naming the model section", () => {
    expect(() => resolveModelConfig({ preset: "demo", num_heads: 3 }, data)).toThrow(
      /^model: hidden_size 64 is not divisible/,
    );
    expect(() => resolveModelConfig({ preset: "demo" }, { ...data, vocab_size: 0 })).toThrow(
      /model: vocab_size/,
    );
  });
});
