// The binary form of one split (train.bin, val.bin): a magic, a JSON header that names each
// array with its dtype, offset and length, then the little-endian arrays, 8-byte aligned.
//   inputs  uint16 [N*S]   token ids
//   labels  uint16 [N*S]   token ids, 0xFFFF where the loss ignores the position (-100)
//   task    uint8  [N]     index into the header's task list
//   time    float64[N]     event time, ms
//   flags   uint8  [N]     bit 0: the input is also in train (validation)
//   aux_offsets uint32 [N+1], aux float64 [...]   task numbers (metric_forecast scale, targets)
import * as z from "zod";
import type { Example, TaskName } from "../tasks/types.js";
import { IGNORE } from "../tasks/vocab.js";

export const SPLIT_MAGIC = Buffer.from("TRMFDS\x01\n", "latin1");
const IGNORE_U16 = 0xffff;

const DTYPES = { uint8: 1, uint16: 2, uint32: 4, float64: 8 } as const;
type DType = keyof typeof DTYPES;

const ArrayEntry = z
  .object({
    name: z.string(),
    dtype: z.enum(["uint8", "uint16", "uint32", "float64"]),
    offset: z.number().int().min(0),
    length: z.number().int().min(0),
  })
  .strict();

export const SplitHeader = z
  .object({
    version: z.literal(1),
    split: z.string(),
    count: z.number().int().min(0),
    seq_len: z.number().int().min(1),
    tasks: z.array(z.string()).min(1),
    arrays: z.array(ArrayEntry),
  })
  .strict();
export type SplitHeader = z.infer<typeof SplitHeader>;

export class DatasetFormatError extends Error {
  override name = "DatasetFormatError";
}

/** Serialises examples (all of length seqLen) to the split format. */
export function encodeSplit(
  split: string,
  examples: readonly Example[],
  seqLen: number,
  tasks: readonly TaskName[],
): Buffer {
  const N = examples.length;
  let auxTotal = 0;
  for (const ex of examples) auxTotal += ex.aux.length;
  const specs: [string, DType, number][] = [
    ["inputs", "uint16", N * seqLen],
    ["labels", "uint16", N * seqLen],
    ["task", "uint8", N],
    ["time", "float64", N],
    ["flags", "uint8", N],
    ["aux_offsets", "uint32", N + 1],
    ["aux", "float64", auxTotal],
  ];
  // Offsets are relative to the data section, which starts 8-aligned after the header.
  const arrays: z.infer<typeof ArrayEntry>[] = [];
  let off = 0;
  for (const [name, dtype, length] of specs) {
    arrays.push({ name, dtype, offset: off, length });
    off = align8(off + length * DTYPES[dtype]);
  }
  const header: SplitHeader = { version: 1, split, count: N, seq_len: seqLen, tasks: [...tasks], arrays };
  const headerBytes = Buffer.from(JSON.stringify(header), "utf8");
  const dataStart = align8(SPLIT_MAGIC.length + 4 + headerBytes.length);
  const buf = Buffer.alloc(dataStart + off);
  SPLIT_MAGIC.copy(buf, 0);
  buf.writeUInt32LE(headerBytes.length, SPLIT_MAGIC.length);
  headerBytes.copy(buf, SPLIT_MAGIC.length + 4);
  const at = (name: string) => dataStart + arrays.find((a) => a.name === name)!.offset;
  const inputs = new Uint16Array(N * seqLen);
  const labels = new Uint16Array(N * seqLen);
  examples.forEach((ex, k) => {
    if (ex.inputs.length !== seqLen || ex.labels.length !== seqLen)
      throw new DatasetFormatError(`example of length ${ex.inputs.length}, expected ${seqLen}`);
    const o = k * seqLen;
    for (let i = 0; i < seqLen; i++) {
      const t = ex.inputs[i];
      const l = ex.labels[i];
      if (t < 0 || t >= IGNORE_U16) throw new DatasetFormatError(`token id ${t} does not fit the format`);
      if (l !== IGNORE && (l < 0 || l >= IGNORE_U16))
        throw new DatasetFormatError(`label id ${l} does not fit`);
      inputs[o + i] = t;
      labels[o + i] = l === IGNORE ? IGNORE_U16 : l;
    }
  });
  putLE(buf, at("inputs"), inputs);
  putLE(buf, at("labels"), labels);
  let p = at("task");
  for (const ex of examples) {
    const ti = tasks.indexOf(ex.task);
    if (ti < 0) throw new DatasetFormatError(`task ${ex.task} not in the split's task list`);
    buf[p++] = ti;
  }
  p = at("flags");
  for (const ex of examples) buf[p++] = ex.inputSeenInTrain ? 1 : 0;
  putLE(
    buf,
    at("time"),
    Float64Array.from(examples, (e) => e.time),
  );
  const offsets = new Uint32Array(N + 1);
  const aux = new Float64Array(auxTotal);
  let acc = 0;
  examples.forEach((ex, k) => {
    aux.set(ex.aux, acc);
    acc += ex.aux.length;
    offsets[k + 1] = acc;
  });
  putLE(buf, at("aux_offsets"), offsets);
  putLE(buf, at("aux"), aux);
  return buf;
}

/** A decoded split: flat arrays, labels widened to int32 with -100 for ignored positions. */
export interface SplitArrays {
  header: SplitHeader;
  inputs: Int32Array;
  labels: Int32Array;
  task: Uint8Array;
  time: Float64Array;
  flags: Uint8Array;
  auxOffsets: Uint32Array;
  aux: Float64Array;
}

export function decodeSplit(buf: Uint8Array, what = "split"): SplitArrays {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (b.length < SPLIT_MAGIC.length + 4 || !b.subarray(0, SPLIT_MAGIC.length).equals(SPLIT_MAGIC))
    throw new DatasetFormatError(`${what}: not a trm-forge split file`);
  const hlen = b.readUInt32LE(SPLIT_MAGIC.length);
  const hstart = SPLIT_MAGIC.length + 4;
  if (hstart + hlen > b.length) throw new DatasetFormatError(`${what}: header runs past the end of the file`);
  let header: SplitHeader;
  try {
    header = SplitHeader.parse(JSON.parse(b.subarray(hstart, hstart + hlen).toString("utf8")));
  } catch (err) {
    throw new DatasetFormatError(`${what}: bad header (${(err as Error).message.split("\n")[0]})`);
  }
  const dataStart = align8(hstart + hlen);
  const N = header.count;
  const S = header.seq_len;
  const get = (name: string, dtype: DType, length: number) => {
    const e = header.arrays.find((a) => a.name === name);
    if (!e || e.dtype !== dtype || e.length !== length)
      throw new DatasetFormatError(`${what}: array ${name} missing or of the wrong type or length`);
    const start = dataStart + e.offset;
    if (start + length * DTYPES[dtype] > b.length)
      throw new DatasetFormatError(`${what}: array ${name} runs past the end of the file`);
    return start;
  };
  const in16 = getLE(b, get("inputs", "uint16", N * S), new Uint16Array(N * S));
  const lab16 = getLE(b, get("labels", "uint16", N * S), new Uint16Array(N * S));
  const inputs = Int32Array.from(in16);
  const labels = new Int32Array(N * S);
  for (let i = 0; i < N * S; i++) labels[i] = lab16[i] === IGNORE_U16 ? IGNORE : lab16[i];
  const p = get("task", "uint8", N);
  const task = Uint8Array.from(b.subarray(p, p + N));
  for (const t of task)
    if (t >= header.tasks.length) throw new DatasetFormatError(`${what}: task index ${t} out of range`);
  const time = getLE(b, get("time", "float64", N), new Float64Array(N));
  const f = get("flags", "uint8", N);
  const flags = Uint8Array.from(b.subarray(f, f + N));
  const auxOffsets = getLE(b, get("aux_offsets", "uint32", N + 1), new Uint32Array(N + 1));
  const auxLen = header.arrays.find((a) => a.name === "aux")?.length ?? -1;
  if (auxOffsets[0] !== 0 || auxOffsets[N] !== auxLen)
    throw new DatasetFormatError(`${what}: aux offsets do not match the aux array`);
  for (let i = 0; i < N; i++)
    if (auxOffsets[i + 1] < auxOffsets[i]) throw new DatasetFormatError(`${what}: aux offsets go backwards`);
  const aux = getLE(b, get("aux", "float64", auxLen), new Float64Array(auxLen));
  return { header, inputs, labels, task, time, flags, auxOffsets, aux };
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Copies a typed array into buf at offset, little-endian whatever the machine. */
function putLE(buf: Buffer, offset: number, a: Uint16Array | Uint32Array | Float64Array): void {
  const bytes = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  if (LITTLE_ENDIAN) {
    buf.set(bytes, offset);
    return;
  }
  const w = a.BYTES_PER_ELEMENT;
  for (let i = 0; i < a.length; i++)
    for (let j = 0; j < w; j++) buf[offset + i * w + j] = bytes[i * w + w - 1 - j];
}

/** Reads a little-endian typed array out of buf (a copy, so alignment never matters). */
function getLE<T extends Uint16Array | Uint32Array | Float64Array>(buf: Buffer, offset: number, out: T): T {
  const bytes = new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
  bytes.set(buf.subarray(offset, offset + out.byteLength));
  if (!LITTLE_ENDIAN) {
    const w = out.BYTES_PER_ELEMENT;
    for (let i = 0; i < out.length; i++) bytes.subarray(i * w, (i + 1) * w).reverse();
  }
  return out;
}

function align8(n: number): number {
  return (n + 7) & ~7;
}
