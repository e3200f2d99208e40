// Shared plumbing for CLI commands: config loading, --json output and exit codes.
import type { Command } from "commander";
import { type LoadedConfig, loadConfig } from "../config/index.js";
import { exitCodeOf, oneLine, UsageError } from "../errors.js";
import { log, setLogLevel } from "../log.js";
import { DURATION_HINT, parseDuration } from "../util/duration.js";

export interface GlobalOptions {
  config?: string;
  logLevel?: string;
}

/** Loads the config named by the global --config option (or found by search). */
export function loadCliConfig(cmd: Command): LoadedConfig {
  const opts = cmd.optsWithGlobals() as GlobalOptions;
  const loaded = loadConfig({ path: opts.config });
  if (!opts.logLevel && !process.env.TRM_FORGE_LOG_LEVEL) setLogLevel(loaded.config.log_level);
  return loaded;
}

/** Prints a command's result: JSON on stdout with --json, otherwise the human text. */
export function emit(json: boolean | undefined, value: unknown, human: () => string): void {
  if (json) process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
  else process.stdout.write(`${human().replace(/\n*$/, "")}\n`);
}

/**
 * Wraps a command action: a thrown error becomes a one-line reason on stderr and exit code
 * 2 (usage/config) or 1 (the work failed). The action may return an exit code of its own.
 */
export function action<A extends unknown[]>(fn: (...args: A) => Promise<number | undefined | void>) {
  return async (...args: A): Promise<void> => {
    try {
      const code = await fn(...args);
      if (typeof code === "number") process.exitCode = code;
    } catch (err) {
      log.debug({ err }, "command failed");
      process.stderr.write(`trm-forge: ${oneLine(err)}\n`);
      process.exitCode = exitCodeOf(err);
    }
  };
}

export function parseIntOption(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n)) throw new UsageError(`${name} must be an integer, got "${value}"`);
    return n;
  };
}

/** A duration option ("30d", "12h", "15m"), in the config's form, as milliseconds. */
export function durationOption(value: string): number {
  const ms = parseDuration(value);
  if (ms === null) throw new UsageError(`bad duration "${value}" (use ${DURATION_HINT})`);
  return ms;
}
