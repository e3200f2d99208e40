// Logging goes to stderr only: stdout belongs to --json output and the MCP stdio transport.
import { type Logger, pino } from "pino";

const REDACT = [
  "token",
  "*.token",
  "authorization",
  "*.authorization",
  "headers.authorization",
  "*.headers.authorization",
  "password",
  "*.password",
  "secret_key",
  "*.secret_key",
  "access_key",
  "*.access_key",
];

function makeLogger(level: string): Logger {
  return pino(
    {
      level,
      base: { name: "trm-forge" },
      redact: { paths: REDACT, censor: "<redacted>" },
    },
    pino.destination({ fd: 2, sync: true }),
  );
}

export let log: Logger = makeLogger(
  process.env.TRM_FORGE_LOG_LEVEL ?? (process.env.VITEST ? "silent" : "info"),
);

export function setLogLevel(level: string): void {
  log = makeLogger(level);
}

export function childLogger(bindings: Record<string, unknown>): Logger {
  return log.child(bindings);
}
