// Small helpers shared by the incident join (../incidents.ts) and the tasks. A leaf: it imports
// no task, so incidents.ts can use these while the tasks import incidents.ts.
import type { Level } from "./log-normalize.js";

/** The map's value for key, created with make() when absent. */
export function getOrAdd<K, V>(m: Map<K, V>, key: K, make: () => V): V {
  let v = m.get(key);
  if (v === undefined) {
    v = make();
    m.set(key, v);
  }
  return v;
}

/** The first label naming a service, in the configured order. */
export function serviceOf(labels: Record<string, string>, serviceLabels: readonly string[]): string | null {
  for (const k of serviceLabels) {
    const v = labels[k];
    if (v?.trim()) return v.trim();
  }
  return null;
}

/** Nanoseconds since the epoch (a decimal string, as Loki gives them) -> milliseconds. */
export function nsToMs(ns: string): number {
  return ns.length > 6 ? Number(ns.slice(0, -6)) + Number(ns.slice(-6)) / 1e6 : Number(ns) / 1e6;
}

/** What the incident join and the task read from a log entry. */
export interface LogFacts {
  time: number;
  service: string | null;
  level: Level;
}
