// The server process: one store, one pipeline (with its job manager), the served models and the
// croner schedule, shared by every MCP session, stdio or HTTP.
import type { Config } from "../config/index.js";
import { log } from "../log.js";
import type { ModelRegistry } from "../pipeline/deploy/registry.js";
import type { DeployHook } from "../pipeline/deploy/stage.js";
import type { StageFns } from "../pipeline/run.js";
import { processStage } from "../pipeline/runner/process.js";
import { saveScan } from "../pipeline/scan/index.js";
import { type CatchUp, Scheduler } from "../pipeline/schedule.js";
import { restoreStoreGauges } from "../pipeline/store-gauges.js";
import { ModelServer } from "../serve/index.js";
import { scanChampion } from "../serve/scan.js";
import { type ObjectStore, openStore } from "../store/index.js";
import { TokenVerifier } from "./auth.js";
import { JobManager } from "./jobs.js";

export interface ServerContextOptions {
  config: Config;
  /** Default: openStore(config). */
  store?: ObjectStore;
  /** Run the croner schedule in this process (default: config.schedule.enabled). */
  schedule?: boolean;
  /** Stage implementations instead of the real ones (tests). */
  stages?: Partial<StageFns>;
  deployHooks?: DeployHook[];
  env?: NodeJS.ProcessEnv;
  now?: () => Date;
}

export interface Health {
  status: "ok" | "degraded";
  uptime_s: number;
  store: { kind: string; ok: boolean; error: string | null };
  scheduler: { enabled: boolean; running: boolean; jobs: number; next_run: string | null };
  jobs: { running: number };
  served: {
    agent: string;
    champion: string | null;
    challenger: string | null;
    last_failure: string | null;
  }[];
}

export class ServerContext {
  readonly config: Config;
  readonly store: ObjectStore;
  readonly jobs: JobManager;
  readonly models: ModelServer;
  readonly tokens: TokenVerifier;
  readonly scheduler: Scheduler | null;
  private readonly startedAt = Date.now();
  private started = false;
  private stopped: Promise<void> | null = null;
  catchUps: CatchUp[] = [];

  constructor(opts: ServerContextOptions) {
    this.config = opts.config;
    this.store = opts.store ?? openStore(opts.config, opts.env);
    // Tokens are read (and checked) first: a bad reference stops the server before it serves.
    this.tokens = new TokenVerifier(opts.config, opts.env);
    this.jobs = new JobManager({
      config: opts.config,
      store: this.store,
      // Evaluation runs in a child process under every runner, training too in-process (the other
      // runners train elsewhere), so this one keeps answering.
      stages: {
        evaluate: processStage("evaluate"),
        ...(opts.config.runner === "in-process" ? { train: processStage("train") } : {}),
        ...opts.stages,
      },
      deployHooks: opts.deployHooks,
      now: opts.now,
    });
    this.models = new ModelServer({ config: opts.config, store: this.store, registry: this.registry });
    const schedule = opts.schedule ?? opts.config.schedule.enabled;
    this.scheduler =
      schedule && opts.config.schedule.enabled
        ? new Scheduler({
            config: opts.config,
            pipeline: this.jobs.pipeline,
            store: this.store,
            now: opts.now,
            scan: (agent, end) => this.scanAndSave(agent, end),
          })
        : null;
  }

  /** A scheduled scan: the default window up to `end`, stored as the agent's newest. */
  private async scanAndSave(agent: string, end: Date): Promise<void> {
    const { result } = await scanChampion(this.models, {
      config: this.config,
      store: this.store,
      registry: this.registry,
      agent,
      end: end.getTime(),
    });
    await saveScan(this.store, result);
    log.info(
      { agent, findings: result.findings.length, top: result.findings[0]?.service ?? null },
      "scheduled anomaly scan stored",
    );
  }

  get registry(): ModelRegistry {
    return this.jobs.pipeline.registry;
  }

  get pipeline() {
    return this.jobs.pipeline;
  }

  /** Loads the served models, resumes interrupted jobs, starts the schedule. */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    // Gauges describing the store come from the store, so a restart does not empty them.
    await restoreStoreGauges(this.store, this.registry, Object.keys(this.config.agents));
    await this.models.start();
    await this.jobs.start();
    if (this.scheduler) this.catchUps = await this.scheduler.start();
  }

  /**
   * Stops the schedule, then every job at a step boundary (checkpoint written; resumed by the
   * next server), then the served models once their requests are done.
   */
  stop(graceMs = this.config.server.shutdown_grace): Promise<void> {
    this.stopped ??= (async () => {
      this.scheduler?.stop();
      await this.jobs.shutdown(graceMs);
      await this.models.stop();
      log.info("server stopped");
    })();
    return this.stopped;
  }

  async health(): Promise<Health> {
    let storeOk = true;
    let storeError: string | null = null;
    try {
      await this.store.exists("healthz");
    } catch (err) {
      storeOk = false;
      storeError = (err as Error).message;
    }
    let next: string | null = null;
    let jobs = 0;
    if (this.scheduler) {
      try {
        const st = await this.scheduler.status();
        jobs = st.length;
        next =
          st
            .map((j) => j.next_run)
            .filter((x): x is string => Boolean(x))
            .sort()[0] ?? null;
      } catch (err) {
        storeError ??= (err as Error).message;
      }
    }
    const served = this.models.status().map((s) => ({
      agent: s.agent,
      champion: s.champion?.version ?? null,
      challenger: s.challenger?.version ?? null,
      last_failure: s.last_failure ? `${s.last_failure.to}: ${s.last_failure.error}` : null,
    }));
    return {
      status: storeOk ? "ok" : "degraded",
      uptime_s: Math.round((Date.now() - this.startedAt) / 1000),
      store: { kind: this.store.kind, ok: storeOk, error: storeError },
      scheduler: {
        enabled: this.config.schedule.enabled,
        running: this.scheduler !== null && this.started && !this.stopped,
        jobs,
        next_run: next,
      },
      jobs: { running: this.jobs.active().length },
      served,
    };
  }
}
