// Tokens in the config: references only, each mapped to an identity and scopes, read once, compared
// in constant time; bad references stop the server with a reason that never shows a token.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config/index.js";
import { ConfigError } from "../../src/errors.js";
import {
  authInfoOf,
  checkIdentityName,
  hasScope,
  identityOfAuthInfo,
  parseScopes,
  requireAgent,
  requireScope,
  TokenVerifier,
} from "../../src/server/auth.js";
import { BRUNO, removeDir, SRE, TOKENS, tempDir, testConfig, tokenSection } from "./helpers.js";

describe("tokens and identities", () => {
  const dir = tempDir("trm-auth-");
  afterAll(() => removeDir(dir));

  it("maps each configured token (file or env reference) to its identity and scopes", () => {
    const config = testConfig(dir, {
      tokens: [
        ...tokenSection(dir),
        { identity: BRUNO, scopes: ["read"], token: { env: "BRUNO_READ_TOKEN" } },
      ],
    });
    const v = new TokenVerifier(config, { BRUNO_READ_TOKEN: "bruno-read-0123456789abcdef" });
    expect(v.configured).toBe(true);
    expect(v.verify(TOKENS.sre)).toEqual({ name: SRE, scopes: ["read", "train", "promote"] });
    expect(v.verify(TOKENS.sreRead)).toEqual({ name: SRE, scopes: ["read"] });
    expect(v.verify(TOKENS.admin)).toEqual({ name: "admin", scopes: ["admin"] });
    expect(v.verify("bruno-read-0123456789abcdef")).toEqual({ name: BRUNO, scopes: ["read"] });
    for (const bad of ["", "x", `${TOKENS.sre}x`, TOKENS.sre.slice(0, -1), TOKENS.sre.toUpperCase(), " "])
      expect(v.verify(bad)).toBeNull();
  });

  it("accepts no token written in the YAML itself", () => {
    expect(() =>
      parseConfig({
        agents: { [SRE]: {} },
        tokens: [{ identity: SRE, scopes: ["read"], token: TOKENS.sre }],
      }),
    ).toThrow(/tokens\.0\.token/);
    expect(() =>
      parseConfig({
        agents: { [SRE]: {} },
        tokens: [{ identity: SRE, scopes: ["read"], token: { value: TOKENS.sre } }],
      }),
    ).toThrow(ConfigError);
    expect(() =>
      parseConfig({
        agents: { [SRE]: {} },
        tokens: [{ identity: SRE, scopes: ["root"], token: { env: "X" } }],
      }),
    ).toThrow(/tokens\.0\.scopes/);
  });

  it("stops at start-up on a missing, short, shared or unknown-identity token, without showing it", () => {
    const short = join(dir, "short");
    writeFileSync(short, "abc123\n");
    const cases: [Record<string, unknown>[], RegExp][] = [
      [
        [{ identity: SRE, scopes: ["read"], token: { env: "NOT_SET_ANYWHERE" } }],
        /tokens\[0\]\.token: environment variable NOT_SET_ANYWHERE is not set/,
      ],
      [
        [{ identity: SRE, scopes: ["read"], token: { file: join(dir, "missing") } }],
        /tokens\[0\]\.token: cannot read/,
      ],
      [
        [{ identity: SRE, scopes: ["read"], token: { file: short } }],
        /tokens\[0\]\.token: the token is 6 characters; use at least 16/,
      ],
      [
        [{ identity: "agent-ghost", scopes: ["read"], token: { env: "T" } }],
        /tokens\[0\]\.identity: "agent-ghost" is neither admin nor a configured agent/,
      ],
      [
        [
          { identity: SRE, scopes: ["read"], token: { env: "T" } },
          { identity: BRUNO, scopes: ["read"], token: { env: "T" } },
        ],
        /two entries hold the same token/,
      ],
    ];
    for (const [tokens, msg] of cases) {
      let err: unknown;
      try {
        new TokenVerifier(testConfig(dir, { tokens }), { T: "shared-token-0123456789" });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as Error).message).toMatch(msg);
      expect((err as Error).message).not.toContain("abc123");
      expect((err as Error).message).not.toContain("shared-token");
    }
  });

  it("scopes: admin holds every scope; an agent acts on its own agent only", () => {
    const sre = { name: SRE, scopes: ["read" as const] };
    const admin = { name: "admin", scopes: ["admin" as const] };
    expect(hasScope(sre, "read")).toBe(true);
    expect(hasScope(sre, "train")).toBe(false);
    expect(hasScope(admin, "promote")).toBe(true);
    expect(() => requireScope(sre, "promote", "model_promote")).toThrow(
      `Forbidden (403): model_promote needs the "promote" scope; ${SRE}'s token has read (missing permission: scope:promote)`,
    );
    expect(() => requireAgent(sre, SRE)).not.toThrow();
    expect(() => requireAgent(sre, BRUNO)).toThrow(/missing permission: agent:agent-bruno/);
    expect(() => requireAgent(admin, BRUNO)).not.toThrow();
    expect(parseScopes("read, train")).toEqual(["read", "train"]);
    expect(() => parseScopes("read,sudo")).toThrow(/unknown scope "sudo"/);
    expect(() => checkIdentityName(testConfig(dir), "agent-ghost", "--as")).toThrow(/--as/);
  });

  it("hands the transport a fingerprint, never the token", () => {
    const info = authInfoOf({ name: SRE, scopes: ["read"] }, TOKENS.sre);
    expect(JSON.stringify(info)).not.toContain(TOKENS.sre);
    expect(info.token).toMatch(/^sha256:[0-9a-f]{12}$/);
    expect(identityOfAuthInfo(info)).toEqual({ name: SRE, scopes: ["read"] });
  });
});
