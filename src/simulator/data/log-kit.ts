// What the per-service log templates (data/<service>.ts) are made of: the message a template
// makes, the context it gets, and the small random helpers they share.
import type { ServiceDef } from "../homelab.js";
import type { Rng } from "../rng.js";
import type { FakeSecrets } from "../secrets.js";
import type { Effects, Incident, Pod } from "../timeline.js";

export type Level = "debug" | "info" | "warn" | "error" | "fatal";

export interface Msg {
  msg: string;
  level: Level;
  logger?: string;
  fields?: Record<string, unknown>;
  /** An exception or stack trace the format carries in a field. */
  exception?: string;
  /** .NET message template, for State.{OriginalFormat}. */
  format?: string;
  secret?: boolean;
}

export interface Ctx {
  r: Rng;
  s: FakeSecrets;
  svc: ServiceDef;
  pod: Pod;
  t: number;
  eff: Effects;
}

export type Make = (c: Ctx) => Msg | Msg[];
export type Weighted = [number, Make];

// --- small random helpers -----------------------------------------------------------------

export const ip = (r: Rng) => `10.42.${r.int(3) + 1}.${r.int(250) + 2}`;
export const ms = (r: Rng, median: number) => Math.max(0.2, r.lognormal(median, 0.5));
export const fixed = (x: number, d = 1) => x.toFixed(d);
export const ALERTS = [
  "KubePodCrashLooping",
  "HighErrorRate",
  "NodeDiskPressure",
  "TargetDown",
  "HighLatencyP95",
  "CertExpiringSoon",
];
export const DEPLOYMENTS = [
  "notifi/api-gateway",
  "notifi/notification-worker",
  "ai-agents/agent-bruno",
  "data/rabbitmq",
];
export const CHANNELS = ["slack", "email", "ntfy"];

export function pyTraceback(file: string, line: number, fn: string, code: string, err: string): string {
  return `Traceback (most recent call last):\n  File "/usr/local/lib/python3.12/site-packages/starlette/routing.py", line 74, in app\n    response = await func(request)\n  File "${file}", line ${line}, in ${fn}\n    ${code}\n${err}`;
}

export function dotnetTrace(ex: string, frames: string[]): string {
  return `${ex}\n${frames.map((f) => `   at ${f}`).join("\n")}`;
}

export interface ServiceTemplates {
  normal: Weighted[];
  /** Lines a service writes during an incident: as the culprit, or as a victim. */
  culprit?: Partial<Record<Incident["kind"], Weighted[]>>;
  victim?: Partial<Record<Incident["kind"], Weighted[]>>;
  /** Lines while a short burst of transient errors passes (not an incident). */
  blip: Weighted[];
  startup: (c: Ctx) => Msg[];
}
