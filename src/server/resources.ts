// Resources: an agent's registry, a version's model card and knowledge card, its latest anomaly scan, and a job. The
// rules as the tools: the read scope, and an agent reads its own only.
import { type McpServer, ResourceTemplate } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { Variables } from "@modelcontextprotocol/sdk/shared/uriTemplate.js";
import { ErrorCode, McpError, type ReadResourceResult } from "@modelcontextprotocol/sdk/types.js";
import { log } from "../log.js";
import { readLatestScan } from "../pipeline/scan/index.js";
import { callerOf, type Extra, type ToolEnv } from "../tools/common.js";
import { ADMIN, ForbiddenError, type Identity, requireAgent, requireScope } from "./auth.js";

function one(v: string | string[] | undefined): string {
  return (Array.isArray(v) ? v[0] : v) ?? "";
}

/** Runs a resource read as the caller: scope and agent checked, failures as JSON-RPC errors. */
async function asCaller(
  env: ToolEnv,
  extra: Extra,
  agent: string | null,
  fn: (id: Identity) => Promise<ReadResourceResult>,
): Promise<ReadResourceResult> {
  try {
    const id = callerOf(env, extra);
    requireScope(id, "read", "reading resources");
    if (agent !== null) {
      requireAgent(id, agent);
      if (!(agent in env.ctx.config.agents))
        throw new McpError(ErrorCode.InvalidParams, `unknown agent "${agent}"`);
    }
    return await fn(id);
  } catch (err) {
    if (err instanceof McpError) throw err;
    if (err instanceof ForbiddenError || typeof (err as { exitCode?: unknown }).exitCode === "number")
      throw new McpError(ErrorCode.InvalidParams, (err as Error).message);
    log.error({ err }, "resource read failed");
    throw new McpError(ErrorCode.InternalError, (err as Error).message);
  }
}

/** A resource's body: `body` as indented JSON. */
function json(uri: URL, body: unknown): ReadResourceResult {
  return {
    contents: [{ uri: uri.href, mimeType: "application/json", text: `${JSON.stringify(body, null, 2)}\n` }],
  };
}

/** The agents an identity may see: all for admin, else its own (when configured). */
function agentsOf(env: ToolEnv, name: string | null): string[] {
  const all = Object.keys(env.ctx.config.agents);
  return name === ADMIN ? all : all.filter((a) => a === name);
}

function visibleAgents(env: ToolEnv, extra: Extra): string[] {
  try {
    return agentsOf(env, callerOf(env, extra).name);
  } catch {
    return [];
  }
}

export function registerResources(server: McpServer, env: ToolEnv): void {
  // A completion request carries no authInfo: it completes for the session's owner, else nothing.
  const complete = {
    agent: (value: string) =>
      agentsOf(env, env.owner ?? env.identity?.name ?? null).filter((a) => a.startsWith(value)),
  };
  /** A read of one agent's resource ({agent} in the URI), as that agent's caller. */
  const ofAgent =
    (read: (agent: string, uri: URL, vars: Variables) => Promise<ReadResourceResult>) =>
    (uri: URL, vars: Variables, extra: Extra) => {
      const agent = one(vars.agent);
      return asCaller(env, extra, agent, () => read(agent, uri, vars));
    };

  server.registerResource(
    "registry",
    new ResourceTemplate("trm://agents/{agent}/registry", {
      list: async (extra) => ({
        resources: visibleAgents(env, extra).map((agent) => ({
          uri: `trm://agents/${agent}/registry`,
          name: `${agent} registry`,
          mimeType: "application/json",
        })),
      }),
      complete,
    }),
    {
      title: "Model registry",
      description:
        "An agent's registry.json: versions with their gate verdict and scores, the aliases, the append-only alias history.",
      mimeType: "application/json",
    },
    ofAgent(async (agent, uri) => json(uri, await env.ctx.registry.read(agent))),
  );

  for (const [part, file, title, description] of [
    [
      "card",
      "card.md",
      "Model card",
      "A version's model card: data, training, scores per task against baselines and the champion, the gate, lineage.",
    ],
    [
      "knowledge",
      "knowledge.md",
      "Knowledge card",
      "The knowledge card distilled from the same data for the agent's Ollama model: topology, error signatures, metric baselines, code map.",
    ],
  ] as const) {
    server.registerResource(
      part,
      new ResourceTemplate(`trm://agents/{agent}/models/{version}/${part}`, { list: undefined, complete }),
      { title, description, mimeType: "text/markdown" },
      ofAgent(async (agent, uri, vars) => {
        const registry = env.ctx.registry;
        const version = await registry.resolve(agent, one(vars.version));
        const text = (await registry.readArtifact(agent, version, file)).toString("utf8");
        return { contents: [{ uri: uri.href, mimeType: "text/markdown", text }] };
      }),
    );
  }

  server.registerResource(
    "scan",
    new ResourceTemplate("trm://agents/{agent}/scan/latest", { list: undefined, complete }),
    {
      title: "Latest anomaly scan",
      description:
        "The agent's newest stored anomaly scan (anomalies_scan, or the scheduled scan): ranked findings with evidence.",
      mimeType: "application/json",
    },
    ofAgent(async (agent, uri) => {
      const scan = await readLatestScan(env.ctx.store, agent);
      return json(uri, scan ?? { agent, scan: null, note: "no scan stored yet: call anomalies_scan" });
    }),
  );

  server.registerResource(
    "job",
    new ResourceTemplate("trm://jobs/{id}", { list: undefined }),
    {
      title: "Job",
      description:
        "A job as job_status shows it: status, stage, step, ETA, metrics, result, what to do next.",
      mimeType: "application/json",
    },
    (uri, vars, extra) =>
      asCaller(env, extra, null, async (id) => {
        const jobId = one(vars.id);
        // Looked for among the caller's own agents: another's job reads as an unknown id.
        const agent = await env.ctx.jobs.agentOf(jobId, agentsOf(env, id.name));
        requireAgent(id, agent);
        const view = await env.ctx.jobs.view(jobId, agent);
        return json(uri, view);
      }),
  );
}
