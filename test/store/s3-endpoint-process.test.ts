// The S3 endpoint in its own process (used where the client blocks its event loop for minutes,
// run-7m-minio.test.ts): it serves the MinIO store, single and multipart, and reports what it holds.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MinioStore } from "../../src/store/index.js";
import { type S3Process, startS3Process } from "./s3-endpoint-process.js";

describe("the S3 endpoint in a child process", () => {
  let s3: S3Process;
  beforeAll(async () => {
    s3 = await startS3Process();
  });
  afterAll(() => s3?.close());

  it("serves the store and lists what it holds", async () => {
    const store = new MinioStore({
      endPoint: "127.0.0.1",
      port: s3.port,
      useSSL: false,
      accessKey: "a",
      secretKey: "b",
      bucket: "trm-proc",
      region: "us-east-1",
      pathStyle: true,
      partSize: 5 * 1024 * 1024,
    });
    await store.put("a/one.txt", "one");
    await store.put("a/big.bin", Buffer.alloc(6 * 1024 * 1024, 1));
    expect((await store.get("a/one.txt")).toString()).toBe("one");
    const held = await s3.inspect();
    expect(held.uploads).toBe(0);
    expect(held.objects.map((o) => [o.key, o.size, o.parts])).toEqual([
      ["a/one.txt", 3, 0],
      ["a/big.bin", 6 * 1024 * 1024, 2],
    ]);
    expect(held.calls.filter((c) => c.key === "a/big.bin").map((c) => `${c.op} ${c.status}`)).toEqual([
      "CreateMultipartUpload 200",
      "UploadPart 200",
      "UploadPart 200",
      "CompleteMultipartUpload 200",
    ]);
  });
});
