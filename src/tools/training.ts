// Training tools: start a pipeline run (a job), and what the schedule will do next.
import * as z from "zod";
import { STAGES } from "../pipeline/run.js";
import { scheduleStatus } from "../pipeline/schedule.js";
import { AgentName, defineTool, jobText, WaitS, waitForJob } from "./common.js";
import { StartedJobOut } from "./data.js";

export const trainingStart = defineTool({
  name: "training_start",
  title: "Start training (job)",
  description:
    "Starts a pipeline run for the agent and returns its job at once: collect → build (dataset) → train (fine-tunes the champion) → evaluate (against baselines and the champion, then the gate) → deploy (registers the version; promotes it when the gate passes). " +
    'Pass `stages` to run only some, e.g. ["build","train","evaluate","deploy"] to retrain on data already collected. ' +
    "When the agent already has a run in progress, returns that job (started: false) instead of a second one. " +
    "Next: job_status until it ends (wait_s waits up to 25 s and streams progress), then model_compare and model_promote or model_rollback.",
  scope: "train",
  input: z
    .object({
      agent: AgentName.optional(),
      stages: z
        .array(z.enum(STAGES))
        .min(1)
        .max(STAGES.length)
        .optional()
        .describe(`Stages to run, in pipeline order (default all: ${STAGES.join(", ")}).`),
      from_scratch: z
        .boolean()
        .default(false)
        .describe("Train fresh weights instead of fine-tuning the champion."),
      dataset_id: z
        .string()
        .regex(/^ds-\d{8}-[0-9a-f]{12}$/, "a dataset id such as ds-20260101-0123456789ab")
        .optional()
        .describe("Train and evaluate on this dataset instead of the newest (when build is not run)."),
      wait_s: WaitS,
    })
    .strict(),
  output: StartedJobOut,
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true },
  async run(args, call, env) {
    const agent = call.agent(args.agent);
    const { started, job } = await env.ctx.jobs.startRun(agent, {
      kind: "training",
      stages: args.stages,
      fromScratch: args.from_scratch,
      datasetId: args.dataset_id,
      actor: call.actor,
    });
    const now = await waitForJob(env, call, job, args.wait_s);
    return {
      data: { started, job: now },
      text: `${started ? "started" : `not started: ${agent} already has a run in progress, returned here`}\n${jobText(now)}`,
    };
  },
});

export const scheduleStatusTool = defineTool({
  name: "schedule_status",
  title: "Schedule",
  description:
    "The in-process schedule: for each agent its daily collect and monthly train job, the cron pattern, the next run and how the last one went. " +
    "Use it to know when fresh data or a new model will arrive without asking. Next: data_collect or training_start to do it now.",
  scope: "read",
  input: z
    .object({ agent: AgentName.optional().describe("Only this agent (default: yours; admin: all).") })
    .strict(),
  output: z
    .object({
      enabled: z.boolean(),
      running_here: z.boolean(),
      jobs: z.array(
        z
          .object({
            agent: z.string(),
            job: z.enum(["collect", "train"]),
            pattern: z.string(),
            timezone: z.string(),
            next_run: z.string().nullable(),
            last_fired_at: z.string().nullable(),
            last_result: z.string().nullable(),
            last_run_id: z.string().nullable(),
            last_reason: z.string().nullable(),
            running: z.boolean(),
          })
          .strict(),
      ),
    })
    .strict(),
  annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
  async run(args, call, env) {
    const { config, store, scheduler } = env.ctx;
    const agents = call.visibleAgents(args.agent);
    const all = scheduler ? await scheduler.status() : await scheduleStatus(config, store);
    const jobs = all
      .filter((j) => agents.includes(j.agent))
      .map((j) => ({
        agent: j.agent,
        job: j.job,
        pattern: j.pattern,
        timezone: j.timezone,
        next_run: j.next_run,
        last_fired_at: j.last.last_fired_at,
        last_result: j.last.last_result,
        last_run_id: j.last.last_run_id,
        last_reason: j.last.last_reason,
        running: j.running,
      }));
    const head = !config.schedule.enabled
      ? "the schedule is off (schedule.enabled: false)"
      : scheduler
        ? "the schedule runs in this server"
        : "the schedule is on, but not running in this server process";
    const text = [
      head,
      ...jobs.map(
        (j) =>
          `  ${j.agent} ${j.job}: ${j.pattern} ${j.timezone}, next ${j.next_run ?? "–"}, last ${j.last_fired_at ? `${j.last_fired_at} (${j.last_result ?? "?"})` : "never"}`,
      ),
    ].join("\n");
    return { data: { enabled: config.schedule.enabled, running_here: scheduler !== null, jobs }, text };
  },
});
