// anomalies_scan: ask the champion what in the agent's recent data it did not expect.
import * as z from "zod";
import { Finding, SCAN_SOURCES, saveScan } from "../pipeline/scan/index.js";
import { scanChampion } from "../serve/scan.js";
import { parseDuration } from "../util/duration.js";
import { AgentName, defineTool } from "./common.js";

const Since = z
  .string()
  .regex(/^\d{1,6}(m|h|d)$/, 'a duration such as "15m", "1h" or "6h"')
  .describe(
    "How far back from now to scan, e.g. 15m, 1h, 6h (default 1h; capped by the server's scan.max_window).",
  );

export const anomaliesScan = defineTool({
  name: "anomalies_scan",
  title: "Scan for anomalies",
  description:
    "Asks the agent's champion TRM, trained on its own homelab, what in the last `since` it did not expect: every log line " +
    "(its level, service, incident-linked?), trace (status, latency bucket, culprit) and metric point (against the forecast) is scored " +
    "by the model's surprise, plus novel inputs (error templates never seen, inputs the model is unsure of everywhere). Returns ranked " +
    "findings: service, time span, score, the signals that drove it, up to 5 evidence records (what the model expected, what happened) " +
    "and matching error signatures or past incidents from the version's knowledge card. Use it first when asked 'what is wrong now'; " +
    "then confirm a finding with logs, metrics and traces. An empty result says why (no data collected in the window, or nothing surprising).",
  scope: "read",
  input: z
    .object({
      agent: AgentName.optional(),
      since: Since.optional(),
      sources: z
        .array(z.enum(SCAN_SOURCES))
        .min(1)
        .max(SCAN_SOURCES.length)
        .optional()
        .describe("Which data to scan (default all): loki (logs), tempo (traces), prometheus (metrics)."),
      top_k: z.number().int().min(1).max(50).optional().describe("Most findings to return (default 10)."),
    })
    .strict(),
  output: z
    .object({
      agent: z.string(),
      version: z.string(),
      window: z.object({ start: z.string(), end: z.string() }).strict(),
      sources: z.array(z.enum(SCAN_SOURCES)),
      scanned: z.object({ logs: z.number(), traces: z.number(), series: z.number() }).strict(),
      findings: z.array(Finding),
      note: z.string().nullable(),
      took_ms: z.number(),
    })
    .strict(),
  annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
  async run(args, call, env) {
    const agent = call.agent(args.agent);
    const ctx = env.ctx;
    const { result } = await scanChampion(ctx.models, {
      config: ctx.config,
      store: ctx.store,
      registry: ctx.registry,
      agent,
      sinceMs: args.since ? (parseDuration(args.since) ?? undefined) : undefined,
      sources: args.sources,
      topK: args.top_k,
    });
    await saveScan(ctx.store, result);
    const { inferences: _i, at: _a, ...data } = result;
    const lines = [
      `${agent} scan by ${result.version}, ${result.window.start} to ${result.window.end}: ${result.scanned.logs} log lines, ${result.scanned.traces} traces, ${result.scanned.series} series in ${result.took_ms} ms`,
    ];
    if (result.note) lines.push(result.note);
    result.findings.forEach((f, i) => {
      lines.push(
        `${i + 1}. ${f.service} ${f.start.slice(11, 16)}-${f.end.slice(11, 16)} score ${f.score} (${f.signals.map((s) => s.signal).join(", ")})`,
      );
      for (const e of f.evidence.slice(0, 2))
        lines.push(
          `   ${e.source} ${e.record.slice(0, 160)} | expected ${Object.values(e.expected).join(", ")} | observed ${Object.values(e.observed).join(", ")}`,
        );
      for (const k of f.knowledge.slice(0, 2)) lines.push(`   card (${k.kind}): ${k.text.slice(0, 200)}`);
    });
    return { data, text: lines.join("\n") };
  },
});
