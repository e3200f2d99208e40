// The agent's Ollama model. Ollama cannot run a TRM, so what it gets is the knowledge the pipeline
// distilled: a model built FROM a base LLM with the knowledge card as SYSTEM, under a versioned
// tag, then copied over a stable alias that the agent calls. The procedure and the reasons for
// its order are in ../shared/reference/mcp-ollama-minio-notes.md §3.
import { Ollama } from "ollama";
import * as z from "zod";
import type { OllamaSection } from "../../config/schema.js";
import { WorkError } from "../../errors.js";
import { log } from "../../log.js";

export type OllamaStep = "create" | "smoke" | "copy" | "preload" | "unload" | "prune" | "rollback" | "status";

/** A step of the Ollama procedure failed; `step` says which, the message says why in one line. */
export class OllamaStepError extends WorkError {
  override name = "OllamaStepError";
  constructor(
    readonly step: OllamaStep,
    message: string,
  ) {
    super(`ollama ${step}: ${message}`);
  }
}

export interface OllamaProgress {
  step: OllamaStep;
  status: string;
  completed?: number;
  total?: number;
}

export interface OllamaNames {
  /** The agent's model name, e.g. agent-sre-homelab. */
  model: string;
  /** The immutable versioned tag, e.g. agent-sre-homelab:v20250101-0300. */
  tag: string;
  /** The stable alias the agent calls, e.g. agent-sre-homelab:latest. */
  alias: string;
}

export interface StepRecord {
  step: OllamaStep;
  ok: boolean;
  ms: number;
  detail?: string;
}

export interface OllamaDeployResult extends OllamaNames {
  version: string;
  /** Manifest digest of the versioned tag (the alias has the same one after the copy). */
  digest: string | null;
  /** The start of the smoke-test answer. */
  smoke: string;
  unloaded: string | null;
  deleted: string[];
  steps: StepRecord[];
  /** Steps after the alias moved that did not work out (preload, unload, prune): the deploy still stands. */
  warnings: string[];
}

// Tags allow letters, digits, "_", "." and "-" (at most 128 characters); version ids are mapped onto that.
export function ollamaTagOf(version: string): string {
  const t = version.replace(/[^A-Za-z0-9_.-]/g, "-").replace(/^[.-]+/, "");
  if (!t) throw new OllamaStepError("create", `version ${JSON.stringify(version)} gives an empty tag`);
  return t.slice(0, 128);
}

export function ollamaNames(agent: string, version: string, cfg: OllamaSection): OllamaNames {
  const model = cfg.model_name.replaceAll("{agent}", agent);
  if (!/^[A-Za-z0-9][A-Za-z0-9_./-]*$/.test(model))
    throw new OllamaStepError("create", `model name ${JSON.stringify(model)} is not a valid Ollama name`);
  return { model, tag: `${model}:${ollamaTagOf(version)}`, alias: `${model}:${cfg.alias_tag}` };
}

// Responses are checked for the fields the procedure relies on; the rest passes through.
const Progress = z.object({
  status: z.string(),
  digest: z.string().optional(),
  total: z.number().optional(),
  completed: z.number().optional(),
});
const GenerateChunk = z.object({
  response: z.string().optional(),
  done: z.boolean(),
  done_reason: z.string().optional(),
});
const ListedModel = z.object({
  name: z.string(),
  model: z.string().optional(),
  digest: z.string().optional(),
  modified_at: z.union([z.string(), z.date()]).optional(),
});
const ListResponse = z.object({ models: z.array(ListedModel) });
const ShowResponse = z.object({ modelfile: z.string().optional(), system: z.string().optional() });

/**
 * An ollama-js client whose calls time out (create/generate get the long limit) and whose error
 * bodies are always JSON, so ollama-js never falls back to printing on stdout.
 */
export function ollamaClient(cfg: OllamaSection): Ollama {
  const fetchWithLimits: typeof fetch = async (input, init) => {
    const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
    const long = /\/api\/(create|generate|pull)$/.test(new URL(url).pathname);
    const limit = AbortSignal.timeout((long ? cfg.timeout_s : cfg.request_timeout_s) * 1000);
    const signal = init?.signal ? AbortSignal.any([init.signal, limit]) : limit;
    let res: Response;
    try {
      res = await fetch(input, { ...init, signal });
    } catch (err) {
      throw new Error(describeFetchError(err, cfg.base_url, limit.aborted));
    }
    if (res.ok || (res.headers.get("content-type") ?? "").includes("application/json")) return res;
    const text = (await res.text().catch(() => "")).trim().slice(0, 300);
    return new Response(JSON.stringify({ error: text || `HTTP ${res.status}` }), {
      status: res.status,
      statusText: res.statusText,
      headers: { "content-type": "application/json" },
    });
  };
  return new Ollama({ host: cfg.base_url.replace(/\/+$/, ""), fetch: fetchWithLimits });
}

function describeFetchError(err: unknown, baseUrl: string, timedOut: boolean): string {
  if (timedOut) return `no answer from Ollama at ${baseUrl} within the time limit`;
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  const why = cause?.code ?? cause?.message ?? (err as Error).message;
  return `Ollama unreachable at ${baseUrl}: ${why}`;
}

function reason(err: unknown): string {
  const e = err as { status_code?: number; message?: string; name?: string };
  if (e?.name === "TimeoutError" || e?.name === "AbortError") return "timed out";
  const msg = (e?.message ?? String(err)).replace(/\s*\n\s*/g, "; ");
  return e?.status_code ? `HTTP ${e.status_code}: ${msg}` : msg;
}

async function step<T>(
  steps: StepRecord[],
  name: OllamaStep,
  fn: () => Promise<T>,
  detail?: (v: T) => string,
): Promise<T> {
  const t0 = performance.now();
  try {
    const v = await fn();
    steps.push({ step: name, ok: true, ms: Math.round(performance.now() - t0), detail: detail?.(v) });
    return v;
  } catch (err) {
    const why = err instanceof OllamaStepError ? err.message.replace(/^ollama \w+: /, "") : reason(err);
    steps.push({ step: name, ok: false, ms: Math.round(performance.now() - t0), detail: why });
    throw err instanceof OllamaStepError ? err : new OllamaStepError(name, why);
  }
}

/** Streams a create to its end; Ollama reports a failure mid-stream as an `error` line. */
async function createModel(
  client: Ollama,
  req: { model: string; from: string; system: string; parameters: Record<string, unknown> },
  onProgress?: (p: OllamaProgress) => void,
): Promise<void> {
  const stream = await client.create({ ...req, stream: true });
  let last = "";
  for await (const raw of stream) {
    const p = Progress.parse(raw);
    last = p.status;
    onProgress?.({ step: "create", status: p.status, completed: p.completed, total: p.total });
  }
  if (last !== "success") throw new OllamaStepError("create", `stream ended without success (last: ${last})`);
}

/** One generate, streamed (a long answer must not hit the HTTP header timeout); returns the text. */
async function generate(
  client: Ollama,
  req: { model: string; prompt: string; keep_alive?: string | number; options?: Record<string, unknown> },
): Promise<{ text: string; doneReason: string | undefined }> {
  const stream = await client.generate({ ...req, stream: true });
  let text = "";
  let doneReason: string | undefined;
  for await (const raw of stream) {
    const c = GenerateChunk.parse(raw);
    text += c.response ?? "";
    if (c.done) doneReason = c.done_reason;
  }
  return { text, doneReason };
}

/** Copies over the alias; CopyModel rewrites the manifest non-atomically, so one failed copy is retried. */
async function copyWithRetry(client: Ollama, source: string, destination: string): Promise<number> {
  try {
    await client.copy({ source, destination });
    return 1;
  } catch (err) {
    log.warn({ source, destination, err: reason(err) }, "ollama copy failed; retrying once");
    await new Promise((r) => setTimeout(r, 250));
    await client.copy({ source, destination });
    return 2;
  }
}

async function listModels(client: Ollama): Promise<z.infer<typeof ListedModel>[]> {
  return ListResponse.parse(await client.list()).models;
}

/** The weights a model runs on: the FROM line of its modelfile (runners are keyed by it). */
async function weightsOf(client: Ollama, model: string): Promise<string | null> {
  const show = ShowResponse.parse(await client.show({ model }));
  const m = /^FROM\s+(.+)$/m.exec(show.modelfile ?? "");
  return m ? m[1].trim() : null;
}

export interface OllamaDeployOptions {
  agent: string;
  version: string;
  /** The knowledge card, used as SYSTEM. */
  card: string;
  /** The version Ollama served before, whose runner is unloaded when it differs. */
  previousVersion?: string | null;
  config: OllamaSection;
  onProgress?: (p: OllamaProgress) => void;
}

/**
 * The deploy, in order: create the versioned tag FROM the base model with the card as SYSTEM,
 * smoke-test it, copy it over the alias (retried once), preload, unload the previous version,
 * prune old tags. A failure before the alias moved throws OllamaStepError and leaves the alias
 * where it was; a failure after it is a warning in the result.
 */
export async function deployToOllama(opts: OllamaDeployOptions): Promise<OllamaDeployResult> {
  const cfg = opts.config;
  const names = ollamaNames(opts.agent, opts.version, cfg);
  const client = ollamaClient(cfg);
  const steps: StepRecord[] = [];
  const warnings: string[] = [];
  const progress = (p: OllamaProgress) => opts.onProgress?.(p);

  await step(steps, "create", () =>
    createModel(
      client,
      { model: names.tag, from: cfg.base_model, system: opts.card, parameters: cfg.parameters },
      progress,
    ),
  );

  let smoke: string;
  try {
    smoke = await step(
      steps,
      "smoke",
      async () => {
        progress({ step: "smoke", status: `generate on ${names.tag}` });
        const { text } = await generate(client, {
          model: names.tag,
          prompt: cfg.smoke_prompt,
          options: { num_predict: cfg.smoke_num_predict },
        });
        if (!text.trim()) throw new OllamaStepError("smoke", `${names.tag} answered with an empty response`);
        return text.trim().slice(0, 200);
      },
      (t) => t,
    );
  } catch (err) {
    // A tag that failed its smoke test is not left behind for anyone to copy by hand.
    await client.delete({ model: names.tag }).catch(() => undefined);
    throw err;
  }

  await step(
    steps,
    "copy",
    async () => {
      progress({ step: "copy", status: `${names.tag} -> ${names.alias}` });
      return copyWithRetry(client, names.tag, names.alias);
    },
    (attempts) => `${names.tag} -> ${names.alias}${attempts > 1 ? " (second attempt)" : ""}`,
  );

  const listed = await listModels(client).catch(() => []);
  const digest = listed.find((m) => m.name === names.tag)?.digest ?? null;

  // From here on the alias serves the new version; what fails below is reported, not thrown.
  try {
    await step(steps, "preload", async () => {
      progress({ step: "preload", status: `loading ${names.alias}` });
      await generate(client, { model: names.alias, prompt: "", keep_alive: cfg.keep_alive });
      const ps = ListResponse.parse(await client.ps()).models;
      const loaded = ps.some(
        (m) => m.name === names.alias || m.name === names.tag || (digest && m.digest === digest),
      );
      if (!loaded)
        throw new OllamaStepError("preload", `${names.alias} is not listed by /api/ps after loading`);
    });
  } catch (err) {
    warnings.push((err as Error).message);
  }

  let unloaded: string | null = null;
  const prev = opts.previousVersion ? ollamaNames(opts.agent, opts.previousVersion, cfg).tag : null;
  if (prev && prev !== names.tag) {
    try {
      const detail = await step(
        steps,
        "unload",
        async () => {
          const [oldWeights, newWeights] = await Promise.all([
            weightsOf(client, prev).catch(() => null),
            weightsOf(client, names.tag),
          ]);
          // Runners are keyed by weights: with the same base, the old tag's runner IS the alias's
          // runner, and unloading it would throw away the preload just done.
          if (oldWeights !== null && oldWeights === newWeights) return `kept: ${prev} shares its weights`;
          const { doneReason } = await generate(client, { model: prev, prompt: "", keep_alive: 0 });
          unloaded = prev;
          return `unloaded ${prev}${doneReason ? ` (${doneReason})` : ""}`;
        },
        (d) => d,
      );
      progress({ step: "unload", status: detail });
    } catch (err) {
      warnings.push((err as Error).message);
    }
  }

  let deleted: string[] = [];
  try {
    deleted = await step(
      steps,
      "prune",
      () => pruneTags(client, names, cfg.keep_versions, [names.tag]),
      (d) => (d.length ? `deleted ${d.join(", ")}` : "nothing to delete"),
    );
  } catch (err) {
    warnings.push((err as Error).message);
  }

  return { ...names, version: opts.version, digest, smoke, unloaded, deleted, steps, warnings };
}

/**
 * Deletes the agent's versioned tags beyond the newest `keep` (version ids sort by time). The
 * alias and the tags in `protect` are never deleted.
 */
export async function pruneTags(
  client: Ollama,
  names: OllamaNames,
  keep: number,
  protect: string[],
): Promise<string[]> {
  const prefix = `${names.model}:`;
  const tags = (await listModels(client))
    .map((m) => m.name)
    .filter((n) => n.startsWith(prefix) && n !== names.alias)
    .sort()
    .reverse();
  const doomed = tags.slice(keep).filter((t) => !protect.includes(t));
  const deleted: string[] = [];
  for (const model of doomed) {
    await client.delete({ model });
    deleted.push(model);
  }
  return deleted;
}

export interface OllamaRollbackOptions {
  agent: string;
  /** The version the alias goes back to. */
  version: string;
  config: OllamaSection;
  /** The card of that version, used only when its tag was pruned and must be created again. */
  card: () => Promise<string>;
  onProgress?: (p: OllamaProgress) => void;
}

export interface OllamaRollbackResult extends OllamaNames {
  version: string;
  recreated: boolean;
  steps: StepRecord[];
  warnings: string[];
}

/** Re-points the alias to an earlier version's tag (created again from its card if it was pruned). */
export async function rollbackOllama(opts: OllamaRollbackOptions): Promise<OllamaRollbackResult> {
  const cfg = opts.config;
  const names = ollamaNames(opts.agent, opts.version, cfg);
  const client = ollamaClient(cfg);
  const steps: StepRecord[] = [];
  const warnings: string[] = [];
  const exists = await step(steps, "status", async () =>
    (await listModels(client)).some((m) => m.name === names.tag),
  );
  if (!exists) {
    const card = await opts.card();
    await step(steps, "create", () =>
      createModel(
        client,
        { model: names.tag, from: cfg.base_model, system: card, parameters: cfg.parameters },
        opts.onProgress,
      ),
    );
  }
  await step(
    steps,
    "rollback",
    () => copyWithRetry(client, names.tag, names.alias),
    () => `${names.tag} -> ${names.alias}`,
  );
  try {
    await step(steps, "preload", () =>
      generate(client, { model: names.alias, prompt: "", keep_alive: cfg.keep_alive }),
    );
  } catch (err) {
    warnings.push((err as Error).message);
  }
  return { ...names, version: opts.version, recreated: !exists, steps, warnings };
}

export interface OllamaModelStatus extends Omit<OllamaNames, "tag"> {
  reachable: boolean;
  error?: string;
  /** Versioned tags present, newest first. */
  tags: string[];
  /** The versioned tag the alias currently matches (same manifest digest), if any. */
  aliasTarget: string | null;
  loaded: string[];
}

/** What Ollama holds for an agent: its tags, where the alias points, what is loaded. Never throws. */
export async function ollamaStatus(agent: string, cfg: OllamaSection): Promise<OllamaModelStatus> {
  const { model, alias } = ollamaNames(agent, "status", cfg);
  const client = ollamaClient(cfg);
  try {
    const models = await listModels(client);
    const mine = models.filter((m) => m.name.startsWith(`${model}:`));
    const aliasDigest = mine.find((m) => m.name === alias)?.digest;
    const tags = mine
      .map((m) => m.name)
      .filter((n) => n !== alias)
      .sort()
      .reverse();
    const aliasTarget =
      (aliasDigest && mine.find((m) => m.name !== alias && m.digest === aliasDigest)?.name) || null;
    const ps = ListResponse.parse(await client.ps()).models;
    const loaded = ps.map((m) => m.name).filter((n) => n.startsWith(`${model}:`));
    return { model, alias, reachable: true, tags, aliasTarget, loaded };
  } catch (err) {
    return { model, alias, reachable: false, error: reason(err), tags: [], aliasTarget: null, loaded: [] };
  }
}
