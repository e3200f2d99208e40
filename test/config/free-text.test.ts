// Free text written into the store (alias-history reasons): the one zod helper, and the CLI path
// that writes the same field, through the built CLI. Control characters, line breaks and bidi
// overrides are refused with an error naming the character; plain text in any script passes.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { UsageError } from "../../src/errors.js";
import { cliFreeText, controlCharIn, freeText } from "../../src/util/text.js";

const CLI = resolve("dist/cli.js");

const REFUSED: [string, string, string][] = [
  ["NUL", "a\u0000b", "U+0000 at 1"],
  ["ESC (ANSI)", "ok \u001b[31m", "U+001B at 3"],
  ["CR", "ok\rforged", "U+000D at 2"],
  ["LF", "ok\nforged", "U+000A at 2"],
  ["DEL", "\u007f", "U+007F at 0"],
  ["C1 CSI", "x\u009b", "U+009B at 1"],
  ["LRE", "\u202ax", "U+202A at 0"],
  ["RLO", "ok \u202eexe.txt", "U+202E at 3"],
  ["LRI", "\u2066x", "U+2066 at 0"],
  ["PDI", "x\u2069", "U+2069 at 1"],
  ["line separator", "a\u2028b", "U+2028 at 1"],
];

describe("free text", () => {
  it.each(REFUSED)("refuses %s, naming the character and where", (_what, text, at) => {
    expect(controlCharIn(text)).toBe(at);
    const r = freeText(500).safeParse(text);
    expect(r.success).toBe(false);
    expect(r.error!.issues[0].message).toContain(`control characters are not allowed (found ${at})`);
  });

  it("passes plain text in any script, and still bounds the length", () => {
    for (const ok of ["v2 misbehaves", "régression — 回滚 💥", "العربية نص", "../%2e%2e is just text here"]) {
      expect(controlCharIn(ok)).toBeNull();
      expect(freeText(500, 3).parse(ok)).toBe(ok);
    }
    expect(freeText(5).safeParse("toolong").success).toBe(false);
    expect(freeText(500, 3).safeParse("ab").success).toBe(false);
  });

  it("gives the CLI a usage error that names the option", () => {
    expect(cliFreeText("fine", "--reason", 500)).toBe("fine");
    expect(() => cliFreeText("bad\u001b[2J", "--reason", 500)).toThrow(UsageError);
    expect(() => cliFreeText("bad\u001b[2J", "--reason", 500)).toThrow(
      /^--reason: control characters are not allowed \(found U\+001B at 3\)/,
    );
  });

  describe("through the built CLI", () => {
    const dir = mkdtempSync(join(tmpdir(), "trm-free-text-"));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    it("models promote and rollback refuse a --reason with control characters (exit 2) and write nothing", () => {
      if (!existsSync(CLI))
        throw new Error("build first: npx tsc -p tsconfig.json (npm test does it in pretest)");
      writeFileSync(join(dir, "trm-forge.yaml"), "data_dir: data\nagents:\n  sre: {}\n");
      const cli = (...args: string[]) =>
        spawnSync(process.execPath, [CLI, "-c", join(dir, "trm-forge.yaml"), ...args], {
          cwd: dir,
          encoding: "utf8",
          env: { ...process.env, TRM_FORGE_LOG_LEVEL: "silent" },
        });
      for (const args of [
        ["models", "rollback", "--agent", "sre", "--reason", "oops\r\nFAKE: promoted by admin"],
        ["models", "promote", "--agent", "sre", "--version", "latest", "--reason", "ok \u202etxt.exe"],
      ]) {
        const r = cli(...args);
        expect(r.status, r.stderr).toBe(2);
        expect(r.stderr).toMatch(
          /--reason: control characters are not allowed \(found U\+(000D|202E) at \d+\)/,
        );
      }
      const data = join(dir, "data");
      const files = existsSync(data) ? readdirSync(data, { recursive: true }).map(String) : [];
      expect(files.filter((f) => f.includes("registry"))).toEqual([]);
    });
  });
});
