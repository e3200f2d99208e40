// anomalies_scan: ask the champion what in the agent's recent data it did not expect.
import * as z from "zod";
import { WorkError } from "../errors.js";
import {
  checkScanRequest,
  Finding,
  SCAN_SOURCES,
  type ScanResult,
  saveScan,
} from "../pipeline/scan/index.js";
import { scanChampion } from "../serve/scan.js";
import { requireScope } from "../server/auth.js";
import type { JobView } from "../server/jobs.js";
import { parseDuration } from "../util/duration.js";
import { AgentName, type Call, defineTool, jobLine, type ToolEnv } from "./common.js";

/**
 * Longest a scan waits for its collect: the call as a whole ends at CALL_LIMIT_MS (28 s), and the
 * scan itself needs the rest (an hour of a small homelab takes a few seconds).
 */
export const COLLECT_WAIT_MS = 15_000;
/** Progress units (of 100) the collect is given; the scan takes the rest. */
const COLLECT_SHARE = 90;

const CollectOut = z
  .object({
    job_id: z.string(),
    /** False when the agent's running collect was followed instead of starting one. */
    started: z.boolean(),
    status: z.string(),
    error: z.string().nullable(),
    records: z.number().nullable(),
  })
  .strict();
type CollectOut = z.infer<typeof CollectOut>;

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
    "then confirm a finding with logs, metrics and traces. An empty result says why (no data collected in the window, or nothing surprising). " +
    "collect: true first pulls what is new as a collect job (train scope), with progress.",
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
      collect: z
        .boolean()
        .optional()
        .describe(
          `First pull what is new from the agent's sources, as a collect job (needs the train scope, as data_collect does), then scan. ` +
            `Progress notifications follow the job when you pass a progressToken; after ${COLLECT_WAIT_MS / 1000} s the scan covers what is stored and names the job still running.`,
        ),
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
      collect: CollectOut.optional().describe("The collect job that ran first (collect: true)."),
    })
    .strict(),
  // Not read-only: collect: true starts a collect job against the agent's sources.
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true },
  async run(args, call, env) {
    const agent = call.agent(args.agent);
    const ctx = env.ctx;
    const sinceMs = args.since ? (parseDuration(args.since) ?? undefined) : undefined;
    let collect: CollectOut | undefined;
    let collectNote: string | null = null;
    if (args.collect) {
      requireScope(call.identity, "train", "anomalies_scan with collect: true (it starts a collect job)");
      // Bad arguments and a missing champion are answered before anything is collected.
      checkScanRequest(ctx.config, sinceMs, args.sources);
      if (ctx.models.model(agent)) ({ collect, note: collectNote } = await collectFirst(agent, call, env));
    }
    const { result } = await scanChampion(ctx.models, {
      config: ctx.config,
      store: ctx.store,
      registry: ctx.registry,
      agent,
      sinceMs,
      sources: args.sources,
      topK: args.top_k,
    });
    const scanNote = result.note;
    if (collectNote) result.note = scanNote ? `${collectNote}; ${scanNote}` : collectNote;
    await saveScan(ctx.store, result);
    if (collect && collect.status !== "succeeded" && collect.status !== "running")
      // The collect's failure is the answer; what was already stored is scanned all the same.
      throw new WorkError(`${collectNote}\n${scanText({ ...result, note: scanNote })}`);
    const text = scanText(result);
    await call.progress(100, 100, `scanned ${agent}: ${result.findings.length} findings`);
    const { inferences: _i, at: _a, ...data } = result;
    return { data: { ...data, ...(collect ? { collect } : {}) }, text };
  },
});

/**
 * Starts the agent's collect as a job (or follows the collect it already runs) and waits for it,
 * forwarding its progress, up to COLLECT_WAIT_MS. Returns the job and a note for the scan.
 */
async function collectFirst(
  agent: string,
  call: Call,
  env: ToolEnv,
): Promise<{ collect?: CollectOut; note: string | null }> {
  const jobs = env.ctx.jobs;
  const { started, job } = await jobs.startRun(agent, { kind: "collect", actor: call.actor });
  if (!started && job.kind !== "collect")
    // One run per agent: a training's own collect stage will pull the new data.
    return {
      note: `not collected: ${agent} already has ${job.kind} job ${job.job_id} running (one run per agent); this scan covers what is stored`,
    };
  const progress = (v: JobView) =>
    void call.progress((v.fraction ?? 0) * COLLECT_SHARE, 100, `collecting: ${jobLine(v)}`);
  const end = await jobs.follow(job.job_id, agent, {
    timeoutMs: COLLECT_WAIT_MS,
    signal: call.signal,
    onUpdate: progress,
  });
  if (call.signal.aborted)
    throw new WorkError(
      `anomalies_scan stopped before scanning; collect job ${job.job_id} goes on (job_status follows it, job_cancel stops it)`,
    );
  await call.progress(COLLECT_SHARE, 100, `collect job ${job.job_id} ${end.status}; scanning`);
  const pulled = (end.result?.collect as { records?: unknown } | undefined)?.records;
  const records = typeof pulled === "number" ? pulled : null;
  const collect: CollectOut = { job_id: job.job_id, started, status: end.status, error: end.error, records };
  const which = `${started ? "" : "the already running "}collect job ${job.job_id}`;
  if (end.status === "running")
    return {
      collect,
      note: `${which} still runs after ${COLLECT_WAIT_MS / 1000} s: this scan covers what was stored by then (job_status ${job.job_id} follows it; scan again when it ends)`,
    };
  if (end.status !== "succeeded")
    return {
      collect,
      note: `${which} ${end.status}${end.error ? `: ${end.error}` : ""}. Nothing new was pulled; the scan below covers what was already stored`,
    };
  return { collect, note: `collected first: ${which}, ${records ?? "?"} new records` };
}

function scanText(result: ScanResult): string {
  const lines = [
    `${result.agent} scan by ${result.version}, ${result.window.start} to ${result.window.end}: ${result.scanned.logs} log lines, ${result.scanned.traces} traces, ${result.scanned.series} series in ${result.took_ms} ms`,
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
  return lines.join("\n");
}
