// Publishing to MinIO, against s3rver; the failed upload against the project's S3 endpoint, which
// can fail a multipart upload's parts on purpose.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as Minio from "minio";
import S3rver from "s3rver";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as z from "zod";
import { ConfigSchema, parseConfig } from "../../../src/config/index.js";
import type { Config } from "../../../src/config/schema.js";
import { tagVersionArtifacts } from "../../../src/pipeline/deploy/minio.js";
import { ModelRegistry } from "../../../src/pipeline/deploy/registry.js";
import {
  deployStageHook,
  downloadSection,
  presignedArtifactUrls,
} from "../../../src/pipeline/deploy/targets.js";
import { type ObjectStore, openStore } from "../../../src/store/index.js";
import { sha256 } from "../../../src/util/fs.js";
import { S3Endpoint } from "../../store/s3-endpoint.js";

const ENV = { S3_ACCESS: "S3RVER", S3_SECRET: "S3RVER" };
const LINEAGE = {
  run_id: "r1",
  dataset_id: "d1",
  raw_segments: [],
  code_version: "test",
  parent_version: null,
};

describe("publishing a version to MinIO (s3rver)", () => {
  let server: S3rver;
  let config: Config;
  let store: ObjectStore;
  let client: Minio.Client;

  beforeAll(async () => {
    server = new S3rver({
      port: 0,
      address: "127.0.0.1",
      silent: true,
      directory: mkdtempSync(join(tmpdir(), "trm-s3rver-")),
      resetOnClose: true,
    });
    const { port } = (await server.run()) as { port: number };
    config = parseConfig({
      data_dir: mkdtempSync(join(tmpdir(), "trm-minio-")),
      store: {
        kind: "minio",
        endpoint: "127.0.0.1",
        port,
        use_ssl: false,
        bucket: "trm-models",
        part_size_mb: 5,
        access_key: { env: "S3_ACCESS" },
        secret_key: { env: "S3_SECRET" },
        prefix: "lab",
      },
    });
    store = openStore(config, ENV);
    client = new Minio.Client({
      endPoint: "127.0.0.1",
      port,
      useSSL: false,
      accessKey: "S3RVER",
      secretKey: "S3RVER",
      region: "us-east-1",
      pathStyle: true,
    });
  });
  afterAll(async () => {
    await server?.close();
  });

  it("uploads with content type and sha256, tags every artifact, and hands out presigned URLs that serve the same bytes", async () => {
    const registry = new ModelRegistry(store);
    const weights = Buffer.alloc(300_000, 7);
    const manifest = await registry.register("agent-sre", {
      artifacts: [
        { name: "model.safetensors", data: weights },
        { name: "vocab.json", data: '{"classes":[]}' },
        { name: "knowledge.md", data: "# card\n" },
      ],
      lineage: LINEAGE,
      gate: { passed: true, reasons: [] },
      createdBy: "test",
    });
    const v = manifest.version;
    expect(await tagVersionArtifacts(config, manifest, ENV)).toBe(3);

    for (const a of manifest.artifacts) {
      const name = `lab/models/agent-sre/${v}/${a.name}`;
      const st = await client.statObject("trm-models", name);
      expect(st.metaData["content-type"]).toBe(a.content_type);
      expect(st.metaData.sha256).toBe(a.sha256);
      const tags = await client.getObjectTagging("trm-models", name);
      const flat = Object.fromEntries(
        (tags as unknown as { Key: string; Value: string }[]).map((t) => [t.Key, t.Value]),
      );
      expect(flat).toEqual({ agent: "agent-sre", version: v, sha256: a.sha256, gate: "passed" });
    }

    const urls = await presignedArtifactUrls(store, registry, "agent-sre", v, 3600);
    expect(Object.keys(urls).sort()).toEqual(["knowledge.md", "model.safetensors", "vocab.json"]);
    for (const a of manifest.artifacts) {
      expect(urls[a.name]).toMatch(/X-Amz-Signature=/);
      const res = await fetch(urls[a.name]);
      expect(res.status).toBe(200);
      expect(sha256(Buffer.from(await res.arrayBuffer()))).toBe(a.sha256);
    }
    // Off unless an expiry is configured.
    expect(await presignedArtifactUrls(store, registry, "agent-sre", v, 0)).toEqual({});
  });

  it("the deploy hook tags the registered version and hands out presigned URLs of the champion when configured", async () => {
    const withUrls = parseConfig({
      ...z.encode(ConfigSchema, config),
      store: { ...config.store, presign_expiry_s: 900 },
    });
    const registry = new ModelRegistry(store);
    const m = await registry.register("agent-c", {
      artifacts: [{ name: "knowledge.md", data: "# card c\n" }],
      lineage: LINEAGE,
      gate: { passed: false, reasons: ["log_triage below baseline"] },
      createdBy: "test",
    });
    await registry.promote("agent-c", m.version, { actor: "test", reason: "forced", force: true });
    // The hook reads the credentials the config references from the environment, as the server does.
    Object.assign(process.env, ENV);
    const out = await deployStageHook({ config: withUrls, store, registry, agent: "agent-c", registered: m });
    expect(out.partial_reason).toBeNull();
    expect(out).toMatchObject({
      status: "succeeded",
      published_version: m.version,
      download_urls_expire_s: 900,
    });
    const urls = out.download_urls as Record<string, string>;
    expect(await (await fetch(urls["knowledge.md"])).text()).toBe("# card c\n");
    expect(urls["knowledge.md"]).toContain("X-Amz-Expires=900");
    const tags = (await client.getObjectTagging(
      "trm-models",
      `lab/models/agent-c/${m.version}/knowledge.md`,
    )) as unknown as {
      Key: string;
      Value: string;
    }[];
    expect(tags.find((t) => t.Key === "gate")?.Value).toBe("failed");
    expect(downloadSection(urls, 900)).toContain(`- [knowledge.md](${urls["knowledge.md"]})`);
    expect(downloadSection(urls, 900)).toContain("valid for 0.3 h");
  });

  it("leaves the registry unchanged when an upload fails", async () => {
    const s3 = new S3Endpoint();
    const port = await s3.start();
    const store = openStore(
      parseConfig({
        store: { ...config.store, kind: "minio", endpoint: "127.0.0.1", port, part_size_mb: 5 },
      }),
      ENV,
    );
    const registry = new ModelRegistry(store);
    const first = await registry.register("agent-b", {
      artifacts: [{ name: "vocab.json", data: "{}" }],
      lineage: LINEAGE,
      gate: { passed: true, reasons: [] },
      createdBy: "test",
    });
    const before = await registry.read("agent-b");
    const keysBefore = (await store.list("models/agent-b")).map((o) => o.key);
    // 6 MiB is above the 5 MiB part size: a multipart upload, whose second part always fails.
    s3.fault = (c) =>
      c.op === "UploadPart" && c.partNumber === 2 ? { status: 500, code: "InternalError" } : undefined;
    const err = await registry
      .register("agent-b", {
        artifacts: [
          { name: "vocab.json", data: "{}" },
          { name: "model.safetensors", data: Buffer.alloc(6 * 1024 * 1024, 1) },
        ],
        lineage: LINEAGE,
        gate: { passed: true, reasons: [] },
        createdBy: "test",
      })
      .catch((e) => e);
    expect(String(err)).toMatch(/500|InternalError|injected/);
    expect(s3.uploads.size).toBe(0);
    expect(await registry.read("agent-b")).toEqual(before);
    expect(before.versions.map((x) => x.version)).toEqual([first.version]);
    // Nothing of the failed version is left behind for a pointer to reach.
    expect((await store.list("models/agent-b")).map((o) => o.key)).toEqual(keysBefore);
    await s3.close();
  });
});
