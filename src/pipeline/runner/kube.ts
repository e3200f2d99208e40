// Access to the Kubernetes API: in-cluster config from the service account, kubeconfig as the
// fallback; the typed batch/core clients; and a raw pod-log stream whose end and errors we control.
import { existsSync, readFileSync } from "node:fs";
import * as http from "node:http";
import * as https from "node:https";
import { isIPv6 } from "node:net";
import { homedir } from "node:os";
import { join } from "node:path";
import { ApiException, BatchV1Api, CoreV1Api, KubeConfig } from "@kubernetes/client-node";
import type { KubernetesSection } from "../../config/schema.js";
import { ConfigError } from "../../errors.js";

export const SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

export interface Kube {
  kc: KubeConfig;
  batch: BatchV1Api;
  core: CoreV1Api;
  namespace: string;
  /** How the API was reached, for logs and doctor. */
  source: "in-cluster" | "kubeconfig";
}

export interface KubeLoadOptions {
  env?: NodeJS.ProcessEnv;
  /** Prefix of the service account directory (tests point it at a temporary root). */
  rootDir?: string;
}

/** Builds clients: the pod's service account when in a cluster (and no kubeconfig is configured), else kubeconfig. */
export function loadKube(section: KubernetesSection, opts: KubeLoadOptions = {}): Kube {
  const env = opts.env ?? process.env;
  const root = opts.rootDir ?? "";
  const kc = new KubeConfig();
  const tokenFile = `${root}${SERVICE_ACCOUNT_DIR}/token`;
  const inCluster =
    !section.kubeconfig &&
    Boolean(env.KUBERNETES_SERVICE_HOST && env.KUBERNETES_SERVICE_PORT) &&
    existsSync(tokenFile);
  let source: Kube["source"];
  let namespace: string | undefined = section.namespace;
  if (inCluster) {
    // As KubeConfig.loadFromCluster, but from `env`; the tokenFile provider re-reads rotated tokens.
    const host = env.KUBERNETES_SERVICE_HOST!;
    const port = env.KUBERNETES_SERVICE_PORT!;
    kc.loadFromClusterAndUser(
      {
        name: "in-cluster",
        server: `https://${isIPv6(host) ? `[${host}]` : host}:${port}`,
        caFile: `${root}${SERVICE_ACCOUNT_DIR}/ca.crt`,
        skipTLSVerify: false,
      },
      { name: "service-account", authProvider: { name: "tokenFile", config: { tokenFile } } },
    );
    source = "in-cluster";
    if (!namespace) {
      const nsFile = `${root}${SERVICE_ACCOUNT_DIR}/namespace`;
      namespace = env.POD_NAMESPACE || (existsSync(nsFile) ? readFileSync(nsFile, "utf8").trim() : undefined);
    }
  } else {
    const file =
      section.kubeconfig ??
      env.KUBECONFIG?.split(":").find((p) => p && existsSync(p)) ??
      defaultKubeconfig(env);
    if (!file || !existsSync(file)) {
      throw new ConfigError(
        "runner: kubernetes needs a cluster: run the server in a pod with its service account, " +
          "or set kubernetes.kubeconfig (or $KUBECONFIG)",
      );
    }
    try {
      kc.loadFromFile(file);
    } catch (err) {
      throw new ConfigError(`cannot read kubeconfig ${file}: ${(err as Error).message}`);
    }
    if (section.context) {
      if (!kc.getContextObject(section.context)) {
        throw new ConfigError(`kubernetes.context "${section.context}" is not in ${file}`);
      }
      kc.setCurrentContext(section.context);
    }
    source = "kubeconfig";
    namespace ??= kc.getContextObject(kc.getCurrentContext())?.namespace;
  }
  if (!kc.getCurrentCluster()) throw new ConfigError("the kubeconfig has no current cluster");
  return {
    kc,
    batch: kc.makeApiClient(BatchV1Api),
    core: kc.makeApiClient(CoreV1Api),
    namespace: namespace || "default",
    source,
  };
}

function defaultKubeconfig(env: NodeJS.ProcessEnv): string | undefined {
  const p = join(env.HOME || homedir(), ".kube", "config");
  return existsSync(p) ? p : undefined;
}

/** HTTP status of a failed API call, or null for a network-level failure. */
export function statusOf(err: unknown): number | null {
  if (err instanceof ApiException) return err.code;
  const code = (err as { code?: unknown; statusCode?: unknown } | null)?.statusCode;
  return typeof code === "number" ? code : null;
}

/** Worth retrying: the API server is unreachable, overloaded or restarting. */
export function isTransient(err: unknown): boolean {
  const status = statusOf(err);
  return status === null || status === 429 || status >= 500;
}

/** The API's own message from a Status body, else the error's message. */
export function apiMessage(err: unknown): string {
  if (err instanceof ApiException) {
    const body = typeof err.body === "string" ? safeJson(err.body) : err.body;
    const msg = (body as { message?: unknown } | null)?.message;
    return `${err.code}${typeof msg === "string" ? `: ${msg}` : ""}`;
  }
  return (err as Error)?.message ?? String(err);
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

export class LogStreamError extends Error {
  constructor(
    readonly status: number | null,
    message: string,
  ) {
    super(message);
  }
}

export interface LogStreamOptions {
  namespace: string;
  pod: string;
  container: string;
  follow: boolean;
  /** RFC3339; the API accepts second precision, so callers drop the lines they already have. */
  sinceTime?: string;
  tailLines?: number;
}

/**
 * Opens GET /api/v1/namespaces/{ns}/pods/{pod}/log with timestamps. Resolves with the response once
 * its status is 200; rejects with the API's message otherwise (e.g. 400 while the container is
 * still waiting to start). The caller reads lines and destroys the response to stop.
 */
export async function openPodLog(kube: Kube, o: LogStreamOptions): Promise<http.IncomingMessage> {
  const cluster = kube.kc.getCurrentCluster();
  if (!cluster) throw new LogStreamError(null, "no current cluster");
  const url = new URL(
    `${cluster.server.replace(/\/+$/, "")}/api/v1/namespaces/${encodeURIComponent(o.namespace)}/pods/${encodeURIComponent(o.pod)}/log`,
  );
  url.searchParams.set("container", o.container);
  url.searchParams.set("timestamps", "true");
  if (o.follow) url.searchParams.set("follow", "true");
  if (o.sinceTime) url.searchParams.set("sinceTime", o.sinceTime);
  if (o.tailLines !== undefined) url.searchParams.set("tailLines", String(o.tailLines));
  const reqOpts: https.RequestOptions = {};
  await kube.kc.applyToHTTPSOptions(reqOpts);
  const lib = url.protocol === "http:" ? http : https;
  return new Promise((resolve, reject) => {
    const req = lib.request(url, { ...reqOpts, method: "GET" }, (res) => {
      if (res.statusCode === 200) {
        // A dropped connection errors the response; readers see it as the stream's end.
        res.on("error", () => {});
        resolve(res);
        return;
      }
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("error", (err) => reject(new LogStreamError(res.statusCode ?? null, err.message)));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        const msg = (safeJson(text) as { message?: unknown } | null)?.message;
        reject(
          new LogStreamError(res.statusCode ?? null, typeof msg === "string" ? msg : text.slice(0, 300)),
        );
      });
    });
    req.on("error", (err) => reject(new LogStreamError(null, err.message)));
    req.end();
  });
}
