// Who is calling and what they may do. An identity is an agent name or "admin"; scopes say which
// kinds of tools it may call. An agent acts on its own models and jobs only; admin acts on all.
// Tokens come from the config as env or file references, are compared in constant time (as
// sha256 digests, so every comparison has the same length) and never appear in a log line.
import { createHash, timingSafeEqual } from "node:crypto";
import type { AuthInfo } from "@modelcontextprotocol/sdk/server/auth/types.js";
import { ADMIN_IDENTITY, type Config } from "../config/index.js";
import { SCOPES } from "../config/schema.js";
import { ConfigError } from "../errors.js";
import { resolveSecretRef } from "../util/secret-ref.js";

export type Scope = (typeof SCOPES)[number];
export const ADMIN = ADMIN_IDENTITY;
const MIN_TOKEN_CHARS = 16;

export interface Identity {
  /** An agent name, or "admin". */
  name: string;
  scopes: Scope[];
}

/** A call refused for a missing permission; the message names it. */
export class ForbiddenError extends Error {
  override name = "ForbiddenError";
  constructor(
    readonly missing: string,
    detail: string,
  ) {
    super(`Forbidden (403): ${detail} (missing permission: ${missing})`);
  }
}

export function isAdmin(id: Identity): boolean {
  return id.name === ADMIN;
}

export function hasScope(id: Identity, scope: Scope): boolean {
  return id.scopes.includes(scope) || id.scopes.includes("admin");
}

/** Throws ForbiddenError unless the identity holds the scope. */
export function requireScope(id: Identity, scope: Scope, what: string): void {
  if (!hasScope(id, scope))
    throw new ForbiddenError(
      `scope:${scope}`,
      `${what} needs the "${scope}" scope; ${id.name}'s token has ${id.scopes.join(", ")}`,
    );
}

/** Throws ForbiddenError unless the identity may act on the agent's models and jobs. */
export function requireAgent(id: Identity, agent: string): void {
  if (isAdmin(id) || id.name === agent) return;
  throw new ForbiddenError(
    `agent:${agent}`,
    `${id.name} may act on its own models and jobs only, not on ${agent}'s`,
  );
}

/** The scopes an identity gets when none are given (stdio, tokenless loopback HTTP). */
export function defaultScopes(name: string): Scope[] {
  return name === ADMIN ? ["admin"] : ["read", "train", "promote"];
}

/** Checks that an identity names admin or a configured agent. */
export function checkIdentityName(config: Config, name: string, where: string): void {
  if (name === ADMIN || Object.hasOwn(config.agents, name)) return;
  const known = Object.keys(config.agents);
  throw new ConfigError(
    `${where}: "${name}" is neither admin nor a configured agent${known.length ? ` (agents: ${known.join(", ")})` : ""}`,
  );
}

export function parseScopes(text: string): Scope[] {
  const out: Scope[] = [];
  for (const s of text
    .split(",")
    .map((x) => x.trim())
    .filter(Boolean)) {
    if (!(SCOPES as readonly string[]).includes(s))
      throw new ConfigError(`unknown scope "${s}" (scopes: ${SCOPES.join(", ")})`);
    out.push(s as Scope);
  }
  if (!out.length) throw new ConfigError("give at least one scope");
  return out;
}

const digest = (s: string) => createHash("sha256").update(s, "utf8").digest();

/** The configured tokens, read once at start-up; verify() maps a presented token to its identity. */
export class TokenVerifier {
  private readonly entries: { digest: Buffer; identity: Identity }[] = [];

  constructor(config: Config, env: NodeJS.ProcessEnv = process.env) {
    config.tokens.forEach((t, i) => {
      const where = `tokens[${i}]`;
      checkIdentityName(config, t.identity, `${where}.identity`);
      const value = resolveSecretRef(t.token, `${where}.token`, env);
      if (value.length < MIN_TOKEN_CHARS)
        throw new ConfigError(
          `${where}.token: the token is ${value.length} characters; use at least ${MIN_TOKEN_CHARS} (e.g. openssl rand -hex 32)`,
        );
      this.entries.push({ digest: digest(value), identity: { name: t.identity, scopes: [...t.scopes] } });
    });
    const seen = new Set<string>();
    for (const e of this.entries) {
      const k = e.digest.toString("hex");
      if (seen.has(k)) throw new ConfigError("tokens: two entries hold the same token; give each its own");
      seen.add(k);
    }
  }

  get configured(): boolean {
    return this.entries.length > 0;
  }

  /** The identity of a token, or null. Every entry is compared, so timing says nothing about which. */
  verify(token: string): Identity | null {
    const d = digest(token);
    let found: Identity | null = null;
    for (const e of this.entries) if (timingSafeEqual(d, e.digest)) found = e.identity;
    return found;
  }
}

/** What the HTTP layer hands the MCP transport: never the token itself. */
export function authInfoOf(identity: Identity, token: string): AuthInfo {
  return {
    token: `sha256:${digest(token).toString("hex").slice(0, 12)}`,
    clientId: identity.name,
    scopes: [...identity.scopes],
    extra: { identity: identity.name },
  };
}

/** The identity an HTTP request authenticated as (extra.authInfo). */
export function identityOfAuthInfo(info: AuthInfo): Identity {
  const name = typeof info.extra?.identity === "string" ? info.extra.identity : info.clientId;
  return {
    name,
    scopes: info.scopes.filter((s): s is Scope => (SCOPES as readonly string[]).includes(s)),
  };
}
