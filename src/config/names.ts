// Agent names: the one schema every boundary that reads one uses (the config's agent keys and
// token identities, tool arguments, the pipeline's agent argument).
import * as z from "zod";

/** The identity that acts on every agent (server/auth.ts). */
export const ADMIN_IDENTITY = "admin";

/** Names no agent may take, and why: an agent so named would be mistaken for something else. */
const RESERVED = new Map<string, string>([
  [ADMIN_IDENTITY, "the admin identity, which acts on every agent"],
  ["constructor", "every JavaScript object inherits it, so a look-up by name would find it anywhere"],
]);

export const RESERVED_AGENT_NAMES: readonly string[] = [...RESERVED.keys()];

/** 1 to 63 lowercase letters, digits and -, not starting with -, and not reserved. */
export const agentName = z
  .string()
  .regex(
    /^[a-z0-9][a-z0-9-]{0,62}$/,
    "an agent name is 1 to 63 lowercase letters, digits and -, not starting with -",
  )
  .refine((name) => !RESERVED.has(name), {
    error: (issue) =>
      `"${issue.input}" is reserved (${RESERVED.get(String(issue.input))}): give the agent another name`,
  });

/** Who a token stands for: the admin identity or an agent name. */
export const identityName = z
  .string()
  .refine((name) => name === ADMIN_IDENTITY || agentName.safeParse(name).success, {
    error: (issue) => `"${issue.input}" is neither ${ADMIN_IDENTITY} nor a valid agent name`,
  });
