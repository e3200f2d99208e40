// The model registry: immutable versions under models/<agent>/<version>/ and one index,
// models/<agent>/registry.json, with the aliases (champion, challenger) and an append-only
// history of every alias move (who, when, why).
//
// A version is written artifacts first, then its manifest.json (sha256 and size of each
// artifact), then every artifact is read back and checked, and only then is it added to
// registry.json. So the index never names an incomplete version; a crash in between leaves an
// orphan prefix that nothing points to. Loading checks every sha256 against the manifest and the
// manifest's against the index, so a tampered or truncated file is refused by name.
//
// Index writes are read-modify-write under a lock (in-process, plus a lock file in the data
// directory when one is given). Writers on other hosts are not coordinated: one writer per agent.
import { EventEmitter } from "node:events";
import { WorkError } from "../../errors.js";
import { log } from "../../log.js";
import { gateResult, servedModelInfo } from "../../metrics.js";
import { NotFoundError, type ObjectStore } from "../../store/index.js";
import { artifactKey, modelsPrefix, registryKey, versionPrefix } from "../../store/layout.js";
import { sha256 } from "../../util/fs.js";
import { timeId, timeOfId } from "../common/ids.js";
import { lockPath, withLock } from "../common/lock.js";
import {
  championStack,
  checkAppendOnly,
  emptyIndex,
  isMove,
  move,
  PrunedVersionError,
  refusePruned,
  resolveIn,
  unknownVersionMessage,
} from "./registry-index.js";
import {
  ALIASES,
  type Alias,
  type AliasEvent,
  type AliasMove,
  ARTIFACT_NAME_RE,
  type ArtifactEntry,
  GateRefusedError,
  IntegrityError,
  Lineage,
  type LoadedVersion,
  type RegisterInput,
  RegistryError,
  RegistryIndex,
  type VersionEntry,
  VersionManifest,
} from "./registry-types.js";

// The stored shapes and index rules live beside this file; importers keep reaching them here.
export { championStack, PrunedVersionError, prunedEntry } from "./registry-index.js";
export * from "./registry-types.js";
export { artifactKey, registryKey, versionPrefix };

/** In-process notice of alias moves, for the server's hot swap (other processes poll registry.json). */
export const registryEvents = new EventEmitter<{ alias: [AliasEvent] }>();

export interface RegistryOptions {
  /** The data directory: its locks/ folder queues this host's index writers (the index update itself is a compare-and-swap). */
  dataDir?: string;
  now?: () => Date;
}

/** Compare-and-swap attempts on the index before giving up (each after a short random wait). */
const INDEX_CAS_ATTEMPTS = 50;

export class ModelRegistry {
  private readonly now: () => Date;

  constructor(
    readonly store: ObjectStore,
    private readonly opts: RegistryOptions = {},
  ) {
    this.now = opts.now ?? (() => new Date());
  }

  /** The index; an empty one when the agent has never registered a version. */
  async read(agent: string): Promise<RegistryIndex> {
    return (await this.readVersioned(agent)).index;
  }

  /** The index with the ETag it was read at (null when there is none yet), for a compare-and-swap. */
  private async readVersioned(agent: string): Promise<{ index: RegistryIndex; etag: string | null }> {
    const key = registryKey(agent);
    let current = await this.store.getVersioned(key);
    // Some S3 servers (s3rver among them) answer a PUT before the object is fully written: a read
    // right after it can see a short file, so look again briefly before calling it damaged.
    for (let i = 0; i < 4 && current && !isJson(current.body); i++) {
      await new Promise((r) => setTimeout(r, 25 * 2 ** i));
      current = await this.store.getVersioned(key);
    }
    if (!current) return { index: emptyIndex(agent, this.now()), etag: null };
    const body = current.body;
    let raw: unknown;
    try {
      raw = JSON.parse(body.toString("utf8"));
    } catch {
      throw new IntegrityError(
        `${key} is not valid JSON (${body.length} bytes); the registry file is damaged`,
      );
    }
    const r = RegistryIndex.safeParse(raw);
    if (!r.success) {
      const i = r.error.issues[0];
      throw new IntegrityError(`${key} is not a valid registry: ${i.path.join(".")}: ${i.message}`);
    }
    if (r.data.agent !== agent) throw new IntegrityError(`${key} belongs to agent "${r.data.agent}"`);
    return { index: r.data, etag: current.etag };
  }

  async listVersions(agent: string): Promise<VersionEntry[]> {
    return (await this.read(agent)).versions;
  }

  /** A version id for "champion", "challenger", "latest" or a version id; throws when unknown. */
  async resolve(agent: string, ref: string): Promise<string> {
    const index = await this.read(agent);
    return resolveIn(index, ref);
  }

  /** The manifest, checked against the sha256 the index recorded for it. */
  async getManifest(agent: string, version: string, index?: RegistryIndex): Promise<VersionManifest> {
    const idx = index ?? (await this.read(agent));
    const entry = idx.versions.find((v) => v.version === version);
    if (!entry) throw new RegistryError(unknownVersionMessage(idx, version));
    refusePruned(idx, version);
    const key = artifactKey(agent, version, "manifest.json");
    let body: Buffer;
    try {
      body = await this.settledGet(key, (b) => sha256(b) === entry.manifest_sha256);
    } catch (err) {
      if (err instanceof NotFoundError) throw new IntegrityError(`${key} is missing from the store`);
      throw err;
    }
    const got = sha256(body);
    if (got !== entry.manifest_sha256)
      throw new IntegrityError(
        `${key} was modified: sha256 ${got.slice(0, 12)}… but the registry recorded ${entry.manifest_sha256.slice(0, 12)}…`,
      );
    return VersionManifest.parse(JSON.parse(body.toString("utf8")));
  }

  /** Reads one artifact and checks its size and sha256 against the manifest. */
  async readArtifact(
    agent: string,
    version: string,
    name: string,
    manifest?: VersionManifest,
  ): Promise<Buffer> {
    const m = manifest ?? (await this.getManifest(agent, version));
    const entry = m.artifacts.find((a) => a.name === name);
    if (!entry)
      throw new RegistryError(
        `version ${version} of ${agent} has no artifact "${name}" (it has ${m.artifacts.map((a) => a.name).join(", ")})`,
      );
    const key = artifactKey(agent, version, name);
    let body: Buffer;
    try {
      body = await this.settledGet(key, (b) => b.length === entry.size && sha256(b) === entry.sha256);
    } catch (err) {
      if (err instanceof NotFoundError) throw new IntegrityError(`${key} is missing from the store`);
      throw err;
    }
    checkBytes(key, body, entry);
    return body;
  }

  /** Loads a version's artifacts (all, or the named ones), each verified. */
  async load(agent: string, ref: string, names?: string[]): Promise<LoadedVersion> {
    const index = await this.read(agent);
    const version = resolveIn(index, ref);
    const manifest = await this.getManifest(agent, version, index);
    const files = new Map<string, Buffer>();
    for (const a of manifest.artifacts) {
      if (names && !names.includes(a.name)) continue;
      files.set(a.name, await this.readArtifact(agent, version, a.name, manifest));
    }
    for (const n of names ?? []) {
      if (!files.has(n)) throw new RegistryError(`version ${version} of ${agent} has no artifact "${n}"`);
    }
    return { manifest, files };
  }

  /**
   * Registers a new immutable version: upload, write the manifest, read everything back, and only
   * then add it to the index. On any failure the uploaded prefix is removed and the index is unchanged.
   */
  async register(agent: string, input: RegisterInput): Promise<VersionManifest> {
    modelsPrefix(agent);
    const version = await this.newVersionId(agent);
    const artifacts = [...input.artifacts, ...(input.versioned?.(version) ?? [])];
    const names = new Set<string>();
    for (const a of artifacts) {
      if (!ARTIFACT_NAME_RE.test(a.name) || a.name === "manifest.json")
        throw new RegistryError(`bad artifact name "${a.name}"`);
      if (names.has(a.name)) throw new RegistryError(`artifact "${a.name}" given twice`);
      names.add(a.name);
    }
    const lineage = Lineage.parse(input.lineage);
    const prefix = versionPrefix(agent, version);
    const manifestKey = artifactKey(agent, version, "manifest.json");
    if ((await this.store.list(prefix)).length > 0)
      throw new RegistryError(`${prefix}/ already holds objects; versions are immutable`);
    const createdAt = this.now().toISOString();
    try {
      const entries: ArtifactEntry[] = [];
      for (const a of artifacts) {
        input.signal?.throwIfAborted();
        const data = typeof a.data === "string" ? Buffer.from(a.data, "utf8") : a.data;
        const digest = sha256(data);
        await this.store.put(artifactKey(agent, version, a.name), data, {
          contentType: a.contentType ?? contentTypeOf(a.name),
          meta: { sha256: digest, agent, version },
        });
        entries.push({
          name: a.name,
          sha256: digest,
          size: data.byteLength,
          content_type: a.contentType ?? contentTypeOf(a.name),
        });
      }
      const manifest: VersionManifest = VersionManifest.parse({
        schema: 1,
        agent,
        version,
        created_at: createdAt,
        created_by: input.createdBy,
        artifacts: entries,
        lineage,
        gate: input.gate,
        scores: input.scores ?? {},
      });
      const manifestBody = `${JSON.stringify(manifest, null, 2)}\n`;
      await this.store.put(manifestKey, manifestBody, {
        contentType: "application/json",
        meta: { agent, version },
      });
      // Read everything back: an upload that the store mangled must not become a version.
      for (const e of entries) {
        const back = await this.settledGet(
          artifactKey(agent, version, e.name),
          (b) => sha256(b) === e.sha256,
        );
        checkBytes(artifactKey(agent, version, e.name), back, e);
      }
      const manifestSha = sha256(manifestBody);
      if (sha256(await this.settledGet(manifestKey, (b) => sha256(b) === manifestSha)) !== manifestSha)
        throw new IntegrityError(`${manifestKey} did not read back as written`);
      input.signal?.throwIfAborted();
      await this.updateIndex(agent, (index) => {
        if (index.versions.some((v) => v.version === version))
          throw new RegistryError(`version ${version} already registered`);
        index.versions.push({
          version,
          created_at: createdAt,
          manifest_sha256: manifestSha,
          gate_passed: input.gate ? input.gate.passed : null,
          run_id: lineage.run_id,
          parent_version: lineage.parent_version,
          scores: manifest.scores,
        });
      });
      if (input.gate) gateResult.set({ agent, version }, input.gate.passed ? 1 : 0);
      log.info({ agent, version, artifacts: entries.length }, "model version registered");
      return manifest;
    } catch (err) {
      await this.store.deletePrefix(`${prefix}/`).catch((e) => {
        log.warn({ err: e, prefix }, "could not remove the uploads of a failed registration");
      });
      throw err;
    }
  }

  /**
   * Points an alias at a version. A version that did not pass its gate (or was never evaluated)
   * needs force. Promoting the challenger to champion clears the challenger. Returns the moves
   * appended to the history (empty when the alias already points there).
   */
  async promote(
    agent: string,
    ref: string,
    opts: { alias?: Alias; actor: string; reason: string; force?: boolean },
  ): Promise<AliasMove[]> {
    const alias = opts.alias ?? "champion";
    return this.updateIndex(agent, (index) => {
      const version = resolveIn(index, ref);
      const entry = index.versions.find((v) => v.version === version)!;
      if (index.aliases[alias] === version) return [];
      const passed = entry.gate_passed === true;
      if (!passed && !opts.force) {
        const why = entry.gate_passed === false ? "failed its evaluation gate" : "was never evaluated";
        throw new GateRefusedError(
          `version ${version} of ${agent} ${why}; refusing to make it ${alias} (use force to override)`,
        );
      }
      const moves: AliasMove[] = [
        move(index, alias, version, "promote", opts.actor, opts.reason, !passed, this.now()),
      ];
      if (alias === "champion" && index.aliases.challenger === version)
        moves.push(
          move(
            index,
            "challenger",
            null,
            "clear",
            opts.actor,
            `${version} became champion`,
            false,
            this.now(),
          ),
        );
      return moves;
    });
  }

  /** Re-points champion to the champion before the current one, as the history records it. */
  async rollback(agent: string, opts: { actor: string; reason: string }): Promise<AliasMove> {
    const moves = await this.updateIndex(agent, (index) => {
      const stack = championStack(index.history);
      if (stack.length < 2)
        throw new RegistryError(`agent ${agent} has no previous champion to roll back to`);
      const target = stack[stack.length - 2];
      // gc keeps one rollback target; a second rollback may reach a version it has since deleted.
      try {
        refusePruned(index, target);
      } catch (err) {
        if (!(err instanceof PrunedVersionError)) throw err;
        throw new PrunedVersionError(
          `cannot roll back to the previous champion: ${err.message}; promote a version that is kept instead`,
        );
      }
      return [move(index, "champion", target, "rollback", opts.actor, opts.reason, false, this.now())];
    });
    return moves[0];
  }

  /** Removes an alias (e.g. a challenger that lost); recorded in the history. */
  async clearAlias(
    agent: string,
    alias: Alias,
    opts: { actor: string; reason: string },
  ): Promise<AliasMove[]> {
    return this.updateIndex(agent, (index) => {
      if (index.aliases[alias] === null) return [];
      return [move(index, alias, null, "clear", opts.actor, opts.reason, false, this.now())];
    });
  }

  /**
   * Records versions as pruned, before gc deletes their files: from then on they resolve to a
   * "pruned" error instead of a half-deleted version. Aliases may not point at them.
   */
  async markPruned(agent: string, items: { version: string; rule: string }[], actor: string): Promise<void> {
    await this.updateIndex(agent, (index) => {
      const done = new Set((index.pruned ?? []).map((p) => p.version));
      for (const it of items) {
        if (done.has(it.version)) continue;
        if (!index.versions.some((v) => v.version === it.version))
          throw new RegistryError(unknownVersionMessage(index, it.version));
        if (ALIASES.some((a) => index.aliases[a] === it.version))
          throw new RegistryError(
            `version ${it.version} of ${agent} is an alias target; it cannot be pruned`,
          );
        index.pruned = [
          ...(index.pruned ?? []),
          { version: it.version, at: this.now().toISOString(), rule: it.rule, actor },
        ];
        done.add(it.version);
      }
    });
  }

  /** The champion before the current one (the rollback target), or null. */
  async previousChampion(agent: string): Promise<string | null> {
    const stack = championStack((await this.read(agent)).history);
    return stack.length >= 2 ? stack[stack.length - 2] : null;
  }

  /**
   * A get that looks again, briefly, when the bytes are not what they should be: some S3
   * servers (s3rver among them) answer a PUT before the object is fully written, so a read right
   * after it can see a short file. Real damage stays damage: the last read is returned and the
   * caller refuses it.
   */
  private async settledGet(key: string, ok: (body: Buffer) => boolean): Promise<Buffer> {
    let body = await this.store.get(key);
    for (let i = 0; i < 4 && !ok(body); i++) {
      await new Promise((r) => setTimeout(r, 25 * 2 ** i));
      body = await this.store.get(key);
    }
    return body;
  }

  private async newVersionId(agent: string): Promise<string> {
    const index = await this.read(agent);
    let at = this.now();
    const last = index.versions.at(-1)?.version;
    const lastAt = last ? timeOfId(last) : null;
    if (lastAt && at.getTime() <= lastAt.getTime()) at = new Date(lastAt.getTime() + 1);
    // The random tail keeps two writers that pick the same millisecond apart.
    return timeId("v", at, true);
  }

  /**
   * Read-modify-write of the index as a compare-and-swap on its ETag, so writers on other hosts
   * sharing the store never lose each other's update: when the index changed since it was read,
   * mutate runs again on the new one. The host-local lock only queues this host's writers.
   * mutate may return a value (e.g. the moves).
   */
  private async updateIndex<T>(agent: string, mutate: (index: RegistryIndex) => T): Promise<T> {
    const key = registryKey(agent);
    const work = async () => {
      for (let attempt = 1; ; attempt++) {
        const r = await this.tryUpdateIndex(agent, key, mutate);
        if (r.done) return r.result;
        if (attempt >= INDEX_CAS_ATTEMPTS)
          throw new WorkError(`${key} kept changing under ${attempt} attempts to update it; try again`);
        // Jittered backoff, so writers that collided do not collide again in step.
        await new Promise((res) => setTimeout(res, Math.random() * 20 * Math.min(attempt, 10)));
      }
    };
    const lockFile = this.opts.dataDir ? lockPath(this.opts.dataDir, `registry-${agent}`) : `mem:${key}`;
    if (!this.opts.dataDir) return withMemLock(lockFile, work);
    return withLock(lockFile, `registry ${agent}`, work);
  }

  private async tryUpdateIndex<T>(
    agent: string,
    key: string,
    mutate: (index: RegistryIndex) => T,
  ): Promise<{ done: true; result: T } | { done: false }> {
    const { index: before, etag } = await this.readVersioned(agent);
    const index = structuredClone(before);
    const result = mutate(index);
    const moves = Array.isArray(result) ? (result as unknown[]).filter(isMove) : [];
    if (
      moves.length === 0 &&
      index.versions.length === before.versions.length &&
      (index.pruned?.length ?? 0) === (before.pruned?.length ?? 0)
    )
      return { done: true, result };
    checkAppendOnly(before, index);
    index.updated_at = this.now().toISOString();
    const body = `${JSON.stringify(RegistryIndex.parse(index), null, 2)}\n`;
    const written = await this.store.putIf(key, body, etag, { contentType: "application/json" });
    if (written === null) {
      // Lost the race, unless the write did land and only its answer was lost (a retried PUT).
      const now = await this.store.getVersioned(key);
      if (now?.body.toString("utf8") !== body) return { done: false };
    }
    for (const m of moves) {
      if (m.from) servedModelInfo.remove({ agent, alias: m.alias, version: m.from });
      if (m.to) servedModelInfo.set({ agent, alias: m.alias, version: m.to }, 1);
      registryEvents.emit("alias", { agent, alias: m.alias, from: m.from, to: m.to, action: m.action });
      log.info(
        { agent, alias: m.alias, from: m.from, to: m.to, actor: m.actor, reason: m.reason },
        "alias moved",
      );
    }
    return { done: true, result };
  }
}

function isJson(b: Buffer): boolean {
  try {
    JSON.parse(b.toString("utf8"));
    return true;
  } catch {
    return false;
  }
}

const memLocks = new Map<string, Promise<unknown>>();
async function withMemLock<T>(name: string, fn: () => Promise<T>): Promise<T> {
  const prev = memLocks.get(name) ?? Promise.resolve();
  const run = prev.catch(() => undefined).then(fn);
  memLocks.set(
    name,
    run.catch(() => undefined),
  );
  return run;
}

function checkBytes(key: string, body: Buffer, entry: ArtifactEntry): void {
  if (body.length !== entry.size)
    throw new IntegrityError(
      `${key} is ${body.length} bytes but the manifest recorded ${entry.size}: the file is truncated or was replaced`,
    );
  const got = sha256(body);
  if (got !== entry.sha256)
    throw new IntegrityError(
      `${key} was modified: sha256 ${got.slice(0, 12)}… does not match the recorded ${entry.sha256.slice(0, 12)}…`,
    );
}

function contentTypeOf(name: string): string {
  if (name.endsWith(".json")) return "application/json";
  if (name.endsWith(".md")) return "text/markdown; charset=utf-8";
  if (name.endsWith(".html")) return "text/html; charset=utf-8";
  if (name.endsWith(".jinja") || name.endsWith(".txt")) return "text/plain; charset=utf-8";
  return "application/octet-stream";
}
