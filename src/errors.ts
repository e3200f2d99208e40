// Errors that carry their CLI exit code: 2 = bad usage or bad config, 1 = the work failed.

export class UsageError extends Error {
  readonly exitCode = 2;
  override name = "UsageError";
}

export class ConfigError extends Error {
  readonly exitCode = 2;
  override name = "ConfigError";
}

/** The work itself failed (a source, a file, a model); the message is meant for a person. */
export class WorkError extends Error {
  readonly exitCode = 1;
  override name = "WorkError";
}

export function exitCodeOf(err: unknown): number {
  const code = (err as { exitCode?: unknown } | null)?.exitCode;
  return code === 2 ? 2 : 1;
}

/** One line, no stack: what a person needs to act on the failure. */
export function oneLine(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.replace(/\s*\n\s*/g, "; ").trim();
}
