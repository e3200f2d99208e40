// Credentials are referenced from the config, never written in it: an environment variable or a
// file (a mounted Kubernetes Secret). The value is read when needed and never logged.
import { readFileSync } from "node:fs";
import { ConfigError } from "../errors.js";

export type SecretRef = { env: string } | { file: string };

/** Reads a credential reference; `keyPath` names the config key in the error. */
export function resolveSecretRef(
  ref: SecretRef,
  keyPath: string,
  env: NodeJS.ProcessEnv = process.env,
): string {
  if ("env" in ref) {
    const v = env[ref.env];
    if (!v) throw new ConfigError(`${keyPath}: environment variable ${ref.env} is not set`);
    return v;
  }
  try {
    const v = readFileSync(ref.file, "utf8").trim();
    if (!v) throw new ConfigError(`${keyPath}: ${ref.file} is empty`);
    return v;
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(
      `${keyPath}: cannot read ${ref.file}: ${(err as NodeJS.ErrnoException).code ?? err}`,
    );
  }
}
