// The built JavaScript file of a module that runs in its own process or thread (fork, Worker).
// Code running from the TypeScript sources (the tests) has no .js beside it; it starts the
// compiled copy under dist/ instead, which `npm test` builds first.
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** `relative` is resolved against `from` (an import.meta.url), e.g. "./stage-child.js". */
export function builtEntry(from: string, relative: string): string {
  const path = fileURLToPath(new URL(relative, from));
  if (existsSync(path)) return path;
  const marker = "/src/";
  const at = path.lastIndexOf(marker);
  const dist = at >= 0 ? `${path.slice(0, at)}/dist/${path.slice(at + marker.length)}` : null;
  if (dist && existsSync(dist)) return dist;
  throw new Error(`cannot find ${path}${dist ? ` or ${dist}` : ""}: build the project first (npm run build)`);
}
