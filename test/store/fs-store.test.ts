import { mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { FsStore, NotFoundError } from "../../src/store/index.js";

describe("FsStore", () => {
  const root = mkdtempSync(join(tmpdir(), "trm-store-"));
  const store = new FsStore(root);

  it("puts, gets, stats and lists objects by prefix", async () => {
    const put = await store.put("models/a/v1/config.json", '{"x":1}');
    expect(put.size).toBe(7);
    expect(put.sha256).toMatch(/^[0-9a-f]{64}$/);
    await store.put("models/a/v2/config.json", "{}");
    await store.put("models/b/v1/config.json", "{}");
    expect((await store.get("models/a/v1/config.json")).toString()).toBe('{"x":1}');
    expect((await store.list("models/a")).map((o) => o.key)).toEqual([
      "models/a/v1/config.json",
      "models/a/v2/config.json",
    ]);
    expect(await store.stat("models/a/none")).toBeNull();
    await expect(store.get("models/a/none")).rejects.toBeInstanceOf(NotFoundError);
  });

  it("leaves no temporary files and hides stray ones from list", async () => {
    await store.put("runs/a/r1/run.json", "{}");
    writeFileSync(join(root, "runs", "a", "r1", "run.json.tmp-123-abcd"), "half");
    expect(readdirSync(join(root, "runs", "a", "r1")).length).toBe(2);
    expect((await store.list("runs/a")).map((o) => o.key)).toEqual(["runs/a/r1/run.json"]);
  });

  it("refuses keys that escape the root", async () => {
    await expect(store.put("../evil", "x")).rejects.toThrow(/invalid store key/);
    await expect(store.put("a/../../evil", "x")).rejects.toThrow(/invalid store key/);
    await expect(store.put("/abs", "x")).rejects.toThrow(/invalid store key/);
  });

  it("uploads files and deletes prefixes", async () => {
    const src = join(root, "..", `src-${Date.now()}.bin`);
    writeFileSync(src, Buffer.alloc(1000, 7));
    const res = await store.putFile("models/c/v1/model.safetensors", src);
    expect(res.size).toBe(1000);
    await store.deletePrefix("models/c");
    expect(await store.list("models/c")).toEqual([]);
  });
});
