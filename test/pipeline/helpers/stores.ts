// The object stores the pipeline tests run against: the local directory, and the MinIO client
// against s3rver (credentials S3RVER/S3RVER, path style, region us-east-1). s3rver has no
// multipart upload, so the part size (16 MiB) is kept above the largest object a test writes.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import S3rver from "s3rver";
import { parseConfig } from "../../../src/config/index.js";
import { FsStore, type ObjectStore, openStore } from "../../../src/store/index.js";

export interface StoreUnderTest {
  store: ObjectStore;
  close(): Promise<void>;
}

export interface StoreKind {
  name: string;
  open(): Promise<StoreUnderTest>;
}

export async function openS3rverStore(bucket = "trm-pipeline"): Promise<StoreUnderTest> {
  const server = new S3rver({
    port: 0,
    address: "127.0.0.1",
    silent: true,
    directory: mkdtempSync(join(tmpdir(), "trm-s3rver-")),
    resetOnClose: true,
  });
  const { port } = await server.run();
  const config = parseConfig({
    store: {
      kind: "minio",
      endpoint: "127.0.0.1",
      port,
      use_ssl: false,
      bucket,
      region: "us-east-1",
      path_style: true,
      part_size_mb: 16,
      access_key: { env: "S3_ACCESS" },
      secret_key: { env: "S3_SECRET" },
    },
  });
  const store = openStore(config, { S3_ACCESS: "S3RVER", S3_SECRET: "S3RVER" });
  return { store, close: () => server.close() };
}

export function storesUnderTest(): StoreKind[] {
  return [
    {
      name: "the local directory",
      async open() {
        return { store: new FsStore(mkdtempSync(join(tmpdir(), "trm-store-"))), close: async () => {} };
      },
    },
    { name: "MinIO (s3rver)", open: () => openS3rverStore() },
  ];
}
