// Objects of any size on the MinIO store, against the project's S3 endpoint (s3-endpoint.ts),
// which records what the client sent: small objects go up in one PUT, larger ones as a multipart
// upload with a retry per part (on a transient failure) and an abort on failure; conditional
// writes answer 412; a download to a file streams. The default part size must carry a 7m training state (117,268,700 bytes).
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config/index.js";
import { FsStore, type MinioStore, openStore } from "../../src/store/index.js";
import { S3Endpoint } from "./s3-endpoint.js";

const MiB = 1024 * 1024;
const STATE_7M = 117_268_700;

function storeOn(port: number, bucket: string, partSizeMb?: number): MinioStore {
  const config = parseConfig({
    store: {
      kind: "minio",
      endpoint: "127.0.0.1",
      port,
      use_ssl: false,
      bucket,
      ...(partSizeMb ? { part_size_mb: partSizeMb } : {}),
      access_key: { env: "K" },
      secret_key: { env: "S" },
    },
  });
  return openStore(config, { K: "test-access", S: "test-secret" }) as MinioStore;
}

function pattern(size: number): Buffer {
  return randomBytes(size);
}

const md5 = (b: Buffer) => createHash("md5").update(b).digest("hex");

describe("MinioStore on the S3 endpoint", () => {
  const s3 = new S3Endpoint();
  let store: MinioStore;

  beforeAll(async () => {
    await s3.start();
    store = storeOn(s3.port, "trm-mp", 5);
  });
  afterAll(() => s3.close());
  beforeEach(() => {
    s3.calls.length = 0;
    s3.fault = null;
  });

  it("puts an object up to the part size in one PUT, with S3's md5 ETag", async () => {
    const data = pattern(5 * MiB);
    await store.put("models/a/v1/w.bin", data);
    expect(s3.calls.filter((c) => c.key).map((c) => c.op)).toEqual(["PutObject"]);
    const o = s3.object("trm-mp", "models/a/v1/w.bin");
    expect(o?.parts).toBe(0);
    expect(o?.etag).toBe(md5(data));
  });

  it("puts a larger object as a multipart upload (ETag md5-of-md5s-N) that reads back whole", async () => {
    const data = pattern(12 * MiB + 3);
    const res = await store.put("models/a/v2/model.safetensors", data, { meta: { sha256: "x" } });
    expect(res.size).toBe(data.length);
    const ops = s3.calls.map((c) => `${c.op}${c.partNumber ? ` ${c.partNumber}` : ""} ${c.status}`);
    expect(ops).toEqual([
      "CreateMultipartUpload 200",
      "UploadPart 1 200",
      "UploadPart 2 200",
      "UploadPart 3 200",
      "CompleteMultipartUpload 200",
    ]);
    const o = s3.object("trm-mp", "models/a/v2/model.safetensors");
    const partMd5s = [0, 1, 2].map((i) =>
      createHash("md5")
        .update(data.subarray(i * 5 * MiB, (i + 1) * 5 * MiB))
        .digest(),
    );
    expect(o?.etag).toBe(`${md5(Buffer.concat(partMd5s))}-3`);
    expect(o?.headers["x-amz-meta-sha256"]).toBe("x");
    expect((await store.get("models/a/v2/model.safetensors")).equals(data)).toBe(true);
    expect((await store.stat("models/a/v2/model.safetensors"))?.size).toBe(data.length);
    expect(s3.uploads.size).toBe(0);
  });

  it("uploads a large file part by part and downloads it to a file", async () => {
    const dir = mkdtempSync(join(tmpdir(), "trm-mp-file-"));
    const data = pattern(11 * MiB);
    writeFileSync(join(dir, "in.bin"), data);
    const res = await store.putFile("runs/a/r1/state.safetensors", join(dir, "in.bin"));
    expect(res).toEqual({ size: data.length, sha256: createHash("sha256").update(data).digest("hex") });
    expect(s3.object("trm-mp", "runs/a/r1/state.safetensors")?.parts).toBe(3);
    await store.getFile("runs/a/r1/state.safetensors", join(dir, "out", "state.safetensors"));
    expect(readFileSync(join(dir, "out", "state.safetensors")).equals(data)).toBe(true);
  });

  it("retries a failed part, and the object is whole", async () => {
    s3.failNth("UploadPart", 2, "reset");
    const data = pattern(11 * MiB);
    await store.put("models/a/v3/model.safetensors", data);
    const parts = s3.calls.filter((c) => c.op === "UploadPart").map((c) => `${c.partNumber}:${c.status}`);
    expect(parts).toEqual(["1:200", "2:-1", "2:200", "3:200"]);
    expect((await store.get("models/a/v3/model.safetensors")).equals(data)).toBe(true);
  });

  it("aborts an upload whose part fails for good: no object, no parts left", async () => {
    s3.fault = (c) =>
      c.op === "UploadPart" && c.partNumber === 2 ? { status: 403, code: "AccessDenied" } : undefined;
    await expect(store.put("models/a/v4/model.safetensors", pattern(11 * MiB))).rejects.toThrow(
      /injected fault/,
    );
    // A refusal is not retried (a transient failure is: retry.test.ts).
    expect(s3.calls.filter((c) => c.op === "UploadPart" && c.partNumber === 2)).toHaveLength(1);
    expect(s3.calls.at(-1)).toMatchObject({ op: "AbortMultipartUpload", status: 204 });
    expect(s3.uploads.size).toBe(0);
    expect(await store.stat("models/a/v4/model.safetensors")).toBeNull();
    expect((await store.list("models/a/v4")).length).toBe(0);
  });

  it("keeps the old object when a replacement fails to complete", async () => {
    const old = pattern(1024);
    await store.put("models/a/v5/model.safetensors", old);
    s3.failNth("CompleteMultipartUpload", 1, { status: 400, code: "InvalidPart" });
    await expect(store.put("models/a/v5/model.safetensors", pattern(11 * MiB))).rejects.toThrow();
    expect((await store.get("models/a/v5/model.safetensors")).equals(old)).toBe(true);
    expect(s3.uploads.size).toBe(0);
  });

  it("writes conditionally: If-None-Match: * creates once, If-Match swaps only the version it read", async () => {
    const key = "locks/a/run.json";
    const e1 = await store.putIf(key, "one", null);
    expect(e1).toBe(md5(Buffer.from("one")));
    expect(await store.putIf(key, "two", null)).toBeNull();
    expect(s3.calls.at(-1)).toMatchObject({ op: "PutObject", status: 412 });
    const e2 = await store.putIf(key, "three", e1);
    expect(e2).toBe(md5(Buffer.from("three")));
    expect(await store.putIf(key, "four", e1 as string)).toBeNull();
    expect(await store.getVersioned(key)).toEqual({ body: Buffer.from("three"), etag: e2 });
    expect(await store.putIf("locks/a/none.json", "x", e2)).toBeNull();
    expect(await store.getVersioned("locks/a/none.json")).toBeNull();
  });

  it("answers a lost condition with S3's 412 XML error body", async () => {
    await store.putIf("locks/b/run.json", "x", null);
    const res = await fetch(`http://127.0.0.1:${s3.port}/trm-mp/locks/b/run.json`, {
      method: "PUT",
      headers: { "If-None-Match": "*" },
      body: "y",
    });
    expect(res.status).toBe(412);
    const xml = await res.text();
    expect(xml).toMatch(/<Error><Code>PreconditionFailed<\/Code><Message>[^<]+<\/Message>/);
    const listed = await fetch(`http://127.0.0.1:${s3.port}/trm-mp?uploads`);
    expect(await listed.text()).toMatch(
      /<ListMultipartUploadsResult xmlns="http:\/\/s3.amazonaws.com\/doc\/2006-03-01\/">/,
    );
  });

  it("carries a 7m training state (117,268,700 bytes) at the default part size", async () => {
    const dflt = storeOn(s3.port, "trm-default");
    const data = pattern(STATE_7M);
    await dflt.put("runs/agent/r1/checkpoints/step-1/state.safetensors", data);
    const o = s3.object("trm-default", "runs/agent/r1/checkpoints/step-1/state.safetensors");
    expect(o?.parts).toBe(2);
    expect(o?.body.length).toBe(STATE_7M);
    expect((await dflt.get("runs/agent/r1/checkpoints/step-1/state.safetensors")).equals(data)).toBe(true);
  });
});

describe("FsStore conditional writes", () => {
  it("creates once and swaps only the version it read, under concurrent writers", async () => {
    const root = mkdtempSync(join(tmpdir(), "trm-fs-cas-"));
    const store = new FsStore(root);
    const e1 = await store.putIf("locks/a/run.json", "one", null);
    expect(e1).toBe(md5(Buffer.from("one")));
    expect(await store.putIf("locks/a/run.json", "two", null)).toBeNull();
    expect(await store.putIf("locks/a/run.json", "three", "nope")).toBeNull();
    expect(await store.putIf("locks/a/run.json", "three", e1)).toBe(md5(Buffer.from("three")));
    expect((await store.list("locks")).map((o) => o.key)).toEqual(["locks/a/run.json"]);
    // Twenty concurrent creators: exactly one wins.
    const wins = await Promise.all(
      Array.from({ length: 20 }, (_, i) => store.putIf("locks/b/run.json", `w${i}`, null)),
    );
    expect(wins.filter((w) => w !== null)).toHaveLength(1);
    // Concurrent increments by compare-and-swap lose nothing.
    await store.put("n.txt", "0");
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        for (;;) {
          const cur = await store.getVersioned("n.txt");
          if (await store.putIf("n.txt", String(Number(cur?.body) + 1), cur?.etag ?? null)) return;
        }
      }),
    );
    expect((await store.get("n.txt")).toString()).toBe("8");
  });
});

describe("a download to a file", () => {
  it("streams: a 200 MB object is never held in memory (peak RSS of the downloading process)", async () => {
    const dist = resolve("dist/store/index.js");
    if (!existsSync(dist))
      throw new Error("build first: npx tsc -p tsconfig.json (npm test does it in pretest)");
    const s3 = new S3Endpoint();
    await s3.start();
    try {
      const size = 200 * MiB;
      const store = storeOn(s3.port, "trm-dl");
      await store.put("big.bin", Buffer.alloc(size, 9));
      const dir = mkdtempSync(join(tmpdir(), "trm-dl-"));
      const peak = async (how: "getFile" | "get") => {
        const script = `
          const { MinioStore } = await import(${JSON.stringify(dist)});
          const store = new MinioStore({ endPoint: "127.0.0.1", port: ${s3.port}, useSSL: false, accessKey: "a",
            secretKey: "b", bucket: "trm-dl", region: "us-east-1", pathStyle: true, partSize: 64 * 1024 * 1024 });
          let n;
          if (${JSON.stringify(how)} === "getFile") await store.getFile("big.bin", ${JSON.stringify(join(dir, "big.bin"))});
          else n = (await store.get("big.bin")).length;
          const hwm = /VmHWM:\\s+(\\d+) kB/.exec(require("node:fs").readFileSync("/proc/self/status", "utf8"));
          process.stdout.write(String(Number(hwm[1]) * 1024));`;
        const child = spawn(
          process.execPath,
          ["--input-type=commonjs", "-e", `(async () => { ${script} })()`],
          {
            stdio: ["ignore", "pipe", "pipe"],
          },
        );
        let out = "";
        let err = "";
        child.stdout.on("data", (d) => {
          out += d;
        });
        child.stderr.on("data", (d) => {
          err += d;
        });
        const code = await new Promise((r) => child.on("exit", r));
        if (code !== 0) throw new Error(`child failed: ${err}`);
        return Number(out);
      };
      const streamed = await peak("getFile");
      const buffered = await peak("get");
      expect(readFileSync(join(dir, "big.bin")).length).toBe(size);
      // The buffered read holds the whole object; the download to a file holds a fraction of it.
      expect(buffered).toBeGreaterThan(size);
      expect(streamed).toBeLessThan(buffered - size / 2);
      expect(streamed).toBeLessThan(160 * MiB);
    } finally {
      await s3.close();
    }
  });
});
