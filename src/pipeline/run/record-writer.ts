import { hostname } from "node:os";
import type { ObjectStore } from "../../store/index.js";
import { type RunRecord, type StageName, type StageResult, stageResultKey, writeRun } from "../contract.js";

/** Serialises writes of one run record, so the last state always lands last. */
export class RecordWriter {
  private chain: Promise<void> = Promise.resolve();
  private pending = false;

  constructor(
    private readonly store: ObjectStore,
    private readonly record: RunRecord,
    private readonly now: () => Date,
    /** Worker mode: write these stages' results beside run.json, never run.json itself. */
    private readonly worker: StageName[] | null = null,
  ) {}

  /** Resolves when the writes queued so far have landed (or failed: flush reports those). */
  settled(): Promise<void> {
    return this.chain.catch(() => undefined);
  }

  /** wait=false coalesces with a write already queued (progress updates). */
  flush(wait: boolean): Promise<void> {
    if (!wait && this.pending) return this.chain;
    this.pending = true;
    this.chain = this.chain
      .catch(() => undefined)
      .then(async () => {
        this.pending = false;
        this.record.updated_at = this.now().toISOString();
        if (!this.worker) return writeRun(this.store, this.record);
        for (const stage of this.record.stages.filter((s) => this.worker!.includes(s.name))) {
          const result: StageResult = {
            stage,
            progress: this.record.progress?.stage === stage.name ? this.record.progress : null,
            log: this.record.log.filter((l) => l.stage === stage.name).slice(-50),
            pid: process.pid,
            host: hostname(),
            updated_at: this.record.updated_at,
          };
          await this.store.put(
            stageResultKey(this.record.agent, this.record.id, stage.name),
            `${JSON.stringify(result, null, 2)}\n`,
            {
              contentType: "application/json",
            },
          );
        }
      });
    return wait ? this.chain : this.chain.catch(() => undefined);
  }
}
