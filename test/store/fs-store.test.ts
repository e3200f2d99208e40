import { existsSync, mkdtempSync, readdirSync, utimesSync, writeFileSync } from "node:fs";
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

  it("sweeps temporary files that killed writers left, once they are old, and nothing else", async () => {
    await store.put("raw/s/loki/2026-01-01.jsonl", "x");
    const dir = join(root, "raw", "s", "loki");
    const old = join(dir, "2026-01-01.jsonl.tmp-99-dead");
    writeFileSync(old, "half a segment");
    const hourAgo = new Date(Date.now() - 2 * 3600_000);
    utimesSync(old, hourAgo, hourAgo);
    writeFileSync(join(dir, "2026-01-02.jsonl.tmp-98-live"), "a write in progress");
    writeFileSync(join(root, "raw", "other.tmp-1-x"), "outside the prefix");
    utimesSync(join(root, "raw", "other.tmp-1-x"), hourAgo, hourAgo);
    expect(await store.sweepLeftovers("raw/s/", 3600_000)).toEqual({ files: 1, bytes: 14 });
    expect(readdirSync(dir).sort()).toEqual(["2026-01-01.jsonl", "2026-01-02.jsonl.tmp-98-live"]);
    expect(existsSync(join(root, "raw", "other.tmp-1-x"))).toBe(true);
    expect(await store.sweepLeftovers("raw/none/", 0)).toEqual({ files: 0, bytes: 0 });
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

  it("removes the directories a delete leaves empty, up to the root, and only those", async () => {
    const r = mkdtempSync(join(tmpdir(), "trm-store-prune-"));
    const st = new FsStore(r);
    await st.put("runs/a/r1/checkpoints/step-1/state.safetensors", "s");
    await st.put("runs/a/r1/run.json", "{}");
    await st.put("models/a/v1/config.json", "{}");
    await st.delete("runs/a/r1/checkpoints/step-1/state.safetensors");
    // checkpoints/ and step-1/ went; r1/ still holds run.json.
    expect(readdirSync(join(r, "runs", "a", "r1"))).toEqual(["run.json"]);
    await st.delete("runs/a/r1/run.json");
    expect(readdirSync(r)).toEqual(["models"]);
    await st.deletePrefix("models/a/v1");
    expect(readdirSync(r)).toEqual([]);
    expect(existsSync(r)).toBe(true);
    // Deleting what is not there changes nothing and does not fail.
    await st.delete("runs/a/none/x.json");
    expect(readdirSync(r)).toEqual([]);
  });

  it("a put racing a delete in the same directory recreates the directory and lands", async () => {
    const r = mkdtempSync(join(tmpdir(), "trm-store-race-"));
    const st = new FsStore(r);
    const dir = "raw/a/loki/2026-01-01";
    await st.put(`${dir}/k0`, "0");
    // Each round deletes the directory's only object while the next one is written into it.
    for (let i = 1; i <= 200; i++) {
      await Promise.all([
        i % 3 === 0 ? st.putIf(`${dir}/k${i}`, String(i), null) : st.put(`${dir}/k${i}`, String(i)),
        st.delete(`${dir}/k${i - 1}`),
      ]);
      expect((await st.get(`${dir}/k${i}`)).toString()).toBe(String(i));
    }
    expect((await st.list("raw")).map((o) => o.key)).toEqual([`${dir}/k200`]);
    await st.delete(`${dir}/k200`);
    expect(readdirSync(r)).toEqual([]);
  });
});
