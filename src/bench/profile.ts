// Wall time per kernel on one backend: every registered kernel is wrapped with a timer for the
// duration of a measurement. JS work outside kernels (tape, tidy, op wrappers) is what remains
// of the total. Used by `npm run bench -- model --profile`.
import * as tf from "@tensorflow/tfjs-core";

export interface KernelTime {
  kernel: string;
  /** Wall time inside the kernel. */
  ms: number;
  /** CPU time of the whole process (all threads) while in the kernel: steadier than wall time on a busy machine. */
  cpu_ms: number;
  calls: number;
}

export class KernelProfiler {
  private readonly totals = new Map<string, KernelTime>();
  private originals: tf.KernelConfig[] = [];

  constructor(private readonly backend: string) {}

  start(): void {
    this.originals = tf.getKernelsForBackend(this.backend);
    for (const k of this.originals) {
      const entry: KernelTime = this.totals.get(k.kernelName) ?? {
        kernel: k.kernelName,
        ms: 0,
        cpu_ms: 0,
        calls: 0,
      };
      this.totals.set(k.kernelName, entry);
      const inner = k.kernelFunc;
      tf.unregisterKernel(k.kernelName, this.backend);
      tf.registerKernel({
        ...k,
        kernelFunc: (args) => {
          const t0 = performance.now();
          const c0 = process.cpuUsage();
          try {
            return inner(args);
          } finally {
            const c = process.cpuUsage(c0);
            entry.ms += performance.now() - t0;
            entry.cpu_ms += (c.user + c.system) / 1000;
            entry.calls++;
          }
        },
      });
    }
  }

  stop(): void {
    for (const k of this.originals) {
      tf.unregisterKernel(k.kernelName, this.backend);
      tf.registerKernel(k);
    }
    this.originals = [];
  }

  /** Kernels by time spent, most first; `totalMs` is the wall time they were measured within. */
  report(
    totalMs: number,
    top = 15,
  ): { kernels: KernelTime[]; kernel_ms: number; outside_kernels_ms: number } {
    const all = [...this.totals.values()].filter((k) => k.calls > 0).sort((a, b) => b.ms - a.ms);
    const kernelMs = all.reduce((s, k) => s + k.ms, 0);
    const round = (k: KernelTime) => ({
      kernel: k.kernel,
      ms: Math.round(k.ms),
      cpu_ms: Math.round(k.cpu_ms),
      calls: k.calls,
    });
    return {
      kernels: all.slice(0, top).map(round),
      kernel_ms: Math.round(kernelMs),
      outside_kernels_ms: Math.round(totalMs - kernelMs),
    };
  }
}
