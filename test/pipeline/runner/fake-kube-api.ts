// A local Kubernetes API server for the Job runner tests. It serves the endpoints the runner uses,
// with the shapes of the Kubernetes API reference (batch/v1 Job, core/v1 Pod, meta/v1 Status and
// lists), and plays the Job controller and kubelet under the test's direction: create a pod for a
// Job, start it, print log lines, end it, retry up to backoffLimit, set Complete/Failed.
//
// Endpoints:
//   POST/GET   /apis/batch/v1/namespaces/{ns}/jobs            (list takes labelSelector)
//   GET/DELETE /apis/batch/v1/namespaces/{ns}/jobs/{name}     (DELETE honours propagationPolicy)
//   GET        /api/v1/namespaces/{ns}/pods                   (labelSelector)
//   GET        /api/v1/namespaces/{ns}/pods/{name}
//   GET        /api/v1/namespaces/{ns}/pods/{name}/log        (container, follow, timestamps, sinceTime, tailLines)
import { randomUUID } from "node:crypto";
import {
  createServer as createHttp,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import { createServer as createHttps } from "node:https";
import type { AddressInfo } from "node:net";
import { Job } from "kubernetes-models/batch/v1/Job";
import { unknownFields } from "../../k8s/strict-fields.js";

type Obj = Record<string, any>;

export interface RecordedRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  authorization: string | undefined;
}

interface LogLine {
  time: string;
  text: string;
}

interface LogStream {
  res: ServerResponse;
  pod: string;
  timestamps: boolean;
  /** A black-holed stream stays open but receives nothing more (a connection that died silently). */
  dead: boolean;
}

export interface FakeKubeOptions {
  /** Bearer token every request must carry. */
  token?: string;
  /** Serve HTTPS with this key pair (in-cluster tests). */
  tls?: { key: string; cert: string };
}

export class FakeKubeApi {
  readonly jobs = new Map<string, Obj>();
  readonly pods = new Map<string, Obj>();
  readonly logs = new Map<string, LogLine[]>();
  readonly requests: RecordedRequest[] = [];
  readonly streams: LogStream[] = [];
  server!: Server;
  url = "";
  private clock = Date.parse("2030-01-01T00:00:00Z");
  private nanos = 0;
  private rv = 1000;

  /** The next this-many requests get this status (an API server restarting or overloaded). */
  private failing = { count: 0, status: 503 };

  constructor(private readonly opts: FakeKubeOptions = {}) {}

  failNext(count: number, status = 503): void {
    this.failing = { count, status };
  }

  async start(): Promise<void> {
    const handler = (req: IncomingMessage, res: ServerResponse) => {
      this.handle(req, res).catch((err) => {
        if (!res.headersSent) this.status(res, 500, "InternalError", String(err));
      });
    };
    this.server = this.opts.tls ? createHttps(this.opts.tls, handler) : createHttp(handler);
    await new Promise<void>((r) => this.server.listen(0, "127.0.0.1", r));
    const port = (this.server.address() as AddressInfo).port;
    this.url = `${this.opts.tls ? "https" : "http"}://127.0.0.1:${port}`;
  }

  async stop(): Promise<void> {
    for (const s of this.streams) s.res.destroy();
    this.server.closeAllConnections?.();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  // ---- what the test drives -------------------------------------------------------------------

  /** Adds a pod that is not a Job's (the server's own pod, read for inheritance). */
  addPod(pod: Obj): void {
    this.pods.set(pod.metadata.name, pod);
  }

  podsOf(job: string): Obj[] {
    return [...this.pods.values()]
      .filter((p) => p.metadata.labels?.["job-name"] === job)
      .sort((a, b) => a.metadata.creationTimestamp.localeCompare(b.metadata.creationTimestamp));
  }

  /** The kubelet started the container. */
  startPod(name: string, node = "gpu-node-1"): void {
    const pod = this.mustPod(name);
    pod.spec.nodeName = node;
    pod.status.phase = "Running";
    pod.status.conditions = [
      { type: "PodScheduled", status: "True" },
      { type: "Ready", status: "True" },
    ];
    const container = pod.spec.containers[0].name;
    pod.status.containerStatuses = [
      {
        name: container,
        image: pod.spec.containers[0].image,
        imageID: "",
        ready: true,
        restartCount: 0,
        started: true,
        state: { running: { startedAt: this.now() } },
      },
    ];
    this.bump(pod);
    const job = this.jobs.get(pod.metadata.labels["job-name"]);
    if (job) {
      job.status.ready = 1;
      this.bump(job);
    }
  }

  /** The scheduler cannot place the pod. */
  unschedulable(name: string, message: string): void {
    const pod = this.mustPod(name);
    pod.status.conditions = [{ type: "PodScheduled", status: "False", reason: "Unschedulable", message }];
    this.bump(pod);
  }

  /** The container prints lines; `sameInstant` gives them one timestamp (several writes per ns tick). */
  print(name: string, lines: string[], sameInstant = false): void {
    this.mustPod(name);
    const buf = this.logs.get(name) ?? [];
    const shared = sameInstant ? this.tick() : null;
    for (const text of lines) {
      const entry = { time: shared ?? this.tick(), text };
      buf.push(entry);
      for (const s of this.streams) {
        if (s.pod === name && !s.dead && !s.res.writableEnded) s.res.write(this.format(entry, s.timestamps));
      }
    }
    this.logs.set(name, buf);
  }

  /** The container exits; the Job controller then succeeds, retries or fails the Job. */
  endPod(name: string, exitCode: number, reason = exitCode === 0 ? "Completed" : "Error"): void {
    const pod = this.mustPod(name);
    pod.status.phase = exitCode === 0 ? "Succeeded" : "Failed";
    const cs = pod.status.containerStatuses[0];
    cs.ready = false;
    cs.started = false;
    cs.state = {
      terminated: { exitCode, reason, startedAt: cs.state.running?.startedAt, finishedAt: this.now() },
    };
    this.bump(pod);
    for (const s of this.streams) if (s.pod === name && !s.dead) s.res.end();
    const job = this.jobs.get(pod.metadata.labels["job-name"]);
    if (!job) return;
    job.status.active = 0;
    job.status.ready = 0;
    if (exitCode === 0) {
      job.status.succeeded = 1;
      job.status.completionTime = this.now();
      job.status.conditions = [
        this.condition(
          "SuccessCriteriaMet",
          "CompletionsReached",
          "Reached expected number of succeeded pods",
        ),
        this.condition("Complete", "CompletionsReached", "Reached expected number of succeeded pods"),
      ];
    } else {
      job.status.failed = (job.status.failed ?? 0) + 1;
      if (job.status.failed > (job.spec.backoffLimit ?? 6)) {
        job.status.conditions = [
          this.condition(
            "FailureTarget",
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
          ),
          this.condition("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit"),
        ];
      } else {
        this.createPod(job);
        job.status.active = 1;
      }
    }
    this.bump(job);
  }

  /** Closes every open log stream, as an API server restart or a proxy timeout would. */
  dropLogStreams(): void {
    for (const s of this.streams) if (!s.dead) s.res.destroy();
  }

  /** Open log streams stop receiving lines but stay open (a connection that died without a FIN). */
  blackholeLogStreams(): void {
    for (const s of this.streams) s.dead = true;
  }

  openStreams(pod?: string): number {
    return this.streams.filter(
      (s) => !s.dead && !s.res.writableEnded && !s.res.destroyed && (!pod || s.pod === pod),
    ).length;
  }

  creates(): number {
    return this.requests.filter((r) => r.method === "POST" && r.path.endsWith("/jobs")).length;
  }

  // ---- the API --------------------------------------------------------------------------------

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://x");
    const query = Object.fromEntries(url.searchParams);
    this.requests.push({
      method: req.method ?? "",
      path: url.pathname,
      query,
      authorization: req.headers.authorization,
    });
    if (this.failing.count > 0) {
      this.failing.count--;
      this.status(
        res,
        this.failing.status,
        "ServiceUnavailable",
        "the server is currently unable to handle the request",
      );
      return;
    }
    if (this.opts.token && req.headers.authorization !== `Bearer ${this.opts.token}`) {
      return this.status(res, 401, "Unauthorized", "Unauthorized");
    }
    const body = await readBody(req);
    const p = url.pathname.split("/").filter(Boolean);
    // /apis/batch/v1/namespaces/{ns}/jobs[/{name}]
    if (p[0] === "apis" && p[1] === "batch" && p[2] === "v1" && p[3] === "namespaces" && p[5] === "jobs") {
      const ns = p[4];
      if (p.length === 6 && req.method === "POST") return this.createJob(res, ns, body);
      if (p.length === 6 && req.method === "GET") {
        const items = [...this.jobs.values()].filter(
          (j) => j.metadata.namespace === ns && matches(j.metadata.labels, query.labelSelector),
        );
        return this.json(res, 200, {
          kind: "JobList",
          apiVersion: "batch/v1",
          metadata: { resourceVersion: `${this.rv}` },
          items,
        });
      }
      if (p.length === 7) {
        const job = this.jobs.get(p[6]);
        if (!job || job.metadata.namespace !== ns) return this.notFound(res, "jobs", "batch", p[6]);
        if (req.method === "GET") return this.json(res, 200, job);
        if (req.method === "DELETE") return this.deleteJob(res, job, query, body);
      }
    }
    // /api/v1/namespaces/{ns}/pods[/{name}[/log]]
    if (p[0] === "api" && p[1] === "v1" && p[2] === "namespaces" && p[4] === "pods" && req.method === "GET") {
      const ns = p[3];
      if (p.length === 5) {
        const items = [...this.pods.values()].filter(
          (x) => x.metadata.namespace === ns && matches(x.metadata.labels, query.labelSelector),
        );
        return this.json(res, 200, {
          kind: "PodList",
          apiVersion: "v1",
          metadata: { resourceVersion: `${this.rv}` },
          items,
        });
      }
      const pod = this.pods.get(p[5]);
      if (!pod || pod.metadata.namespace !== ns) return this.notFound(res, "pods", "", p[5]);
      if (p.length === 6) return this.json(res, 200, pod);
      if (p.length === 7 && p[6] === "log") return this.podLog(res, pod, query);
    }
    return this.status(res, 404, "NotFound", "the server could not find the requested resource");
  }

  private createJob(res: ServerResponse, ns: string, body: string): void {
    const obj = JSON.parse(body) as Obj;
    // What the API server's validation would refuse: schema errors and (strict) unknown fields.
    try {
      new Job(obj).validate();
    } catch (err) {
      this.status(res, 422, "Invalid", `Job.batch is invalid: ${(err as Error).message}`);
      return;
    }
    const unknown = unknownFields(obj, "V1Job");
    if (unknown.length) {
      this.status(res, 400, "BadRequest", `strict decoding error: ${unknown.join(", ")}`);
      return;
    }
    const name = obj.metadata?.name;
    if (this.jobs.has(name)) {
      this.status(res, 409, "AlreadyExists", `jobs.batch "${name}" already exists`, {
        name,
        group: "batch",
        kind: "jobs",
      });
      return;
    }
    const job: Obj = {
      ...obj,
      metadata: {
        ...obj.metadata,
        namespace: ns,
        uid: randomUUID(),
        resourceVersion: `${++this.rv}`,
        generation: 1,
        creationTimestamp: this.now(),
      },
      spec: { completions: 1, parallelism: 1, completionMode: "NonIndexed", suspend: false, ...obj.spec },
      status: { active: 1, ready: 0, terminating: 0, startTime: this.now(), uncountedTerminatedPods: {} },
    };
    this.jobs.set(name, job);
    this.createPod(job);
    this.json(res, 201, job);
  }

  private deleteJob(res: ServerResponse, job: Obj, query: Record<string, string>, body: string): void {
    const opts = body ? (JSON.parse(body) as Obj) : {};
    const policy = query.propagationPolicy ?? opts.propagationPolicy;
    this.jobs.delete(job.metadata.name);
    for (const pod of this.podsOf(job.metadata.name)) {
      if (policy === "Background" || policy === "Foreground") {
        this.pods.delete(pod.metadata.name);
        for (const s of this.streams) if (s.pod === pod.metadata.name) s.res.end();
      } else {
        pod.metadata.ownerReferences = []; // batch/v1 Jobs orphan their pods by default
      }
    }
    this.json(res, 200, {
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Success",
      details: { name: job.metadata.name, group: "batch", kind: "jobs", uid: job.metadata.uid },
    });
  }

  private podLog(res: ServerResponse, pod: Obj, q: Record<string, string>): void {
    const containers = pod.spec.containers.map((c: Obj) => c.name);
    const container = q.container ?? containers[0];
    if (!containers.includes(container)) {
      this.status(res, 400, "BadRequest", `container ${container} is not valid for pod ${pod.metadata.name}`);
      return;
    }
    const state = pod.status.containerStatuses?.[0]?.state;
    if (!state || state.waiting) {
      const reason = state?.waiting?.reason ?? "ContainerCreating";
      this.status(
        res,
        400,
        "BadRequest",
        `container "${container}" in pod "${pod.metadata.name}" is waiting to start: ${reason}`,
      );
      return;
    }
    const timestamps = q.timestamps === "true";
    let lines = this.logs.get(pod.metadata.name) ?? [];
    if (q.sinceTime) {
      const since = Date.parse(q.sinceTime);
      lines = lines.filter((l) => Date.parse(l.time.replace(/\.\d+Z$/, "Z")) >= since);
    }
    if (q.tailLines) lines = lines.slice(-Number(q.tailLines));
    res.writeHead(200, { "content-type": "text/plain", "transfer-encoding": "chunked" });
    res.flushHeaders();
    for (const l of lines) res.write(this.format(l, timestamps));
    if (q.follow === "true" && state.running) {
      const stream: LogStream = { res, pod: pod.metadata.name, timestamps, dead: false };
      this.streams.push(stream);
      res.on("close", () => {
        const i = this.streams.indexOf(stream);
        if (i >= 0) this.streams.splice(i, 1);
      });
      return;
    }
    res.end();
  }

  // ---- helpers --------------------------------------------------------------------------------

  private createPod(job: Obj): void {
    const tpl = job.spec.template;
    const name = `${job.metadata.name}-${randomUUID().slice(0, 5)}`;
    const controller = {
      "batch.kubernetes.io/controller-uid": job.metadata.uid,
      "batch.kubernetes.io/job-name": job.metadata.name,
      "controller-uid": job.metadata.uid,
      "job-name": job.metadata.name,
    };
    this.pods.set(name, {
      metadata: {
        name,
        namespace: job.metadata.namespace,
        uid: randomUUID(),
        resourceVersion: `${++this.rv}`,
        creationTimestamp: this.now(),
        labels: { ...tpl.metadata?.labels, ...controller },
        annotations: tpl.metadata?.annotations,
        ownerReferences: [
          {
            apiVersion: "batch/v1",
            kind: "Job",
            name: job.metadata.name,
            uid: job.metadata.uid,
            controller: true,
            blockOwnerDeletion: true,
          },
        ],
      },
      spec: structuredClone(tpl.spec),
      status: {
        phase: "Pending",
        conditions: [{ type: "PodScheduled", status: "True" }],
        containerStatuses: [
          {
            name: tpl.spec.containers[0].name,
            image: tpl.spec.containers[0].image,
            imageID: "",
            ready: false,
            restartCount: 0,
            started: false,
            state: { waiting: { reason: "ContainerCreating" } },
          },
        ],
      },
    });
  }

  private mustPod(name: string): Obj {
    const pod = this.pods.get(name);
    if (!pod) throw new Error(`no pod ${name}`);
    return pod;
  }

  private condition(type: string, reason: string, message: string): Obj {
    const t = this.now();
    return { type, status: "True", reason, message, lastProbeTime: t, lastTransitionTime: t };
  }

  private bump(obj: Obj): void {
    obj.metadata.resourceVersion = `${++this.rv}`;
  }

  /** Each event happens a second after the previous one, so creation times order objects. */
  private now(): string {
    this.clock += 1000;
    return new Date(this.clock).toISOString().replace(/\.\d+Z$/, "Z");
  }

  /** RFC3339Nano as Go writes it: nanoseconds with trailing zeros trimmed. */
  private tick(): string {
    this.nanos += 250_000_000; // four lines a second, so some share a second and some do not
    if (this.nanos >= 1e9) {
      this.clock += 1000;
      this.nanos -= 1e9;
    }
    const base = new Date(this.clock).toISOString().slice(0, 19);
    const frac = String(this.nanos).padStart(9, "0").replace(/0+$/, "");
    return `${base}${frac ? `.${frac}` : ""}Z`;
  }

  private format(l: LogLine, timestamps: boolean): string {
    return timestamps ? `${l.time} ${l.text}\n` : `${l.text}\n`;
  }

  private json(res: ServerResponse, code: number, body: unknown): void {
    res.writeHead(code, { "content-type": "application/json" });
    res.end(JSON.stringify(body));
  }

  private status(res: ServerResponse, code: number, reason: string, message: string, details?: Obj): void {
    this.json(res, code, {
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Failure",
      message,
      reason,
      ...(details ? { details } : {}),
      code,
    });
  }

  private notFound(res: ServerResponse, kind: string, group: string, name: string): void {
    this.status(res, 404, "NotFound", `${kind}${group ? `.${group}` : ""} "${name}" not found`, {
      name,
      group,
      kind,
    });
  }
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let s = "";
    req.setEncoding("utf8");
    req.on("data", (c: string) => (s += c));
    req.on("end", () => resolve(s));
    req.on("error", reject);
  });
}

/** Equality-based label selectors: a=b, a==b, a!=b, a (exists), !a. */
export function matches(labels: Record<string, string> | undefined, selector: string | undefined): boolean {
  if (!selector) return true;
  const l = labels ?? {};
  return selector.split(",").every((term) => {
    const t = term.trim();
    let m = /^([^!=]+)!=(.*)$/.exec(t);
    if (m) return l[m[1]] !== m[2];
    m = /^([^!=]+)==?(.*)$/.exec(t);
    if (m) return l[m[1]] === m[2];
    if (t.startsWith("!")) return !(t.slice(1) in l);
    return t in l;
  });
}
