// A fresh clone must pass its tests wherever it is cloned: no source or test names an absolute path
// of a particular machine (scripts/check-paths.mjs, also run by `npm run lint`).
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
// @ts-expect-error: a plain .mjs script without types
import { findMachinePaths } from "../../scripts/check-paths.mjs";

type Found = { file: string; line: number; text: string };
const find = findMachinePaths as (root?: string, paths?: string[]) => Found[];

describe("machine paths", () => {
  const dir = mkdtempSync(join(tmpdir(), "trm-paths-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("the repository's sources, tests, scripts and manifests name none", () => {
    expect(find()).toEqual([]);
  });

  it("finds a workplace folder, home folders and a Windows profile, and lets a marked wire sample pass", () => {
    mkdirSync(join(dir, "src"));
    // Built from parts, so that this file itself names no such path.
    const abs = (...parts: string[]) => ["", ...parts].join("/");
    writeFileSync(
      join(dir, "src", "a.ts"),
      [
        `const a = "${abs("work", "shared", "reference")}";`,
        `const b = '${abs("home", "someone", "x")}';`,
        `const c = \`${["C:", "Users", "me", "x"].join("\\")}\`;`,
        `const d = "/data/models"; // a pod's path: fine`,
        "// check-paths: allow",
        `const e = "${abs("root", ".ollama")}";`,
        `const f = "${abs("root", ".cache")}";`,
      ].join("\n"),
    );
    const found = find(dir, ["src"]);
    expect(found.map((f) => f.line)).toEqual([1, 2, 3, 7]);
    expect(found[0]!.file).toBe(join("src", "a.ts"));
  });
});
