#!/usr/bin/env node
// Builds the optional native kernels (src/model/native) with node-gyp against the system BLAS.
// It never fails the install: the outcome is written to build/native-status.json, which
// `trm-forge doctor` reads to say whether native kernels are in use and, if not, why.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, renameSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const statusFile = join(root, "build", "native-status.json");

function record(status) {
  mkdirSync(dirname(statusFile), { recursive: true });
  const tmp = `${statusFile}.tmp-${process.pid}`;
  writeFileSync(tmp, `${JSON.stringify({ ...status, at: new Date().toISOString() }, null, 2)}\n`);
  renameSync(tmp, statusFile);
}

if (process.env.TRM_FORGE_SKIP_NATIVE === "1") {
  record({ built: false, reason: "skipped: TRM_FORGE_SKIP_NATIVE=1" });
  process.exit(0);
}
if (!existsSync(join(root, "binding.gyp"))) {
  record({ built: false, reason: "binding.gyp not found" });
  process.exit(0);
}

const gyp = process.env.npm_config_node_gyp;
const [cmd, args] = gyp ? [process.execPath, [gyp, "rebuild"]] : ["node-gyp", ["rebuild"]];
const res = spawnSync(cmd, args, { cwd: root, encoding: "utf8", env: process.env });
if (res.status === 0) {
  record({ built: true, reason: "built with node-gyp against the system BLAS" });
  process.stderr.write("trm-forge: native kernels built\n");
} else {
  const out = `${res.stdout ?? ""}\n${res.stderr ?? ""}`;
  const missingBlas = /cblas\.h|lopenblas|-lblas/.test(out);
  const reason = res.error
    ? `node-gyp could not run: ${res.error.message}`
    : missingBlas
      ? "no system BLAS found (Debian: apt-get install libopenblas-dev), then npm rebuild trm-forge"
      : `node-gyp failed (exit ${res.status}); last lines: ${out.trim().split("\n").slice(-3).join(" | ")}`;
  record({ built: false, reason });
  process.stderr.write(`trm-forge: native kernels not built (${reason}); falling back to other backends\n`);
}
process.exit(0);
