// The train stage for `runner: external`: training by a command of your own (the project's PyTorch
// trainer, the official repository's pretrain.py behind a wrapper, torchrun on several GPUs).
//   1. the run's dataset is exported in the official layout (dataset export --format trm-npy) to
//      <data_dir>/external/<agent>/<run>/export, the model and train settings to config.json;
//   2. the command runs detached, its stdout and stderr going to trainer.log there, its pid to
//      trainer.json; JSON progress lines on stdout reach the run's progress (progress-line.ts),
//      other lines its log;
//   3. its weights (external.output in the output folder) are checked like `models import` and
//      stored as the run's best checkpoint, which evaluate and deploy read as for any run.
// As with the kubernetes runner: a cancel stops the command (SIGTERM to its process group, then
// SIGKILL); a server that stops for another reason leaves it running, and the next attempt of the
// run re-attaches to it by its pid, or imports what it wrote while no server watched.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, open, readdir, readFile, rm, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import * as z from "zod";
import type { Config } from "../../config/index.js";
import { WorkError } from "../../errors.js";
import { initBackend } from "../../model/backend.js";
import { countParams } from "../../model/config.js";
import { atomicWriteJson } from "../../util/fs.js";
import { pidAlive } from "../../util/process.js";
import { timeOfId } from "../common/ids.js";
import { CancelledError } from "../common/retry.js";
import type { StageContext, StageFn, TrainOutput } from "../contract.js";
import { exportTrmNpy } from "../dataset/index.js";
import { runDataset } from "../dataset/stage.js";
import { configForDataset } from "../import/index.js";
import { readImportWeights } from "../import/weights.js";
import { runPrefix } from "../record.js";
import { saveCheckpoint } from "../train/checkpoint.js";
import { parsePodLine, stageProgress } from "./progress-line.js";

/** What trainer.json records about the command, so another server can find it again. */
const TrainerState = z
  .object({
    pid: z.number().int().positive(),
    started_at: z.string(),
    argv: z.array(z.string()),
    /** Set by the server that saw it exit; absent when it ended while no server watched. */
    exit_code: z.number().int().nullable().optional(),
    signal: z.string().nullable().optional(),
  })
  .strict();
type TrainerState = z.infer<typeof TrainerState>;

/** Longest log line kept (a runaway trainer cannot fill the run's log with one line). */
const MAX_LINE = 2000;
/** Most log bytes read per poll. */
const MAX_READ = 1 << 20;

export function externalWorkDir(config: Config, agent: string, runId: string): string {
  return resolve(config.data_dir, "external", agent, runId);
}

/** The command's argv with its placeholders filled in. */
export function externalArgv(
  config: Config,
  vars: { exportDir: string; outputDir: string; configFile: string; runId: string; agent: string },
): string[] {
  const cmd = config.external.command;
  if (!cmd) throw new WorkError("runner: external needs external.command (the trainer's argv)");
  const t = config.train;
  const values: Record<string, string> = {
    "{export_dir}": vars.exportDir,
    "{output_dir}": vars.outputDir,
    "{config_file}": vars.configFile,
    "{run_id}": vars.runId,
    "{agent}": vars.agent,
    "{max_steps}": String(t.max_steps),
    "{batch_size}": String(t.batch_size),
    "{lr}": String(t.lr),
    "{seed}": String(t.seed),
  };
  return cmd.map((a) => a.replace(/\{[a-z_]+\}/g, (m) => values[m] ?? m));
}

async function readState(path: string): Promise<TrainerState | null> {
  try {
    return TrainerState.parse(JSON.parse(await readFile(path, "utf8")));
  } catch {
    return null;
  }
}

/**
 * Removes the folders earlier runs of the agent left (a failed trainer's stays for a person to look
 * at): once a newer training run has begun none of them can be resumed, so nothing else would ever
 * remove them. A folder whose trainer still runs is left to it.
 */
async function removeEarlierFolders(ctx: StageContext): Promise<void> {
  const parent = resolve(ctx.config.data_dir, "external", ctx.agent);
  for (const name of await readdir(parent).catch(() => [] as string[])) {
    if (name >= ctx.runId || !timeOfId(name)) continue;
    const state = await readState(join(parent, name, "trainer.json"));
    if (state && state.exit_code === undefined && pidAlive(state.pid)) {
      ctx.log("warn", `the trainer of run ${name} still runs (pid ${state.pid}); its folder stays`);
      continue;
    }
    await rm(join(parent, name), { recursive: true, force: true });
    ctx.log("info", `removed the external folder of the earlier run ${name}`);
  }
}

export function externalTrainStage(): StageFn {
  return async (ctx: StageContext): Promise<TrainOutput> => {
    const ext = ctx.config.external;
    await initBackend(ctx.config.model.backend);
    const ds = await runDataset(ctx);
    const model = configForDataset(ctx.config, ds);
    const dir = externalWorkDir(ctx.config, ctx.agent, ctx.runId);
    const paths = {
      exportDir: join(dir, "export"),
      outputDir: join(dir, "out"),
      configFile: join(dir, "config.json"),
      log: join(dir, "trainer.log"),
      state: join(dir, "trainer.json"),
    };
    const output = join(paths.outputDir, ext.output);
    await removeEarlierFolders(ctx);
    const argv = externalArgv(ctx.config, { ...paths, runId: ctx.runId, agent: ctx.agent });

    const before = await readState(paths.state);
    let child: { child: ChildProcess; exit: Promise<Exit> } | null = null;
    let state: TrainerState;
    let logFrom = 0;
    let done = false;
    if (before && before.exit_code === undefined && pidAlive(before.pid)) {
      state = before;
      // Lines before now are in the earlier attempt's log already.
      logFrom = (await stat(paths.log).catch(() => null))?.size ?? 0;
      ctx.log("info", `re-attaching to the trainer (pid ${before.pid}, started ${before.started_at})`);
    } else if (before && (before.exit_code === 0 || before.exit_code === undefined) && existsSync(output)) {
      ctx.log("info", "the trainer finished while no server watched; importing its weights");
      state = before;
      done = true;
    } else {
      await rm(dir, { recursive: true, force: true });
      await mkdir(paths.outputDir, { recursive: true });
      await exportTrmNpy(ds, paths.exportDir);
      await atomicWriteJson(paths.configFile, { model, train: ctx.config.train });
      const started = await start(argv, ext, paths, ctx);
      child = started;
      state = started.state;
    }

    const progress = { step: 0, started: Date.parse(state.started_at) };
    const result = done ? state : await watch(child, state, paths, ext, ctx, progress, logFrom);
    if (result.exit_code !== undefined && result.exit_code !== 0)
      throw new WorkError(
        `the trainer ${result.signal ? `was killed by ${result.signal}` : `exited with code ${result.exit_code}`}: ${await tail(paths.log)}`,
      );
    if (!existsSync(output))
      throw new WorkError(`the trainer ended without writing ${ext.output}: ${await tail(paths.log)}`);

    const checked = await readImportWeights({
      path: output,
      format: ext.format,
      dataset: ds,
      fallbackConfig: model,
      maxBytes: ctx.config.import.max_bytes,
    });
    const steps = Number(checked.origin.metadata.steps) || progress.step;
    const best = await saveCheckpoint(
      ctx.store,
      runPrefix(ctx.agent, ctx.runId),
      {
        kind: "best",
        step: steps,
        data: { epoch: 0, cursor: 0 },
        early_stop: { best_step: steps, best_score: null, evals_since_best: 0 },
        score: null,
      },
      [
        { name: "model.safetensors", data: checked.model },
        { name: "raw.safetensors", data: checked.model },
      ],
    );
    const seconds = Math.max(1e-3, (Date.now() - progress.started) / 1000);
    await rm(dir, { recursive: true, force: true });
    return {
      dataset_id: ds.id,
      parent_version: null,
      best_dir: best.dir,
      best_step: steps,
      best_score: null,
      steps,
      stopped: "external",
      resumed_from_step: null,
      params: countParams(checked.config).trainable,
      samples_per_s: (steps * ctx.config.train.batch_size) / seconds,
      backend: "external",
      model_config: checked.config,
      note: `trained by the external command ${argv[0]} (${checked.origin.metadata.trainer ?? "unnamed trainer"}); weights sha256 ${checked.origin.sha256}`,
    };
  };
}

/** How the command ended, as its parent saw it. */
type Exit = { code: number | null; signal: NodeJS.Signals | null };

async function start(
  argv: string[],
  ext: Config["external"],
  paths: { log: string; state: string },
  ctx: StageContext,
): Promise<{ child: ChildProcess; exit: Promise<Exit>; state: TrainerState }> {
  const log = await open(paths.log, "a");
  let child: ChildProcess;
  let spawned: Promise<number>;
  let exit: Promise<Exit>;
  try {
    // Detached, with its output in a file: it outlives this server, and another one can follow it.
    child = spawn(argv[0]!, argv.slice(1), {
      cwd: ext.cwd,
      env: { ...process.env, ...ext.env },
      detached: true,
      stdio: ["ignore", log.fd, log.fd],
    });
    // Listen at once: a short command can end before anything below has run.
    spawned = new Promise<number>((res, rej) => {
      child.once("spawn", () => res(child.pid!));
      child.once("error", (err) => rej(new WorkError(`cannot start the trainer ${argv[0]}: ${err.message}`)));
    });
    exit = new Promise<Exit>((res) => child.once("exit", (code, signal) => res({ code, signal })));
  } finally {
    await log.close();
  }
  const pid = await spawned;
  const state: TrainerState = { pid, started_at: new Date().toISOString(), argv };
  await atomicWriteJson(paths.state, state);
  ctx.log("info", `started the trainer (pid ${pid}): ${argv.join(" ")}`);
  return { child, exit, state };
}

/**
 * Follows the log until the command ends; returns its final state. A cancel kills it; any other
 * abort detaches (rethrows the reason, the command keeps running).
 */
function watch(
  child: { child: ChildProcess; exit: Promise<Exit> } | null,
  state: TrainerState,
  paths: { log: string; state: string },
  ext: Config["external"],
  ctx: StageContext,
  progress: { step: number; started: number },
  from: number,
): Promise<TrainerState> {
  return new Promise<TrainerState>((resolveDone, rejectDone) => {
    let offset = from;
    let partial = "";
    let finished = false;
    let reading = false;
    const deadline = progress.started + ext.timeout_s * 1000;

    const readLog = async (all: boolean) => {
      const fh = await open(paths.log, "r").catch(() => null);
      if (!fh) return;
      try {
        for (;;) {
          const buf = Buffer.alloc(MAX_READ);
          const { bytesRead } = await fh.read(buf, 0, MAX_READ, offset);
          if (!bytesRead) break;
          offset += bytesRead;
          const lines = (partial + buf.subarray(0, bytesRead).toString("utf8")).split("\n");
          partial = lines.pop()!.slice(0, MAX_LINE);
          for (const l of lines) line(l.slice(0, MAX_LINE));
          if (!all) break;
        }
        if (all && partial) line(partial);
      } finally {
        await fh.close();
      }
    };
    const line = (text: string) => {
      const l = text.replace(/\r$/, "");
      if (!l.trim()) return;
      const parsed = parsePodLine(l);
      if (parsed.kind === "progress") {
        const p = parsed.progress;
        if (p.step !== null) progress.step = p.step;
        ctx.progress(stageProgress(p));
      } else ctx.log("info", `[trainer] ${l}`);
    };

    const finish = async (s: TrainerState, err?: unknown) => {
      if (finished) return;
      finished = true;
      clearInterval(timer);
      ctx.signal.removeEventListener("abort", onAbort);
      try {
        await readLog(true);
      } catch {
        // the log is best effort; the outcome is what counts
      }
      if (err) rejectDone(err);
      else resolveDone(s);
    };

    const ended = async (code: number | null, signal: NodeJS.Signals | null) => {
      const s: TrainerState = { ...state, exit_code: code ?? -1, signal };
      await atomicWriteJson(paths.state, s).catch(() => undefined);
      if (ctx.signal.reason instanceof CancelledError) return finish(s, ctx.signal.reason);
      if (stopping)
        return finish(s, new WorkError(`the trainer was stopped: ${stopping}; ${await tail(paths.log)}`));
      await finish(s);
    };
    void child?.exit.then(({ code, signal }) => ended(code, signal));

    let stopping: string | null = null;
    const stop = (why: string) => {
      if (stopping) return;
      stopping = why;
      ctx.log("warn", `stopping the trainer (pid ${state.pid}): ${why}`);
      kill(state.pid, "SIGTERM");
      setTimeout(() => kill(state.pid, "SIGKILL"), ext.kill_grace_s * 1000).unref();
    };
    const onAbort = () => {
      if (ctx.signal.reason instanceof CancelledError) {
        stop("the run was cancelled");
        // A re-attached trainer is no child of ours: its end shows by its pid going away.
      } else {
        // A server going down: the trainer runs on, the next server re-attaches.
        child?.child.unref();
        void finish(state, ctx.signal.reason ?? new CancelledError("detached"));
      }
    };
    const timer = setInterval(() => {
      if (reading || finished) return;
      reading = true;
      readLog(false)
        .then(() => {
          if (Date.now() > deadline && pidAlive(state.pid))
            stop(`it ran past external.timeout_s (${ext.timeout_s} s)`);
          if (!child && !pidAlive(state.pid)) {
            // Not our child: its exit code is unknown; its output decides.
            if (ctx.signal.reason instanceof CancelledError) void finish(state, ctx.signal.reason);
            else if (stopping) void finish(state, new WorkError(`the trainer was stopped: ${stopping}`));
            else void finish(state);
          }
        })
        .catch((err) => void finish(state, err))
        .finally(() => {
          reading = false;
        });
    }, ext.poll_interval_s * 1000);
    if (ctx.signal.aborted) onAbort();
    else ctx.signal.addEventListener("abort", onAbort, { once: true });
  });
}

function kill(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal); // its whole process group (torchrun's workers too)
  } catch {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }
}

/** The last lines of the trainer's log, for an error message. */
async function tail(path: string): Promise<string> {
  try {
    const text = await readFile(path, "utf8");
    const lines = text
      .split("\n")
      .filter((l) => l.trim() && parsePodLine(l).kind === "log")
      .slice(-5);
    return lines.length ? lines.join(" | ").slice(-1500) : "(no log output)";
  } catch {
    return "(no log)";
  }
}
