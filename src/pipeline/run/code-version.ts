// The code version recorded in run records and model lineage: the package version plus the git
// commit when run from a checkout, else a hash of the built files (an installed package).
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { CodeVersion } from "../record.js";

const root = fileURLToPath(new URL("../../../", import.meta.url));
let cached: CodeVersion | null = null;

export function codeVersion(): CodeVersion {
  if (cached) return cached;
  const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { version: string };
  let git: string | null = null;
  if (existsSync(join(root, ".git"))) {
    try {
      git = execFileSync("git", ["describe", "--always", "--dirty", "--abbrev=12"], {
        cwd: root,
        encoding: "utf8",
        stdio: ["ignore", "pipe", "ignore"],
        timeout: 5000,
      }).trim();
    } catch {
      git = null;
    }
  }
  const dist = distSha(join(root, "dist"));
  const id = git ? `${pkg.version}+g${git}` : dist ? `${pkg.version}+dist.${dist.slice(0, 12)}` : pkg.version;
  cached = { id, package: pkg.version, git, dist_sha256: dist };
  return cached;
}

/** sha256 over the built .js files (path and content, in path order). */
function distSha(dir: string): string | null {
  if (!existsSync(dir)) return null;
  const files: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith(".js")) files.push(p);
    }
  };
  walk(dir);
  files.sort();
  const h = createHash("sha256");
  for (const f of files) {
    h.update(f.slice(dir.length));
    h.update(readFileSync(f));
  }
  return files.length ? h.digest("hex") : null;
}
