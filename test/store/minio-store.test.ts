// The MinIO store against s3rver, a real S3 server in-process. Multipart uploads and conditional
// writes are tested against the project's own S3 endpoint (multipart.test.ts, lease tests).
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import S3rver from "s3rver";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config/index.js";
import { ConfigError } from "../../src/errors.js";
import { collect } from "../../src/pipeline/collect/index.js";
import { listSegments, readSegment, writeSegment } from "../../src/pipeline/collect/raw-store.js";
import { type MinioStore, NotFoundError, openStore } from "../../src/store/index.js";

describe("MinioStore on s3rver", () => {
  let server: S3rver;
  let port: number;
  let store: MinioStore;

  beforeAll(async () => {
    server = new S3rver({
      port: 0,
      address: "127.0.0.1",
      silent: true,
      directory: mkdtempSync(join(tmpdir(), "trm-s3rver-")),
      resetOnClose: true,
    });
    port = (await server.run()).port;
    const config = parseConfig({
      store: {
        kind: "minio",
        endpoint: "127.0.0.1",
        port,
        use_ssl: false,
        bucket: "trm-test",
        part_size_mb: 16,
        access_key: { env: "S3_ACCESS" },
        secret_key: { env: "S3_SECRET" },
        prefix: "lab",
      },
    });
    store = openStore(config, { S3_ACCESS: "S3RVER", S3_SECRET: "S3RVER" }) as MinioStore;
  });
  afterAll(async () => {
    await server?.close();
  });

  it("creates the bucket, puts, gets, stats and lists by prefix", async () => {
    expect(store.kind).toBe("minio");
    expect(store.description).not.toMatch(/S3RVER/);
    const put = await store.put("models/a/v1/config.json", '{"x":1}', { contentType: "application/json" });
    expect(put).toEqual({ size: 7, sha256: expect.stringMatching(/^[0-9a-f]{64}$/) });
    await store.put("models/a/v2/config.json", "{}");
    await store.put("models/b/v1/config.json", "{}");
    expect((await store.get("models/a/v1/config.json")).toString()).toBe('{"x":1}');
    expect((await store.list("models/a")).map((o) => o.key)).toEqual([
      "models/a/v1/config.json",
      "models/a/v2/config.json",
    ]);
    const st = await store.stat("models/a/v1/config.json");
    expect(st?.size).toBe(7);
    expect(await store.stat("models/a/none")).toBeNull();
    expect(await store.exists("models/b/v1/config.json")).toBe(true);
    await expect(store.get("models/a/none")).rejects.toBeInstanceOf(NotFoundError);
  });

  it("moves a 12 MB file up and down in one PUT, and a 17 MB object above the part size in parts", async () => {
    const dir = mkdtempSync(join(tmpdir(), "trm-minio-file-"));
    const src = join(dir, "big.bin");
    const data = Buffer.alloc(12 * 1024 * 1024, 3);
    writeFileSync(src, data);
    const res = await store.putFile("models/c/v1/model.safetensors", src);
    expect(res.size).toBe(data.length);
    const dest = join(dir, "out", "model.safetensors");
    await store.getFile("models/c/v1/model.safetensors", dest);
    expect(readFileSync(dest).equals(data)).toBe(true);
    // Above the 16 MiB part size: a multipart upload (test/store/multipart.test.ts checks how).
    const huge = Buffer.alloc(17 * 1024 * 1024, 7);
    await store.put("models/c/v1/huge.bin", huge);
    expect((await store.get("models/c/v1/huge.bin")).equals(huge)).toBe(true);
    await expect(store.getFile("models/c/v1/missing", join(dir, "x"))).rejects.toBeInstanceOf(NotFoundError);
  });

  it("deletes objects and prefixes, and refuses keys that escape", async () => {
    await store.put("runs/a/r1/run.json", "{}");
    await store.put("runs/a/r1/metrics.jsonl", "{}\n");
    await store.delete("runs/a/r1/run.json");
    expect(await store.exists("runs/a/r1/run.json")).toBe(false);
    await store.deletePrefix("runs/a");
    expect(await store.list("runs/a")).toEqual([]);
    await expect(store.put("../evil", "x")).rejects.toThrow(/invalid store key/);
  });

  it("holds raw segments: written, listed and validated on read", async () => {
    const rec = {
      kind: "log_entry" as const,
      query: "q",
      ts_ns: "1767229200000000000",
      labels: { namespace: "ai" },
      line: "hello",
    };
    await writeSegment(store, "agent-sre", "loki", "2026-01-01", "q-1767229200000000000", [rec]);
    const refs = await listSegments(store, "agent-sre", "loki");
    expect(refs.map((r) => r.key)).toEqual(["raw/agent-sre/loki/2026-01-01/q-1767229200000000000.jsonl.gz"]);
    expect((await readSegment(store, refs[0])).records).toEqual([rec]);
  });

  it("holds a whole collection: segments, watermarks and the report; a second run adds nothing", async () => {
    const repo = mkdtempSync(join(tmpdir(), "trm-minio-repo-"));
    writeFileSync(join(repo, "main.go"), "package main\n");
    writeFileSync(join(repo, "values.yaml"), "password: hunter2-but-longer\n");
    const config = parseConfig({
      data_dir: mkdtempSync(join(tmpdir(), "trm-minio-data-")),
      agents: { lab: { sources: { code: { path: repo } } } },
    });
    const first = await collect(config, { agent: "lab", store });
    expect(first.totals.records).toBe(2);
    expect(await store.exists(first.report_key)).toBe(true);
    expect(await store.exists("state/lab/collect/code/repo.json")).toBe(true);
    const [ref] = await listSegments(store, "lab", "code");
    const recs = (await readSegment(store, { key: ref.key, source: "code" as const })).records;
    expect(recs.map((r) => r.path).sort()).toEqual(["main.go", "values.yaml"]);
    expect(recs.find((r) => r.path === "values.yaml")!.content).toBe("password: <redacted:password>\n");
    const second = await collect(config, { agent: "lab", store });
    expect(second.totals.records).toBe(0);
  });

  it("gives a presigned URL that fetch can read", async () => {
    await store.put("models/p/v1/card.md", "# card");
    const url = await store.presign("models/p/v1/card.md", 60);
    const res = await fetch(url!);
    expect(await res.text()).toBe("# card");
  });

  it("names the missing credential's config key", () => {
    const config = parseConfig({
      store: {
        kind: "minio",
        endpoint: "127.0.0.1",
        bucket: "trm",
        access_key: { env: "NOPE_ACCESS" },
        secret_key: { file: "/nonexistent/secret" },
      },
    });
    expect(() => openStore(config, {})).toThrow(ConfigError);
    expect(() => openStore(config, {})).toThrow(/store\.access_key: environment variable NOPE_ACCESS/);
    expect(() => openStore(config, { NOPE_ACCESS: "x" })).toThrow(/store\.secret_key: cannot read/);
  });
});
