import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  decodeSafetensors,
  encodeSafetensors,
  readSafetensors,
  SafetensorsError,
  toFloat32,
  toInt32,
  writeSafetensors,
} from "../../src/model/safetensors.js";
import { TRM } from "../../src/model/trm.js";

const FIXTURE = new URL("../fixtures/model/att-h32-s9-learned-nopuzzle.safetensors", import.meta.url)
  .pathname;
const LOCAL = new URL("../fixtures/model/att-h40-heads5-rope.safetensors", import.meta.url).pathname;

/** A file from a raw header object and data bytes, with an optional forged length field. */
function raw(header: unknown, data: Uint8Array = new Uint8Array(0), length?: bigint): Uint8Array {
  const json = Buffer.from(JSON.stringify(header), "utf8");
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, length ?? BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

function f32(...v: number[]): Uint8Array {
  return new Uint8Array(new Float32Array(v).buffer);
}

function expectCorrupt(bytes: Uint8Array, message: RegExp): void {
  let err: unknown;
  try {
    decodeSafetensors(bytes, "evil.safetensors");
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(SafetensorsError);
  expect((err as Error).message).toMatch(/^evil\.safetensors: /);
  expect((err as Error).message).toMatch(message);
}

let dir: string;
beforeAll(async () => {
  await tf.setBackend("cpu");
  dir = mkdtempSync(join(tmpdir(), "trm-st-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("safetensors round trip", () => {
  it("writes what it reads: dtypes, shapes, metadata, 8-byte aligned data", async () => {
    const path = join(dir, "rt.safetensors");
    const w = new Float32Array([1.5, -2, 3.25, 0, 7, 8]);
    const i = new Int32Array([1, -100, 2147483647]);
    const u = new Uint8Array([0, 1, 255]);
    await writeSafetensors(
      path,
      {
        "b.weight": { shape: [2, 3], data: w },
        "a.ids": { shape: [3], data: i },
        c: { shape: [3], data: u },
      },
      { k: "v" },
    );
    const bytes = new Uint8Array(readFileSync(path));
    const headerLen = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect(headerLen % 8).toBe(0);
    const back = await readSafetensors(path);
    expect(back.metadata).toEqual({ k: "v" });
    expect([...back.tensors.keys()].sort()).toEqual(["a.ids", "b.weight", "c"]);
    expect(back.tensors.get("b.weight")!.dtype).toBe("F32");
    expect(back.tensors.get("b.weight")!.shape).toEqual([2, 3]);
    expect(toFloat32(back.tensors.get("b.weight")!)).toEqual(w);
    expect(toInt32(back.tensors.get("a.ids")!)).toEqual(i);
    expect(toInt32(back.tensors.get("c")!)).toEqual(Int32Array.from(u));
  });

  it("reads the reference's own files (header, names, I32 inputs)", async () => {
    const f = await readSafetensors(FIXTURE);
    expect(f.metadata.format).toBe("trm-ref-v1");
    expect(f.tensors.get("input.tokens")!.dtype).toBe("I32");
    expect(f.tensors.get("layers.0.attn.qkv.weight")!.shape).toEqual([96, 32]);
  });

  it("decodes F16, BF16, F64, I64, I16, U16, I8 and BOOL", () => {
    const half = new Uint8Array(new Uint16Array([0x3c00, 0xc000, 0x3555, 0x0001, 0x7c00]).buffer); // 1, -2, ~0.333, 2^-24, inf
    const bf = new Uint8Array(new Uint16Array([0x3f80, 0xc0a0]).buffer); // 1, -5
    const f64 = new Uint8Array(new Float64Array([0.1, -1e10]).buffer);
    const i64 = new Uint8Array(new BigInt64Array([-3n, 2147483647n]).buffer);
    const i16 = new Uint8Array(new Int16Array([-7, 300]).buffer);
    const u16 = new Uint8Array(new Uint16Array([65535]).buffer);
    const i8 = new Uint8Array(new Int8Array([-128, 5]).buffer);
    const bool = new Uint8Array([1, 0]);
    const parts = [half, bf, f64, i64, i16, u16, i8, bool];
    const dtypes = ["F16", "BF16", "F64", "I64", "I16", "U16", "I8", "BOOL"];
    const shapes = [[5], [2], [2], [2], [2], [1], [2], [2]];
    const header: Record<string, unknown> = {};
    let off = 0;
    parts.forEach((p, k) => {
      header[`t${k}`] = { dtype: dtypes[k], shape: shapes[k], data_offsets: [off, off + p.length] };
      off += p.length;
    });
    const data = new Uint8Array(off);
    off = 0;
    for (const p of parts) {
      data.set(p, off);
      off += p.length;
    }
    const f = decodeSafetensors(raw(header, data));
    const h = toFloat32(f.tensors.get("t0")!);
    expect([h[0], h[1], h[3], h[4]]).toEqual([1, -2, 2 ** -24, Number.POSITIVE_INFINITY]);
    expect(h[2]).toBeCloseTo(1 / 3, 3);
    expect(toFloat32(f.tensors.get("t1")!)).toEqual(new Float32Array([1, -5]));
    expect(toFloat32(f.tensors.get("t2")!)).toEqual(new Float32Array([0.1, -1e10]));
    expect(toInt32(f.tensors.get("t3")!)).toEqual(new Int32Array([-3, 2147483647]));
    expect(toInt32(f.tensors.get("t4")!)).toEqual(new Int32Array([-7, 300]));
    expect(toInt32(f.tensors.get("t5")!)).toEqual(new Int32Array([65535]));
    expect(toInt32(f.tensors.get("t6")!)).toEqual(new Int32Array([-128, 5]));
    expect(toInt32(f.tensors.get("t7")!)).toEqual(new Int32Array([1, 0]));
    // Integer tensors are not weights, floats are not ids.
    expect(() => toFloat32(f.tensors.get("t3")!, "ids")).toThrow(
      /ids: expected a floating-point tensor, got I64/,
    );
    expect(() => toInt32(f.tensors.get("t1")!, "w")).toThrow(/w: expected an integer tensor, got BF16/);
  });

  it("refuses an I64 value that does not fit int32", () => {
    const big = new Uint8Array(new BigInt64Array([2n ** 40n]).buffer);
    const f = decodeSafetensors(raw({ x: { dtype: "I64", shape: [1], data_offsets: [0, 8] } }, big));
    expect(() => toInt32(f.tensors.get("x")!, "x")).toThrow(/does not fit in int32/);
  });
});

describe("hostile or corrupt files get a clear error", () => {
  const ok = { w: { dtype: "F32", shape: [2], data_offsets: [0, 8] } };

  it("too short for a header", () => expectCorrupt(new Uint8Array(5), /too short/));
  it("header length larger than the file", () =>
    expectCorrupt(raw(ok, f32(1, 2), 10_000n), /header length 10000 is larger than the file/));
  it("absurd header length, refused before any allocation", () =>
    expectCorrupt(raw(ok, f32(1, 2), 2n ** 62n), /header length \d+ is absurd/));
  it("header that is not JSON", () => {
    const b = raw(ok, f32(1, 2));
    b[8] = 0x7b;
    b[9] = 0x7b;
    expectCorrupt(b, /not valid UTF-8 JSON/);
  });
  it("header that is a JSON array", () => expectCorrupt(raw([1, 2]), /not a JSON object/));
  it("unknown dtype", () =>
    expectCorrupt(
      raw({ w: { dtype: "F8_E4M3", shape: [2], data_offsets: [0, 2] } }, new Uint8Array(2)),
      /"w": unknown dtype "F8_E4M3"/,
    ));
  it("a dtype named like an inherited property of a plain object", () => {
    for (const dtype of ["toString", "__proto__", "constructor", "hasOwnProperty", "valueOf"])
      expectCorrupt(
        raw({ w: { dtype, shape: [2], data_offsets: [0, 8] } }, f32(1, 2)),
        new RegExp(`^evil\\.safetensors: tensor "w": unknown dtype "${dtype}"$`),
      );
  });
  it("offsets out of range", () =>
    expectCorrupt(
      raw({ w: { dtype: "F32", shape: [4], data_offsets: [0, 16] } }, f32(1, 2)),
      /run past the end of the data/,
    ));
  it("offsets reversed", () =>
    expectCorrupt(raw({ w: { dtype: "F32", shape: [0], data_offsets: [8, 0] } }, f32(1, 2)), /reversed/));
  it("negative or fractional offsets and shapes", () => {
    expectCorrupt(
      raw({ w: { dtype: "F32", shape: [2], data_offsets: [-8, 0] } }, f32(1, 2)),
      /"w": data_offsets/,
    );
    expectCorrupt(raw({ w: { dtype: "F32", shape: [1.5], data_offsets: [0, 8] } }, f32(1, 2)), /"w": shape/);
    expectCorrupt(raw({ w: { dtype: "F32", shape: [-2], data_offsets: [0, 8] } }, f32(1, 2)), /"w": shape/);
  });
  it("overlapping tensors", () =>
    expectCorrupt(
      raw(
        {
          a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
          b: { dtype: "F32", shape: [2], data_offsets: [4, 12] },
        },
        f32(1, 2, 3),
      ),
      /overlaps another tensor/,
    ));
  it("bytes that belong to no tensor", () => {
    expectCorrupt(
      raw({ a: { dtype: "F32", shape: [1], data_offsets: [4, 8] } }, f32(1, 2)),
      /data bytes 0\.\.4 belong to no tensor/,
    );
    expectCorrupt(raw(ok, f32(1, 2, 3)), /4 trailing bytes/);
  });
  it("shape that does not match the byte size", () =>
    expectCorrupt(
      raw({ w: { dtype: "F32", shape: [3], data_offsets: [0, 8] } }, f32(1, 2)),
      /needs 12 bytes but data_offsets hold 8/,
    ));
  it("absurd shape product", () =>
    expectCorrupt(
      raw({ w: { dtype: "F32", shape: [2 ** 30, 2 ** 30, 2 ** 30], data_offsets: [0, 8] } }, f32(1, 2)),
      /absurd/,
    ));
  it("metadata that is not strings", () =>
    expectCorrupt(
      raw({ __metadata__: { a: 1 }, ...ok }, f32(1, 2)),
      /__metadata__ must map strings to strings/,
    ));
  it("extra keys in an entry", () => expectCorrupt(raw({ w: { ...ok.w, evil: true } }, f32(1, 2)), /"w"/));

  it("a missing file, a directory, or a file over the size limit", async () => {
    await expect(readSafetensors(join(dir, "nope.safetensors"))).rejects.toThrow(/cannot read \(ENOENT\)/);
    await expect(readSafetensors(dir)).rejects.toThrow(/not a regular file/);
    const p = join(dir, "big.safetensors");
    writeFileSync(p, encodeSafetensors({ w: { shape: [64], data: new Float32Array(64) } }));
    await expect(readSafetensors(p, { maxBytes: 100 })).rejects.toThrow(/more than the 100 allowed/);
  });
});

describe("model files against their config", () => {
  async function fixtureBytes(): Promise<Uint8Array> {
    return new Uint8Array(readFileSync(LOCAL));
  }

  /** Rewrites a fixture with tensors or metadata changed. */
  async function rewrite(
    edit: (
      t: Map<string, { shape: number[]; data: Float32Array | Int32Array | Uint8Array }>,
      meta: Record<string, string>,
    ) => void,
  ): Promise<Uint8Array> {
    const f = decodeSafetensors(await fixtureBytes());
    const t = new Map<string, { shape: number[]; data: Float32Array | Int32Array | Uint8Array }>();
    for (const [n, s] of f.tensors)
      t.set(n, { shape: s.shape, data: s.dtype === "I32" ? toInt32(s) : toFloat32(s) });
    const meta = { ...f.metadata };
    edit(t, meta);
    return encodeSafetensors(t, meta);
  }

  function load(bytes: Uint8Array): TRM {
    return TRM.fromSafetensors(decodeSafetensors(bytes, "m.safetensors"), "m.safetensors");
  }

  it("loads the fixture and writes it back in the reference layout, bit for bit", async () => {
    const f = decodeSafetensors(await fixtureBytes());
    const m = TRM.fromSafetensors(f);
    const out = m.exportTensors();
    for (const [name, t] of out) expect(t.data, name).toEqual(toFloat32(f.tensors.get(name)!));
    m.dispose();
  });

  it("a missing weight", async () => {
    const b = await rewrite((t) => t.delete("layers.1.mlp.down.weight"));
    expect(() => load(b)).toThrow(
      /m\.safetensors: missing tensors for this config: layers\.1\.mlp\.down\.weight/,
    );
  });

  it("a weight of the wrong shape for the config", async () => {
    const b = await rewrite((t, meta) => {
      const cfg = JSON.parse(meta.trm_config!);
      cfg.vocab_size = 10;
      meta.trm_config = JSON.stringify(cfg);
      void t;
    });
    expect(() => load(b)).toThrow(/"embed_tokens\.weight" has shape \[9,40\] but the config needs \[10,40\]/);
  });

  it("a weight that belongs to another config (an extra layer)", async () => {
    const b = await rewrite((t) => {
      t.set("layers.2.mlp.down.weight", { shape: [1], data: new Float32Array(1) });
    });
    expect(() => load(b)).toThrow(/"layers\.2\.mlp\.down\.weight" does not belong to this config/);
  });

  it("NaN in a weight", async () => {
    const b = await rewrite((t) => {
      (t.get("lm_head.weight")!.data as Float32Array)[3] = Number.NaN;
    });
    expect(() => load(b)).toThrow(/"lm_head\.weight" holds NaN or Inf/);
  });

  it("no config, a config that is not JSON, and an invalid config", async () => {
    const none = await rewrite((_t, meta) => {
      delete meta.trm_config;
    });
    expect(() => load(none)).toThrow(/no trm_config in the metadata/);
    const notJson = await rewrite((_t, meta) => {
      meta.trm_config = "{oops";
    });
    expect(() => load(notJson)).toThrow(/trm_config in the metadata is not JSON/);
    const bad = await rewrite((_t, meta) => {
      const cfg = JSON.parse(meta.trm_config!);
      cfg.num_heads = 7;
      meta.trm_config = JSON.stringify(cfg);
    });
    expect(() => load(bad)).toThrow(/hidden_size 40 is not divisible by num_heads 7/);
    const unknown = await rewrite((_t, meta) => {
      const cfg = JSON.parse(meta.trm_config!);
      cfg.hidden_size = 1e12;
      meta.trm_config = JSON.stringify(cfg);
    });
    expect(() => load(unknown)).toThrow(/trm_config: hidden_size/);
  });
});
