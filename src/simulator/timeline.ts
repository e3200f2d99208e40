// The homelab's history over the window: load, deploys, pods, incidents, and what each incident
// does to each service at a given moment (`effects`). Metrics, logs and traces all read these
// same effects, which is what keeps the three signals consistent with each other.
import { callersOf, SERVICES, type ServiceDef, service } from "./homelab.js";
import { hashKey, Rng, smoothNoise, unitAt } from "./rng.js";

export type IncidentKind = "bad_deploy" | "db_slowdown" | "crash_loop" | "memory_leak";
export const INCIDENT_KINDS: readonly IncidentKind[] = [
  "bad_deploy",
  "db_slowdown",
  "crash_loop",
  "memory_leak",
];

export interface Incident {
  id: string;
  kind: IncidentKind;
  /** The culprit. */
  service: string;
  /** Services whose signals change because of it, the culprit first. */
  affected: string[];
  start: number;
  end: number;
  /** The version deployed at the start (bad_deploy, memory_leak). */
  version?: string;
  /** Container restarts inside the window (crash_loop: each crash; memory_leak: each OOM kill). */
  restarts: number[];
  summary: string;
}

export type DeployReason = "initial" | "release" | "bad_release" | "rollback" | "fix";

export interface Deploy {
  service: string;
  at: number;
  version: string;
  /** 1-based generation: the n-th set of pods of this workload. */
  generation: number;
  templateHash: string;
  reason: DeployReason;
  incident?: string;
}

export interface Pod {
  service: string;
  name: string;
  uid: string;
  ip: string;
  replica: number;
  generation: number;
  version: string;
  /** Created at; deleted at (Infinity while it lives). */
  from: number;
  to: number;
}

export interface Effects {
  /** Extra share of requests that fail. */
  errorAdd: number;
  /** Latency multiplier. */
  latency: number;
  /** The container is not serving: `up` is 0 and calls to it are refused. */
  down: boolean;
  /** 0..1: how far a leak has pushed memory toward the limit since the last restart. */
  leak: number;
  cpuAdd: number;
  /** Share of its traffic the service still serves. */
  served: number;
  /** The incident this service takes part in at this moment, as culprit or as a victim. */
  incident: Incident | null;
  culprit: boolean;
  /** 0..1 */
  intensity: number;
  /** A short burst of transient errors that is not an incident. */
  blip: boolean;
}

const MIN = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;
/** Local time of the homelab's people, for the daily rhythm. */
export const TZ_OFFSET_HOURS = 1;
/** Containers are scraped this often. */
export const SCRAPE_MS = 30_000;

const QUIET: Effects = {
  errorAdd: 0,
  latency: 1,
  down: false,
  leak: 0,
  cpuAdd: 0,
  served: 1,
  incident: null,
  culprit: false,
  intensity: 0,
  blip: false,
};

function circular(h: number, centre: number): number {
  const d = Math.abs(h - centre) % 24;
  return Math.min(d, 24 - d);
}

/** The homelab's daily and weekly rhythm, without noise: about 1 at a weekday's peak. */
export function rhythm(t: number): number {
  const localH = t / HOUR + TZ_OFFSET_HOURS;
  const h = ((localH % 24) + 24) % 24;
  const dayIdx = Math.floor(localH / 24);
  // 1970-01-01 was a Thursday: index 2 and 3 (mod 7) are Saturday and Sunday.
  const dow = ((dayIdx % 7) + 7) % 7;
  const weekend = dow === 2 || dow === 3;
  const peak = weekend ? 15.5 : 13.5;
  const day = Math.exp(-((circular(h, peak) / 4) ** 2)) + 0.45 * Math.exp(-((circular(h, 21) / 1.8) ** 2));
  return (0.16 + 0.84 * day) * (weekend ? 0.62 : 1);
}

/** Mean of `rhythm` over a week, to turn "per day" densities into rates. */
export const MEAN_RHYTHM = (() => {
  let sum = 0;
  const n = 7 * 24 * 12;
  for (let i = 0; i < n; i++) sum += rhythm(i * 5 * MIN);
  return sum / n;
})();

const POD_ALPHABET = "bcdfghjklmnpqrstvwxz2456789";

function bump(version: string, rng: Rng): string {
  const parts = version.split(".").map((p) => Number.parseInt(p, 10));
  while (parts.length < 3) parts.push(0);
  if (rng.chance(0.25)) return `${parts[0]}.${parts[1] + 1}.0`;
  return `${parts[0]}.${parts[1]}.${parts[2] + 1}`;
}

const DURATION_MIN: Record<IncidentKind, [number, number]> = {
  bad_deploy: [35, 110],
  db_slowdown: [25, 80],
  crash_loop: [40, 140],
  memory_leak: [240, 540],
};

const CULPRITS: Record<IncidentKind, string[]> = {
  bad_deploy: ["agent-bruno", "api-gateway", "notification-worker", "agent-sre"],
  db_slowdown: ["postgres"],
  crash_loop: ["lambda-pod-restart", "lambda-notify-digest"],
  memory_leak: ["notification-worker", "agent-sre", "agent-bruno"],
};

/** Share of the gateway's requests that go to each upstream. */
const GATEWAY_ROUTE: Record<string, number> = { "agent-bruno": 0.3, "agent-sre": 0.12 };

export interface TimelineOptions {
  seed: number;
  start: number;
  end: number;
}

export class Timeline {
  readonly seed: number;
  readonly start: number;
  readonly end: number;
  readonly incidents: Incident[];
  readonly deploys: Deploy[];
  private readonly podsBy = new Map<string, Pod[]>();
  private readonly noiseKey: number;
  private readonly keys = new Map<string, Map<string, number>>();

  constructor(opts: TimelineOptions) {
    this.seed = opts.seed;
    this.start = opts.start;
    this.end = opts.end;
    this.noiseKey = hashKey(this.seed, "homelab-load");
    this.incidents = this.placeIncidents();
    this.deploys = this.scheduleDeploys();
    this.buildPods();
  }

  /** A hashed key for (purpose, name), computed once: these are on every sample's path. */
  keyOf(purpose: string, name: string): number {
    let byName = this.keys.get(purpose);
    if (!byName) {
      byName = new Map();
      this.keys.set(purpose, byName);
    }
    let h = byName.get(name);
    if (h === undefined) {
      h = hashKey(this.seed, purpose, name);
      byName.set(name, h);
    }
    return h;
  }

  // --- load -------------------------------------------------------------------------------

  /** A service's load factor at t: the rhythm times slow shared and per-service noise. */
  load(svc: ServiceDef, t: number): number {
    // Some days are busier than others: a slow drift that yesterday's same hour does not know,
    // but the last hours show.
    const days = smoothNoise(this.noiseKey ^ 0x5bd1e995, t, 20 * HOUR) * 0.18;
    const shared = smoothNoise(this.noiseKey, t, 3 * HOUR) * 0.08;
    const own = smoothNoise(this.keyOf("load", svc.name), t, 50 * MIN) * 0.1;
    return rhythm(t) * (1 + days + shared + own);
  }

  // --- incidents --------------------------------------------------------------------------

  private placeIncidents(): Incident[] {
    const rng = Rng.of(this.seed, "incidents");
    const days = (this.end - this.start) / DAY;
    const n = Math.max(4, Math.round(days * 0.4));
    const lead = Math.min(6 * HOUR, (this.end - this.start) * 0.1);
    const usableFrom = this.start + lead;
    const usableTo = this.end - Math.min(HOUR, (this.end - this.start) * 0.05);
    const slot = (usableTo - usableFrom) / n;
    const order = [...INCIDENT_KINDS];
    for (let i = order.length - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      [order[i], order[j]] = [order[j], order[i]];
    }
    const seen: Record<string, number> = {};
    const offsets: Record<string, number> = {};
    for (const k of INCIDENT_KINDS) offsets[k] = rng.int(CULPRITS[k].length);
    const out: Incident[] = [];
    for (let i = 0; i < n; i++) {
      // Counting kinds from the newest slot guarantees the last four slots hold all four kinds.
      const kind = order[(n - 1 - i) % order.length];
      const occurrence = (seen[kind] ?? -1) + 1;
      seen[kind] = occurrence;
      const candidates = CULPRITS[kind];
      const culprit = candidates[(offsets[kind] + occurrence) % candidates.length];
      const [lo, hi] = DURATION_MIN[kind];
      const dur = Math.min(rng.range(lo, hi) * MIN, slot * 0.8);
      const slotStart = usableFrom + i * slot;
      const start = Math.round((slotStart + rng.next() * (slot - dur)) / 1000) * 1000;
      const end = Math.round((start + dur) / 1000) * 1000;
      out.push(
        this.describe(kind, culprit, start, end, `inc-${String(i + 1).padStart(2, "0")}-${kind}`, rng),
      );
    }
    return out;
  }

  private describe(
    kind: IncidentKind,
    culprit: string,
    start: number,
    end: number,
    id: string,
    rng: Rng,
  ): Incident {
    const restarts: number[] = [];
    let affected: string[] = [culprit];
    let summary = "";
    if (kind === "bad_deploy") {
      affected = [
        culprit,
        ...callersOf(culprit).filter((c) => c === "api-gateway" && culprit in GATEWAY_ROUTE),
      ];
      summary = `a release of ${culprit} fails most requests until it is rolled back`;
    } else if (kind === "db_slowdown") {
      affected = ["postgres", ...callersOf("postgres"), "api-gateway"];
      summary = "postgres slows down (autovacuum on a bloated table plus lock waits); callers time out";
    } else if (kind === "crash_loop") {
      // Its callers see refused calls; the gateway's alert route fails with them, and RabbitMQ's
      // broker fails to dispatch the digest's events.
      affected =
        culprit === "lambda-pod-restart"
          ? [culprit, ...callersOf(culprit), "api-gateway"]
          : [culprit, "rabbitmq"];
      summary = `${culprit} crashes at start-up (a rotated credential) and restarts with back-off until fixed`;
      // Each crash: the container runs a few seconds, then waits a doubling back-off capped at 5 minutes.
      let t = start;
      let backoff = 10_000;
      while (t < end) {
        restarts.push(t);
        t += 6_000 + backoff;
        backoff = Math.min(backoff * 2, 300_000);
      }
    } else {
      // The gateway's calls fail while the container restarts; the worker's queue backs up.
      affected = [culprit, "api-gateway", ...(culprit === "notification-worker" ? ["rabbitmq"] : [])];
      summary = `a release of ${culprit} leaks memory; the container is OOM-killed and restarts until a fix ships`;
      const cycle = (end - start) / rng.range(2.2, 3.2);
      for (let t = start + cycle; t < end - 5 * MIN; t += cycle) restarts.push(Math.round(t));
    }
    return { id, kind, service: culprit, affected: [...new Set(affected)], start, end, restarts, summary };
  }

  /** The incident (if any) active at t: incidents never overlap, so at most one. */
  incidentAt(t: number): Incident | null {
    let lo = 0;
    let hi = this.incidents.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.incidents[mid].start <= t) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    if (found < 0) return null;
    const inc = this.incidents[found];
    return t < inc.end ? inc : null;
  }

  /** What incidents (and transient blips) do to a service at t. */
  effects(name: string, t: number): Effects {
    const blip = unitAt(this.keyOf("blip", name), Math.floor(t / (5 * MIN))) < 0.006;
    const base: Effects = blip ? { ...QUIET, errorAdd: 0.12, latency: 1.5, blip: true } : QUIET;
    const inc = this.incidentAt(t);
    if (!inc?.affected.includes(name)) return base;
    const e: Effects = { ...base, incident: inc, culprit: inc.service === name, intensity: 1 };
    const ramp = Math.min(1, (t - inc.start) / (4 * MIN), (inc.end - t) / (4 * MIN));
    switch (inc.kind) {
      case "bad_deploy":
        if (e.culprit) {
          e.errorAdd += 0.5;
          e.latency *= 1.35;
        } else {
          e.errorAdd += 0.5 * (GATEWAY_ROUTE[inc.service] ?? 0);
          e.latency *= 1.1;
        }
        break;
      case "db_slowdown":
        e.intensity = Math.max(0.05, ramp);
        if (e.culprit) {
          e.latency *= 1 + 14 * e.intensity;
          e.errorAdd += 0.22 * e.intensity;
          e.cpuAdd += 1.3 * e.intensity;
        } else if (name === "api-gateway") {
          e.latency *= 1 + 1.6 * e.intensity;
          e.errorAdd += 0.1 * e.intensity;
        } else {
          e.latency *= 1 + 3 * e.intensity;
          e.errorAdd += 0.2 * e.intensity;
        }
        break;
      case "crash_loop": {
        if (e.culprit) {
          const r = lastBefore(inc.restarts, t);
          const running = r !== null && t - r < 6_000;
          e.down = !running;
          e.served = running ? 1 : 0;
          e.errorAdd = 0.95;
          e.cpuAdd += running ? 0.15 : 0;
        } else if (name === "agent-sre") {
          e.errorAdd += 0.12;
          e.latency *= 1.3;
        } else if (name === "api-gateway") {
          // Only the alert route, and only when the fallback fails too.
          e.errorAdd += 0.03;
        }
        break;
      }
      case "memory_leak": {
        if (e.culprit) {
          const r = lastBefore(inc.restarts, t) ?? inc.start;
          const cycle = inc.restarts.length ? inc.restarts[0] - inc.start : inc.end - inc.start;
          e.leak = Math.min(1, (t - r) / Math.max(1, cycle));
          e.intensity = e.leak;
          e.latency *= 1 + 3.5 * Math.max(0, e.leak - 0.45) * 2;
          const sinceKill = t - (lastBefore(inc.restarts, t) ?? Number.NEGATIVE_INFINITY);
          // Killed, restarted, and not ready yet: about 45 s without the target.
          if (sinceKill >= 0 && sinceKill < 45_000) {
            e.down = true;
            e.served = 0;
          }
          // Requests in flight at a kill fail; before that, GC thrash makes more and more time out.
          if (Math.abs(t - (nearest(inc.restarts, t) ?? Number.POSITIVE_INFINITY)) < 90_000)
            e.errorAdd += 0.45;
          else e.errorAdd += (0.2 * Math.max(0, e.leak - 0.4)) / 0.6;
        } else if (name === "api-gateway") {
          // Calls routed to the killed container fail until it is back.
          const nearKill = Math.abs(t - (nearest(inc.restarts, t) ?? Number.POSITIVE_INFINITY)) < 90_000;
          if (nearKill) e.errorAdd += 0.45 * (GATEWAY_ROUTE[inc.service] ?? 0.1);
        } else {
          // The queue backs up while the consumer stalls.
          e.intensity = 0.5;
        }
        break;
      }
    }
    return e;
  }

  // --- deploys and pods -------------------------------------------------------------------

  private scheduleDeploys(): Deploy[] {
    const all: Deploy[] = [];
    for (const svc of SERVICES) {
      const rng = Rng.of(this.seed, "deploys", svc.name);
      const events: { at: number; reason: DeployReason; incident?: Incident }[] = [];
      events.push({ at: this.start - rng.range(1, 12) * DAY, reason: "initial" });
      if (svc.workload !== "statefulset") {
        const mine = this.incidents.filter((i) => i.service === svc.name);
        for (const inc of mine) {
          if (inc.kind === "bad_deploy") {
            events.push({ at: inc.start, reason: "bad_release", incident: inc });
            events.push({ at: inc.end, reason: "rollback", incident: inc });
          } else if (inc.kind === "memory_leak") {
            events.push({ at: inc.start, reason: "release", incident: inc });
            events.push({ at: inc.end, reason: "fix", incident: inc });
          } else if (inc.kind === "crash_loop") {
            events.push({ at: inc.end, reason: "fix", incident: inc });
          }
        }
        // Ordinary releases on weekday working hours, clear of incidents.
        let t = this.start + rng.range(0.3, 3) * DAY;
        while (t < this.end - HOUR) {
          const local = t / HOUR + TZ_OFFSET_HOURS;
          const dayStart = (Math.floor(local / 24) * 24 - TZ_OFFSET_HOURS) * HOUR;
          const at = Math.round((dayStart + rng.range(9.5, 18.5) * HOUR) / 1000) * 1000;
          const dow = (((Math.floor(local / 24) % 7) + 7) % 7) as number;
          const clear = this.incidents.every((i) => at < i.start - 3 * HOUR || at > i.end + 3 * HOUR);
          if (dow !== 2 && dow !== 3 && clear && at > this.start && at < this.end - HOUR) {
            events.push({ at, reason: "release" });
          }
          t += rng.range(2.5, 7) * DAY;
        }
      }
      events.sort((a, b) => a.at - b.at);
      let version = svc.initialVersion;
      const versions: string[] = [];
      for (let g = 0; g < events.length; g++) {
        const ev = events[g];
        if (ev.reason === "rollback") version = versions[versions.length - 2] ?? version;
        else if (ev.reason !== "initial") version = bump(version, rng);
        versions.push(version);
        all.push({
          service: svc.name,
          at: ev.at,
          version,
          generation: g + 1,
          templateHash: podHash(hashKey(this.seed, "template", svc.name, version), 10),
          reason: ev.reason,
          ...(ev.incident ? { incident: ev.incident.id } : {}),
        });
        if (ev.incident && (ev.reason === "bad_release" || (ev.reason === "release" && ev.incident))) {
          ev.incident.version = version;
        }
      }
    }
    return all.sort((a, b) => a.at - b.at || a.service.localeCompare(b.service));
  }

  private buildPods(): void {
    for (const svc of SERVICES) {
      const gens = this.deploys.filter((d) => d.service === svc.name);
      const pods: Pod[] = [];
      gens.forEach((d, i) => {
        const next = gens[i + 1];
        for (let r = 0; r < svc.replicas; r++) {
          const rng = Rng.of(this.seed, "pod", svc.name, d.generation, r);
          const suffix = podHash(rng.int(2 ** 31), 5);
          let name: string;
          if (svc.workload === "statefulset") name = `${svc.name}-${r}`;
          else if (svc.workload === "knative")
            name = `${svc.name}-${String(d.generation + 3).padStart(5, "0")}-deployment-${d.templateHash}-${suffix}`;
          else name = `${svc.name}-${d.templateHash}-${suffix}`;
          pods.push({
            service: svc.name,
            name,
            uid: rng.uuid(),
            ip: `10.42.${1 + rng.int(3)}.${2 + rng.int(250)}`,
            replica: r,
            generation: d.generation,
            version: d.version,
            from: d.at + r * 4_000,
            // The old pods go once the new ones are ready.
            to: next ? next.at + 40_000 + r * 4_000 : Number.POSITIVE_INFINITY,
          });
        }
      });
      this.podsBy.set(svc.name, pods);
    }
  }

  pods(name: string): Pod[] {
    return this.podsBy.get(name) ?? [];
  }

  podsAlive(name: string, t: number): Pod[] {
    return this.pods(name).filter((p) => p.from <= t && t < p.to);
  }

  versionAt(name: string, t: number): string {
    let v = service(name).initialVersion;
    for (const d of this.deploys) {
      if (d.at > t) break;
      if (d.service === name) v = d.version;
    }
    return v;
  }

  /** Container restarts of a pod up to t (crash loops and OOM kills). */
  restartsOf(pod: Pod, t: number): number {
    let n = 0;
    for (const inc of this.incidents) {
      if (inc.service !== pod.service || inc.start > t) continue;
      for (const r of inc.restarts) {
        if (r <= t && r >= pod.from && r < pod.to) n++;
      }
    }
    return n;
  }
}

function podHash(n: number, len: number): string {
  let s = "";
  let x = n >>> 0;
  for (let i = 0; i < len; i++) {
    x = Math.imul(x ^ (x >>> 15), 0x2c1b3c6d) >>> 0;
    x = (x ^ (x >>> 12)) >>> 0;
    s += POD_ALPHABET[x % POD_ALPHABET.length];
  }
  return s;
}

function lastBefore(sorted: number[], t: number): number | null {
  let out: number | null = null;
  for (const x of sorted) {
    if (x <= t) out = x;
    else break;
  }
  return out;
}

function nearest(sorted: number[], t: number): number | null {
  let best: number | null = null;
  for (const x of sorted) if (best === null || Math.abs(x - t) < Math.abs(best - t)) best = x;
  return best;
}
