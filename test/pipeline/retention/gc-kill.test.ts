// gc killed with SIGKILL at random points (a child process running `trm-forge store gc`): after
// each kill every version the registry does not call pruned still loads, every listed dataset is
// whole, and a gc run to the end leaves exactly what an uninterrupted gc leaves.
import { type ChildProcess, spawn } from "node:child_process";
import { cpSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../../src/config/index.js";
import { listDatasets } from "../../../src/pipeline/dataset/reader.js";
import { ModelRegistry, prunedEntry } from "../../../src/pipeline/deploy/registry.js";
import { FsStore } from "../../../src/store/index.js";
import { AGENT, gcConfigInput, writeFixture } from "./fixture.js";

const CLI = resolve("dist/cli.js");
const KILLS = 5;

function gcChild(dir: string): { proc: ChildProcess; exit: Promise<number | null>; err: () => string } {
  const proc = spawn(process.execPath, [CLI, "-c", join(dir, "trm-forge.json"), "store", "gc", "--json"], {
    cwd: dir,
    env: { ...process.env, TRM_FORGE_LOG_LEVEL: "warn" },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let err = "";
  proc.stderr!.on("data", (d) => {
    err += d;
  });
  return { proc, exit: new Promise((r) => proc.on("exit", (code) => r(code))), err: () => err };
}

/** Every file under the store, relative, sorted. */
function files(root: string): string[] {
  for (let attempt = 1; ; attempt++) {
    try {
      return (readdirSync(root, { recursive: true, withFileTypes: true }) as import("node:fs").Dirent[])
        .filter((d) => d.isFile())
        .map((d) => join(d.parentPath, d.name).slice(root.length + 1))
        .sort();
    } catch (err) {
      // A directory the running gc emptied went while it was walked: look again.
      if ((err as NodeJS.ErrnoException).code !== "ENOENT" || attempt >= 20) throw err;
    }
  }
}

function setUp(template: string): string {
  const dir = mkdtempSync(join(tmpdir(), "trm-gc-kill-"));
  cpSync(template, dir, { recursive: true });
  writeFileSync(join(dir, "trm-forge.json"), JSON.stringify(gcConfigInput(join(dir, "data"))));
  return dir;
}

describe("store gc killed with SIGKILL", () => {
  const template = mkdtempSync(join(tmpdir(), "trm-gc-template-"));
  const dirs: string[] = [template];
  let expected: string[];

  beforeAll(async () => {
    const config = parseConfig(gcConfigInput(join(template, "data")));
    await writeFixture(new FsStore(join(template, "data", "store")), config);
    // The reference: the same store, gc'd without interruption.
    const ref = setUp(template);
    dirs.push(ref);
    const run = gcChild(ref);
    expect(await run.exit, run.err()).toBe(0);
    expected = files(join(ref, "data", "store")).filter((f) => !f.endsWith("gc.json"));
  }, 180_000);

  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it(`leaves every kept version loadable at ${KILLS} random kill points, and the next gc finishes`, {
    timeout: 300_000,
  }, async () => {
    const total = files(join(template, "data", "store")).length;
    const toDelete = total - expected.length;
    expect(toDelete).toBeGreaterThan(30);
    const killedAfter: number[] = [];
    for (let i = 0; i < KILLS; i++) {
      const dir = setUp(template);
      dirs.push(dir);
      const root = join(dir, "data", "store");
      // Kill once this many objects are gone (the first at 0: before any delete).
      const target = i === 0 ? 0 : Math.floor(Math.random() * toDelete);
      const child = gcChild(dir);
      let exited = false;
      child.exit.then(() => {
        exited = true;
      });
      while (!exited) {
        const gone = total - files(root).length;
        if (gone >= target && (target > 0 || gone > 0 || Math.random() < 0.02)) break;
        await new Promise((r) => setTimeout(r, 2));
      }
      child.proc.kill("SIGKILL");
      await child.exit;
      killedAfter.push(total - files(root).length);

      const store = new FsStore(root);
      const registry = new ModelRegistry(store);
      const index = await registry.read(AGENT);
      for (const v of index.versions) {
        if (prunedEntry(index, v.version)) continue;
        const loaded = await registry.load(AGENT, v.version);
        expect(loaded.files.size).toBe(2);
      }
      for (const a of ["champion", "challenger"]) await registry.load(AGENT, a);
      for (const d of await listDatasets(store, AGENT))
        for (const name of Object.keys(d.files))
          expect(await store.exists(`datasets/${AGENT}/${d.id}/${name}`)).toBe(true);

      const again = gcChild(dir);
      expect(await again.exit, again.err()).toBe(0);
      // A write killed midway (the lease's, the journal's) may leave its temporary file: no object
      // (list() skips it), so it is left out here too.
      expect(
        files(root).filter((f) => !f.endsWith("gc.json") && !f.includes(".tmp-")),
        `after a kill at ${killedAfter.at(-1)}`,
      ).toEqual(expected);
    }
    // The kills landed at different points of the delete.
    expect(new Set(killedAfter).size).toBeGreaterThan(2);
  });
});
