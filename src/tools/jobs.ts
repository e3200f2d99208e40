// Job tools: follow, read the log of, stop and list the long work the other tools start.
import * as z from "zod";
import { LogLine } from "../pipeline/record.js";
import { STAGES } from "../pipeline/run.js";
import { JOB_KINDS, JOB_STATES, JobView } from "../server/jobs.js";
import { AgentName, defineTool, JobId, jobText, WaitS, waitForJob } from "./common.js";

export const jobStatus = defineTool({
  name: "job_status",
  title: "Job status",
  description:
    "A job's state: status, current stage, step of total with ETA, latest metrics (loss, accuracy), each stage's outcome, the result (dataset, gate verdict, registered version) and what to do next. " +
    "Poll it after training_start, data_collect or model_evaluate; pass wait_s (up to 25) to wait for the end and receive progress notifications meanwhile.",
  scope: "read",
  input: z.object({ job_id: JobId, wait_s: WaitS }).strict(),
  output: JobView,
  annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
  async run(args, call, env) {
    const agent = call.agent(await env.ctx.jobs.agentOf(args.job_id, call.visibleAgents(undefined)));
    const view = await waitForJob(env, call, await env.ctx.jobs.view(args.job_id, agent), args.wait_s);
    return { data: view, text: jobText(view) };
  },
});

export const jobLogs = defineTool({
  name: "job_logs",
  title: "Job log",
  description:
    "The newest lines of a job's log (oldest first), optionally one stage's or from a level up. " +
    "Use it when job_status shows a failure or a warning, to read why. The server keeps the last 200 lines per job.",
  scope: "read",
  input: z
    .object({
      job_id: JobId,
      limit: z.number().int().min(1).max(200).default(50).describe("Lines to return, newest kept (1-200)."),
      stage: z.enum(STAGES).optional().describe("Only this stage's lines."),
      min_level: z
        .enum(["debug", "info", "warn", "error"])
        .default("debug")
        .describe("Only lines at this level or above."),
    })
    .strict(),
  output: z
    .object({
      job_id: z.string(),
      agent: z.string(),
      lines: z.array(LogLine),
      total: z.number().int(),
      truncated: z.boolean(),
    })
    .strict(),
  annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
  async run(args, call, env) {
    const agent = call.agent(await env.ctx.jobs.agentOf(args.job_id, call.visibleAgents(undefined)));
    const { lines, total } = await env.ctx.jobs.logs(args.job_id, agent, {
      limit: args.limit,
      stage: args.stage,
      minLevel: args.min_level,
    });
    const text = lines.length
      ? lines.map((l) => `${l.at} ${l.level.padEnd(5)} ${l.stage ?? "-"}: ${l.msg}`).join("\n")
      : `no log lines${args.stage || args.min_level !== "debug" ? " match" : " yet"}`;
    return {
      data: { job_id: args.job_id, agent, lines, total, truncated: total > lines.length },
      text: total > lines.length ? `(${total - lines.length} older lines left out)\n${text}` : text,
    };
  },
});

export const jobCancel = defineTool({
  name: "job_cancel",
  title: "Cancel a job",
  description:
    "Stops a running job at its next step boundary: training writes a checkpoint, a collection keeps the days it finished. " +
    "A cancelled run is not resumed by itself; training_start starts a new one. Returns the job's status after the request.",
  scope: "train",
  input: z.object({ job_id: JobId }).strict(),
  output: z
    .object({
      job_id: z.string(),
      agent: z.string(),
      cancelled: z.boolean(),
      status: z.enum(JOB_STATES),
      message: z.string(),
    })
    .strict(),
  annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
  async run(args, call, env) {
    const jobs = env.ctx.jobs;
    const agent = call.agent(await jobs.agentOf(args.job_id, call.visibleAgents(undefined)));
    const before = await jobs.view(args.job_id, agent);
    if (before.status !== "running" && before.status !== "interrupted") {
      const message = `job ${args.job_id} is already ${before.status}; nothing to cancel`;
      return {
        data: { job_id: args.job_id, agent, cancelled: false, status: before.status, message },
        text: message,
      };
    }
    const asked = await jobs.cancel(args.job_id, agent);
    // A step boundary is near: wait a little, so the answer usually shows the end.
    const after = await jobs.follow(args.job_id, agent, { timeoutMs: 5000, signal: call.signal });
    const message = !asked
      ? `job ${args.job_id} had already stopped (${after.status})`
      : after.status === "running"
        ? `cancel requested; job ${args.job_id} stops at its next step boundary (job_status shows when)`
        : `job ${args.job_id} is ${after.status}`;
    return {
      data: { job_id: args.job_id, agent, cancelled: asked, status: after.status, message },
      text: message,
    };
  },
});

export const jobsList = defineTool({
  name: "jobs_list",
  title: "List jobs",
  description:
    "The newest jobs (collections, trainings, evaluations; including those the schedule started), newest first, with status and the version a training registered. " +
    "Use it to find a job id, or to see whether something is already running before starting more. Next: job_status for one of them.",
  scope: "read",
  input: z
    .object({
      agent: AgentName.optional().describe("Only this agent (default: yours; admin: all)."),
      status: z.enum(JOB_STATES).optional(),
      kind: z.enum(JOB_KINDS).optional(),
      limit: z.number().int().min(1).max(100).default(20).describe("Jobs to return (1-100)."),
    })
    .strict(),
  output: z
    .object({
      jobs: z.array(
        z
          .object({
            job_id: z.string(),
            kind: z.enum(JOB_KINDS),
            agent: z.string(),
            status: z.enum(JOB_STATES),
            stage: z.string().nullable(),
            actor: z.string(),
            created_at: z.string(),
            ended_at: z.string().nullable(),
            error: z.string().nullable(),
            model_version: z.string().nullable(),
          })
          .strict(),
      ),
      truncated: z.boolean(),
    })
    .strict(),
  annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
  async run(args, call, env) {
    const agents = call.visibleAgents(args.agent);
    const { jobs, truncated } = await env.ctx.jobs.list(agents, {
      limit: args.limit,
      status: args.status,
      kind: args.kind,
    });
    const text = jobs.length
      ? jobs
          .map(
            (j) =>
              `${j.job_id} ${j.kind} ${j.agent} ${j.status}${j.stage ? ` (${j.stage})` : ""} ${j.created_at}${j.model_version ? ` -> ${j.model_version}` : ""}${j.error ? `: ${j.error}` : ""}`,
          )
          .join("\n") + (truncated ? "\n(more jobs exist: raise limit or filter)" : "")
      : "no jobs";
    return { data: { jobs, truncated }, text };
  },
});
