// A `torch.save` checkpoint (the official TinyRecursiveModels repository saves its state_dict so)
// read without Python: a zip archive of data.pkl (a pickle) and one raw file per storage. Only the
// pickle opcodes and globals a saved state_dict uses are understood; nothing is ever executed, and
// any other global, opcode or shape is refused with the reason.
import { WorkError } from "../../errors.js";
import { type Dtype, ITEM_SIZE, type StoredTensor } from "../../model/safetensors.js";

export class TorchCheckpointError extends WorkError {
  override name = "TorchCheckpointError";
}

const ZIP_LOCAL = 0x04034b50;
const ZIP_CENTRAL = 0x02014b50;
const ZIP_END = 0x06054b50;

/** Does the buffer look like a zip archive (torch.save's format since PyTorch 1.6)? */
export function isZip(buf: Uint8Array): boolean {
  return buf.byteLength >= 4 && buf[0] === 0x50 && buf[1] === 0x4b && buf[2] === 0x03 && buf[3] === 0x04;
}

/** The stored (uncompressed) entries of a zip archive by name, as views into buf. */
function zipEntries(buf: Uint8Array, source: string): Map<string, Uint8Array> {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const fail = (m: string): never => {
    throw new TorchCheckpointError(`${source}: not a readable torch checkpoint (${m})`);
  };
  let end = -1;
  for (let i = buf.byteLength - 22; i >= Math.max(0, buf.byteLength - 22 - 65_535); i--)
    if (dv.getUint32(i, true) === ZIP_END) {
      end = i;
      break;
    }
  if (end < 0) fail("no end of central directory");
  const count = dv.getUint16(end + 10, true);
  let at = dv.getUint32(end + 16, true);
  if (count === 0xffff || at === 0xffffffff) fail("zip64 archives (over 4 GiB) are not supported");
  const out = new Map<string, Uint8Array>();
  const text = new TextDecoder();
  for (let n = 0; n < count; n++) {
    if (at + 46 > buf.byteLength || dv.getUint32(at, true) !== ZIP_CENTRAL)
      fail("a damaged central directory");
    const method = dv.getUint16(at + 10, true);
    const size = dv.getUint32(at + 20, true);
    const nameLen = dv.getUint16(at + 28, true);
    const extraLen = dv.getUint16(at + 30, true);
    const commentLen = dv.getUint16(at + 32, true);
    const local = dv.getUint32(at + 42, true);
    const name = text.decode(buf.subarray(at + 46, at + 46 + nameLen));
    if (method !== 0)
      fail(`entry ${name} is compressed (method ${method}); torch.save stores entries uncompressed`);
    if (local + 30 > buf.byteLength || dv.getUint32(local, true) !== ZIP_LOCAL)
      fail(`entry ${name} has no local header`);
    const start = local + 30 + dv.getUint16(local + 26, true) + dv.getUint16(local + 28, true);
    if (start + size > buf.byteLength) fail(`entry ${name} runs past the end of the file`);
    out.set(name, buf.subarray(start, start + size));
    at += 46 + nameLen + extraLen + commentLen;
  }
  return out;
}

/** Storage classes torch.save names, with the safetensors dtype of their bytes. */
const STORAGE: Record<string, Dtype> = {
  FloatStorage: "F32",
  DoubleStorage: "F64",
  HalfStorage: "F16",
  BFloat16Storage: "BF16",
  LongStorage: "I64",
  IntStorage: "I32",
  ShortStorage: "I16",
  CharStorage: "I8",
  ByteStorage: "U8",
  BoolStorage: "BOOL",
};

class Global {
  constructor(readonly name: string) {}
}
class Storage {
  constructor(
    readonly dtype: Dtype,
    readonly bytes: Uint8Array,
  ) {}
}
class Tensor {
  constructor(readonly t: StoredTensor) {}
}
type Value = unknown;

/** Globals a state_dict's pickle may name; anything else is refused, never resolved. */
const ALLOWED = new Set([
  "collections.OrderedDict",
  "torch._utils._rebuild_tensor_v2",
  "torch._utils._rebuild_parameter",
  ...Object.keys(STORAGE).map((s) => `torch.${s}`),
]);

/** Tensor name -> tensor, from a torch.save'd state_dict (nested dicts are flattened with dots). */
export function readTorchCheckpoint(buf: Uint8Array, source: string): Map<string, StoredTensor> {
  const entries = zipEntries(buf, source);
  const pkl = [...entries.keys()].find((n) => n === "data.pkl" || n.endsWith("/data.pkl"));
  if (!pkl)
    throw new TorchCheckpointError(`${source}: the archive has no data.pkl; is it a torch.save file?`);
  const base = pkl.slice(0, -"data.pkl".length);
  const storage = (key: string, dtype: Dtype): Storage => {
    const bytes = entries.get(`${base}data/${key}`);
    if (!bytes) throw new TorchCheckpointError(`${source}: storage ${key} is missing from the archive`);
    return new Storage(dtype, bytes);
  };
  const root = unpickle(entries.get(pkl)!, source, storage);
  const out = new Map<string, StoredTensor>();
  const walk = (v: Value, prefix: string) => {
    if (v instanceof Tensor) out.set(prefix, v.t);
    else if (v instanceof Map) for (const [k, x] of v) walk(x, prefix ? `${prefix}.${String(k)}` : String(k));
  };
  walk(root, "");
  if (!out.size) throw new TorchCheckpointError(`${source}: the checkpoint holds no tensors`);
  return out;
}

function unpickle(p: Uint8Array, source: string, storage: (key: string, dtype: Dtype) => Storage): Value {
  const dv = new DataView(p.buffer, p.byteOffset, p.byteLength);
  const text = new TextDecoder("utf-8", { fatal: true });
  const fail = (m: string): never => {
    throw new TorchCheckpointError(`${source}: data.pkl: ${m}`);
  };
  let stack: Value[] = [];
  const marks: Value[][] = [];
  const memo = new Map<number, Value>();
  let i = 0;
  /** Takes n bytes: the offset where they start. */
  const take = (n: number) => {
    if (i + n > p.byteLength) fail("ends early");
    i += n;
    return i - n;
  };
  const u8 = () => p[take(1)]!;
  const u16 = () => dv.getUint16(take(2), true);
  const u32 = () => dv.getUint32(take(4), true);
  const str = (n: number) => {
    const at = take(n);
    return text.decode(p.subarray(at, at + n));
  };
  const line = () => {
    const end = p.indexOf(0x0a, i);
    if (end < 0) fail("a GLOBAL without its newline");
    const s = new TextDecoder().decode(p.subarray(i, end));
    i = end + 1;
    return s;
  };
  const pop = () => (stack.length ? stack.pop() : fail("pops an empty stack"));
  const popMark = () => {
    const items = stack;
    stack = marks.pop() ?? fail("no MARK to pop to");
    return items;
  };
  const top = () => (stack.length ? stack[stack.length - 1] : fail("needs a value on the stack"));
  const setItems = (d: Value, items: Value[]) => {
    if (!(d instanceof Map)) fail("SETITEMS on something other than a dict");
    for (let k = 0; k + 1 < items.length; k += 2) (d as Map<Value, Value>).set(items[k], items[k + 1]);
  };
  const call = (fn: Value, args: Value): Value => {
    if (!(fn instanceof Global)) fail("REDUCE of something that is not a known global");
    const a = args as Value[];
    switch ((fn as Global).name) {
      case "collections.OrderedDict":
        return new Map();
      case "torch._utils._rebuild_parameter":
        return a[0];
      case "torch._utils._rebuild_tensor_v2":
        return rebuild(a);
      default:
        return fail(`${(fn as Global).name} cannot be called here`);
    }
  };
  const rebuild = (a: Value[]): Tensor => {
    const [st, offset, size, stride] = a as [Storage, number, number[], number[]];
    if (
      !(st instanceof Storage) ||
      !Array.isArray(size) ||
      !Array.isArray(stride) ||
      typeof offset !== "number"
    )
      fail("a tensor without storage, offset, size and stride");
    const item = ITEM_SIZE[st.dtype];
    const count = size.reduce((x, y) => x * y, 1);
    const bytes = new Uint8Array(count * item);
    // Any layout (a view, a transposed tensor) copied out in C order.
    const idx = new Array<number>(size.length).fill(0);
    for (let n = 0; n < count; n++) {
      let el = offset;
      for (let d = 0; d < size.length; d++) el += idx[d]! * stride[d]!;
      if ((el + 1) * item > st.bytes.byteLength) fail("a tensor runs past its storage");
      bytes.set(st.bytes.subarray(el * item, (el + 1) * item), n * item);
      for (let d = size.length - 1; d >= 0; d--) {
        if (++idx[d]! < size[d]!) break;
        idx[d] = 0;
      }
    }
    return new Tensor({ dtype: st.dtype, shape: [...size], bytes });
  };

  for (let ops = 0; ; ops++) {
    if (ops > 50_000_000) fail("too many opcodes");
    const op = u8();
    switch (op) {
      case 0x80: // PROTO
        u8();
        break;
      case 0x2e: // STOP
        return pop();
      case 0x7d: // EMPTY_DICT
        stack.push(new Map());
        break;
      case 0x5d: // EMPTY_LIST
        stack.push([]);
        break;
      case 0x29: // EMPTY_TUPLE
        stack.push([]);
        break;
      case 0x28: // MARK
        marks.push(stack);
        stack = [];
        break;
      case 0x74: {
        // TUPLE (popMark swaps the stack: take the items before pushing)
        const items = popMark();
        stack.push(items);
        break;
      }
      case 0x85: // TUPLE1
        stack.push([pop()]);
        break;
      case 0x86: {
        const b = pop();
        stack.push([pop(), b]);
        break;
      }
      case 0x87: {
        const c = pop();
        const b = pop();
        stack.push([pop(), b, c]);
        break;
      }
      case 0x71: // BINPUT
        memo.set(u8(), top());
        break;
      case 0x72: // LONG_BINPUT
        memo.set(u32(), top());
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top());
        break;
      case 0x68: // BINGET
      case 0x6a: {
        const k = op === 0x68 ? u8() : u32();
        if (!memo.has(k)) fail(`memo ${k} is unset`);
        stack.push(memo.get(k));
        break;
      }
      case 0x58: // BINUNICODE
        stack.push(str(u32()));
        break;
      case 0x8c: // SHORT_BINUNICODE
        stack.push(str(u8()));
        break;
      case 0x4b: // BININT1
        stack.push(u8());
        break;
      case 0x4d: // BININT2
        stack.push(u16());
        break;
      case 0x4a: // BININT
        stack.push(dv.getInt32(take(4), true));
        break;
      case 0x8a: {
        // LONG1: little-endian two's complement of n bytes
        const n = u8();
        const at = take(n);
        let v = 0n;
        for (let k = n - 1; k >= 0; k--) v = (v << 8n) | BigInt(p[at + k]!);
        if (n && p[at + n - 1]! & 0x80) v -= 1n << BigInt(8 * n);
        stack.push(Number(v));
        break;
      }
      case 0x47: // BINFLOAT (big-endian)
        stack.push(dv.getFloat64(take(8), false));
        break;
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x88: // NEWTRUE
        stack.push(true);
        break;
      case 0x89: // NEWFALSE
        stack.push(false);
        break;
      case 0x63: {
        // GLOBAL "module\nname\n"
        const name = `${line()}.${line()}`;
        if (!ALLOWED.has(name))
          fail(`refuses the global ${name} (a state_dict names only tensors and storages)`);
        stack.push(new Global(name));
        break;
      }
      case 0x51: {
        // BINPERSID: ("storage", storage class, key, location, numel)
        const pid = pop() as Value[];
        if (!Array.isArray(pid) || pid[0] !== "storage" || !(pid[1] instanceof Global))
          fail("a persistent id that is not a storage");
        const cls = (pid[1] as Global).name.replace(/^torch\./, "");
        const dtype = STORAGE[cls] ?? fail(`storage type ${cls} is not supported`);
        stack.push(storage(String(pid[2]), dtype));
        break;
      }
      case 0x52: {
        // REDUCE
        const args = pop();
        stack.push(call(pop(), args));
        break;
      }
      case 0x62: // BUILD: a dict's state (_metadata) is of no use here
        pop();
        break;
      case 0x73: {
        // SETITEM
        const v = pop();
        const k = pop();
        setItems(top(), [k, v]);
        break;
      }
      case 0x75: {
        // SETITEMS
        const items = popMark();
        setItems(top(), items);
        break;
      }
      case 0x61: {
        // APPEND
        const v = pop();
        (top() as Value[]).push(v);
        break;
      }
      case 0x65: {
        // APPENDS
        const items = popMark();
        (top() as Value[]).push(...items);
        break;
      }
      case 0x95: // FRAME (protocol 4)
        take(8);
        break;
      default:
        fail(`opcode 0x${op.toString(16)} at byte ${i - 1} is not one a state_dict uses`);
    }
  }
}
