// The metric families the simulated homelab exports. A series is a pure function of time: a gauge
// gives its value, a counter gives its per-second rate (and, for small counts, its running total),
// all read from the same load and incident effects as the logs and traces.
import { SERVICES, type ServiceDef, service } from "./homelab.js";
import { smoothNoise, unitAt } from "./rng.js";
import { type Pod, SCRAPE_MS, type Timeline } from "./timeline.js";

export type Labels = Record<string, string>;

export interface SeriesDef {
  labels: Labels;
  /** Alive in [from, to). */
  from: number;
  to: number;
  /** A gauge's value, or a counter's rate per second. */
  at(t: number): number;
  /** A counter's running total, where the simulator knows it exactly. */
  total?: (t: number) => number;
}

export interface Family {
  name: string;
  type: "gauge" | "counter";
  /** The labels its series carry, besides __name__. */
  labelNames: string[];
  series(): SeriesDef[];
}

/** Upper bounds of the latency histogram, in seconds. */
export const LE_BOUNDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

const GATEWAY_CODES = ["200", "401", "502", "504"];
const SERVICE_CODES = ["200", "500"];
const PHASES = ["Pending", "Running", "Succeeded", "Failed", "Unknown"];
const DAY_MS = 86_400_000;
const SLOTS_PER_DAY = DAY_MS / SCRAPE_MS;

/** Standard normal CDF (Abramowitz-Stegun 7.1.26 on erf). */
function normalCdf(x: number): number {
  const z = Math.abs(x) / Math.SQRT2;
  const t = 1 / (1 + 0.3275911 * z);
  const y =
    1 -
    ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) *
      t *
      Math.exp(-z * z);
  return x >= 0 ? 0.5 * (1 + y) : 0.5 * (1 - y);
}

/** What a service is doing at t: requests per second, error ratio and latency. */
export interface ServiceLoad {
  rps: number;
  errorRatio: number;
  median: number;
  sigma: number;
}

export class HomelabMetrics {
  readonly families: Family[];
  private readonly byName: Map<string, Family>;

  constructor(
    private readonly tl: Timeline,
    private readonly dataStart: number,
  ) {
    this.families = this.build();
    this.byName = new Map(this.families.map((f) => [f.name, f]));
  }

  family(name: string): Family | undefined {
    return this.byName.get(name);
  }

  /** Per service, per day: [rps, errorRatio, median] at every scrape, filled a day at a time. */
  private readonly byDay = new Map<string, Map<number, Float64Array>>();
  private readonly scratch: ServiceLoad = { rps: 0, errorRatio: 0, median: 0, sigma: 0 };

  /**
   * Requests per second, error ratio and latency of a service at t. Every bucket, code and quantile
   * reads it, so scrape-aligned values come from a per-day table. The returned object is reused:
   * read it before the next call.
   */
  serviceLoad(svc: ServiceDef, t: number): ServiceLoad {
    if (t % SCRAPE_MS !== 0) return this.computeLoad(svc, t);
    const day = Math.floor(t / DAY_MS);
    const slot = (t - day * DAY_MS) / SCRAPE_MS;
    let days = this.byDay.get(svc.name);
    if (!days) {
      days = new Map();
      this.byDay.set(svc.name, days);
    }
    let table = days.get(day);
    if (!table) {
      if (days.size > 400) days.clear();
      table = new Float64Array(SLOTS_PER_DAY * 3);
      for (let i = 0; i < SLOTS_PER_DAY; i++) {
        const l = this.computeLoad(svc, day * DAY_MS + i * SCRAPE_MS);
        table[3 * i] = l.rps;
        table[3 * i + 1] = l.errorRatio;
        table[3 * i + 2] = l.median;
      }
      days.set(day, table);
    }
    const out = this.scratch;
    out.rps = table[3 * slot];
    out.errorRatio = table[3 * slot + 1];
    out.median = table[3 * slot + 2];
    out.sigma = svc.sigma;
    return out;
  }

  private computeLoad(svc: ServiceDef, t: number): ServiceLoad {
    const eff = this.tl.effects(svc.name, t);
    let rps = svc.rps * this.tl.load(svc, t);
    if (svc.name === "lambda-notify-digest") {
      // A cron lambda: a burst in the first minutes of every hour, scaled to zero otherwise.
      const minute = (t / 60_000) % 60;
      rps = minute < 4 ? svc.rps * 9 * (0.8 + 0.4 * this.tl.load(svc, t)) : 0;
    } else if (svc.role === "lambda") {
      // Called now and then and scaled to zero in between: no requests, so its quantiles are NaN.
      const active =
        unitAt(this.tl.keyOf("active", svc.name), Math.floor(t / 300_000)) < 0.2 + 0.4 * this.tl.load(svc, t);
      rps = active ? rps * 2.5 : 0;
    }
    // Sampling noise: small services are noisier, in their counts and in their latency quantiles.
    const amp = Math.min(0.6, 1 / Math.sqrt(svc.rps * 30 + 1));
    rps *= 1 + amp * (unitAt(this.tl.keyOf("rps", svc.name), Math.floor(t / SCRAPE_MS)) * 2 - 1);
    // A crash-looping service's requests are still counted, by Knative's queue-proxy: all failing,
    // and more of them, as callers and the broker retry.
    if (eff.culprit && eff.incident?.kind === "crash_loop") rps = Math.max(rps, 0.03);
    else rps *= Math.max(eff.served, 0.04);
    const errorRatio = Math.min(0.98, svc.errorRate + eff.errorAdd);
    const jitter =
      0.1 * smoothNoise(this.tl.keyOf("latency-drift", svc.name), t, 90 * 60_000) +
      (0.05 + amp * 0.4) * (unitAt(this.tl.keyOf("latency", svc.name), Math.floor(t / 300_000)) * 2 - 1);
    const median =
      svc.latency * (0.85 + 0.3 * Math.min(1.5, this.tl.load(svc, t))) * eff.latency * Math.exp(jitter);
    return { rps, errorRatio, median, sigma: svc.sigma };
  }

  private codeShare(svc: ServiceDef, code: string, l: ServiceLoad): number {
    if (svc.role === "gateway") {
      const auth = 0.015;
      if (code === "401") return auth;
      if (code === "502") return l.errorRatio * 0.7;
      if (code === "504") return l.errorRatio * 0.3;
      return Math.max(0, 1 - auth - l.errorRatio);
    }
    return code === "200" ? 1 - l.errorRatio : l.errorRatio;
  }

  private podLife(pod: Pod): { from: number; to: number } {
    return { from: Math.max(pod.from, this.dataStart), to: pod.to };
  }

  private build(): Family[] {
    const tl = this.tl;
    const httpServices = SERVICES.filter((s) => s.http);
    const firstPod = (s: ServiceDef) => Math.max(this.dataStart, tl.pods(s.name)[0]?.from ?? this.dataStart);
    const base = (s: ServiceDef): Labels => ({ job: s.name, namespace: s.namespace, service: s.name });

    const up: Family = {
      name: "up",
      type: "gauge",
      labelNames: ["instance", "job", "namespace", "pod", "service"],
      series: () => {
        const out: SeriesDef[] = [
          {
            labels: { __name__: "up", instance: "localhost:9090", job: "prometheus" },
            from: this.dataStart,
            to: Number.POSITIVE_INFINITY,
            at: () => 1,
          },
        ];
        for (const s of SERVICES) {
          for (const pod of tl.pods(s.name)) {
            out.push({
              labels: { __name__: "up", instance: `${pod.ip}:${s.port}`, ...base(s), pod: pod.name },
              ...this.podLife(pod),
              at: (t) => (t - pod.from < 15_000 || tl.effects(s.name, t).down ? 0 : 1),
            });
          }
        }
        return out;
      },
    };

    const requests: Family = {
      name: "http_requests_total",
      type: "counter",
      labelNames: ["code", "job", "namespace", "service"],
      series: () =>
        httpServices.flatMap((s) =>
          (s.role === "gateway" ? GATEWAY_CODES : SERVICE_CODES).map((code) => ({
            labels: { __name__: "http_requests_total", code, ...base(s) },
            from: firstPod(s),
            to: Number.POSITIVE_INFINITY,
            at: (t: number) => {
              const l = this.serviceLoad(s, t);
              return l.rps * this.codeShare(s, code, l);
            },
          })),
        ),
    };

    const histogram = (suffix: "bucket" | "count" | "sum"): Family => ({
      name: `http_request_duration_seconds_${suffix}`,
      type: "counter",
      labelNames:
        suffix === "bucket" ? ["job", "le", "namespace", "service"] : ["job", "namespace", "service"],
      series: () =>
        httpServices.flatMap((s) => {
          const labels = { __name__: `http_request_duration_seconds_${suffix}`, ...base(s) };
          const alive = { from: firstPod(s), to: Number.POSITIVE_INFINITY };
          if (suffix === "count")
            return [{ labels, ...alive, at: (t: number) => this.serviceLoad(s, t).rps }];
          if (suffix === "sum")
            return [
              {
                labels,
                ...alive,
                at: (t: number) => {
                  const l = this.serviceLoad(s, t);
                  return l.rps * l.median * Math.exp((l.sigma * l.sigma) / 2);
                },
              },
            ];
          return [...LE_BOUNDS, Number.POSITIVE_INFINITY].map((le) => ({
            labels: { ...labels, le: le === Number.POSITIVE_INFINITY ? "+Inf" : String(le) },
            ...alive,
            at: (t: number) => {
              const l = this.serviceLoad(s, t);
              if (le === Number.POSITIVE_INFINITY) return l.rps;
              return l.rps * normalCdf((Math.log(le) - Math.log(l.median)) / l.sigma);
            },
          }));
        }),
    });

    /** A kubelet (cAdvisor) series per container; `at` gets the pod's own noise key. */
    const perContainer =
      (
        name: string,
        extra: Record<string, string>,
        keyKind: string,
        at: (s: ServiceDef, pod: Pod, key: number, t: number) => number,
      ) =>
      () =>
        SERVICES.flatMap((s) =>
          tl.pods(s.name).map((pod) => {
            const key = tl.keyOf(keyKind, pod.name);
            return {
              labels: {
                __name__: name,
                container: s.container,
                ...extra,
                image: `ghcr.io/homelab/${s.name}:${pod.version}`,
                job: "kubelet",
                namespace: s.namespace,
                pod: pod.name,
              },
              ...this.podLife(pod),
              at: (t: number) => at(s, pod, key, t),
            };
          }),
        );

    const cpu: Family = {
      name: "container_cpu_usage_seconds_total",
      type: "counter",
      labelNames: ["container", "cpu", "image", "job", "namespace", "pod"],
      series: perContainer(
        "container_cpu_usage_seconds_total",
        { cpu: "total" },
        "cpu",
        (s, _pod, key, t) => {
          const eff = tl.effects(s.name, t);
          const rps = this.serviceLoad(s, t).rps;
          const busy = s.cpu + (s.cpuPerRps * rps) / s.replicas + eff.cpuAdd / s.replicas;
          return Math.max(0, busy * (1 + 0.12 * smoothNoise(key, t, 20 * 60_000)));
        },
      ),
    };

    const memory = (name: string, factor: number): Family => ({
      name,
      type: "gauge",
      labelNames: ["container", "image", "job", "namespace", "pod"],
      series: perContainer(name, {}, "mem", (s, pod, key, t) => {
        const eff = tl.effects(s.name, t);
        const warm = 0.12 * Math.min(1, (t - pod.from) / 7_200_000);
        let bytes = s.memory * (1 + warm + 0.04 * smoothNoise(key, t, 40 * 60_000));
        if (eff.culprit && eff.leak > 0) bytes += eff.leak * (0.97 * s.memoryLimit - bytes);
        if (eff.down) bytes = s.memory * 0.25;
        return Math.round(bytes * factor);
      }),
    });

    const phase: Family = {
      name: "kube_pod_status_phase",
      type: "gauge",
      labelNames: ["job", "namespace", "phase", "pod", "uid"],
      series: () =>
        SERVICES.flatMap((s) =>
          tl.pods(s.name).flatMap((pod) =>
            PHASES.map((ph) => ({
              labels: {
                __name__: "kube_pod_status_phase",
                job: "kube-state-metrics",
                namespace: s.namespace,
                phase: ph,
                pod: pod.name,
                uid: pod.uid,
              },
              ...this.podLife(pod),
              at: (t: number) => ((t - pod.from < 12_000 ? "Pending" : "Running") === ph ? 1 : 0),
            })),
          ),
        ),
    };

    const restarts: Family = {
      name: "kube_pod_container_status_restarts_total",
      type: "counter",
      labelNames: ["container", "job", "namespace", "pod", "uid"],
      series: () =>
        SERVICES.flatMap((s) =>
          tl.pods(s.name).map((pod) => ({
            labels: {
              __name__: "kube_pod_container_status_restarts_total",
              container: s.container,
              job: "kube-state-metrics",
              namespace: s.namespace,
              pod: pod.name,
              uid: pod.uid,
            },
            ...this.podLife(pod),
            at: () => 0,
            total: (t: number) => tl.restartsOf(pod, t),
          })),
        ),
    };

    const pgActivity: Family = {
      name: "pg_stat_activity_count",
      type: "gauge",
      labelNames: ["datname", "instance", "job", "state"],
      series: () =>
        ["active", "idle", "idle in transaction"].map((state) => ({
          labels: {
            __name__: "pg_stat_activity_count",
            datname: "notifications",
            instance: "postgres-exporter.data.svc:9187",
            job: "postgres-exporter",
            state,
          },
          from: this.dataStart,
          to: Number.POSITIVE_INFINITY,
          at: (t: number) => {
            const pg = service("postgres");
            const eff = tl.effects("postgres", t);
            const load = tl.load(pg, t);
            const active = Math.round(1 + 5 * load + (eff.culprit ? 38 * eff.intensity : 0));
            if (state === "active") return active;
            if (state === "idle") return Math.max(0, 24 - active);
            return eff.culprit ? Math.round(6 * eff.intensity) : 0;
          },
        })),
    };

    const queueReady: Family = {
      name: "rabbitmq_queue_messages_ready",
      type: "gauge",
      labelNames: ["instance", "job", "queue", "vhost"],
      series: () =>
        ["notifications", "digest"].map((queue) => ({
          labels: {
            __name__: "rabbitmq_queue_messages_ready",
            instance: "rabbitmq-0.rabbitmq.data.svc:15692",
            job: "rabbitmq",
            queue,
            vhost: "/",
          },
          from: this.dataStart,
          to: Number.POSITIVE_INFINITY,
          at: (t: number) => {
            const eff = tl.effects("notification-worker", t);
            const key = tl.keyOf("queue", queue);
            const backlog = eff.culprit ? (eff.down ? 900 : 400 * eff.intensity) : 0;
            return Math.max(0, Math.round(3 + 3 * smoothNoise(key, t, 15 * 60_000) + backlog));
          },
        })),
    };

    const self = (name: string, scale: number): Family => ({
      name,
      type: "gauge",
      labelNames: ["instance", "job"],
      series: () => [
        {
          labels: { __name__: name, instance: "localhost:9090", job: "prometheus" },
          from: this.dataStart,
          to: Number.POSITIVE_INFINITY,
          at: () => this.dataStart * scale,
        },
      ],
    });

    return [
      up,
      requests,
      histogram("bucket"),
      histogram("count"),
      histogram("sum"),
      cpu,
      memory("container_memory_usage_bytes", 1),
      memory("container_memory_working_set_bytes", 0.92),
      phase,
      restarts,
      pgActivity,
      queueReady,
      self("prometheus_tsdb_lowest_timestamp_seconds", 1 / 1000),
      self("prometheus_tsdb_lowest_timestamp", 1),
    ];
  }
}
