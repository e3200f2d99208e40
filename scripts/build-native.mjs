#!/usr/bin/env node
// Builds the optional native kernels (src/model/native) with node-gyp against the system BLAS.
// It never fails the install: the outcome is written to build/native-status.json, which
// `trm-forge doctor` reads to say whether native kernels are in use and, if not, why.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const statusFile = join(root, "build", "native-status.json");
const addonFile = join(root, "build", "Release", "trm_native.node");
const sources = ["src/model/native/addon.cc", "src/model/native/kernels.cc", "src/model/native/bf16.cc"];

function record(status) {
  mkdirSync(dirname(statusFile), { recursive: true });
  const tmp = `${statusFile}.tmp-${process.pid}`;
  writeFileSync(tmp, `${JSON.stringify({ ...status, at: new Date().toISOString() }, null, 2)}\n`);
  renameSync(tmp, statusFile);
}

function done(status) {
  record(status);
  const line = status.built
    ? `trm-forge: native kernels built (${status.blas ?? "BLAS"})`
    : `trm-forge: native kernels not built (${status.reason}); falling back to other backends`;
  process.stderr.write(`${line}\n`);
  process.exit(0);
}

if (process.env.TRM_FORGE_SKIP_NATIVE === "1")
  done({ built: false, reason: "skipped: TRM_FORGE_SKIP_NATIVE=1" });
if (!existsSync(join(root, "binding.gyp"))) done({ built: false, reason: "binding.gyp not found" });

/** npm passes its bundled node-gyp; outside npm, look for the one next to npm, then PATH. */
function findNodeGyp() {
  if (process.env.npm_config_node_gyp) return [process.execPath, [process.env.npm_config_node_gyp]];
  const prefix = dirname(dirname(process.execPath));
  for (const p of [
    join(prefix, "lib", "node_modules", "npm", "node_modules", "node-gyp", "bin", "node-gyp.js"),
    join(prefix, "node_modules", "npm", "node_modules", "node-gyp", "bin", "node-gyp.js"),
  ]) {
    if (existsSync(p)) return [process.execPath, [p]];
  }
  return ["node-gyp", []];
}

/** Local Node headers spare node-gyp a download (the network may not reach nodejs.org). */
function nodedirArgs() {
  if (process.env.npm_config_nodedir) return [];
  const prefix = dirname(dirname(process.execPath));
  return existsSync(join(prefix, "include", "node", "node_api.h")) ? [`--nodedir=${prefix}`] : [];
}

function run(cmd, args) {
  const res = spawnSync(cmd, args, { cwd: root, encoding: "utf8", env: process.env, timeout: 600_000 });
  return {
    ok: res.status === 0,
    error: res.error,
    status: res.status,
    out: `${res.stdout ?? ""}\n${res.stderr ?? ""}`,
  };
}

function lastLines(out) {
  const lines = out
    .split("\n")
    .map((l) => l.trim())
    .filter(Boolean);
  const err = lines.find((l) => /\berror\b/i.test(l));
  return (err ?? lines.slice(-2).join(" | ")) || "no output";
}

/** Without node-gyp, the addon is two files and one g++ line against Node's own headers. */
function buildWithCompiler() {
  const prefix = dirname(dirname(process.execPath));
  const include = join(prefix, "include", "node");
  if (!existsSync(join(include, "node_api.h"))) return { ok: false, out: `no Node headers in ${include}` };
  mkdirSync(dirname(addonFile), { recursive: true });
  rmSync(addonFile, { force: true });
  const cxx = process.env.CXX || "g++";
  return run(cxx, [
    "-O3",
    "-std=c++17",
    "-fno-math-errno",
    "-shared",
    "-fPIC",
    `-I${include}`,
    ...sources.map((s) => join(root, s)),
    "-o",
    addonFile,
    "-lopenblas",
    "-lpthread",
  ]);
}

const missingBlas = (out) => /cblas\.h|lopenblas|-lblas/.test(out);
const [cmd, pre] = findNodeGyp();
let res = run(cmd, [...pre, "rebuild", ...nodedirArgs()]);
let how = "node-gyp";
if (!res.ok && !missingBlas(res.out)) {
  // node-gyp missing or unable to fetch headers: the direct compile needs neither.
  const gypReason = res.error ? res.error.message : lastLines(res.out);
  res = buildWithCompiler();
  how = `g++ (after node-gyp failed: ${gypReason.slice(0, 200)})`;
}
if (!res.ok) {
  const reason = missingBlas(res.out)
    ? "no system BLAS found (Debian: apt-get install libopenblas-dev), then npm rebuild trm-forge"
    : res.error
      ? `${how} could not run: ${res.error.message}`
      : `${how} failed (exit ${res.status}); last lines: ${lastLines(res.out)}`;
  done({ built: false, reason });
}

// A build that links but cannot load (e.g. the BLAS runtime is missing) is not a build.
try {
  const addon = createRequire(import.meta.url)(addonFile);
  const info = addon.info();
  done({
    built: true,
    reason: `built with ${how.split(" (")[0]} against the system BLAS`,
    blas: info.blasConfig,
  });
} catch (err) {
  done({
    built: false,
    reason: `the addon built but does not load: ${String(err?.message ?? err).split("\n")[0]}`,
  });
}
