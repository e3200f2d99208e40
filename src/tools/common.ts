// What every tool shares: who is calling and what they may touch, the bounded wait, progress
// notifications, and turning a result (or a failure) into a CallToolResult.

import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { RequestHandlerExtra } from "@modelcontextprotocol/sdk/shared/protocol.js";
import type { CallToolResult, ServerNotification, ServerRequest } from "@modelcontextprotocol/sdk/types.js";
import * as z from "zod";
import { agentName } from "../config/index.js";
import { ConfigError, UsageError, WorkError } from "../errors.js";
import { log } from "../log.js";
import {
  ForbiddenError,
  type Identity,
  identityOfAuthInfo,
  isAdmin,
  requireAgent,
  requireScope,
  type Scope,
} from "../server/auth.js";
import type { ServerContext } from "../server/context.js";
import type { JobView } from "../server/jobs.js";
import { pct as percent } from "../util/format.js";
import { freeText } from "../util/text.js";

export type Extra = RequestHandlerExtra<ServerRequest, ServerNotification>;

/** Longest a tool call may take; clients give up at 60 s, and some hosts sooner. */
export const CALL_LIMIT_MS = 28_000;
/** Longest a caller may ask a call to wait for a job (wait_s). */
export const MAX_WAIT_S = 25;

export interface ToolEnv {
  ctx: ServerContext;
  /** The process's identity (stdio, tokenless loopback HTTP); HTTP calls carry theirs in authInfo. */
  identity: Identity | null;
  /** The identity name an HTTP session is bound to, for requests that carry no authInfo (completion). */
  owner?: string | null;
}

/** The identity behind a request: its authInfo over HTTP, else the process's. */
export function callerOf(env: ToolEnv, extra: Extra): Identity {
  if (extra.authInfo) return identityOfAuthInfo(extra.authInfo);
  if (env.identity) return env.identity;
  throw new ForbiddenError("identity", "this request carries no identity");
}

export const AgentName = agentName.describe(
  "The agent whose models and jobs to use. Defaults to your own agent; admin must name one.",
);

export const JobId = z
  .string()
  .regex(/^[rj]\d{8}-\d{6}-\d{3}-[0-9a-f]{4}$/, "a job id such as r20260101-020000-000-ab12")
  .describe("A job id, as training_start, data_collect, model_evaluate or jobs_list return it.");

export const VersionRef = z
  .string()
  .regex(
    /^(champion|challenger|latest|v\d{8}-\d{6}-\d{3}-[0-9a-f]{4})$/,
    "a version id or champion, challenger, latest",
  )
  .describe("A version id (v20260101-020000-000-ab12) or an alias: champion, challenger, latest.");

/** Why an alias moved: stored in the alias history, so plain one-line text only. */
export const Reason = freeText(500, 3).describe("Why, for the alias history.");

export const WaitS = z
  .number()
  .min(0)
  .max(MAX_WAIT_S)
  .default(0)
  .describe(
    `Seconds to wait for the job to end before answering (0-${MAX_WAIT_S}); progress notifications are sent meanwhile when you pass a progressToken. 0 answers at once.`,
  );

export interface Call {
  identity: Identity;
  extra: Extra;
  /** Aborted when the client cancels or the call reaches CALL_LIMIT_MS. */
  signal: AbortSignal;
  /** "mcp:<identity>", for run triggers and the alias history. */
  actor: string;
  /** The agent the call acts on (the argument, or the caller's own), once the caller may act on it. */
  agent(requested: string | undefined): string;
  /** Agents the caller may see: the named one, or all of them for admin, else its own. */
  visibleAgents(requested: string | undefined): string[];
  /** A notifications/progress when the request carries a progressToken; values only ever increase. */
  progress(value: number, total: number | undefined, message: string): Promise<void>;
}

export interface ToolSpec<I extends z.ZodObject, O extends z.ZodObject> {
  name: string;
  title: string;
  description: string;
  scope: Scope;
  input: I;
  output: O;
  annotations: {
    readOnlyHint: boolean;
    destructiveHint: boolean;
    idempotentHint: boolean;
    openWorldHint: boolean;
  };
  run(args: z.output<I>, call: Call, env: ToolEnv): Promise<{ data: z.output<O>; text: string }>;
}

export function defineTool<I extends z.ZodObject, O extends z.ZodObject>(
  spec: ToolSpec<I, O>,
): ToolSpec<I, O> {
  return spec;
}

/** A tool of any schema, for the list registerTools walks. */
export type AnyTool = ToolSpec<any, any>;

export function registerTool(server: McpServer, env: ToolEnv, spec: AnyTool): void {
  server.registerTool(
    spec.name,
    {
      title: spec.title,
      description: spec.description,
      inputSchema: spec.input,
      outputSchema: spec.output,
      annotations: { title: spec.title, ...spec.annotations },
    },
    async (args: unknown, extra: Extra): Promise<CallToolResult> => {
      const signal = AbortSignal.any([extra.signal, AbortSignal.timeout(CALL_LIMIT_MS)]);
      try {
        const identity = callerOf(env, extra);
        requireScope(identity, spec.scope, spec.name);
        const call = makeCall(env, identity, extra, signal);
        const out = await spec.run(args, call, env);
        return { content: [{ type: "text", text: out.text }], structuredContent: out.data };
      } catch (err) {
        return errorResult(spec.name, err, signal);
      }
    },
  );
}

function makeCall(env: ToolEnv, identity: Identity, extra: Extra, signal: AbortSignal): Call {
  const agents = Object.keys(env.ctx.config.agents);
  let last = Number.NEGATIVE_INFINITY;
  let lastAt = 0;
  const agent = (requested: string | undefined): string => {
    const name = requested ?? (isAdmin(identity) ? null : identity.name);
    if (!name)
      throw new UsageError(`admin must name the agent (agent: one of ${agents.join(", ") || "none"})`);
    requireAgent(identity, name);
    if (!agents.includes(name))
      throw new UsageError(
        `unknown agent "${name}"${isAdmin(identity) ? ` (configured: ${agents.join(", ") || "none"})` : ""}`,
      );
    return name;
  };
  return {
    identity,
    extra,
    signal,
    actor: `mcp:${identity.name}`,
    agent,
    visibleAgents: (requested) =>
      requested !== undefined ? [agent(requested)] : isAdmin(identity) ? agents : [agent(undefined)],
    async progress(value, total, message) {
      const token = extra._meta?.progressToken;
      if (token === undefined || signal.aborted) return;
      const v = Math.max(value, last + 1e-3);
      if (total !== undefined && v > total) return;
      const now = Date.now();
      if (now - lastAt < 200 && (total === undefined || value < total)) return;
      last = v;
      lastAt = now;
      try {
        await extra.sendNotification({
          method: "notifications/progress",
          params: {
            progressToken: token,
            progress: v,
            ...(total !== undefined ? { total } : {}),
            message: message.slice(0, 200),
          },
        });
      } catch {
        // The client went away; the call's own result will not arrive either.
      }
    },
  };
}

function errorResult(tool: string, err: unknown, signal: AbortSignal): CallToolResult {
  let text: string;
  // Errors that carry an exit code (usage, config, work, a task's input) are written for people.
  if (
    err instanceof ForbiddenError ||
    err instanceof UsageError ||
    err instanceof WorkError ||
    err instanceof ConfigError ||
    typeof (err as { exitCode?: unknown } | null)?.exitCode === "number"
  )
    text = (err as Error).message;
  else if (signal.aborted)
    text = `${tool} stopped: ${signal.reason instanceof Error && signal.reason.name === "TimeoutError" ? `it ran past ${CALL_LIMIT_MS / 1000} s` : "the request was cancelled"}`;
  else {
    log.error({ err, tool }, "tool failed unexpectedly");
    text = `${tool} failed: ${err instanceof Error ? err.message : String(err)}`;
  }
  return { content: [{ type: "text", text }], isError: true };
}

/** Follows a job for up to wait_s seconds, forwarding its progress; returns it as it stands. */
export async function waitForJob(env: ToolEnv, call: Call, job: JobView, waitS: number): Promise<JobView> {
  if (waitS <= 0 || job.status !== "running") {
    await call.progress(job.fraction !== null ? job.fraction * 100 : 0, 100, jobLine(job));
    return job;
  }
  return env.ctx.jobs.follow(job.job_id, job.agent, {
    timeoutMs: waitS * 1000,
    signal: call.signal,
    onUpdate: (v) => void call.progress(v.fraction !== null ? v.fraction * 100 : 0, 100, jobLine(v)),
  });
}

/** One line about a job, for texts and progress messages. */
export function jobLine(v: JobView): string {
  const where = v.stage ? ` ${v.stage}` : "";
  const step = v.step !== null && v.total_steps ? ` step ${v.step}/${v.total_steps}` : "";
  const eta = v.eta_s !== null ? ` eta ${v.eta_s}s` : "";
  const msg = v.message && !step ? `: ${v.message}` : "";
  return `${v.kind} job ${v.job_id} (${v.agent}) ${v.status}${where}${step}${eta}${msg}`;
}

/** A job as text: the line, its stages, its result and what to do next. */
export function jobText(v: JobView): string {
  const lines = [jobLine(v)];
  for (const s of v.stages) lines.push(`  ${s.name}: ${s.status}${s.error ? ` (${s.error})` : ""}`);
  const metrics = Object.entries(v.metrics)
    .map(([k, x]) => `${k} ${Number.isInteger(x) ? x : x.toFixed(4)}`)
    .join(", ");
  if (metrics) lines.push(`  metrics: ${metrics}`);
  if (v.error) lines.push(`  error: ${v.error}`);
  if (v.result) lines.push(`  result: ${JSON.stringify(v.result).slice(0, 1500)}`);
  lines.push(`next: ${v.next}`);
  return lines.join("\n");
}

/** A rate for a tool's text; a missing one is a dash. */
export const pct = (x: number | null | undefined): string => percent(x, "–");

/** Cuts text to max characters; says whether it did. */
export function bounded(text: string, max: number): { text: string; truncated: boolean } {
  return text.length <= max ? { text, truncated: false } : { text: text.slice(0, max), truncated: true };
}
