// safetensors read/write: u64-LE header length, a JSON header, then the raw little-endian data.
// Every field of a header is checked before any tensor is touched, so a hostile or corrupt file
// gets a clear error, never a crash or an allocation larger than the file itself.
import { open, stat } from "node:fs/promises";
import * as z from "zod";
import { WorkError } from "../errors.js";
import { atomicWrite } from "../util/fs.js";

export class SafetensorsError extends WorkError {
  override name = "SafetensorsError";
}

/** Bytes per element of each dtype (also the torch checkpoint reader's). */
export const ITEM_SIZE = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
} as const;
export type Dtype = keyof typeof ITEM_SIZE;

/** One tensor as stored: raw little-endian bytes (a view into the file buffer). */
export interface StoredTensor {
  dtype: Dtype;
  shape: number[];
  bytes: Uint8Array;
}

export interface SafetensorsContents {
  tensors: Map<string, StoredTensor>;
  metadata: Record<string, string>;
}

/** What the writer takes: the dtype follows the array type (F32, I32 or U8). */
export interface TensorToWrite {
  shape: number[];
  data: Float32Array | Int32Array | Uint8Array;
}

/** The format's own limit on the header size. */
const MAX_HEADER = 100 * 1024 * 1024;
/** Files bigger than this are refused before reading (a 7M-parameter training state is ~110 MB). */
export const DEFAULT_MAX_FILE = 4 * 1024 * 1024 * 1024 - 1;

const EntrySchema = z
  .object({
    dtype: z.string(),
    shape: z.array(z.number().int().min(0).max(Number.MAX_SAFE_INTEGER)),
    data_offsets: z.tuple([
      z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
      z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
    ]),
  })
  .strict();

function fail(source: string, msg: string): never {
  throw new SafetensorsError(`${source}: ${msg}`);
}

/** Parses and validates a whole safetensors file held in memory. Tensors are views, not copies. */
export function decodeSafetensors(buf: Uint8Array, source = "safetensors"): SafetensorsContents {
  if (buf.byteLength < 8) fail(source, `file too short (${buf.byteLength} bytes) for a safetensors header`);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const n = dv.getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER)) fail(source, `header length ${n} is absurd (limit ${MAX_HEADER} bytes)`);
  const headerLen = Number(n);
  if (8 + headerLen > buf.byteLength)
    fail(source, `header length ${headerLen} is larger than the file (${buf.byteLength} bytes)`);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(buf.subarray(8, 8 + headerLen)));
  } catch (err) {
    fail(source, `header is not valid UTF-8 JSON (${(err as Error).message})`);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header))
    fail(source, "header is not a JSON object");

  const metadata: Record<string, string> = {};
  const dataStart = 8 + headerLen;
  const dataLen = buf.byteLength - dataStart;
  const entries: { name: string; dtype: Dtype; shape: number[]; begin: number; end: number }[] = [];
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === "__metadata__") {
      const m = z.record(z.string(), z.string()).safeParse(raw);
      if (!m.success) fail(source, "__metadata__ must map strings to strings");
      Object.assign(metadata, m.data);
      continue;
    }
    const e = EntrySchema.safeParse(raw);
    if (!e.success) {
      const issue = e.error.issues[0]!;
      fail(source, `tensor "${name}": ${issue.path.join(".") || "entry"}: ${issue.message}`);
    }
    const { dtype, shape, data_offsets } = e.data;
    // Own keys only: `in` would also accept inherited names such as "toString" or "__proto__".
    if (!Object.hasOwn(ITEM_SIZE, dtype)) fail(source, `tensor "${name}": unknown dtype "${dtype}"`);
    const [begin, end] = data_offsets;
    if (begin > end) fail(source, `tensor "${name}": data_offsets [${begin}, ${end}] are reversed`);
    if (end > dataLen)
      fail(
        source,
        `tensor "${name}": data_offsets [${begin}, ${end}] run past the end of the data (${dataLen} bytes)`,
      );
    let count = 1;
    for (const d of shape) {
      count *= d;
      if (count > Number.MAX_SAFE_INTEGER) fail(source, `tensor "${name}": shape [${shape}] is absurd`);
    }
    const want = count * ITEM_SIZE[dtype as Dtype];
    if (want !== end - begin)
      fail(
        source,
        `tensor "${name}": shape [${shape}] of ${dtype} needs ${want} bytes but data_offsets hold ${end - begin}`,
      );
    entries.push({ name, dtype: dtype as Dtype, shape, begin, end });
  }
  // The format requires the data section to be covered exactly once: no overlaps, no holes.
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let pos = 0;
  for (const e of sorted) {
    if (e.begin < pos) fail(source, `tensor "${e.name}" overlaps another tensor at byte ${e.begin}`);
    if (e.begin > pos) fail(source, `data bytes ${pos}..${e.begin} belong to no tensor`);
    pos = e.end;
  }
  if (pos !== dataLen)
    fail(source, `data section has ${dataLen - pos} trailing bytes that belong to no tensor`);

  const tensors = new Map<string, StoredTensor>();
  for (const e of entries)
    tensors.set(e.name, {
      dtype: e.dtype,
      shape: e.shape,
      bytes: buf.subarray(dataStart + e.begin, dataStart + e.end),
    });
  return { tensors, metadata };
}

/** Reads a file after checking its size, then decodes it. */
export async function readSafetensors(
  path: string,
  opts: { maxBytes?: number } = {},
): Promise<SafetensorsContents> {
  const max = opts.maxBytes ?? DEFAULT_MAX_FILE;
  let size: number;
  try {
    const st = await stat(path);
    if (!st.isFile()) fail(path, "not a regular file");
    size = st.size;
  } catch (err) {
    if (err instanceof SafetensorsError) throw err;
    throw new SafetensorsError(`${path}: cannot read (${(err as NodeJS.ErrnoException).code ?? err})`);
  }
  if (size > max) fail(path, `file is ${size} bytes, more than the ${max} allowed`);
  const buf = new Uint8Array(size);
  const fh = await open(path, "r");
  try {
    let off = 0;
    while (off < size) {
      const { bytesRead } = await fh.read(buf, off, size - off, off);
      if (bytesRead === 0) break;
      off += bytesRead;
    }
    if (off !== size) fail(path, `file shrank while reading (${off} of ${size} bytes)`);
  } finally {
    await fh.close();
  }
  return decodeSafetensors(buf, path);
}

function dtypeOf(data: TensorToWrite["data"]): Dtype {
  if (data instanceof Float32Array) return "F32";
  if (data instanceof Int32Array) return "I32";
  return "U8";
}

/** Serialises tensors (sorted by name, like the reference) with string metadata. */
export function encodeSafetensors(
  tensors: Record<string, TensorToWrite> | Map<string, TensorToWrite>,
  metadata: Record<string, string> = {},
): Uint8Array {
  const list = [...(tensors instanceof Map ? tensors.entries() : Object.entries(tensors))].sort(([a], [b]) =>
    a < b ? -1 : a > b ? 1 : 0,
  );
  const header: Record<string, unknown> = {};
  let offset = 0;
  for (const [name, t] of list) {
    if (name === "__metadata__") throw new SafetensorsError('a tensor cannot be named "__metadata__"');
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (count !== t.data.length)
      throw new SafetensorsError(
        `tensor "${name}": shape [${t.shape}] does not match ${t.data.length} values`,
      );
    header[name] = {
      dtype: dtypeOf(t.data),
      shape: t.shape,
      data_offsets: [offset, offset + t.data.byteLength],
    };
    offset += t.data.byteLength;
  }
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let json = Buffer.from(JSON.stringify(header), "utf8");
  const pad = (8 - (json.length % 8)) % 8; // 8-byte aligned data section, as the reference writes
  if (pad) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const out = new Uint8Array(8 + json.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  let pos = 8 + json.length;
  for (const [, t] of list) {
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), pos);
    pos += t.data.byteLength;
  }
  return out;
}

export async function writeSafetensors(
  path: string,
  tensors: Record<string, TensorToWrite> | Map<string, TensorToWrite>,
  metadata: Record<string, string> = {},
): Promise<void> {
  await atomicWrite(path, encodeSafetensors(tensors, metadata));
}

function count(t: StoredTensor): number {
  return t.shape.reduce((a, b) => a * b, 1);
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

function le(t: StoredTensor): DataView {
  return new DataView(t.bytes.buffer, t.bytes.byteOffset, t.bytes.byteLength);
}

/** IEEE half -> float. */
function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? Number.NaN : s * Number.POSITIVE_INFINITY;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

/** Any floating dtype as float32 values (a copy). Integer dtypes are refused: weights are floats. */
export function toFloat32(t: StoredTensor, name = "tensor"): Float32Array {
  const n = count(t);
  const out = new Float32Array(n);
  const dv = le(t);
  switch (t.dtype) {
    case "F32":
      // Same byte order as the file on little-endian hosts: one memcpy instead of n DataView reads.
      if (LITTLE_ENDIAN) new Uint8Array(out.buffer).set(t.bytes.subarray(0, 4 * n));
      else for (let i = 0; i < n; i++) out[i] = dv.getFloat32(4 * i, true);
      return out;
    case "F64":
      for (let i = 0; i < n; i++) out[i] = dv.getFloat64(8 * i, true);
      return out;
    case "F16":
      for (let i = 0; i < n; i++) out[i] = halfToFloat(dv.getUint16(2 * i, true));
      return out;
    case "BF16": {
      // bf16 is the top half of a float32.
      const u = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) u[i] = dv.getUint16(2 * i, true) << 16;
      return out;
    }
    default:
      throw new SafetensorsError(`${name}: expected a floating-point tensor, got ${t.dtype}`);
  }
}

/** Any integer dtype as int32 values (a copy); values outside int32 are an error. */
export function toInt32(t: StoredTensor, name = "tensor"): Int32Array {
  const n = count(t);
  const out = new Int32Array(n);
  const dv = le(t);
  const getters: Record<string, (i: number) => number | bigint> = {
    I64: (i: number) => dv.getBigInt64(8 * i, true),
    U64: (i: number) => dv.getBigUint64(8 * i, true),
    I32: (i: number) => dv.getInt32(4 * i, true),
    U32: (i: number) => dv.getUint32(4 * i, true),
    I16: (i: number) => dv.getInt16(2 * i, true),
    U16: (i: number) => dv.getUint16(2 * i, true),
    I8: (i: number) => dv.getInt8(i),
    U8: (i: number) => dv.getUint8(i),
    BOOL: (i: number) => dv.getUint8(i),
  };
  const get = Object.hasOwn(getters, t.dtype) ? getters[t.dtype] : undefined;
  if (!get) throw new SafetensorsError(`${name}: expected an integer tensor, got ${t.dtype}`);
  for (let i = 0; i < n; i++) {
    const v = Number(get(i));
    if (v < -2147483648 || v > 2147483647)
      throw new SafetensorsError(`${name}: value ${v} at index ${i} does not fit in int32`);
    out[i] = v;
  }
  return out;
}
