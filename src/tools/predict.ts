// model_predict: ask the agent's champion TRM. The answer is typed per task, and every label
// carries its own confidence.
import * as z from "zod";
import type { Config } from "../config/index.js";
import { TASK_NAMES } from "../pipeline/tasks/types.js";
import { AgentName, defineTool, pct } from "./common.js";

/** The queries the tasks read; a plain string works for log_triage (a line) and trace_outcome (a path). */
export function predictInput(maxChars: number) {
  const text = z.string().min(1).max(maxChars);
  return z.union([
    text.describe('log_triage: the log line; trace_outcome: the call path "svc:op -> svc:op"'),
    z.object({ line: text }).strict().describe("log_triage"),
    z
      .object({ path: z.array(z.string().min(1).max(256)).min(1).max(128) })
      .strict()
      .describe("trace_outcome: service:operation entries, root first"),
    z
      .object({
        text: z.string().max(maxChars),
        spans: z
          .array(z.object({ start: z.number().int().min(0), length: z.number().int().min(1) }).strict())
          .min(1)
          .max(16),
      })
      .strict()
      .describe("code_infill: code and the byte spans to fill"),
    z
      .object({
        query: z.string().min(1).max(256),
        labels: z.record(z.string().max(128), z.string().max(512)),
        points: z.array(z.number().nullable()).min(1).max(1024),
      })
      .strict()
      .describe("metric_forecast: a series' recent points, oldest first"),
  ]);
}

export function modelPredict(config: Config) {
  return defineTool({
    name: "model_predict",
    title: "Ask the model",
    description:
      "Asks the agent's champion TRM, trained on its own homelab's data. Tasks: log_triage (a log line → level, service, incident-linked?), " +
      "trace_outcome (a call path → status, latency bucket, culprit service), metric_forecast (a series' recent points → its next points), " +
      "code_infill (code with byte spans → the missing bytes). Returns the typed answer, each label with a confidence, the overall (weakest) confidence " +
      "and the recursion steps used. For trace_outcome, seen_in_training says how many training traces had this exact path: their outcomes weigh in the answer (0: the model generalises alone). Treat it as evidence to check against logs, metrics and traces, not as truth; low confidence means the model does not know.",
    scope: "read",
    input: z
      .object({
        agent: AgentName.optional(),
        task: z.enum(TASK_NAMES),
        input: predictInput(config.serve.max_input_chars),
      })
      .strict(),
    output: z
      .object({
        agent: z.string(),
        task: z.enum(TASK_NAMES),
        version: z.string(),
        answer: z.record(z.string(), z.unknown()),
        confidence: z.number(),
        halt_confidence: z.number(),
        seen_in_training: z.number().int().optional(),
        steps: z.number().int(),
        max_steps: z.number().int(),
        latency_ms: z.number(),
      })
      .strict(),
    annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    async run(args, call, env) {
      const agent = call.agent(args.agent);
      const r = await env.ctx.models.predict(agent, args.task, args.input);
      const answer = r.answer as Record<string, unknown>;
      const labels = Object.entries(answer)
        .map(([k, v]) => {
          const o = v as { value?: unknown; confidence?: number } | null;
          return o && typeof o === "object" && "value" in o
            ? `${k}: ${JSON.stringify(o.value)} (${pct(o.confidence ?? null)})`
            : `${k}: ${JSON.stringify(v).slice(0, 300)}`;
        })
        .join("\n  ");
      return {
        data: { ...r, answer },
        text: `${agent} ${r.task} by ${r.version} in ${r.steps}/${r.max_steps} steps, confidence ${pct(r.confidence)}:\n  ${labels}${seenNote(r.seen_in_training)}`,
      };
    },
  });
}

function seenNote(seen: number | undefined): string {
  if (seen === undefined) return "";
  return seen
    ? `\n  (this input was seen ${seen} time${seen === 1 ? "" : "s"} in training; those outcomes weigh in)`
    : "\n  (this input was not seen in training: the model generalises)";
}
