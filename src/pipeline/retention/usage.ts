// Store usage per agent and prefix, from a listing: raw per source, datasets, runs (their
// checkpoints apart), models (with what deploy made for them), and the rest (job records,
// collector state).
import type { ObjectInfo } from "../../store/index.js";

export interface PrefixUsage {
  prefix: string;
  bytes: number;
  objects: number;
}

export interface AgentUsage {
  agent: string;
  bytes: number;
  objects: number;
  prefixes: PrefixUsage[];
}

/** The usage label of a key: "raw/<source>", "datasets", "runs", "checkpoints", "models" or "other". */
export function usagePrefix(key: string): { agent: string; prefix: string } | null {
  const parts = key.split("/");
  if (parts.length < 3) return null;
  const [top, agent] = parts;
  if (top === "raw") return { agent, prefix: `raw/${parts[2]}` };
  if (top === "runs" && parts[3] === "checkpoints") return { agent, prefix: "checkpoints" };
  if (top === "datasets" || top === "runs" || top === "models") return { agent, prefix: top };
  if (top === "deploy") return { agent, prefix: "models" };
  if (top === "jobs" || top === "state") return { agent, prefix: "other" };
  return null;
}

export function summarizeUsage(objects: ObjectInfo[]): AgentUsage[] {
  const by = new Map<string, Map<string, PrefixUsage>>();
  for (const o of objects) {
    const u = usagePrefix(o.key);
    if (!u) continue;
    const agent = by.get(u.agent) ?? new Map<string, PrefixUsage>();
    by.set(u.agent, agent);
    const p = agent.get(u.prefix) ?? { prefix: u.prefix, bytes: 0, objects: 0 };
    agent.set(u.prefix, p);
    p.bytes += o.size;
    p.objects += 1;
  }
  return [...by]
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([agent, m]) => {
      const prefixes = [...m.values()].sort((a, b) => (a.prefix < b.prefix ? -1 : 1));
      return {
        agent,
        bytes: prefixes.reduce((n, p) => n + p.bytes, 0),
        objects: prefixes.reduce((n, p) => n + p.objects, 0),
        prefixes,
      };
    });
}
