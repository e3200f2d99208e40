// Follows one pod's log through the API: reconnects when the stream drops while the container
// still runs (a dropped watch connection often just goes silent, so silence also reconnects), and
// drops the lines it already delivered, using the timestamps the API prefixes to each line.
import type { IncomingMessage } from "node:http";
import { createInterface } from "node:readline";
import { type Kube, LogStreamError, openPodLog, statusOf } from "./kube.js";
import { compareTimestamps, splitTimestamp } from "./progress-line.js";

export interface PodLogFollowerOptions {
  kube: Kube;
  namespace: string;
  pod: string;
  container: string;
  /** Lines at or before this time are skipped (a re-attach that already has them). */
  since?: string | null;
  idleReconnectMs: number;
  retryMs: number;
  onLine: (text: string, time: string | null) => void;
  onNotice?: (text: string) => void;
}

export class PodLogFollower {
  readonly done: Promise<void>;
  lastTime: string | null;
  /** Lines delivered at lastTime (infinite for a caller-given `since`: everything at it is old). */
  private countAtLast = 0;
  /** Lines at lastTime still to skip in the current stream. */
  private skip = 0;
  private stopped = false;
  private current: IncomingMessage | null = null;
  private wake: (() => void) | null = null;

  constructor(private readonly o: PodLogFollowerOptions) {
    this.lastTime = o.since ?? null;
    if (o.since) this.countAtLast = Number.POSITIVE_INFINITY;
    this.done = this.loop();
  }

  /** Stops following; `done` resolves once the current stream is closed. */
  stop(): void {
    this.stopped = true;
    this.current?.destroy();
    this.wake?.();
  }

  private async loop(): Promise<void> {
    let notedWaiting = false;
    while (!this.stopped) {
      let res: IncomingMessage;
      try {
        res = await openPodLog(this.o.kube, {
          namespace: this.o.namespace,
          pod: this.o.pod,
          container: this.o.container,
          follow: true,
          // sinceTime has second precision: ask from the start of that second, then skip what we have.
          sinceTime: this.lastTime ? `${this.lastTime.slice(0, 19)}Z` : undefined,
        });
      } catch (err) {
        const status = err instanceof LogStreamError ? err.status : statusOf(err);
        if (status === 404) return; // the pod is gone (TTL, deletion): nothing more to read
        if (status === 400 && !notedWaiting) {
          notedWaiting = true;
          this.o.onNotice?.(`pod ${this.o.pod}: ${(err as Error).message}`);
        }
        await this.pause(this.o.retryMs);
        continue;
      }
      if (this.stopped) {
        res.destroy();
        return;
      }
      this.skip = this.countAtLast;
      await this.read(res);
      if (this.stopped) return;
      if (await this.containerFinished()) return;
      await this.pause(this.o.retryMs);
    }
  }

  private read(res: IncomingMessage): Promise<void> {
    this.current = res;
    return new Promise((resolve) => {
      let idle: NodeJS.Timeout | null = null;
      const arm = () => {
        if (idle) clearTimeout(idle);
        idle = setTimeout(() => res.destroy(), this.o.idleReconnectMs);
      };
      const finish = () => {
        if (idle) clearTimeout(idle);
        this.current = null;
        resolve();
      };
      const rl = createInterface({ input: res, crlfDelay: Number.POSITIVE_INFINITY });
      rl.on("line", (line) => {
        arm();
        this.accept(line);
      });
      rl.on("close", finish);
      // readline re-emits the input's errors (a dropped connection): the stream just ends here.
      rl.on("error", () => rl.close());
      res.on("error", () => rl.close());
      res.on("close", () => rl.close());
      arm();
    });
  }

  private accept(line: string): void {
    const { time, text } = splitTimestamp(line);
    if (time && this.lastTime) {
      const cmp = compareTimestamps(time, this.lastTime);
      if (cmp < 0) return;
      if (cmp === 0) {
        // A new stream replays the instant it resumes at: skip the lines already delivered at it.
        if (this.skip > 0) {
          this.skip--;
          return;
        }
        this.countAtLast++;
      } else {
        this.lastTime = time;
        this.countAtLast = 1;
        this.skip = 0;
      }
    } else if (time) {
      this.lastTime = time;
      this.countAtLast = 1;
    }
    this.o.onLine(text, time);
  }

  private async containerFinished(): Promise<boolean> {
    try {
      const pod = await this.o.kube.core.readNamespacedPod({ name: this.o.pod, namespace: this.o.namespace });
      const phase = pod.status?.phase;
      if (phase === "Succeeded" || phase === "Failed") return true;
      const cs = pod.status?.containerStatuses?.find((c) => c.name === this.o.container);
      return Boolean(cs?.state?.terminated);
    } catch (err) {
      return statusOf(err) === 404;
    }
  }

  private pause(ms: number): Promise<void> {
    if (this.stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.wake = null;
        resolve();
      }, ms);
      this.wake = () => {
        clearTimeout(t);
        this.wake = null;
        resolve();
      };
    });
  }
}
