// The MCP server and who may call it.
import * as z from "zod";
import { DurationSchema, SecretRefSchema } from "./fields.js";
import { identityName } from "./names.js";

/** read: look; train: collect, train, evaluate, cancel; promote: move aliases; admin: all of them. */
export const SCOPES = ["read", "train", "promote", "admin"] as const;

/** A bearer token, by reference only, and the identity it stands for: an agent name or "admin". */
export const TokenSchema = z
  .object({
    identity: identityName,
    scopes: z.array(z.enum(SCOPES)).min(1),
    token: SecretRefSchema,
  })
  .strict();

/** `trm-forge serve`: the Streamable HTTP endpoint and its limits. */
export const ServerSchema = z
  .object({
    host: z.string().min(1).default("127.0.0.1"),
    port: z.number().int().min(0).max(65535).default(8750),
    /** Host header names /mcp accepts besides loopback names and the bound address (DNS rebinding). */
    allowed_hosts: z.array(z.string().min(1)).default([]),
    /** Larger request bodies get 413. */
    max_request_bytes: z.number().int().min(1024).max(67_108_864).default(1_048_576),
    /** Array elements plus object members in one tool call's arguments. */
    max_tool_input_elements: z.number().int().min(16).max(1_000_000).default(4096),
    /** Concurrent MCP sessions of agents; admin's come on top, up to max_sessions_per_identity. */
    max_sessions: z.number().int().min(1).default(256),
    /** Sessions one identity may hold; at the cap its oldest idle session is closed for the new one. */
    max_sessions_per_identity: z.number().int().min(1).max(1024).default(16),
    /** A session without a request for this long is closed. */
    session_idle_timeout: DurationSchema.prefault("30m"),
    /** /metrics asks for a token with the read scope (Prometheus then needs one too). */
    metrics_require_token: z.boolean().default(false),
    /** On SIGTERM: how long in-flight requests and the running jobs get to stop. */
    shutdown_grace: DurationSchema.prefault("60s"),
  })
  .strict();

export type TokenEntry = z.infer<typeof TokenSchema>;
export type ServerSection = z.infer<typeof ServerSchema>;
