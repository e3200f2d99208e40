// The shared HTTP client against local servers: retries with backoff on 5xx/429/timeouts, no retry
// on 4xx, cancellation, auth and tenant headers, gzip, an extra CA over HTTPS, size limits, and
// decompression bombs in each encoding it accepts.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import type { Transform } from "node:stream";
import {
  brotliCompressSync,
  constants,
  createBrotliCompress,
  createDeflate,
  createGzip,
  deflateSync,
  gzipSync,
} from "node:zlib";
import { afterEach, describe, expect, it } from "vitest";
import { ConfigError } from "../../../src/errors.js";
import { HttpSourceClient, type HttpSourceOptions, SourceError } from "../../../src/pipeline/collect/http.js";
import { tempDir } from "./helpers.js";

const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

async function serve(
  handler: (req: IncomingMessage, res: ServerResponse, n: number) => void,
): Promise<string> {
  let n = 0;
  const s = createServer((req, res) => handler(req, res, ++n));
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  return `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
}

function client(url: string, opts: Partial<HttpSourceOptions> = {}): HttpSourceClient {
  return new HttpSourceClient({
    source: "loki",
    url,
    timeoutMs: 1000,
    retries: 3,
    backoffBaseMs: 10,
    backoffMaxMs: 40,
    maxResponseBytes: 1 << 20,
    ...opts,
  });
}

describe("HttpSourceClient", () => {
  it("retries 503 and 429 with backoff, honouring Retry-After, then returns the answer", async () => {
    const url = await serve((_req, res, n) => {
      if (n === 1) res.writeHead(503).end("busy");
      else if (n === 2) res.writeHead(429, { "retry-after": "0" }).end("slow down");
      else res.writeHead(200, { "content-type": "application/json" }).end('{"ok":true}');
    });
    const c = client(url);
    const q = c.forQuery("q1");
    const r = await q.getJson("x", {});
    expect(r.json).toEqual({ ok: true });
    expect(q.stats).toEqual({ requests: 3, retries: 2 });
    c.close();
  });

  it("does not retry a 4xx and hands it back; gives up on 5xx with a message naming source and query", async () => {
    let hits = 0;
    const url = await serve((req, res) => {
      hits++;
      if (req.url?.startsWith("/bad"))
        res.writeHead(400, { "content-type": "text/plain" }).end("parse error at line 1");
      else res.writeHead(502).end("<html>bad gateway</html>");
    });
    const c = client(url, { retries: 2 });
    const r = await c.forQuery("q").get("bad", {});
    expect(r.status).toBe(400);
    expect(hits).toBe(1);
    await expect(c.forQuery("q2").get("down", {})).rejects.toThrow(
      /^loki query "q2": HTTP 502 from \/down: <html>bad gateway<\/html> \(after 3 attempts\)$/,
    );
    c.close();
  });

  it("times out slow responses, retries them, and reports a timeout", async () => {
    const url = await serve((_req, res) => setTimeout(() => res.end("late"), 600));
    const c = client(url, { timeoutMs: 150, retries: 1 });
    const err = await c
      .forQuery("slow")
      .get("x", {})
      .catch((e) => e);
    expect(err).toBeInstanceOf(SourceError);
    expect(err.kind).toBe("timeout");
    expect(err.message).toMatch(/no response from \/x within 150 ms \(after 2 attempts\)/);
    c.close();
  });

  it("reports refused connections as network errors", async () => {
    const url = await serve(() => {});
    const port = new URL(url).port;
    await new Promise((r) => servers.pop()!.close(r));
    const err = await client(`http://127.0.0.1:${port}`, { retries: 1 })
      .forQuery("q")
      .get("x", {})
      .catch((e) => e);
    expect(err.kind).toBe("network");
    expect(err.message).toMatch(/ECONNREFUSED/);
  });

  it("is cancelled promptly by its AbortSignal, also while backing off", async () => {
    const url = await serve((_req, res) => setTimeout(() => res.end("late"), 5000));
    const ac = new AbortController();
    const c = client(url, { timeoutMs: 10_000, signal: ac.signal });
    setTimeout(() => ac.abort(), 100);
    const t0 = Date.now();
    const err = await c
      .forQuery("q")
      .get("x", {})
      .catch((e) => e);
    expect(err.kind).toBe("cancelled");
    expect(Date.now() - t0).toBeLessThan(1000);
    const url2 = await serve((_req, res) => res.writeHead(503).end());
    const ac2 = new AbortController();
    const c2 = client(url2, { backoffBaseMs: 5000, backoffMaxMs: 5000, signal: ac2.signal });
    setTimeout(() => ac2.abort(), 100);
    const t1 = Date.now();
    expect(
      (
        await c2
          .forQuery("q")
          .get("x", {})
          .catch((e) => e)
      ).kind,
    ).toBe("cancelled");
    expect(Date.now() - t1).toBeLessThan(1000);
  });

  it("sends bearer (from a file), basic auth and the tenant header; decodes gzip", async () => {
    const seen: IncomingMessage["headers"][] = [];
    const url = await serve((req, res) => {
      seen.push(req.headers);
      res
        .writeHead(200, { "content-encoding": "gzip", "content-type": "application/json" })
        .end(gzipSync('{"z":1}'));
    });
    const dir = tempDir();
    writeFileSync(join(dir, "token"), "file-token\n");
    const a = client(url, { auth: { bearer: { file: join(dir, "token") } }, tenant: "lab" });
    expect((await a.forQuery("q").getJson("x", {})).json).toEqual({ z: 1 });
    const b = client(url, {
      auth: { basic: { username: "u", password: { env: "PW" } } },
      env: { PW: "p@ss" },
    });
    await b.forQuery("q").get("x", {});
    expect(seen[0].authorization).toBe("Bearer file-token");
    expect(seen[0]["x-scope-orgid"]).toBe("lab");
    expect(seen[1].authorization).toBe(`Basic ${Buffer.from("u:p@ss").toString("base64")}`);
    expect(() =>
      client(url, { auth: { bearer: { env: "NOPE" } }, configPath: "agents.x.sources.loki", env: {} }),
    ).toThrow(ConfigError);
    expect(() =>
      client(url, { auth: { bearer: { env: "NOPE" } }, configPath: "agents.x.sources.loki", env: {} }),
    ).toThrow(/agents\.x\.sources\.loki\.auth\.bearer: environment variable NOPE is not set/);
  });

  it("refuses bodies over the size limit and names JSON that is not JSON", async () => {
    const url = await serve((req, res) => {
      if (req.url?.startsWith("/big")) res.end("x".repeat(2 << 20));
      else res.writeHead(200, { "content-type": "application/json" }).end('{"status":"succ');
    });
    const c = client(url, { retries: 0 });
    await expect(c.forQuery("q").get("big", {})).rejects.toThrow(/larger than 1048576 bytes/);
    await expect(c.forQuery("q").getJson("cut", {})).rejects.toThrow(
      /^loki query "q": response from cut is not valid JSON/,
    );
  });

  it.skipIf(!existsSync("/usr/bin/openssl"))(
    "trusts an extra CA for HTTPS only when configured",
    async () => {
      const dir = tempDir();
      execFileSync(
        "/usr/bin/openssl",
        [
          "req",
          "-x509",
          "-newkey",
          "rsa:2048",
          "-nodes",
          "-days",
          "1",
          "-subj",
          "/CN=127.0.0.1",
          "-addext",
          "subjectAltName=IP:127.0.0.1",
          "-keyout",
          join(dir, "key.pem"),
          "-out",
          join(dir, "cert.pem"),
        ],
        { stdio: "ignore" },
      );
      const { readFileSync } = await import("node:fs");
      const s = createHttpsServer(
        { key: readFileSync(join(dir, "key.pem")), cert: readFileSync(join(dir, "cert.pem")) },
        (_req, res) => res.end("secure"),
      );
      servers.push(s as unknown as Server);
      await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
      const url = `https://127.0.0.1:${(s.address() as AddressInfo).port}`;
      const untrusted = await client(url, { retries: 0 })
        .forQuery("q")
        .get("x", {})
        .catch((e) => e);
      expect(untrusted.kind).toBe("network");
      const trusted = client(url, { caFile: join(dir, "cert.pem") });
      expect((await trusted.forQuery("q").get("x", {})).body.toString()).toBe("secure");
      trusted.close();
    },
  );
});

/** `mb` MiB of zeros through a compressor, streamed so the plain form never exists whole. */
async function bomb(z: Transform, mb: number): Promise<Buffer> {
  const out: Buffer[] = [];
  z.on("data", (c: Buffer) => out.push(c));
  const ended = new Promise((r) => z.on("end", r));
  const zeros = Buffer.alloc(1 << 20);
  for (let i = 0; i < mb; i++) if (!z.write(zeros)) await new Promise((r) => z.once("drain", r));
  z.end();
  await ended;
  return Buffer.concat(out);
}

// Brotli at quality 5: its default (11) takes seconds on a busy machine.
const BROTLI_FAST = { params: { [constants.BROTLI_PARAM_QUALITY]: 5 } };
const ENCODINGS = {
  gzip: { encode: (b: string) => gzipSync(b), compressor: () => createGzip({ level: 9 }) },
  deflate: { encode: (b: string) => deflateSync(b), compressor: () => createDeflate({ level: 9 }) },
  br: {
    encode: (b: string) => brotliCompressSync(b, BROTLI_FAST),
    compressor: () => createBrotliCompress(BROTLI_FAST),
  },
} as const;

describe("HttpSourceClient: compressed bodies", () => {
  it("asks for gzip, deflate and br, and decodes each", async () => {
    const doc = JSON.stringify({ lines: Array.from({ length: 20_000 }, (_, i) => `line ${i} ok`) });
    const bodies = new Map(Object.entries(ENCODINGS).map(([enc, { encode }]) => [`/${enc}`, encode(doc)]));
    let accepted = "";
    const url = await serve((req, res) => {
      accepted = String(req.headers["accept-encoding"]);
      const enc = req.url!.slice(1);
      res
        .writeHead(200, { "content-encoding": enc, "content-type": "application/json" })
        .end(bodies.get(req.url!));
    });
    const c = client(url, { retries: 0, timeoutMs: 10_000 });
    for (const enc of Object.keys(ENCODINGS)) {
      expect((await c.forQuery("q").getJson(enc, {})).json, enc).toEqual(JSON.parse(doc));
    }
    expect(accepted).toBe("gzip, deflate, br");
    c.close();
  });

  for (const [enc, { compressor }] of Object.entries(ENCODINGS)) {
    it(`fails a ${enc} bomb (200 MiB of zeros) at the limit on decoded bytes, without the memory`, async () => {
      const body = await bomb(compressor(), 200);
      expect(body.length).toBeLessThan(1 << 20); // small enough to pass the limit on the wire
      let requests = 0;
      const url = await serve((_req, res) => {
        requests++;
        res.writeHead(200, { "content-encoding": enc, "content-type": "application/json" }).end(body);
      });
      const c = client(url, { maxResponseBytes: 1 << 20, timeoutMs: 10_000 });
      const before = process.memoryUsage();
      let peak = before.rss;
      let peakBuffers = before.arrayBuffers;
      const sampler = setInterval(() => {
        const m = process.memoryUsage();
        peak = Math.max(peak, m.rss);
        peakBuffers = Math.max(peakBuffers, m.arrayBuffers);
      }, 2);
      const err = await c
        .forQuery("errors")
        .get("loki/api/v1/query_range", {})
        .catch((e) => e);
      clearInterval(sampler);
      const after = process.memoryUsage();
      peak = Math.max(peak, after.rss);
      peakBuffers = Math.max(peakBuffers, after.arrayBuffers);
      expect(err).toBeInstanceOf(SourceError);
      expect(err.kind).toBe("too_large");
      expect(err.message).toBe(
        `loki query "errors": response from /loki/api/v1/query_range is larger than 1048576 bytes after ${enc} decoding, the limit set by collect.max_response_mb`,
      );
      expect(requests, "a body over the limit is not fetched again").toBe(1);
      const MiB = 1 << 20;
      expect((peak - before.rss) / MiB).toBeLessThan(40);
      expect((peakBuffers - before.arrayBuffers) / MiB).toBeLessThan(16);
      c.close();
    });
  }

  it("bounds the encoded bytes too, and names bodies it cannot decode", async () => {
    // Random bytes do not compress: 2 MiB of them stay over the 1 MiB limit on the wire.
    const noise = gzipSync(randomBytes(2 << 20));
    const url = await serve((req, res) => {
      if (req.url!.startsWith("/noise")) res.writeHead(200, { "content-encoding": "gzip" }).end(noise);
      else if (req.url!.startsWith("/corrupt"))
        res.writeHead(200, { "content-encoding": "gzip" }).end(Buffer.from("not gzip at all"));
      else if (req.url!.startsWith("/zstd")) res.writeHead(200, { "content-encoding": "zstd" }).end("x");
      else res.writeHead(204, { "content-encoding": "gzip" }).end();
    });
    const c = client(url);
    const q = c.forQuery("q");
    const big = await q.get("noise", {}).catch((e) => e);
    expect(big.kind).toBe("too_large");
    expect(big.message).toMatch(/larger than 1048576 bytes \(gzip-encoded\)/);
    const bad = await q.get("corrupt", {}).catch((e) => e);
    expect(bad.kind).toBe("malformed");
    expect(bad.message).toMatch(/^loki query "q": cannot decode the gzip response from \/corrupt: /);
    const zstd = await q.get("zstd", {}).catch((e) => e);
    expect(zstd.message).toMatch(/unsupported content-encoding "zstd"/);
    expect(q.stats.retries, "none of these is worth another attempt").toBe(0);
    const empty = await q.get("empty", {});
    expect([empty.status, empty.body.length]).toEqual([204, 0]);
    c.close();
  });
});
