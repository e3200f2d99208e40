// The MinIO store against faults injected by the project's S3 endpoint: repeatable requests are
// retried on a dropped connection or a 5xx/SlowDown with a bounded backoff and then fail with an
// error naming the key and the last cause; other errors fail at once; a conditional PUT or a
// multipart completion whose answer was lost after it took effect is recognised as its own.
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { MinioStore } from "../../src/store/index.js";
import { S3Endpoint } from "./s3-endpoint.js";

const MiB = 1024 * 1024;

describe("MinioStore retries on the S3 endpoint", () => {
  const s3 = new S3Endpoint();
  let store: MinioStore;
  const warn = vi.spyOn(console, "warn");

  beforeAll(async () => {
    await s3.start();
    store = new MinioStore({
      endPoint: "127.0.0.1",
      port: s3.port,
      useSSL: false,
      accessKey: "a",
      secretKey: "b",
      bucket: "trm-retry",
      region: "us-east-1",
      pathStyle: true,
      partSize: 5 * MiB,
      retry: { attempts: 4, baseDelayMs: 5, maxDelayMs: 20 },
    });
    await store.put("seed.txt", "seed");
  });
  afterAll(() => s3.close());
  beforeEach(() => {
    s3.calls.length = 0;
    s3.fault = null;
    warn.mockClear();
  });
  afterEach(() => {
    // The client's own retry (which logs with console.warn) is off.
    expect(warn).not.toHaveBeenCalled();
  });

  const tries = (op: string) => s3.calls.filter((c) => c.op === op).map((c) => c.status);

  it("retries GET, HEAD, LIST, DELETE and PUT after a dropped connection or a 5xx", async () => {
    await store.put("a/x.txt", "hello");
    s3.failNth("GetObject", 1, "reset");
    s3.failNth("HeadObject", 1, { status: 500, code: "InternalError" });
    s3.failNth("ListObjectsV2", 1, { status: 502, code: "BadGateway" });
    s3.failNth("DeleteObject", 1, { status: 504, code: "GatewayTimeout" });
    s3.failNth("PutObject", 1, "reset");
    s3.failNth("PutObject", 2, { status: 503, code: "SlowDown" });
    expect((await store.get("a/x.txt")).toString()).toBe("hello");
    expect((await store.stat("a/x.txt"))?.size).toBe(5);
    expect((await store.list("a")).map((o) => o.key)).toEqual(["a/x.txt"]);
    await store.put("a/y.txt", "world");
    expect((await store.get("a/y.txt")).toString()).toBe("world");
    await store.delete("a/x.txt");
    expect(await store.exists("a/x.txt")).toBe(false);
    expect(tries("GetObject").slice(0, 2)).toEqual([-1, 200]);
    expect(tries("HeadObject").slice(0, 2)).toEqual([500, 200]);
    expect(tries("ListObjectsV2")).toEqual([502, 200]);
    expect(tries("PutObject")).toEqual([200, -1, 503, 200]);
    expect(tries("DeleteObject")).toEqual([504, 204]);
  });

  it("retries a download to a file and a file upload, each from the start", async () => {
    const { mkdtempSync, readFileSync, writeFileSync } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    const { join } = await import("node:path");
    const dir = mkdtempSync(join(tmpdir(), "trm-retry-"));
    const data = Buffer.alloc(2 * MiB, 5);
    writeFileSync(join(dir, "in.bin"), data);
    s3.failNth("PutObject", 1, "reset");
    await store.putFile("f/in.bin", join(dir, "in.bin"));
    s3.failNth("GetObject", 1, { status: 503, code: "SlowDown" });
    await store.getFile("f/in.bin", join(dir, "out.bin"));
    expect(readFileSync(join(dir, "out.bin")).equals(data)).toBe(true);
    expect(s3.object("trm-retry", "f/in.bin")?.body.equals(data)).toBe(true);
    expect(tries("PutObject")).toEqual([-1, 200]);
  });

  it("gives up after the bounded attempts with an error naming the key and the last cause", async () => {
    s3.fault = (c) => (c.op === "GetObject" ? { status: 503, code: "SlowDown" } : undefined);
    const started = Date.now();
    const err = await store.get("seed.txt").catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toBe(
      "store GET seed.txt: failed 4 times on transient errors; last: HTTP 503 SlowDown",
    );
    expect((err as { transient?: boolean }).transient).toBe(true);
    expect(tries("GetObject")).toEqual([503, 503, 503, 503]);
    // Three waits of at most 20 ms each.
    expect(Date.now() - started).toBeLessThan(2000);
    s3.fault = (c) => (c.op === "PutObject" ? "reset" : undefined);
    await expect(store.put("b/z.txt", "z")).rejects.toThrow(
      /^store PUT b\/z\.txt: failed 4 times on transient errors; last: (socket hang up|read ECONNRESET)/,
    );
  });

  it("does not retry what a retry cannot fix", async () => {
    s3.failNth("PutObject", 1, { status: 403, code: "AccessDenied" });
    await expect(store.put("c/denied.txt", "x")).rejects.toMatchObject({ code: "AccessDenied" });
    expect(tries("PutObject")).toEqual([403]);
    await expect(store.get("c/none")).rejects.toThrow(/not found in store: c\/none/);
    expect(tries("GetObject")).toEqual([404]);
  });

  it("a conditional create whose answer was lost after it wrote reports the win, not a lost race", async () => {
    s3.failNth("PutObject", 1, "apply-then-reset");
    const etag = await store.putIf("locks/a/run.json", '{"nonce":"1"}', null);
    expect(tries("PutObject")).toEqual([-2, 412]);
    expect(etag).toBe(s3.object("trm-retry", "locks/a/run.json")?.etag);
    // Another writer's object under the key is still a lost race.
    s3.failNth("PutObject", 1, "apply-then-reset");
    expect(await store.putIf("locks/a/other.json", "mine", null)).not.toBeNull();
    expect(await store.putIf("locks/a/other.json", "theirs", null)).toBeNull();
  });

  it("a renewal (If-Match) whose answer was lost after it wrote keeps the new ETag", async () => {
    const e1 = (await store.putIf("locks/b/run.json", "v1", null)) as string;
    s3.failNth("PutObject", 1, "apply-then-reset");
    const e2 = await store.putIf("locks/b/run.json", "v2", e1);
    expect(tries("PutObject")).toEqual([200, -2, 412]);
    expect(e2).toBe(s3.object("trm-retry", "locks/b/run.json")?.etag);
    expect(e2).not.toBe(e1);
    // A stale ETag still loses.
    expect(await store.putIf("locks/b/run.json", "v3", e1)).toBeNull();
  });

  it("a multipart completion whose answer was lost after it completed succeeds; a part is retried", async () => {
    const data = Buffer.alloc(11 * MiB, 1);
    data[7 * MiB] = 9;
    s3.failNth("UploadPart", 2, { status: 503, code: "SlowDown" });
    s3.failNth("CompleteMultipartUpload", 1, "apply-then-reset");
    await store.put("m/big.bin", data);
    expect(tries("CompleteMultipartUpload")).toEqual([-2, 404]);
    expect(s3.calls.filter((c) => c.op === "UploadPart").map((c) => `${c.partNumber}:${c.status}`)).toEqual([
      "1:200",
      "2:503",
      "2:200",
      "3:200",
    ]);
    expect((await store.get("m/big.bin")).equals(data)).toBe(true);
    expect(s3.uploads.size).toBe(0);
  });
});
