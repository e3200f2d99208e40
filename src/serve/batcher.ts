// Dynamic batching: concurrent requests for one model wait at most `maxWaitMs` (or until
// `maxSize` samples are queued) and then run as one batch. One batch runs at a time (in the
// inference worker); requests that arrive meanwhile form the next batch.

export interface BatchJob<I, O> {
  input: I;
  resolve(out: O): void;
  reject(err: unknown): void;
}

export class Batcher<I, O> {
  private queue: BatchJob<I, O>[] = [];
  private timer: NodeJS.Timeout | null = null;
  private scheduled = false;
  private running = false;
  /** Sizes of the batches run so far (for the benchmark and tests). */
  readonly sizes: number[] = [];

  constructor(
    /** Runs one batch; returns one output per input, in order. */
    private readonly run: (inputs: I[]) => O[] | Promise<O[]>,
    private readonly maxSize: number,
    private readonly maxWaitMs: number,
  ) {}

  get pending(): number {
    return this.queue.length;
  }

  submit(input: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.queue.push({ input, resolve, reject });
      if (this.running) return; // the running batch schedules the next when it ends
      if (this.queue.length >= this.maxSize) this.schedule(0);
      else if (!this.timer && !this.scheduled) this.schedule(this.maxWaitMs);
    });
  }

  private schedule(waitMs: number): void {
    if (this.scheduled && waitMs > 0) return;
    if (this.timer) clearTimeout(this.timer);
    this.scheduled = true;
    const fire = () => {
      this.timer = null;
      this.scheduled = false;
      void this.flush();
    };
    // setImmediate lets requests whose I/O already arrived join before the batch runs.
    if (waitMs <= 0) {
      this.timer = null;
      setImmediate(fire);
    } else this.timer = setTimeout(fire, waitMs);
  }

  private async flush(): Promise<void> {
    if (this.running) return;
    const jobs = this.queue.splice(0, this.maxSize);
    if (jobs.length > 0) {
      this.sizes.push(jobs.length);
      this.running = true;
      try {
        const outs = await this.run(jobs.map((j) => j.input));
        for (let i = 0; i < jobs.length; i++) jobs[i].resolve(outs[i]);
      } catch (err) {
        for (const j of jobs) j.reject(err);
      } finally {
        this.running = false;
      }
    }
    // Whoever queued during the run has already waited a batch long: run them next.
    if (this.queue.length > 0) this.schedule(0);
  }
}
