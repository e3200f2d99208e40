// Publishing a model version to the agents' language-model servers (Ollama, vLLM). This is the
// deploy stage's hook and the body of `trm-forge deploy`. A target that fails never fails the
// stage: the result is "partial" with the reason, TRM serving is untouched, and because each
// target's state (deploy/<agent>/<target>.json) still names the old version, the next run (or
// `trm-forge deploy --agent NAME --target ollama`) tries again.
import * as z from "zod";
import type { Config } from "../../config/schema.js";
import { log } from "../../log.js";
import { NotFoundError, type ObjectStore } from "../../store/index.js";
import { deployFileKey, targetStateKey as layoutTargetStateKey } from "../../store/layout.js";
import { buildKnowledgeCard } from "./knowledge.js";
import { tagVersionArtifacts } from "./minio.js";
import { deployToOllama, type OllamaProgress, ollamaStatus, rollbackOllama } from "./ollama.js";
import { artifactKey, type ModelRegistry, type VersionManifest } from "./registry.js";
import { deployToVllm } from "./vllm.js";

export const DEPLOY_TARGETS = ["ollama", "vllm"] as const;
export type DeployTarget = (typeof DEPLOY_TARGETS)[number];

export const KNOWLEDGE_ARTIFACT = "knowledge.md";

const Attempt = z
  .object({
    version: z.string(),
    at: z.string(),
    ok: z.boolean(),
    action: z.enum(["deploy", "rollback"]),
    reason: z.string().nullable(),
  })
  .strict();

export const TargetState = z
  .object({
    agent: z.string(),
    target: z.enum(DEPLOY_TARGETS),
    /** The version the target serves now (null before the first success). */
    current: z.string().nullable(),
    /** What the last attempt was, successful or not. */
    last: Attempt.nullable(),
    /** Newest last, bounded. */
    history: z.array(Attempt),
  })
  .strict();
export type TargetState = z.infer<typeof TargetState>;

export interface TargetOutcome {
  target: DeployTarget;
  status: "ok" | "skipped" | "failed";
  reason: string | null;
  version: string;
  /** The target's own result (steps, names, keys) when it ran. */
  detail?: unknown;
  ms: number;
}

export interface DeployOutcome {
  agent: string;
  version: string;
  /** ok: every target that ran succeeded; partial: at least one failed (see partial_reason). */
  status: "ok" | "partial" | "skipped";
  partial_reason: string | null;
  targets: TargetOutcome[];
}

export function targetStateKey(agent: string, target: DeployTarget): string {
  return layoutTargetStateKey(agent, target);
}

export async function readTargetState(
  store: ObjectStore,
  agent: string,
  target: DeployTarget,
): Promise<TargetState> {
  try {
    const body = await store.get(targetStateKey(agent, target));
    return TargetState.parse(JSON.parse(body.toString("utf8")));
  } catch (err) {
    if (err instanceof NotFoundError) return { agent, target, current: null, last: null, history: [] };
    throw err;
  }
}

async function writeTargetState(store: ObjectStore, s: TargetState): Promise<void> {
  s.history = s.history.slice(-50);
  await store.put(targetStateKey(s.agent, s.target), `${JSON.stringify(TargetState.parse(s), null, 2)}\n`, {
    contentType: "application/json",
  });
}

/**
 * The knowledge card of a version: its knowledge.md artifact (checked against its sha256) when
 * the version has one, else a card built now from the raw store over the dataset window and kept
 * at deploy/<agent>/<version>/knowledge.md (the version itself is immutable).
 */
export async function knowledgeCardOf(
  config: Config,
  store: ObjectStore,
  registry: ModelRegistry,
  agent: string,
  version: string,
  now: () => Date = () => new Date(),
): Promise<string> {
  const manifest = await registry.getManifest(agent, version);
  if (manifest.artifacts.some((a) => a.name === KNOWLEDGE_ARTIFACT))
    return (await registry.readArtifact(agent, version, KNOWLEDGE_ARTIFACT, manifest)).toString("utf8");
  const key = deployFileKey(agent, version, KNOWLEDGE_ARTIFACT);
  if (await store.exists(key)) return (await store.get(key)).toString("utf8");
  const end = now().getTime();
  const start = end - config.dataset.window;
  const card = await buildKnowledgeCard({ config, store, agent, window: { start, end }, version });
  await store.put(key, card.markdown, {
    contentType: "text/markdown; charset=utf-8",
    meta: { agent, version },
  });
  log.info({ agent, version, key }, "version has no knowledge.md; built one from the raw store");
  return card.markdown;
}

export interface DeployTargetsOptions {
  config: Config;
  store: ObjectStore;
  registry: ModelRegistry;
  agent: string;
  /** The version to publish; default: the agent's champion. */
  version?: string;
  /** Default: every target enabled in the config. Naming a target runs it even when disabled. */
  targets?: DeployTarget[];
  /** Publish even when the target's state says it already serves this version. */
  force?: boolean;
  onProgress?: (target: DeployTarget, message: string) => void;
  now?: () => Date;
}

/** Publishes a version to the targets; never throws for a target's failure (see DeployOutcome). */
export async function deployTargets(opts: DeployTargetsOptions): Promise<DeployOutcome> {
  const { config, store, registry, agent } = opts;
  const now = opts.now ?? (() => new Date());
  const version = opts.version ?? (await registry.resolve(agent, "champion"));
  const explicit = opts.targets !== undefined;
  const wanted = opts.targets ?? DEPLOY_TARGETS.filter((t) => config[t].enabled);
  const outcomes: TargetOutcome[] = [];
  let card: string | null = null;
  const cardOf = async () => {
    card ??= await knowledgeCardOf(config, store, registry, agent, version, now);
    return card;
  };

  for (const target of DEPLOY_TARGETS) {
    const t0 = performance.now();
    const done = (status: TargetOutcome["status"], reason: string | null, detail?: unknown): void => {
      outcomes.push({ target, status, reason, version, detail, ms: Math.round(performance.now() - t0) });
    };
    if (!wanted.includes(target)) {
      if (!explicit) done("skipped", `disabled (${target}.enabled is false)`);
      continue;
    }
    const state = await readTargetState(store, agent, target);
    if (state.current === version && !opts.force) {
      done("skipped", `already serves ${version}`);
      continue;
    }
    const previous = state.current;
    const rollback = previous !== null && state.history.some((h) => h.ok && h.version === version);
    const progress = (p: OllamaProgress | string) =>
      opts.onProgress?.(target, typeof p === "string" ? p : `${p.step}: ${p.status}`);
    try {
      let detail: unknown;
      if (target === "ollama") {
        detail = rollback
          ? await rollbackOllama({
              agent,
              version,
              config: config.ollama,
              card: cardOf,
              onProgress: progress,
            })
          : await deployToOllama({
              agent,
              version,
              card: await cardOf(),
              previousVersion: previous,
              config: config.ollama,
              onProgress: progress,
            });
      } else {
        detail = await deployToVllm({
          store,
          agent,
          version,
          card: await cardOf(),
          config: config.vllm,
          now,
        });
      }
      state.current = version;
      state.last = {
        version,
        at: now().toISOString(),
        ok: true,
        action: rollback ? "rollback" : "deploy",
        reason: null,
      };
      state.history.push(state.last);
      await writeTargetState(store, state);
      done("ok", null, detail);
    } catch (err) {
      const reason = (err as Error).message;
      state.last = {
        version,
        at: now().toISOString(),
        ok: false,
        action: rollback ? "rollback" : "deploy",
        reason,
      };
      state.history.push(state.last);
      await writeTargetState(store, state).catch(() => undefined);
      log.warn(
        { agent, version, target, err: reason },
        "deploy target failed; it is retried on the next run",
      );
      done("failed", reason);
    }
  }
  const failed = outcomes.filter((o) => o.status === "failed");
  const ran = outcomes.filter((o) => o.status !== "skipped");
  return {
    agent,
    version,
    status: failed.length ? "partial" : ran.length ? "ok" : "skipped",
    partial_reason: failed.length ? failed.map((o) => `${o.target}: ${o.reason}`).join("; ") : null,
    targets: outcomes,
  };
}

/**
 * What the deploy stage of a run calls: publishes the champion to the enabled targets, and
 * returns a stage output ({ status: "partial", partial_reason } when a target failed). With the
 * MinIO store it also tags the version just registered (`registered`) and, when
 * store.presign_expiry_s > 0, returns presigned download URLs of the champion's artifacts.
 */
export async function deployStageHook(
  opts: Omit<DeployTargetsOptions, "targets" | "force"> & { registered?: VersionManifest },
): Promise<Record<string, unknown>> {
  const { registered, ...rest } = opts;
  const notes: string[] = [];
  if (registered && opts.config.store.kind === "minio") {
    try {
      await tagVersionArtifacts(opts.config, registered);
    } catch (err) {
      notes.push(`minio tags: ${(err as Error).message}`);
    }
  }
  const index = await opts.registry.read(opts.agent);
  const version = opts.version ?? index.aliases.champion;
  if (!version) return { status: "skipped", targets: [], reason: "no champion to publish" };
  const out = await deployTargets({ ...rest, version });
  const expiry = opts.config.store.kind === "minio" ? opts.config.store.presign_expiry_s : 0;
  const urls =
    expiry > 0 ? await presignedArtifactUrls(opts.store, opts.registry, opts.agent, version, expiry) : {};
  const reasons = [out.partial_reason, ...notes].filter((r): r is string => Boolean(r));
  return {
    status: out.status === "partial" || notes.length ? "partial" : "succeeded",
    partial_reason: reasons.length ? reasons.join("; ") : null,
    published_version: out.version,
    targets: out.targets.map(({ detail: _detail, ...t }) => t),
    ...(Object.keys(urls).length ? { download_urls: urls, download_urls_expire_s: expiry } : {}),
  };
}

/** A "Downloads" section for a model card shown to people or agents (URLs expire; render at read time). */
export function downloadSection(urls: Record<string, string>, expirySeconds: number): string {
  const names = Object.keys(urls).sort();
  if (!names.length) return "";
  const hours = Math.round(expirySeconds / 360) / 10;
  return [
    "## Downloads",
    "",
    `Presigned links, valid for ${hours} h from when this card was rendered:`,
    "",
    ...names.map((n) => `- [${n}](${urls[n]})`),
    "",
  ].join("\n");
}

/** Where each target stands for an agent (for status tools): state plus, for Ollama, what it holds. */
export async function targetStatus(config: Config, store: ObjectStore, agent: string) {
  const [ollama, vllm] = await Promise.all([
    readTargetState(store, agent, "ollama"),
    readTargetState(store, agent, "vllm"),
  ]);
  return {
    ollama: {
      ...ollama,
      enabled: config.ollama.enabled,
      live: config.ollama.enabled ? await ollamaStatus(agent, config.ollama) : null,
    },
    vllm: { ...vllm, enabled: config.vllm.enabled },
  };
}

/** Presigned download URLs of a version's artifacts, when the store can make them and expiry > 0. */
export async function presignedArtifactUrls(
  store: ObjectStore,
  registry: ModelRegistry,
  agent: string,
  version: string,
  expirySeconds: number,
): Promise<Record<string, string>> {
  if (!store.presign || expirySeconds <= 0) return {};
  const manifest = await registry.getManifest(agent, version);
  const out: Record<string, string> = {};
  for (const a of manifest.artifacts) {
    const url = await store.presign(artifactKey(agent, version, a.name), expirySeconds);
    if (url) out[a.name] = url;
  }
  return out;
}
