#!/usr/bin/env node
// `npm run bench -- <suite>... [options]`: runs the named suites and prints one JSON document on
// stdout ({ bench, at, node, results: { <suite>: ... } }); progress goes to stderr.
// A suite is a module whose `run(args)` resolves to its JSON-able result; add one line below.
import { UsageError } from "../errors.js";

type Suite = { run(args: string[]): Promise<unknown> };

const SUITES: Record<string, () => Promise<Suite>> = {
  model: () => import("./model.js"),
  dataset: () => import("./dataset.js"),
  serve: () => import("./serve.js"),
  collect: () => import("./collect.js"),
  run: () => import("./run.js"),
  server: () => import("./server.js"),
  scan: () => import("./scan.js"),
  soak: () => import("./soak.js"),
  quality: () => import("./quality.js"),
};

async function main(argv: string[]): Promise<number> {
  // Leading words name the suites; everything from the first option on goes to each suite.
  const first = argv.findIndex((a) => a.startsWith("-"));
  const names = first < 0 ? argv : argv.slice(0, first);
  const options = first < 0 ? [] : argv.slice(first);
  if (!names.length || options.includes("--help")) {
    process.stderr.write(`usage: npm run bench -- <${Object.keys(SUITES).join("|")}>... [suite options]\n`);
    return names.length ? 0 : 2;
  }
  const unknown = names.filter((n) => !SUITES[n]);
  if (unknown.length)
    throw new UsageError(
      `unknown bench suite(s) ${unknown.join(", ")}; have ${Object.keys(SUITES).join(", ")}`,
    );
  const results: Record<string, unknown> = {};
  for (const name of names) {
    const suite = await SUITES[name]!();
    results[name] = await suite.run(options);
  }
  process.stdout.write(
    `${JSON.stringify({ bench: "trm-forge", at: new Date().toISOString(), node: process.version, results }, null, 2)}\n`,
  );
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = (err as { exitCode?: number }).exitCode === 2 ? 2 : 1;
  },
);
