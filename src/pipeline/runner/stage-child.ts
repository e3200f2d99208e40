// The child process a server runs a long stage in (train or evaluate; forked by process.ts). It
// opens the same store, runs the real stage, and talks to the server over the IPC channel: log
// lines and progress go up, the output at the end; an abort comes down. Checkpoints and the
// evaluation go to the store as they do in-process.
// The server's event loop stays free, and a crash here (a native kernel, out of memory) ends
// this process only.
import { ConfigSchema } from "../../config/index.js";
import { log } from "../../log.js";
import { openStore } from "../../store/index.js";
import { installInheritedTestClock } from "../../util/clock.js";
import { nextTurn } from "../../util/turn.js";
import type { StageFn } from "../contract.js";
import { ModelRegistry } from "../deploy/registry.js";
import { evaluateStage } from "../evaluate/stage.js";
import { CancelledError, isTransient, type RunRecord, type StageContext } from "../run.js";
import { trainStage } from "../train/stage.js";
import { type ChildStage, ToChild, type ToParent } from "./child-protocol.js";

installInheritedTestClock();

const STAGES: Record<ChildStage, StageFn> = { train: trainStage, evaluate: evaluateStage };

/** After the server is gone (its IPC channel closed), how long the stage may take to checkpoint. */
const ORPHAN_GRACE_MS = 30_000;

const controller = new AbortController();
let started = false;

function send(msg: ToParent): Promise<void> {
  return new Promise((resolve) => {
    if (!process.connected) return resolve();
    process.send!(msg, undefined, undefined, () => resolve());
  });
}

function stop(why: string): void {
  if (!controller.signal.aborted) controller.abort(new CancelledError(why));
}

async function run(start: Extract<ToChild, { type: "start" }>): Promise<void> {
  const parsed = ConfigSchema.safeParse(start.config);
  if (!parsed.success)
    throw new Error(`the server sent an invalid config: ${parsed.error.issues[0]?.message}`);
  const config = parsed.data;
  const store = openStore(config);
  const record = start.record as unknown as RunRecord;
  const ctx: StageContext = {
    runId: start.runId,
    agent: start.agent,
    stage: start.stage,
    attempt: start.attempt,
    config,
    store,
    registry: new ModelRegistry(store, { dataDir: config.data_dir }),
    signal: controller.signal,
    fromScratch: start.fromScratch,
    record,
    now: () => new Date(),
    log: (level, msg) => void send({ type: "log", level, msg }),
    progress: (p, detail) => void send({ type: "progress", progress: p, detail }),
    // No lease here (the server holds it): a turn of the event loop lets the IPC through.
    pause: nextTurn,
  };
  const output = await STAGES[start.stage](ctx);
  await send({ type: "done", output: output ?? {} });
}

process.on("message", (raw) => {
  const r = ToChild.safeParse(raw);
  if (!r.success) {
    log.error({ issue: r.error.issues[0]?.message }, "stage child: bad message from the server");
    return;
  }
  const msg = r.data;
  if (msg.type === "abort") stop(msg.message);
  else if (msg.type === "start" && !started) {
    started = true;
    run(msg)
      .catch(async (err: unknown) => {
        const e = err instanceof Error ? err : new Error(String(err));
        await send({
          type: "failed",
          name: e.name,
          message: e.message,
          transient: isTransient(e),
          cancelled: e instanceof CancelledError || controller.signal.aborted,
        });
      })
      .finally(() => {
        process.disconnect?.();
        // Native threads or a pending socket must not keep a finished stage alive.
        setTimeout(() => process.exit(0), 1000).unref();
      });
  }
});

// The server died or closed the channel: checkpoint and go, never train on unwatched.
process.on("disconnect", () => {
  stop("the server went away");
  setTimeout(() => process.exit(started ? 75 : 0), started ? ORPHAN_GRACE_MS : 0).unref();
});
// A terminal's Ctrl-C reaches the whole process group: stop with the server, at a checkpoint.
for (const sig of ["SIGTERM", "SIGINT"] as const) {
  process.on(sig, () => {
    if (controller.signal.aborted) process.exit(143);
    stop(`${sig} received`);
  });
}

void send({ type: "ready", pid: process.pid });
