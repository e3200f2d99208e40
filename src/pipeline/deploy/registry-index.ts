// Pure rules over a registry index: alias moves, the champion stack, what may change (append-only
// history, immutable versions) and how a reference resolves.
import {
  type Alias,
  type AliasMove,
  type PrunedEntry,
  RegistryError,
  type RegistryIndex,
} from "./registry-types.js";

export function isMove(x: unknown): x is AliasMove {
  return typeof x === "object" && x !== null && "alias" in x && "seq" in x;
}

export function move(
  index: RegistryIndex,
  alias: Alias,
  to: string | null,
  action: AliasMove["action"],
  actor: string,
  reason: string,
  forced: boolean,
  at: Date,
): AliasMove {
  const m: AliasMove = {
    seq: (index.history.at(-1)?.seq ?? 0) + 1,
    at: at.toISOString(),
    alias,
    from: index.aliases[alias],
    to,
    action,
    actor,
    reason,
    forced,
  };
  index.history.push(m);
  index.aliases[alias] = to;
  return m;
}

/** Champions in order, replaying promotions (push) and rollbacks (pop) from the history. */
export function championStack(history: AliasMove[]): string[] {
  const stack: string[] = [];
  for (const m of history) {
    if (m.alias !== "champion") continue;
    if (m.action === "rollback") stack.pop();
    else if (m.action === "promote" && m.to) stack.push(m.to);
    else if (m.action === "clear") stack.length = 0;
    if (m.action === "rollback" && m.to && stack.at(-1) !== m.to) stack.push(m.to);
  }
  return stack;
}

export function checkAppendOnly(before: RegistryIndex, after: RegistryIndex): void {
  const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
  if (
    after.history.length < before.history.length ||
    !same(after.history.slice(0, before.history.length), before.history)
  )
    throw new RegistryError("refusing to rewrite the alias history (it is append-only)");
  if (
    after.versions.length < before.versions.length ||
    !same(after.versions.slice(0, before.versions.length), before.versions)
  )
    throw new RegistryError("refusing to change registered versions (they are immutable)");
  const pb = before.pruned ?? [];
  const pa = after.pruned ?? [];
  if (pa.length < pb.length || !same(pa.slice(0, pb.length), pb))
    throw new RegistryError("refusing to rewrite the pruned list (it is append-only)");
}

/** The pruned entry of a version, or undefined while its files are kept. */
export function prunedEntry(index: RegistryIndex, version: string): PrunedEntry | undefined {
  return index.pruned?.find((p) => p.version === version);
}

/** A version that was pruned, or was chosen for pruning, is never loaded or pointed at. */
export class PrunedVersionError extends RegistryError {
  override name = "PrunedVersionError";
}

export function refusePruned(index: RegistryIndex, version: string): void {
  const p = prunedEntry(index, version);
  if (p)
    throw new PrunedVersionError(
      `version ${version} of ${index.agent} was pruned by retention at ${p.at} (${p.rule}); its entry and lineage stay in the registry`,
    );
}

export function resolveIn(index: RegistryIndex, ref: string): string {
  if (ref === "champion" || ref === "challenger") {
    const v = index.aliases[ref];
    if (!v) throw new RegistryError(`agent ${index.agent} has no ${ref}`);
    return v;
  }
  if (ref === "latest") {
    const v = index.versions.at(-1)?.version;
    if (!v) throw new RegistryError(`agent ${index.agent} has no model versions yet`);
    return v;
  }
  if (!index.versions.some((v) => v.version === ref))
    throw new RegistryError(unknownVersionMessage(index, ref));
  refusePruned(index, ref);
  return ref;
}

export function unknownVersionMessage(index: RegistryIndex, ref: string): string {
  const known = index.versions.slice(-5).map((v) => v.version);
  return `agent ${index.agent} has no model version "${ref}"${known.length ? ` (latest: ${known.join(", ")})` : " (none registered)"}`;
}

export function emptyIndex(agent: string, now: Date): RegistryIndex {
  return {
    schema: 1,
    agent,
    updated_at: now.toISOString(),
    versions: [],
    aliases: { champion: null, challenger: null },
    history: [],
  };
}
