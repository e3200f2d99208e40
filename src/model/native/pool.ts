// The native backend's memory: the CPU backend plus a pool of float32 buffers. A training step
// allocates gigabytes in buffers of a few recurring sizes; left to the garbage collector, dead
// ones pile up (RSS far above the live set) and every new one is zeroed and faulted in again.
// Here a buffer goes back to the pool the moment its last tensor is disposed, and kernels take
// from the pool. A buffer is only reused when nothing else can still see it:
//   - only buffers the pool made are reused (never a caller's array passed to tf.tensor);
//   - a buffer that was read out (dataSync/data: the caller holds the array itself) or that a
//     tensor views only in part (a zero-copy slice) is never reused; the GC takes it;
//   - a buffer shared by several tensors is reused after the last of them is disposed.
import { totalmem } from "node:os";
import { MathBackendCPU } from "@tensorflow/tfjs-backend-cpu";
import type { backend_util, DataType } from "@tensorflow/tfjs-core";

type DataId = object;

/**
 * Freed buffers kept for reuse, by byte length. Beyond `limit` bytes the longest-kept buffers are
 * let go to the GC: what was freed last is what the next kernels are likely to ask for (the
 * optimiser's weight-shaped temporaries must not crowd out the activation sizes of the next step).
 */
class BufferPool {
  private readonly free = new Map<number, ArrayBuffer[]>();
  /** Every buffer in `free`, oldest first. */
  private readonly order = new Set<ArrayBuffer>();
  private readonly made = new WeakSet<ArrayBuffer>();
  private held = 0;

  constructor(private readonly limit: number) {}

  owns(buf: ArrayBufferLike): boolean {
    return this.made.has(buf as ArrayBuffer);
  }

  take(bytes: number): ArrayBuffer {
    const buf = this.free.get(bytes)?.pop();
    if (buf) {
      this.order.delete(buf);
      this.held -= bytes;
      return buf;
    }
    const fresh = new ArrayBuffer(bytes);
    this.made.add(fresh);
    return fresh;
  }

  give(buf: ArrayBuffer): void {
    const bytes = buf.byteLength;
    if (bytes > this.limit) return;
    let list = this.free.get(bytes);
    if (!list) {
      list = [];
      this.free.set(bytes, list);
    }
    list.push(buf);
    this.order.add(buf);
    this.held += bytes;
    while (this.held > this.limit) {
      const oldest = this.order.values().next().value as ArrayBuffer;
      this.order.delete(oldest);
      const same = this.free.get(oldest.byteLength)!;
      same.splice(same.indexOf(oldest), 1);
      this.held -= oldest.byteLength;
    }
  }

  get heldBytes(): number {
    return this.held;
  }

  clear(): void {
    this.free.clear();
    this.order.clear();
    this.held = 0;
  }
}

export class PooledCpuBackend extends MathBackendCPU {
  private readonly pool: BufferPool;
  /** Live data ids per pooled buffer. */
  private readonly users = new WeakMap<ArrayBuffer, number>();
  /** Pooled buffers that escaped (read out or viewed in part): never reused. */
  private readonly escaped = new WeakSet<ArrayBuffer>();

  /**
   * The pool may keep up to an eighth of the machine's memory, at most 2 GiB: enough to carry a
   * whole step's activations to the next step of the 7M config at batch 32 (reusing them saves
   * about a tenth of the step's CPU in zeroing and page faults, at no extra peak RSS).
   */
  constructor(limitBytes = Math.min(2 ** 31, totalmem() / 8)) {
    super();
    this.pool = new BufferPool(limitBytes);
    // The CPU backend's first write prints "install tfjs-node to speed things up"; this one is fast.
    (this as unknown as { firstUse: boolean }).firstUse = false;
  }

  /** n float32s from the pool. The contents are NOT zeroed: a kernel must write every element. */
  takeFloat32(n: number): Float32Array {
    if (n === 0) return new Float32Array(0);
    return new Float32Array(this.pool.take(n * 4));
  }

  /** Bytes held for reuse right now (for the bench). */
  get pooledBytes(): number {
    return this.pool.heldBytes;
  }

  /** Lets the GC have every pooled buffer (e.g. after training, in a process that stays up). */
  releasePool(): void {
    this.pool.clear();
  }

  private track(values: unknown): void {
    if (!ArrayBuffer.isView(values)) return;
    const buf = values.buffer as ArrayBuffer;
    if (!this.pool.owns(buf)) return;
    if (values.byteOffset !== 0 || values.byteLength !== buf.byteLength) this.escaped.add(buf);
    else this.users.set(buf, (this.users.get(buf) ?? 0) + 1);
  }

  private escape(dataId: DataId): void {
    const values = this.data.get(dataId)?.values;
    if (ArrayBuffer.isView(values)) this.escaped.add(values.buffer as ArrayBuffer);
  }

  override write(values: backend_util.BackendValues, shape: number[], dtype: DataType): DataId {
    this.track(values);
    return super.write(values, shape, dtype);
  }

  override move(
    dataId: DataId,
    values: backend_util.BackendValues,
    shape: number[],
    dtype: DataType,
    refCount: number,
  ): void {
    this.track(values);
    super.move(dataId, values, shape, dtype, refCount);
  }

  override readSync(dataId: DataId): backend_util.BackendValues {
    this.escape(dataId);
    return super.readSync(dataId);
  }

  override read(dataId: DataId): Promise<backend_util.BackendValues> {
    this.escape(dataId);
    return super.read(dataId);
  }

  override disposeData(dataId: DataId, force = false): boolean {
    const values = this.data.get(dataId)?.values;
    const done = super.disposeData(dataId, force);
    if (!ArrayBuffer.isView(values) || this.data.has(dataId)) return done;
    const buf = values.buffer as ArrayBuffer;
    const left = (this.users.get(buf) ?? 0) - 1;
    if (left > 0) {
      this.users.set(buf, left);
      return done;
    }
    this.users.delete(buf);
    if (this.pool.owns(buf) && !this.escaped.has(buf)) this.pool.give(buf);
    return done;
  }

  override dispose(): void {
    this.pool.clear();
    super.dispose();
  }
}
