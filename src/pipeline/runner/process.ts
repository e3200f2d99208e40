// The stages that hold the CPU for minutes (train, evaluate) in a child process, for a server
// with `runner: in-process`. Training is seconds of native kernels per step, and evaluation runs
// the candidate and the champion over the whole validation split: on the server's own event loop
// either would stall /healthz, the MCP tools and SIGTERM until it ended. The child
// (stage-child.ts) runs the real stage against the same store, as a Kubernetes Job's pod does;
// what differs is the channel: progress and log lines come over IPC instead of pod logs. The
// output comes back through the stage contract, and this process redoes from it what the stage
// would have left in it (the evaluate stage's gauges).
//
// Stopping: an abort of the run (cancel, server shutdown) asks the child to stop at its next
// step or batch boundary (training writes a checkpoint there). A child that does not stop in
// time gets SIGTERM, then SIGKILL: the run keeps its last checkpoint either way. A child that
// dies on its own (a crash, the OOM killer) fails the stage with the reason; the run resumes
// from its checkpoint.
import { fork } from "node:child_process";
import * as z from "zod";
import { ConfigSchema } from "../../config/index.js";
import { WorkError } from "../../errors.js";
import { log } from "../../log.js";
import { builtEntry } from "../../util/entry.js";
import { STAGE_OUTPUTS, type StageOutput } from "../contract.js";
import { adoptEvaluateOutput } from "../evaluate/stage.js";
import { CancelledError, type StageContext, type StageFn, TransientError } from "../run.js";
import { type ChildStage, type ToChild, ToParent } from "./child-protocol.js";

export interface ProcessStageOptions {
  /** From the abort to SIGTERM, and from SIGTERM to SIGKILL (default: 45% of server.shutdown_grace each). */
  stopAfterMs?: number;
}

/** Per stage: what its process is called in logs and errors, and what this process takes from its output. */
const CHILD_STAGES: {
  [S in ChildStage]: { noun: string; adopt(ctx: StageContext, output: StageOutput<S>): void };
} = {
  train: { noun: "training", adopt: () => undefined },
  evaluate: { noun: "evaluation", adopt: (ctx, output) => adoptEvaluateOutput(ctx.agent, output) },
};

/** A stage run in a child process. */
export function processStage(stage: ChildStage, opts: ProcessStageOptions = {}): StageFn {
  return (ctx) => runInChild(stage, ctx, opts);
}

async function runInChild(
  stage: ChildStage,
  ctx: StageContext,
  opts: ProcessStageOptions,
): Promise<Record<string, unknown>> {
  const raw = await childOutcome(stage, ctx, opts);
  const r = STAGE_OUTPUTS[stage].safeParse(raw);
  if (!r.success)
    throw new WorkError(
      `the ${CHILD_STAGES[stage].noun} process returned an output that breaks the ${stage} stage's contract: ` +
        `${r.error.issues[0]?.path.join(".")}: ${r.error.issues[0]?.message}`,
    );
  // r.data is the output of `stage`'s own schema; TypeScript cannot pair the two through the union.
  (CHILD_STAGES[stage].adopt as (c: StageContext, o: typeof r.data) => void)(ctx, r.data);
  return r.data;
}

function childOutcome(
  stage: ChildStage,
  ctx: StageContext,
  opts: ProcessStageOptions,
): Promise<Record<string, unknown>> {
  const noun = CHILD_STAGES[stage].noun;
  const stopAfterMs = opts.stopAfterMs ?? Math.round(0.45 * ctx.config.server.shutdown_grace);
  const child = fork(builtEntry(import.meta.url, "./stage-child.js"), [], {
    stdio: ["ignore", "inherit", "inherit", "ipc"],
    serialization: "advanced",
    env: { ...process.env, TRM_FORGE_LOG_LEVEL: process.env.TRM_FORGE_LOG_LEVEL ?? log.level },
  });
  // If this process exits first, it must not leave a stage running behind it.
  const killOnExit = () => child.kill("SIGKILL");
  process.on("exit", killOnExit);
  const pid = child.pid ?? -1;

  return new Promise<Record<string, unknown>>((resolve, reject) => {
    let outcome: { ok: true; output: Record<string, unknown> } | { ok: false; err: Error } | null = null;
    let stopping: string | null = null;
    const timers: NodeJS.Timeout[] = [];
    const send = (msg: ToChild) => {
      if (child.connected) child.send(msg, (err) => err && undefined);
    };

    const onAbort = () => {
      stopping = String((ctx.signal.reason as Error | undefined)?.message ?? "stopped");
      send({ type: "abort", message: stopping });
      timers.push(
        setTimeout(() => {
          ctx.log("warn", `the ${noun} process did not stop within ${stopAfterMs} ms; sending SIGTERM`);
          child.kill("SIGTERM");
          timers.push(
            setTimeout(() => {
              ctx.log("warn", `the ${noun} process did not stop after SIGTERM; killing it`);
              child.kill("SIGKILL");
            }, stopAfterMs),
          );
        }, stopAfterMs),
      );
    };

    child.on("message", (raw) => {
      const r = ToParent.safeParse(raw);
      if (!r.success) {
        outcome ??= {
          ok: false,
          err: new WorkError(`the ${noun} process sent an invalid message: ${r.error.issues[0]?.message}`),
        };
        child.kill("SIGKILL");
        return;
      }
      const msg = r.data;
      switch (msg.type) {
        case "ready":
          ctx.log("info", `${noun} in a child process (pid ${msg.pid})`);
          send({
            type: "start",
            stage,
            runId: ctx.runId,
            agent: ctx.agent,
            attempt: ctx.attempt,
            fromScratch: ctx.fromScratch,
            record: JSON.parse(JSON.stringify(ctx.record)),
            config: z.encode(ConfigSchema, ctx.config),
          });
          if (ctx.signal.aborted) onAbort();
          else ctx.signal.addEventListener("abort", onAbort, { once: true });
          break;
        case "log":
          ctx.log(msg.level, msg.msg);
          break;
        case "progress":
          ctx.progress(msg.progress, msg.detail);
          break;
        case "done":
          outcome ??= { ok: true, output: msg.output };
          break;
        case "failed":
          outcome ??= { ok: false, err: childError(msg) };
          break;
      }
    });

    child.on("error", (err) => {
      outcome ??= { ok: false, err: new WorkError(`cannot run the ${noun} process: ${err.message}`) };
    });

    child.on("exit", (code, signal) => {
      for (const t of timers) clearTimeout(t);
      ctx.signal.removeEventListener("abort", onAbort);
      process.off("exit", killOnExit);
      if (outcome?.ok) return resolve(outcome.output);
      if (outcome) return reject(outcome.err);
      // Killed on the way out of an abort: the run stops as asked, at its last checkpoint.
      if (stopping !== null) return reject(new CancelledError(stopping));
      const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
      const hint = signal === "SIGKILL" ? " (out of memory, or killed from outside)" : "";
      reject(
        new WorkError(
          `the ${noun} process (pid ${pid}) ${how}${hint} before the stage finished; ` +
            `the run keeps ${stage === "train" ? "its last checkpoint" : "what earlier stages made"}: resume it to continue from there`,
        ),
      );
    });
  });
}

function childError(msg: Extract<ToParent, { type: "failed" }>): Error {
  if (msg.cancelled) return new CancelledError(msg.message);
  if (msg.transient) return new TransientError(msg.message);
  return new WorkError(msg.message);
}
