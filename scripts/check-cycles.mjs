#!/usr/bin/env node
// Fails when files under src/ import each other in a circle (type-only imports count too: a
// circle of types is still two modules that cannot be understood apart). Run by `npm run lint`.
// Prints each circle as the files of one strongly connected component.
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const SRC = join(ROOT, "src");
const IMPORT =
  /(?:^|[\s;])(?:import|export)\s[^"'`;]*?from\s*["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/g;

function files(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...files(p));
    else if (/\.ts$/.test(name) && !name.endsWith(".d.ts")) out.push(p);
  }
  return out;
}

/** The file a relative specifier names (".js" in the source is the ".ts" beside it). */
function target(from, spec) {
  if (!spec.startsWith(".")) return null;
  const base = resolve(dirname(from), spec);
  for (const p of [base.replace(/\.js$/, ".ts"), `${base}.ts`, join(base, "index.ts")])
    if (existsSync(p) && statSync(p).isFile()) return p;
  return null;
}

const graph = new Map();
for (const f of files(SRC)) {
  const text = readFileSync(f, "utf8").replace(/\/\*[\s\S]*?\*\/|\/\/[^\n]*/g, "");
  const deps = new Set();
  for (const m of text.matchAll(IMPORT)) {
    const t = target(f, m[1] ?? m[2]);
    if (t && t !== f) deps.add(t);
  }
  graph.set(f, deps);
}

// Tarjan's strongly connected components, iteratively (the graph has a thousand-odd nodes).
let counter = 0;
const index = new Map();
const low = new Map();
const onStack = new Set();
const stack = [];
const circles = [];
for (const start of graph.keys()) {
  if (index.has(start)) continue;
  const work = [[start, [...graph.get(start)], 0]];
  index.set(start, counter);
  low.set(start, counter++);
  stack.push(start);
  onStack.add(start);
  while (work.length) {
    const frame = work[work.length - 1];
    const [v, deps] = frame;
    if (frame[2] < deps.length) {
      const w = deps[frame[2]++];
      if (!graph.has(w)) continue;
      if (!index.has(w)) {
        index.set(w, counter);
        low.set(w, counter++);
        stack.push(w);
        onStack.add(w);
        work.push([w, [...graph.get(w)], 0]);
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v), index.get(w)));
      continue;
    }
    work.pop();
    if (work.length) {
      const parent = work[work.length - 1][0];
      low.set(parent, Math.min(low.get(parent), low.get(v)));
    }
    if (low.get(v) === index.get(v)) {
      const scc = [];
      let w;
      do {
        w = stack.pop();
        onStack.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1) circles.push(scc.map((p) => relative(ROOT, p)).sort());
    }
  }
}

if (circles.length) {
  console.error(`check-cycles: ${circles.length} import circle(s) among files in src/:`);
  for (const c of circles) console.error(`  ${c.join(" <-> ")}`);
  process.exit(1);
}
console.log(`check-cycles: ${graph.size} files, no import circles`);
