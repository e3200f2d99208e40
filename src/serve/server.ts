// The served TRM. At start it loads each agent's champion (and challenger) from the registry,
// every artifact checked against its sha256, then follows alias moves (in-process notices from
// the registry, and a poll of registry.json for moves made by other processes).
//
// A swap loads the new version beside the old one and smoke-tests it on a stored validation
// example; only then is the pointer switched (one assignment, so a request sees the old model or
// the new one, never a mix). Requests that hold the old model finish on it, and its tensors are
// freed after the last one. A version that fails to load or its smoke test is not switched to:
// the old one keeps serving and the failure is reported in status() and the log.
import * as z from "zod";
import type { Config } from "../config/schema.js";
import { UsageError, WorkError } from "../errors.js";
import { log } from "../log.js";
import { predictDuration, predictionsTotal, servedModelInfo } from "../metrics.js";
import { initBackend } from "../model/backend.js";
import { type Alias, ModelRegistry, registryEvents } from "../pipeline/deploy/registry.js";
import { getTask } from "../pipeline/tasks/index.js";
import { type Encoded, TASK_NAMES, type TaskName } from "../pipeline/tasks/types.js";
import type { ObjectStore } from "../store/index.js";
import { loadServedModel, type RecalledOutput, type ServedModel } from "./served-model.js";
import { readShadowFile, ShadowRecorder, type ShadowReport } from "./shadow.js";
import { type SmokeResult, smokeTest } from "./smoke.js";
import { InferenceWorker } from "./worker.js";

export class ServeError extends WorkError {
  override name = "ServeError";
}

export interface PredictResult {
  agent: string;
  task: TaskName;
  /** The champion version that answered. */
  version: string;
  /** The task's typed answer; every label carries { value, confidence }. */
  answer: unknown;
  /** The lowest per-label confidence of the answer (0..1). */
  confidence: number;
  /** sigmoid(q_halt) at the step the recursion stopped. */
  halt_confidence: number;
  /**
   * For a task the version remembers (trace_outcome): how many training examples had this very
   * input. Their outcomes weigh in the answer; 0 means the model answered alone.
   */
  seen_in_training?: number;
  /** Supervision steps used (stops early once q_halt > 0). */
  steps: number;
  max_steps: number;
  latency_ms: number;
}

export interface SwapRecord {
  agent: string;
  alias: Alias;
  from: string | null;
  to: string | null;
  ok: boolean;
  error?: string;
  smoke?: SmokeResult;
  ms: number;
  at: string;
}

export interface ServedModelStatus {
  version: string;
  loaded_at: string;
  in_flight: number;
}

export interface AgentStatus {
  agent: string;
  champion: ServedModelStatus | null;
  challenger: ServedModelStatus | null;
  /** The last swap that failed and what is served instead, until a later swap of that alias succeeds. */
  last_failure: SwapRecord | null;
  swaps: number;
}

interface AgentSlots {
  champion: ServedModel | null;
  challenger: ServedModel | null;
  /** A version that failed per alias, and when: retried only after FAILED_RETRY_MS (or once the alias moves). */
  failed: Partial<Record<Alias, { version: string; at: number }>>;
  lastFailure: SwapRecord | null;
  swaps: number;
  queue: Promise<unknown>;
  shadow: ShadowRecorder | null;
  shadowPending: number;
  /** Every model loaded for the agent and not yet retired. */
  all: Set<ServedModel>;
}

/** A query may be a task's query object, or a plain string for the tasks that read one text. */
export const PredictInput = z.union([z.string(), z.record(z.string(), z.unknown())]);

export interface ModelServerOptions {
  config: Config;
  store: ObjectStore;
  registry?: ModelRegistry;
  /** Agents to serve; default: config.serve.agents, else every agent with a registry in the store. */
  agents?: string[];
  /** Replaces Math.random for the shadow sampling (tests). */
  random?: () => number;
}

export class ModelServer {
  readonly registry: ModelRegistry;
  private readonly slots = new Map<string, AgentSlots>();
  private readonly history: SwapRecord[] = [];
  private poller: NodeJS.Timeout | null = null;
  private flusher: NodeJS.Timeout | null = null;
  private stopped = false;
  private readonly random: () => number;
  /** Runs every served model's forward passes, off the event loop. */
  private readonly worker: InferenceWorker;
  /** Serving every agent in the store (no explicit list): an agent's first alias adds it. */
  private followAll = false;
  private readonly onAlias = (e: { agent: string }) => {
    if (this.slots.has(e.agent)) void this.reconcile(e.agent).catch(() => undefined);
    else if (this.followAll && !this.stopped) void this.serveAgent(e.agent).catch(() => undefined);
  };

  constructor(private readonly opts: ModelServerOptions) {
    this.registry = opts.registry ?? new ModelRegistry(opts.store, { dataDir: opts.config.data_dir });
    this.random = opts.random ?? Math.random;
    this.worker = new InferenceWorker(opts.config.model.backend);
  }

  private get failedRetryMs(): number {
    return Math.max(60_000, 10 * this.cfg.poll_interval_ms);
  }

  private get cfg() {
    return this.opts.config.serve;
  }

  /** Loads every agent's models and starts following the registry. */
  async start(): Promise<void> {
    await initBackend(this.opts.config.model.backend);
    this.followAll = !this.opts.agents && this.cfg.agents.length === 0;
    const agents = this.opts.agents ?? (this.cfg.agents.length ? this.cfg.agents : await this.findAgents());
    for (const agent of agents) this.slots.set(agent, this.emptySlots());
    registryEvents.on("alias", this.onAlias);
    await Promise.all(agents.map((a) => this.reconcile(a)));
    this.poller = setInterval(() => {
      for (const agent of this.slots.keys()) void this.reconcile(agent).catch(() => undefined);
    }, this.cfg.poll_interval_ms);
    this.poller.unref();
    this.flusher = setInterval(() => void this.flushShadow(), 5000);
    this.flusher.unref();
  }

  /** Stops following the registry, waits for in-flight requests, frees every model. */
  async stop(): Promise<void> {
    this.stopped = true;
    registryEvents.off("alias", this.onAlias);
    if (this.poller) clearInterval(this.poller);
    if (this.flusher) clearInterval(this.flusher);
    await Promise.all([...this.slots.values()].map((s) => s.queue.catch(() => undefined)));
    await this.flushShadow();
    const retiring: Promise<void>[] = [];
    for (const s of this.slots.values()) {
      for (const m of new Set([s.champion, s.challenger, ...s.all]))
        if (m) retiring.push(m.retire(this.cfg.drain_timeout_ms));
      s.champion = s.challenger = null;
      s.all.clear();
    }
    await Promise.all(retiring);
    await this.worker.close();
  }

  agents(): string[] {
    return [...this.slots.keys()];
  }

  /** Adds an agent at run time (e.g. its first model was just registered). */
  async serveAgent(agent: string): Promise<void> {
    if (!this.slots.has(agent)) this.slots.set(agent, this.emptySlots());
    await this.reconcile(agent);
  }

  status(): AgentStatus[] {
    return [...this.slots.entries()].map(([agent, s]) => ({
      agent,
      champion: modelStatus(s.champion),
      challenger: modelStatus(s.challenger),
      last_failure: s.lastFailure,
      swaps: s.swaps,
    }));
  }

  /** The model an alias of an agent is served by right now (benchmarks, diagnostics). */
  model(agent: string, alias: Alias = "champion"): ServedModel | null {
    return this.slots.get(agent)?.[alias] ?? null;
  }

  /** Tensors the served models hold in the inference worker (tests, diagnostics: a retired model frees its own). */
  tensors(): Promise<number> {
    return this.worker.tensors();
  }

  /** Recent swaps, newest last. */
  swaps(): SwapRecord[] {
    return [...this.history];
  }

  /** The live shadow comparison of an agent's champion and challenger (null without a challenger). */
  compare(agent: string): ShadowReport | null {
    return this.slots.get(agent)?.shadow?.report() ?? null;
  }

  /**
   * Answers a query with the agent's champion: encode, recursion with early halting, decode.
   * The caller always gets the champion's answer; a share of queries also runs on the challenger
   * afterwards, in the background.
   */
  async predict(agent: string, task: string, input: unknown): Promise<PredictResult> {
    const t0 = performance.now();
    const taskName = checkTask(task);
    try {
      const query = this.checkInput(taskName, input);
      const s = this.slots.get(agent);
      if (!s)
        throw new ServeError(
          `agent "${agent}" is not served (served: ${this.agents().join(", ") || "none"})`,
        );
      const model = this.lease(s, "champion");
      if (!model) throw new ServeError(`agent "${agent}" has no champion model loaded${failureNote(s)}`);
      let out: { encoded: Encoded; sample: RecalledOutput; answer: unknown };
      try {
        out = await runOne(model, taskName, query);
      } finally {
        model.release();
      }
      const latency = performance.now() - t0;
      const result: PredictResult = {
        agent,
        task: taskName,
        version: model.version,
        answer: out.answer,
        confidence: minConfidence(out.answer),
        halt_confidence: out.sample.haltConfidence,
        ...(model.remembers(taskName) ? { seen_in_training: out.sample.seen } : {}),
        steps: out.sample.steps,
        max_steps: model.cfg.halt_max_steps,
        latency_ms: Math.round(latency * 100) / 100,
      };
      predictDuration.observe({ agent, task: taskName, role: "champion" }, latency / 1000);
      predictionsTotal.inc({ agent, task: taskName, result: "ok" });
      this.maybeShadow(s, taskName, query, result);
      return result;
    } catch (err) {
      predictionsTotal.inc({ agent, task: taskName, result: "error" });
      throw err;
    }
  }

  /** Brings the served models in line with the registry's aliases (serialised per agent). */
  reconcile(agent: string): Promise<SwapRecord[]> {
    const s = this.slots.get(agent);
    if (!s) return Promise.resolve([]);
    const run = s.queue.catch(() => undefined).then(() => this.reconcileNow(agent, s));
    s.queue = run.catch(() => undefined);
    return run;
  }

  private async reconcileNow(agent: string, s: AgentSlots): Promise<SwapRecord[]> {
    if (this.stopped) return [];
    let index: Awaited<ReturnType<ModelRegistry["read"]>>;
    try {
      index = await this.registry.read(agent);
    } catch (err) {
      log.warn({ agent, err: (err as Error).message }, "cannot read the registry; serving what is loaded");
      return [];
    }
    const records: SwapRecord[] = [];
    for (const alias of ["champion", "challenger"] as const) {
      const target = index.aliases[alias];
      const current = s[alias]?.version ?? null;
      if (target === current) {
        delete s.failed[alias];
        continue;
      }
      const failed = s.failed[alias];
      // A refused version is not reloaded on every poll; a transient cause (the store was down)
      // gets another try after a while.
      if (target !== null && failed?.version === target && Date.now() - failed.at < this.failedRetryMs)
        continue;
      records.push(await this.swap(agent, s, alias, target));
    }
    await this.retireUnused(s);
    this.resetShadow(agent, s);
    return records;
  }

  private async swap(agent: string, s: AgentSlots, alias: Alias, to: string | null): Promise<SwapRecord> {
    const t0 = performance.now();
    const from = s[alias]?.version ?? null;
    const done = (ok: boolean, extra: Partial<SwapRecord> = {}): SwapRecord => {
      const rec: SwapRecord = {
        agent,
        alias,
        from,
        to,
        ok,
        ms: Math.round(performance.now() - t0),
        at: new Date().toISOString(),
        ...extra,
      };
      this.history.push(rec);
      if (this.history.length > 100) this.history.shift();
      return rec;
    };
    if (to === null) {
      s[alias] = null;
      if (from) servedModelInfo.remove({ agent, alias, version: from });
      s.swaps++;
      return done(true);
    }
    // The other alias may already hold this version (a challenger promoted to champion): reuse it.
    const other = s[alias === "champion" ? "challenger" : "champion"];
    let next: ServedModel | null = other && other.version === to && !other.isDisposed ? other : null;
    let smoke: SmokeResult | undefined;
    if (!next) {
      try {
        next = await loadServedModel(
          this.registry,
          agent,
          to,
          { maxBatchSize: this.cfg.max_batch_size, maxWaitMs: this.cfg.max_wait_ms },
          this.worker,
        );
      } catch (err) {
        return this.failed(agent, s, alias, done(false, { error: `load failed: ${(err as Error).message}` }));
      }
      try {
        smoke = await smokeTest(next, this.opts.store);
      } catch (err) {
        next.dispose();
        return this.failed(
          agent,
          s,
          alias,
          done(false, { error: `smoke test failed: ${(err as Error).message}` }),
        );
      }
    }
    s[alias] = next; // the switch
    delete s.failed[alias];
    if (s.lastFailure?.alias === alias) s.lastFailure = null;
    s.swaps++;
    if (from) servedModelInfo.remove({ agent, alias, version: from });
    servedModelInfo.set({ agent, alias, version: to }, 1);
    const rec = done(true, { smoke });
    log.info({ agent, alias, from, to, ms: rec.ms }, "served model switched");
    return rec;
  }

  private failed(agent: string, s: AgentSlots, alias: Alias, rec: SwapRecord): SwapRecord {
    if (rec.to) s.failed[alias] = { version: rec.to, at: Date.now() };
    s.lastFailure = rec;
    log.error(
      { agent, alias, version: rec.to, kept: rec.from, err: rec.error },
      "model swap refused; the previous model keeps serving",
    );
    return rec;
  }

  /** Frees models no alias points to any more, once their requests are done. */
  private async retireUnused(s: AgentSlots): Promise<void> {
    const keep = new Set([s.champion, s.challenger].filter((m): m is ServedModel => m !== null));
    for (const m of keep) s.all.add(m);
    const retiring: Promise<void>[] = [];
    for (const m of s.all) {
      if (keep.has(m)) continue;
      s.all.delete(m);
      retiring.push(m.retire(this.cfg.drain_timeout_ms));
    }
    // Retirement completes in the background: a swap does not wait for slow requests.
    void Promise.all(retiring);
  }

  private lease(s: AgentSlots, alias: Alias): ServedModel | null {
    for (let i = 0; i < 3; i++) {
      const m = s[alias];
      if (!m) return null;
      if (m.acquire()) return m;
    }
    return null;
  }

  private maybeShadow(s: AgentSlots, task: TaskName, query: unknown, champion: PredictResult): void {
    const rec = s.shadow;
    if (!rec || !s.challenger || this.cfg.shadow_fraction <= 0) return;
    if (this.random() >= this.cfg.shadow_fraction) return;
    if (s.shadowPending >= this.cfg.shadow_max_pending) {
      rec.dropped();
      return;
    }
    s.shadowPending++;
    // After the caller's answer is on its way: the shadow never delays it.
    setImmediate(() => {
      const model = this.lease(s, "challenger");
      const championSample = {
        answer: champion.answer,
        confidence: champion.confidence,
        steps: champion.steps,
        latencyMs: champion.latency_ms,
      };
      if (!model || model.version !== rec.challenger) {
        model?.release();
        s.shadowPending--;
        return;
      }
      const t0 = performance.now();
      runOne(model, task, query)
        .then((out) => {
          const latencyMs = performance.now() - t0;
          predictDuration.observe({ agent: rec.agent, task, role: "challenger" }, latencyMs / 1000);
          rec.record({
            task,
            champion: championSample,
            challenger: {
              answer: out.answer,
              confidence: minConfidence(out.answer),
              steps: out.sample.steps,
              latencyMs,
            },
          });
        })
        .catch((err) => rec.record({ task, champion: championSample, challenger: { error: String(err) } }))
        .finally(() => {
          model.release();
          s.shadowPending--;
        });
    });
  }

  private resetShadow(agent: string, s: AgentSlots): void {
    const pair = s.champion && s.challenger ? [s.champion.version, s.challenger.version] : null;
    if (!pair) {
      s.shadow = null;
      return;
    }
    if (s.shadow && s.shadow.champion === pair[0] && s.shadow.challenger === pair[1]) return;
    const rec = new ShadowRecorder(agent, pair[0], pair[1]);
    s.shadow = rec;
    readShadowFile(this.opts.store, agent)
      .then((prev) => rec.resume(prev))
      .catch(() => undefined);
  }

  private async flushShadow(): Promise<void> {
    for (const s of this.slots.values()) {
      await s.shadow?.flush(this.opts.store).catch((err) => {
        log.warn({ err: (err as Error).message }, "could not save the shadow comparison");
      });
    }
  }

  private checkInput(task: TaskName, input: unknown): unknown {
    const parsed = PredictInput.safeParse(input);
    if (!parsed.success) throw new UsageError("input must be a text or a JSON object (the task's query)");
    const size = typeof input === "string" ? input.length : JSON.stringify(input).length;
    if (size > this.cfg.max_input_chars)
      throw new UsageError(
        `input is ${size} characters; the limit is ${this.cfg.max_input_chars} (serve.max_input_chars)`,
      );
    return typeof input === "string" ? textQuery(task, input) : input;
  }

  private emptySlots(): AgentSlots {
    return {
      champion: null,
      challenger: null,
      failed: {},
      lastFailure: null,
      swaps: 0,
      queue: Promise.resolve(),
      shadow: null,
      shadowPending: 0,
      all: new Set(),
    };
  }

  private async findAgents(): Promise<string[]> {
    const out: string[] = [];
    for (const o of await this.opts.store.list("models")) {
      const m = /^models\/([^/]+)\/registry\.json$/.exec(o.key);
      if (m) out.push(m[1]);
    }
    return out;
  }
}

/** Encodes with the model's own vocabulary, runs it, decodes; the caller holds the model's lease. */
async function runOne(
  model: ServedModel,
  task: TaskName,
  query: unknown,
): Promise<{ encoded: Encoded; sample: RecalledOutput; answer: unknown }> {
  const mod = getTask(task);
  const encoded = mod.encode(query, model.vocab);
  const sample = await model.predict(encoded);
  const answer = mod.decode({ probs: sample.probs }, encoded, model.vocab);
  return { encoded, sample, answer };
}

/** Plain text for the tasks whose query is one text; the others need their JSON query. */
export function textQuery(task: TaskName, text: string): unknown {
  switch (task) {
    case "log_triage":
      return { line: text };
    case "trace_outcome":
      return {
        path: text
          .split(/\s*(?:->|,|\n)\s*/)
          .map((p) => p.trim())
          .filter(Boolean),
      };
    default:
      throw new UsageError(
        `task ${task} takes a JSON query, e.g. ${task === "code_infill" ? '{"text": "...", "spans": [{"start": 4, "length": 3}]}' : '{"query": "up", "labels": {"job": "node"}, "points": [1, 1, 0]}'}`,
      );
  }
}

function checkTask(task: string): TaskName {
  if (!(TASK_NAMES as readonly string[]).includes(task))
    throw new UsageError(`unknown task "${task}" (tasks: ${TASK_NAMES.join(", ")})`);
  return task as TaskName;
}

/** The weakest label's confidence: an answer is only as sure as its least sure part. */
export function minConfidence(answer: unknown): number {
  let min = Number.POSITIVE_INFINITY;
  const walk = (v: unknown) => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === "object") {
      const o = v as Record<string, unknown>;
      if (typeof o.confidence === "number") min = Math.min(min, o.confidence);
      for (const [k, x] of Object.entries(o)) if (k !== "confidence") walk(x);
    }
  };
  walk(answer);
  return Number.isFinite(min) ? min : 0;
}

function modelStatus(m: ServedModel | null): ServedModelStatus | null {
  return m ? { version: m.version, loaded_at: m.loadedAt.toISOString(), in_flight: m.inFlight } : null;
}

function failureNote(s: AgentSlots): string {
  return s.lastFailure ? ` (last swap to ${s.lastFailure.to} failed: ${s.lastFailure.error})` : "";
}
