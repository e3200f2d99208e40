#!/usr/bin/env node
// Fails on absolute paths of a particular machine in the sources and tests: a fresh clone must pass
// its tests wherever it lives. Paths inside a container image or a pod (/data, /var/run/...) are fine;
// home folders and this workplace's folders are not. Run by `npm run lint` and by a test.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const DIRS = [
  "src",
  "test",
  "scripts",
  "k8s",
  "binding.gyp",
  "Dockerfile",
  "vitest.config.ts",
  "package.json",
];
const SKIP = new Set(["node_modules", "dist", "build", ".git"]);
const TEXT = /\.(ts|mts|js|mjs|cjs|json|ya?ml|md|py|sh|cc|h|gyp|txt|toml)$|^Dockerfile$/;

// A quote, whitespace, `(`, `=` or the line start, then a machine's folder: this workplace's
// (work) or a home folder on Linux, macOS or Windows. A line below `check-paths: allow` is skipped
// (a recorded wire sample that names a path inside another program's container).
const ALLOW = "check-paths: allow";
const MACHINE_PATH =
  /(^|[\s"'`(=:])(\/work\/|\/home\/[^/\s]+\/|\/Users\/[^/\s]+\/|\/root\/|[A-Za-z]:\\Users\\)/m;

/** Files under `paths` (relative to `root`) that name a machine's absolute path, with the line. */
export function findMachinePaths(root = ROOT, paths = DIRS) {
  const found = [];
  const visit = (path) => {
    let st;
    try {
      st = statSync(path);
    } catch {
      return;
    }
    if (st.isDirectory()) {
      for (const name of readdirSync(path)) if (!SKIP.has(name)) visit(join(path, name));
      return;
    }
    const name = path.split(/[/\\]/).pop();
    if (!TEXT.test(name) || st.size > 2_000_000) return;
    const lines = readFileSync(path, "utf8").split("\n");
    lines.forEach((line, i) => {
      if (i > 0 && lines[i - 1].includes(ALLOW)) return;
      if (MACHINE_PATH.test(line))
        found.push({ file: relative(root, path), line: i + 1, text: line.trim().slice(0, 160) });
    });
  };
  for (const p of paths) visit(join(root, p));
  return found;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const found = findMachinePaths();
  for (const f of found)
    console.error(`${f.file}:${f.line}: absolute path of a particular machine: ${f.text}`);
  if (found.length > 0) {
    console.error(
      `check-paths: ${found.length} machine path(s); use paths relative to the file or the package`,
    );
    process.exit(1);
  }
}
