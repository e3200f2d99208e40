// `trm-forge demo`, steps 1 to 10: a simulated homelab, a config, the real pipeline (collect over
// HTTP, build, train, evaluate, register and promote), the report, three predictions, a scan. Nothing is
// mocked: the same stages the scheduler and the MCP tools run. The data directory keeps what was
// built; a rerun resumes an interrupted run or reuses the finished one.
import { mkdir, rm } from "node:fs/promises";
import { relative, resolve } from "node:path";
import { stringify } from "yaml";
import { type Config, parseConfig } from "../config/index.js";
import { UsageError, WorkError } from "../errors.js";
import { activeBackend, initBackend } from "../model/backend.js";
import { stageOutput } from "../pipeline/contract.js";
import { createPipeline } from "../pipeline/create.js";
import { readDatasetManifest, splitCaps } from "../pipeline/dataset/index.js";
import { evaluationRunKey } from "../pipeline/evaluate/stage.js";
import type { EvaluationResult } from "../pipeline/evaluate.js";
import { addRunScan } from "../pipeline/report/scan.js";
import { reportKey, writeRunReport } from "../pipeline/report.js";
import type { Pipeline, RunEvent, RunRecord, StageName } from "../pipeline/run.js";
import { ModelServer } from "../serve/index.js";
import { createSimulator, type Simulator } from "../simulator/index.js";
import type { FsStore, ObjectStore } from "../store/index.js";
import { atomicWrite } from "../util/fs.js";
import { DEMO_AGENT, DEMO_VAL_FRACTION, type DemoSettings, demoConfig } from "./config.js";
import { type ExampleAnswer, logExample, metricExample, traceExample } from "./examples.js";
import {
  makeOut,
  type Out,
  runProgress,
  type StepName,
  Stopwatch,
  secs,
  stepTitle,
  type TaskRow,
  taskRows,
  taskTable,
  timesTable,
} from "./output.js";
import { type ScanStep, scanHeldOutIncident } from "./scan.js";
import { configFile, DemoState, ensureToken, readState, type StepTime, writeState } from "./state.js";

export interface DemoOptions {
  /** The data directory (created; kept between runs). */
  dir: string;
  settings: DemoSettings;
  /** Delete the data directory first. */
  fresh?: boolean;
  /** Port the MCP server will use (written into the config). */
  serverPort?: number;
  /** Aborting stops the pipeline at its next step boundary; a rerun continues from there. */
  signal?: AbortSignal;
  /** The story (default process.stdout). */
  stdout?: NodeJS.WritableStream;
  /** Progress bars (default process.stderr; null for none). */
  bars?: NodeJS.WriteStream | null;
}

export interface DemoRun {
  dir: string;
  configPath: string;
  config: Config;
  tokenFile: string;
  /** Still running: the caller closes it (step 10 keeps it up for the MCP tools). */
  simulator: Simulator;
  runId: string;
  version: string;
  /** True when the pipeline had finished in an earlier run and was reused as it was. */
  reused: boolean;
  /** The champion was moved past a failed gate (the demo says so when it happens). */
  forced: boolean;
  evaluation: EvaluationResult;
  rows: TaskRow[];
  /** Tasks whose 95% interval to the best baseline is above 0 (a point win without an interval). */
  wins: number;
  times: Partial<Record<StepName, StepTime>>;
  reportPath: string;
  examples: ExampleAnswer[];
  /** Step 10: the scan of a held-out incident (null when the validation days hold none). */
  scan: ScanStep | null;
  out: Out;
}

/** The demo was stopped (Ctrl-C) at a step boundary; a rerun continues. */
export class DemoStopped extends WorkError {
  override name = "DemoStopped";
}

// Every setting the state file keeps: a field added to its schema is compared without more code.
const SETTING_KEYS = Object.keys(DemoState.shape.settings.shape) as (keyof DemoSettings)[];
type KeptSettings = keyof DemoState["settings"];
// Fails to compile when DemoSettings and the schema name different fields.
const _keptAll: [KeptSettings, keyof DemoSettings] extends [keyof DemoSettings, KeptSettings] ? true : never =
  true;
const sameSettings = (a: DemoSettings, b: DemoSettings) => SETTING_KEYS.every((k) => a[k] === b[k]);

const describeSettings = (s: DemoSettings) => {
  // The dataset build's split of max_examples; log_triage keeps that share held out.
  const { train, val } = splitCaps({ max_examples: s.examples }, DEMO_VAL_FRACTION);
  return `${s.days} days (${s.tracesPerDay} traces a day), seed ${s.seed}, ${s.steps} steps, up to ${train} training examples per task, up to ${s.valExamples} held out (log_triage ${val})`;
};

export async function runDemo(opts: DemoOptions): Promise<DemoRun> {
  const out = makeOut(opts.stdout ?? process.stdout, opts.bars === undefined ? process.stderr : opts.bars);
  const dir = resolve(opts.dir);
  const shown = relative(process.cwd(), dir) || ".";
  if (opts.fresh) await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const previous = await readState(dir);
  if (previous && !sameSettings(previous.settings, opts.settings))
    throw new UsageError(
      `${shown} holds a demo built with other settings (${describeSettings(previous.settings)}); add --fresh to start over with ${describeSettings(opts.settings)}`,
    );
  const state: DemoState = previous
    ? {
        ...previous,
        times: Object.fromEntries(
          Object.entries(previous.times).map(([k, t]) => [k, { ...t, earlier: true }]),
        ),
      }
    : {
        schema: 1,
        created_at: new Date().toISOString(),
        settings: opts.settings,
        // The simulated window ends now, to the minute; a rerun serves the very same homelab.
        simulator_end: Math.floor(Date.now() / 60_000) * 60_000,
        run_id: null,
        times: {},
      };
  const times = state.times as Partial<Record<StepName, StepTime>>;
  const done = async (step: StepName, t: StepTime) => {
    times[step] = t;
    await writeState(dir, state);
  };
  out.line(
    `trm-forge demo: ${describeSettings(opts.settings)}; data directory ${shown}${previous ? " (reusing what is there; --fresh starts over)" : ""}`,
  );

  // 1. The simulated homelab.
  out.line(`\n${stepTitle("simulator")}`);
  let sw = new Stopwatch();
  const simulator = await createSimulator({
    seed: opts.settings.seed,
    days: opts.settings.days,
    tracesPerDay: opts.settings.tracesPerDay,
    end: state.simulator_end,
  });
  try {
    const gt = simulator.groundTruth;
    out.line(
      `   ${simulator.url} serves Prometheus, Loki and Tempo for ${gt.services.length} services, ${gt.start.slice(0, 16)} to ${gt.end.slice(0, 16)} UTC, with ${gt.incidents.length} incidents (${[...new Set(gt.incidents.map((i) => i.kind.replace(/_/g, " ")))].join(", ")})`,
    );
    await done("simulator", sw.read());

    // 2. The config, in the data directory.
    out.line(`\n${stepTitle("config")}`);
    sw = new Stopwatch();
    const tokenFile = await ensureToken(dir);
    const configPath = configFile(dir);
    const raw = demoConfig({
      dataDir: dir,
      simulatorUrl: simulator.url,
      settings: opts.settings,
      tokenFile,
      serverPort: opts.serverPort ?? 8750,
    });
    const config = parseConfig(raw, configPath);
    await atomicWrite(
      configPath,
      `# Written by \`trm-forge demo\` (rewritten on every run: the simulator's port changes).\n# Every key is explained in the README's config reference.\n${stringify(raw)}`,
    );
    const backend = await initBackend(config.model.backend);
    out.line(
      `   ${relative(process.cwd(), configPath)}: agent ${DEMO_AGENT} (code: this repository; Prometheus, Loki, Tempo: the simulator), model preset demo (T=${config.model.H_cycles}, n=${config.model.L_cycles}, up to ${config.model.halt_max_steps} supervision steps), ${config.dataset.seq_len} tokens, ${config.train.max_steps} steps of ${config.train.batch_size}; backend ${backend.backend}`,
    );
    await done("config", sw.read());

    // 3-7. The pipeline.
    const pipeline = createPipeline(config, { report: false });
    let record: RunRecord | null = null;
    if (state.run_id) record = await pipeline.getRun(state.run_id, DEMO_AGENT).catch(() => null);
    const reused = record?.status === "succeeded";
    if (!reused)
      record = await runPipeline(
        pipeline,
        out,
        done,
        () => writeState(dir, state),
        state,
        opts.signal,
        record,
      );
    else {
      out.line(`\n   run ${record!.id} finished earlier: reusing its model (--fresh trains again)`);
      for (const s of record!.stages) out.line(`${stepTitle(s.name)}: done earlier`);
    }
    const run = record!;
    const store = pipeline.store;
    const evaluation = JSON.parse(
      (await store.get(evaluationRunKey(DEMO_AGENT, run.id))).toString("utf8"),
    ) as EvaluationResult;
    const rows = taskRows(evaluation);
    const wins = rows.filter((r) => r.beats).length;
    if (reused) printEvaluation(out, evaluation);

    // 7 (the alias). The gate promotes a candidate that beats every baseline.
    const version = run.model_version;
    if (!version) throw new WorkError(`run ${run.id} registered no model version`);
    const index = await pipeline.registry.read(DEMO_AGENT);
    let forced = false;
    if (index.aliases.champion === version) {
      out.line(`   ${version} is the champion: the gate passed, so the pipeline promoted it`);
    } else {
      const failed = evaluation.gate.checks.filter((c) => !c.passed).map((c) => c.detail);
      out.line(`   the gate refused ${version}:`);
      for (const f of failed) out.line(`     - ${f}`);
      await pipeline.registry.promote(DEMO_AGENT, version, {
        actor: "demo",
        reason: `demo: promoted past the gate so the server has a model (${wins}/${rows.length} tasks beat their baselines)`,
        force: true,
      });
      forced = true;
      out.line(
        `   promoted anyway, for the demo only (recorded as forced in the registry's history); a scheduled run would keep the old champion`,
      );
    }

    // 8. The report.
    out.line(`\n${stepTitle("report")}`);
    sw = new Stopwatch();
    const key =
      reused && (await store.exists(reportKey(DEMO_AGENT, run.id)))
        ? reportKey(DEMO_AGENT, run.id)
        : await writeRunReport(store, run);
    const reportPath = (store as FsStore).pathOf(key);
    out.line(`   ${relative(process.cwd(), reportPath)}`);
    await done("report", sw.read());

    // 9. Three questions through the serving path; 10. what was wrong on a held-out day.
    const manifest = await readDatasetManifest(store, DEMO_AGENT, run.dataset_id ?? evaluation.dataset_id);
    const val = { start: Date.parse(manifest.window.split_at), end: Date.parse(manifest.window.end) };
    const server = new ModelServer({ config, store, agents: [DEMO_AGENT] });
    await server.start();
    let examples: ExampleAnswer[];
    let scan: ScanStep | null;
    try {
      out.line(`\n${stepTitle("predict")}`);
      sw = new Stopwatch();
      examples = await askThree(config, store, val, simulator, out, server);
      await done("predict", sw.read());

      out.line(`\n${stepTitle("scan")}`);
      sw = new Stopwatch();
      scan = await scanHeldOutIncident(
        {
          config,
          store,
          registry: pipeline.registry,
          agent: DEMO_AGENT,
          val,
          groundTruth: simulator.groundTruth,
        },
        server,
      );
      for (const l of scan?.lines ?? ["   no staged incident fits a 2-hour window in the validation days"])
        out.line(`   ${l}`);
      if (scan) {
        // The report shows the run's validation-day scans: this one, on its timeline.
        await addRunScan(store, run.id, scan.result);
        await writeRunReport(store, run);
        out.line(
          `   the findings and their timeline are in the report too (${relative(process.cwd(), reportPath)})`,
        );
      }
      await done("scan", sw.read());
    } finally {
      await server.stop();
    }

    out.line("\n   Time per step (wall clock and CPU; CPU counts both cores the kernels use):");
    for (const l of timesTable(times)) out.line(l);
    out.line(`   backend ${activeBackend()}`);
    return {
      dir,
      configPath,
      config,
      tokenFile,
      simulator,
      runId: run.id,
      version,
      reused,
      forced,
      evaluation,
      rows,
      wins,
      times,
      reportPath,
      examples,
      scan,
      out,
    };
  } catch (err) {
    await simulator.close();
    throw err;
  }
}

/** Step 6's table: each task's primary metric against its best baseline, on the same validation examples. */
function printEvaluation(out: Out, ev: EvaluationResult): void {
  const rows = taskRows(ev);
  const n = rows.reduce((a, r) => a + r.examples, 0);
  out.line(
    `   The model against its baselines on ${n} validation examples (the newest days of the window, never trained on):`,
  );
  for (const l of taskTable(rows)) out.line(l);
  const sure = rows.some((r) => r.interval) ? " (the 95% interval of the difference above 0)" : "";
  out.line(
    `   => it beats its baselines on ${rows.filter((r) => r.beats).length} of ${rows.length} tasks${sure}`,
  );
}

/** Starts (or resumes) the run and draws it; resolves with the succeeded record. */
async function runPipeline(
  pipeline: Pipeline,
  out: Out,
  done: (step: StepName, t: StepTime) => Promise<void>,
  save: () => Promise<void>,
  state: DemoState,
  signal: AbortSignal | undefined,
  previous: RunRecord | null,
): Promise<RunRecord> {
  const draw = runProgress(out);
  let sw = new Stopwatch();
  let chain = Promise.resolve();
  const later = (fn: () => Promise<void> | void) => {
    chain = chain.then(fn).catch((err) => out.line(`   (${(err as Error).message})`));
  };
  const onEvent = (e: RunEvent) => {
    draw(e);
    if (e.type !== "stage") return;
    if (e.status === "running") {
      sw = new Stopwatch();
      later(() => out.line(`\n${stepTitle(e.stage)}${e.attempt > 1 ? ` (attempt ${e.attempt})` : ""}`));
      return;
    }
    const t = sw.read();
    later(async () => {
      if (e.status === "succeeded" || e.status === "partial") {
        await done(e.stage, t);
        const r = await pipeline.getRun(e.runId, DEMO_AGENT);
        out.line(
          `   ${e.status === "partial" ? "partly done" : "done"} in ${secs(t.wall_s)} (CPU ${secs(t.cpu_s)}): ${stageSummary(r, e.stage)}`,
        );
        const evaluation = e.stage === "evaluate" ? stageOutput(r, "evaluate")?.evaluation : undefined;
        if (evaluation)
          printEvaluation(out, JSON.parse((await pipeline.store.get(evaluation)).toString("utf8")));
      } else out.line(`   ${e.stage} ${e.status}${e.error ? `: ${e.error}` : ""}`);
    });
  };
  const trigger = { kind: "cli" as const, actor: "demo", reason: "trm-forge demo" };
  if (previous) out.line(`\n   continuing run ${previous.id} (${previous.status}) where it stopped`);
  const started = previous
    ? await pipeline.startRun({ agent: DEMO_AGENT, resume: previous.id, onEvent, trigger })
    : await pipeline.startRun({ agent: DEMO_AGENT, onEvent, trigger });
  if (!started.started && !previous)
    throw new WorkError(
      `another run (${started.runId}) is using this data directory; wait for it or stop it`,
    );
  state.run_id = started.runId;
  await save();
  const stop = () => void pipeline.cancel(started.runId, DEMO_AGENT);
  signal?.addEventListener("abort", stop, { once: true });
  let record: RunRecord;
  try {
    record = await started.done;
  } finally {
    signal?.removeEventListener("abort", stop);
  }
  await chain;
  out.clear();
  if (record.status === "succeeded") return record;
  if (record.status === "cancelled" || signal?.aborted)
    throw new DemoStopped(
      `stopped at a step boundary (run ${record.id}); run the demo again to continue where it stopped`,
    );
  throw new WorkError(
    `the pipeline run ${record.id} ${record.status}: ${record.error ?? "see its run.json"}`,
  );
}

const n = (v: unknown) => (typeof v === "number" ? v.toLocaleString("en-US") : String(v ?? "?"));

function stageSummary(r: RunRecord, stage: StageName): string {
  switch (stage) {
    case "collect": {
      const o = stageOutput(r, "collect");
      const sources = Object.entries(o?.sources ?? {})
        .map(([k, v]) => `${k} ${v}`)
        .join(", ");
      return `${n(o?.records)} records in ${n(o?.segments)} segments (${sources})`;
    }
    case "build": {
      const o = stageOutput(r, "build");
      return `${n(o?.examples?.train)} training and ${n(o?.examples?.val)} validation examples, vocabulary ${n(o?.vocab_size)}${o?.reused ? " (the same data: dataset reused)" : ""}`;
    }
    case "train": {
      const o = stageOutput(r, "train");
      return `${n(o?.steps)} steps (${o?.stopped}), best validation score ${typeof o?.best_score === "number" ? o.best_score.toFixed(3) : "?"} at step ${n(o?.best_step)}, ${n(o?.params)} parameters, ${typeof o?.samples_per_s === "number" ? o.samples_per_s.toFixed(1) : "?"} samples/s`;
    }
    case "evaluate":
      return `gate ${stageOutput(r, "evaluate")?.gate?.passed ? "passed" : "failed"}`;
    case "deploy": {
      const o = stageOutput(r, "deploy");
      return `registered ${o?.version}${o?.promoted_to ? `, promoted to ${o.promoted_to}` : ", not promoted"}`;
    }
  }
}

async function askThree(
  config: Config,
  store: ObjectStore,
  val: { start: number; end: number },
  simulator: Simulator,
  out: Out,
  server: ModelServer,
): Promise<ExampleAnswer[]> {
  const answers: ExampleAnswer[] = [];
  const ctx = {
    store,
    agent: DEMO_AGENT,
    serviceLabels: config.dataset.service_labels,
    val,
    groundTruth: simulator.groundTruth,
    points: config.dataset.tasks.metric_forecast.points,
    stepMs: config.dataset.tasks.metric_forecast.step,
  };
  for (const ask of [logExample, traceExample, metricExample]) {
    const a = await ask(ctx, server);
    if (!a) continue;
    answers.push(a);
    out.line(`\n   ${answers.length}. ${a.lines[0]}`);
    for (const l of a.lines.slice(1)) out.line(`   ${l}`);
    out.line(
      `      (${a.task}, model ${a.result.version}: ${a.result.steps} of ${a.result.max_steps} recursion steps, ${a.result.latency_ms} ms)`,
    );
  }
  return answers;
}
