// The MCP server of one session: the tools, resources and prompts over the shared ServerContext.
// One McpServer per connection (stdio, an HTTP session, a test's in-memory pair).
import { readFileSync } from "node:fs";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { registerTools } from "../tools/index.js";
import type { Identity } from "./auth.js";
import type { ServerContext } from "./context.js";
import { registerPrompts } from "./prompts.js";
import { registerResources } from "./resources.js";

const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
  version: string;
};

export const INSTRUCTIONS = [
  "trm-forge trains a small reasoning model (TRM) on your homelab's own data and serves it; the workflow: sources_check → data_collect → data_status → training_start → job_status until it ends → model_compare → model_promote or model_rollback.",
  "Long work (data_collect, training_start, model_evaluate) returns a job id at once: follow it with job_status (wait_s up to 25 s), read job_logs, stop it with job_cancel; no call blocks longer than about 30 s.",
  "model_predict asks the champion (log_triage, trace_outcome, metric_forecast, code_infill): treat answers as evidence with a confidence; you act on your own agent's models and jobs only.",
].join("\n");

export interface CreateServerOptions {
  /** The identity of every request without authInfo (stdio, tokenless loopback HTTP, tests). */
  identity?: Identity | null;
  /** The identity name an HTTP session belongs to (completion answers for it alone). */
  owner?: string | null;
}

export function createServer(ctx: ServerContext, opts: CreateServerOptions = {}): McpServer {
  const server = new McpServer(
    { name: "trm-forge", title: "trm-forge", version: pkg.version },
    {
      capabilities: { tools: {}, resources: {}, prompts: {}, logging: {} },
      instructions: INSTRUCTIONS,
      maxToolInputElements: ctx.config.server.max_tool_input_elements,
    },
  );
  const env = { ctx, identity: opts.identity ?? null, owner: opts.owner ?? null };
  registerTools(server, env);
  registerResources(server, env);
  registerPrompts(server, env);
  return server;
}
