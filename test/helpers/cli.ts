// The built CLI, run as a user would: a config file in a directory, logs silenced.
import { spawnSync } from "node:child_process";
import { join, resolve } from "node:path";

export const CLI = resolve("dist/cli.js");

/** Runs `trm-forge -c <dir>/trm-forge.yaml ...args` in `dir`. */
export function cli(dir: string, ...args: string[]) {
  const r = spawnSync(process.execPath, [CLI, "-c", join(dir, "trm-forge.yaml"), ...args], {
    cwd: dir,
    encoding: "utf8",
    env: { ...process.env, TRM_FORGE_LOG_LEVEL: "silent" },
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}
