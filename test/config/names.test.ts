// Agent names: one schema for every boundary, and the names auth gives a meaning of its own are
// refused as agents (an agent called admin used to get admin's powers).
import { describe, expect, it } from "vitest";
import * as z from "zod";
import { agentName, parseConfig, RESERVED_AGENT_NAMES } from "../../src/config/index.js";
import { ConfigError } from "../../src/errors.js";
import { ADMIN, checkIdentityName } from "../../src/server/auth.js";
import { AgentName } from "../../src/tools/common.js";

const agent = { sources: { prometheus: { url: "http://127.0.0.1:9090" } } };
const token = (identity: string) => ({ identity, scopes: ["read"], token: { env: "T" } });

function configError(raw: unknown): string {
  try {
    parseConfig(raw);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error("the config was accepted");
}

describe("agent names in the config", () => {
  it("refuses an agent named admin, with what admin is and what to do", () => {
    expect(configError({ agents: { "agent-a": agent, admin: agent } })).toBe(
      'bad config: agents.admin: "admin" is reserved (the admin identity, which acts on every agent): give the agent another name',
    );
  });

  it("refuses every reserved name, including one every object inherits", () => {
    expect(RESERVED_AGENT_NAMES).toEqual([ADMIN, "constructor"]);
    for (const name of RESERVED_AGENT_NAMES)
      expect(configError({ agents: { [name]: agent } })).toMatch(
        new RegExp(`^bad config: agents\\.${name}: "${name}" is reserved \\(`),
      );
  });

  it("says what a malformed name should look like", () => {
    for (const name of ["Agent", "-a", "a_b", "", "a".repeat(64)])
      expect(configError({ agents: { [name]: agent } })).toContain(
        "an agent name is 1 to 63 lowercase letters, digits and -, not starting with -",
      );
    expect(Object.keys(parseConfig({ agents: { "agent-a": agent, "0x": agent } }).agents)).toEqual([
      "agent-a",
      "0x",
    ]);
  });

  it("token identities: admin or a valid agent name, never constructor", () => {
    const ok = parseConfig({ agents: { "agent-a": agent }, tokens: [token("admin"), token("agent-a")] });
    expect(ok.tokens.map((t) => t.identity)).toEqual(["admin", "agent-a"]);
    expect(configError({ tokens: [token("constructor")] })).toBe(
      'bad config: tokens.0.identity: "constructor" is neither admin nor a valid agent name',
    );
    expect(configError({ tokens: [token("Admin")] })).toContain("tokens.0.identity");
  });

  it("an identity is checked against the configured agents as own keys only", () => {
    const config = parseConfig({ agents: { "agent-a": agent } });
    expect(() => checkIdentityName(config, "agent-a", "--as")).not.toThrow();
    expect(() => checkIdentityName(config, ADMIN, "--as")).not.toThrow();
    expect(() => checkIdentityName(config, "constructor", "--as")).toThrow(
      /--as: "constructor" is neither admin nor a configured agent \(agents: agent-a\)/,
    );
  });
});

describe("one agent-name schema", () => {
  it("tool arguments refuse what the config refuses, and still advertise the pattern", () => {
    for (const name of ["admin", "constructor", "Agent", "../x"]) {
      expect(AgentName.safeParse(name).success, name).toBe(false);
      expect(agentName.safeParse(name).success, name).toBe(false);
    }
    expect(AgentName.parse("agent-a")).toBe("agent-a");
    const schema = z.toJSONSchema(AgentName) as { pattern?: string; description?: string };
    expect(schema.pattern).toBe("^[a-z0-9][a-z0-9-]{0,62}$");
    expect(schema.description).toMatch(/^The agent whose models and jobs to use/);
  });
});
