// The HTTP client every observability source shares: auth, tenant header, extra CA, a timeout
// per request, retries with exponential backoff and jitter, and one AbortSignal that cancels it all.
// Built on node:http(s) rather than fetch because fetch cannot take an extra CA without undici.
import { readFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import type { Transform } from "node:stream";
import { rootCertificates } from "node:tls";
import { createBrotliDecompress, createGunzip, createInflate } from "node:zlib";
import { ConfigError, WorkError } from "../../errors.js";
import { resolveSecretRef as resolveSecret, type SecretRef } from "../../util/secret-ref.js";

export type SourceErrorKind = "network" | "timeout" | "http" | "malformed" | "too_large" | "cancelled";

/** A source failed for one query; the message names both and says what came back. */
export class SourceError extends WorkError {
  override name = "SourceError";
  constructor(
    readonly source: string,
    readonly query: string,
    readonly kind: SourceErrorKind,
    detail: string,
    readonly status?: number,
  ) {
    super(`${source} query "${query}": ${detail}`);
  }
}

export interface HttpAuth {
  bearer?: SecretRef;
  basic?: { username: string; password: SecretRef };
}

export interface HttpSourceOptions {
  source: string;
  url: string;
  auth?: HttpAuth;
  tenant?: string;
  caFile?: string;
  timeoutMs: number;
  retries: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
  maxResponseBytes: number;
  /** Sockets kept per host. */
  maxSockets?: number;
  signal?: AbortSignal;
  /** Where config key paths are reported from, e.g. "agents.agent-sre.sources.loki". */
  configPath?: string;
  env?: NodeJS.ProcessEnv;
}

export interface HttpResponse {
  status: number;
  contentType: string;
  body: Buffer;
  /** From a Retry-After header, in ms. */
  retryAfterMs?: number;
}

export interface RequestStats {
  requests: number;
  retries: number;
}

export interface QueryClient {
  readonly source: string;
  readonly query: string;
  readonly stats: RequestStats;
  readonly baseUrl: string;
  get(
    path: string,
    params: Record<string, string | number | undefined>,
    headers?: Record<string, string>,
  ): Promise<HttpResponse>;
  getJson(
    path: string,
    params: Record<string, string | number | undefined>,
  ): Promise<{ status: number; json: unknown; res: HttpResponse }>;
  /** A SourceError that names this source and query. */
  error(kind: SourceErrorKind, detail: string, status?: number): SourceError;
}

const RETRYABLE_STATUS = (s: number) => s === 429 || (s >= 500 && s !== 501);

export class HttpSourceClient {
  readonly stats: RequestStats = { requests: 0, retries: 0 };
  private readonly base: URL;
  private readonly headers: Record<string, string>;
  private readonly agent: http.Agent;
  private readonly lib: typeof http | typeof https;
  /**
   * What stops each request and backoff in flight. The run's signal gets one listener per client
   * that calls them all: a listener per request tripped MaxListenersExceededWarning as soon as
   * more than ten requests were in flight across the sources (AbortSignal.any would avoid that,
   * but on Node 20 it keeps a little memory per call for as long as the run's signal lives).
   */
  private readonly inFlight = new Set<() => void>();
  private readonly onAbort = () => {
    for (const stop of this.inFlight) stop();
  };

  constructor(private readonly opts: HttpSourceOptions) {
    this.base = new URL(opts.url.endsWith("/") ? opts.url : `${opts.url}/`);
    const where = opts.configPath ?? opts.source;
    this.headers = { "accept-encoding": "gzip, deflate, br", "user-agent": "trm-forge" };
    if (opts.auth?.bearer)
      this.headers.authorization = `Bearer ${resolveSecret(opts.auth.bearer, `${where}.auth.bearer`, opts.env)}`;
    else if (opts.auth?.basic) {
      const pw = resolveSecret(opts.auth.basic.password, `${where}.auth.basic.password`, opts.env);
      this.headers.authorization = `Basic ${Buffer.from(`${opts.auth.basic.username}:${pw}`).toString("base64")}`;
    }
    if (opts.tenant) this.headers["x-scope-orgid"] = opts.tenant;
    const https_ = this.base.protocol === "https:";
    this.lib = https_ ? https : http;
    let ca: string[] | undefined;
    if (opts.caFile) {
      try {
        ca = [...rootCertificates, readFileSync(opts.caFile, "utf8")];
      } catch (err) {
        throw new ConfigError(`${where}.ca_file: cannot read ${opts.caFile}: ${(err as Error).message}`);
      }
    }
    const agentOpts = { keepAlive: true, maxSockets: opts.maxSockets ?? 8 };
    this.agent = https_ ? new https.Agent({ ...agentOpts, ca }) : new http.Agent(agentOpts);
    opts.signal?.addEventListener("abort", this.onAbort, { once: true });
  }

  /** The base URL without any query, for messages. */
  get baseUrl(): string {
    return this.base.href.replace(/\/$/, "");
  }

  close(): void {
    this.opts.signal?.removeEventListener("abort", this.onAbort);
    this.agent.destroy();
  }

  /**
   * GET base/path?params. Retries network errors, timeouts, 429 and 5xx; returns any other
   * response (the caller decides what a 4xx means). Throws SourceError when retries run out.
   */
  async get(
    path: string,
    params: Record<string, string | number | undefined>,
    query: string,
    headers: Record<string, string> = {},
    stats: RequestStats = this.stats,
  ): Promise<HttpResponse> {
    const url = new URL(path.replace(/^\//, ""), this.base);
    for (const [k, v] of Object.entries(params)) if (v !== undefined) url.searchParams.set(k, String(v));
    let attempt = 0;
    for (;;) {
      this.checkAborted(query);
      let failure: { kind: SourceErrorKind; detail: string; status?: number; retryAfterMs?: number };
      try {
        stats.requests++;
        const res = await this.once(url, headers, query);
        if (!RETRYABLE_STATUS(res.status)) return res;
        failure = {
          kind: "http",
          status: res.status,
          detail: `HTTP ${res.status} from ${url.pathname}: ${bodyExcerpt(res)}`,
          retryAfterMs: res.retryAfterMs,
        };
      } catch (err) {
        if (err instanceof SourceError) throw err;
        if (this.opts.signal?.aborted) throw this.cancelled(query);
        const e = err as NodeJS.ErrnoException;
        failure =
          e.name === "TimeoutError" || e.code === "ETIMEDOUT"
            ? { kind: "timeout", detail: `no response from ${url.pathname} within ${this.opts.timeoutMs} ms` }
            : { kind: "network", detail: `${e.code ?? e.name}: ${e.message} (${url.origin})` };
      }
      if (attempt >= this.opts.retries) {
        const tries = attempt + 1;
        throw new SourceError(
          this.opts.source,
          query,
          failure.kind,
          `${failure.detail} (after ${tries} attempt${tries > 1 ? "s" : ""})`,
          failure.status,
        );
      }
      attempt++;
      stats.retries++;
      await this.sleep(
        failure.retryAfterMs ?? backoffMs(attempt, this.opts.backoffBaseMs, this.opts.backoffMaxMs),
        query,
      );
    }
  }

  /** GET and parse JSON; a body that is not JSON becomes a "malformed" SourceError. */
  async getJson(
    path: string,
    params: Record<string, string | number | undefined>,
    query: string,
    stats: RequestStats = this.stats,
  ): Promise<{ status: number; json: unknown; res: HttpResponse }> {
    const res = await this.get(path, params, query, { accept: "application/json" }, stats);
    if (res.status >= 400) return { status: res.status, json: tryJson(res.body), res };
    try {
      return { status: res.status, json: JSON.parse(res.body.toString("utf8")), res };
    } catch (err) {
      throw new SourceError(
        this.opts.source,
        query,
        "malformed",
        `response from ${path} is not valid JSON (${(err as Error).message}); it began: ${bodyExcerpt(res)}`,
        res.status,
      );
    }
  }

  /** A view of this client for one query: errors name the query, and requests are counted apart. */
  forQuery(query: string): QueryClient {
    const stats: RequestStats = { requests: 0, retries: 0 };
    return {
      source: this.opts.source,
      query,
      stats,
      baseUrl: this.baseUrl,
      get: (path, params, headers) => this.get(path, params, query, headers, stats),
      getJson: (path, params) => this.getJson(path, params, query, stats),
      error: (kind, detail, status) => new SourceError(this.opts.source, query, kind, detail, status),
    };
  }

  private once(url: URL, extra: Record<string, string>, query: string): Promise<HttpResponse> {
    // One controller per request, its timer and its entry in inFlight undone when the request
    // settles: AbortSignal.timeout() would keep every request alive for the full timeout.
    const ac = new AbortController();
    const timer = setTimeout(() => {
      const err = new Error(`no response within ${this.opts.timeoutMs} ms`);
      err.name = "TimeoutError";
      ac.abort(err);
    }, this.opts.timeoutMs);
    const cancel = () => ac.abort(this.opts.signal?.reason);
    this.inFlight.add(cancel);
    const limit = this.opts.maxResponseBytes;
    return new Promise<HttpResponse>((resolve, reject) => {
      let settled = false;
      let decoder: Transform | null = null;
      const fail = (err: unknown) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.inFlight.delete(cancel);
        decoder?.destroy();
        reject(err);
      };
      const req = this.lib.request(
        url,
        { method: "GET", agent: this.agent, headers: { ...this.headers, ...extra }, signal: ac.signal },
        (res) => {
          res.on("error", fail);
          const encoding = String(res.headers["content-encoding"] ?? "identity")
            .trim()
            .toLowerCase();
          const stop = (kind: SourceErrorKind, detail: string) => {
            const err = new SourceError(this.opts.source, query, kind, detail, res.statusCode);
            fail(err);
            req.destroy(err);
          };
          const tooLarge = (what: string) =>
            stop(
              "too_large",
              `response from ${url.pathname} is larger than ${limit} bytes${what}, the limit set by collect.max_response_mb`,
            );
          try {
            decoder = createDecoder(encoding);
          } catch {
            stop(
              "malformed",
              `response from ${url.pathname} has an unsupported content-encoding "${encoding}"`,
            );
            return;
          }
          const chunks: Buffer[] = [];
          let size = 0;
          const finish = () => {
            if (settled) return;
            settled = true;
            clearTimeout(timer);
            this.inFlight.delete(cancel);
            decoder?.destroy();
            resolve({
              status: res.statusCode ?? 0,
              contentType: String(res.headers["content-type"] ?? ""),
              body: Buffer.concat(chunks, size),
              retryAfterMs: parseRetryAfter(res.headers["retry-after"], this.opts.backoffMaxMs),
            });
          };
          // The body as it will be parsed, bounded by the limit however small the wire form was.
          const take = (c: Buffer) => {
            if (settled) return;
            size += c.length;
            if (size > limit) tooLarge(decoder ? ` after ${encoding} decoding` : "");
            else chunks.push(c);
          };
          if (!decoder) {
            res.on("data", take);
            res.on("end", finish);
            return;
          }
          const d = decoder;
          let wire = 0;
          d.on("data", take);
          d.on("end", finish);
          d.on("error", (err) =>
            stop("malformed", `cannot decode the ${encoding} response from ${url.pathname}: ${err.message}`),
          );
          res.on("data", (c: Buffer) => {
            if (settled) return;
            wire += c.length;
            if (wire > limit) tooLarge(` (${encoding}-encoded)`);
            else d.write(c);
          });
          // An empty body (a 204, say) is not a truncated stream.
          res.on("end", () => (wire ? d.end() : finish()));
        },
      );
      req.on("error", (err) => {
        // Aborted by the timer: surface its TimeoutError rather than a bare AbortError.
        fail(ac.signal.aborted && ac.signal.reason instanceof Error ? ac.signal.reason : err);
      });
      req.end();
    });
  }

  private checkAborted(query: string): void {
    if (this.opts.signal?.aborted) throw this.cancelled(query);
  }

  private cancelled(query: string): SourceError {
    return new SourceError(this.opts.source, query, "cancelled", "cancelled");
  }

  private sleep(ms: number, query: string): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.opts.signal?.aborted) return reject(this.cancelled(query));
      const t = setTimeout(() => {
        this.inFlight.delete(wake);
        resolve();
      }, ms);
      const wake = () => {
        clearTimeout(t);
        this.inFlight.delete(wake);
        reject(this.cancelled(query));
      };
      this.inFlight.add(wake);
    });
  }
}

// Decoded in 256 KiB pieces: zlib's default 16 KiB made streaming twice as costly as one-shot
// decoding; at this size it costs the same, and a piece is what a bomb can add past the limit.
const DECODE_CHUNK = 256 * 1024;

/** A streaming decoder for a Content-Encoding; null for none; throws for one we cannot decode. */
function createDecoder(encoding: string): Transform | null {
  switch (encoding) {
    case "":
    case "identity":
      return null;
    case "gzip":
    case "x-gzip":
      return createGunzip({ chunkSize: DECODE_CHUNK });
    case "deflate":
      return createInflate({ chunkSize: DECODE_CHUNK });
    case "br":
      return createBrotliDecompress({ chunkSize: DECODE_CHUNK });
    default:
      throw new Error(`unsupported content-encoding ${encoding}`);
  }
}

/** Exponential backoff with "equal jitter": half fixed, half random, so retries spread out. */
export function backoffMs(attempt: number, baseMs: number, maxMs: number): number {
  const d = Math.min(maxMs, baseMs * 2 ** (attempt - 1));
  return d / 2 + Math.random() * (d / 2);
}

/** Retry-After in seconds or as an HTTP date, in ms; capped by the caller's backoff limit. */
function parseRetryAfter(value: string | undefined, maxMs: number): number | undefined {
  if (!value) return undefined;
  const secs = Number(value);
  const ms = Number.isFinite(secs) ? secs * 1000 : Date.parse(value) - Date.now();
  return Number.isFinite(ms) ? Math.min(Math.max(ms, 0), maxMs) : undefined;
}

/** The first bytes of a body, on one line, for error messages. */
export function bodyExcerpt(res: HttpResponse, max = 300): string {
  const text = res.body
    .subarray(0, max * 4)
    .toString("utf8")
    .replace(/\s+/g, " ")
    .trim();
  if (!text) return "(empty body)";
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

function tryJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString("utf8"));
  } catch {
    return undefined;
  }
}
