import type { Command } from "commander";
import { UsageError } from "../errors.js";
import { initBackend } from "../model/backend.js";
import { stageOutput } from "../pipeline/contract.js";
import { createPipeline } from "../pipeline/create.js";
import { formatInterval } from "../pipeline/evaluate/bootstrap.js";
import { evaluateVersion, evaluationTarget } from "../pipeline/evaluate/version.js";
import { type RunEvent, type RunRecord, STAGES, type StageName, type StartedRun } from "../pipeline/run.js";
import { formatEta, pct } from "../util/format.js";
import { action, emit, loadCliConfig } from "./common.js";
import { actor, agentOf } from "./context.js";
import { reportPath } from "./report.js";

function parseStages(v: string | undefined): StageName[] | undefined {
  if (!v) return undefined;
  const out = v
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  for (const s of out)
    if (!STAGES.includes(s as StageName))
      throw new UsageError(`--stages: "${s}" is not one of ${STAGES.join(", ")}`);
  return out as StageName[];
}

// ---- progress -----------------------------------------------------------------------------

/**
 * On a TTY, one redrawn progress line (bar, step, loss, accuracy, ETA) plus a line per stage. Off
 * a TTY, one JSON line per event (the Kubernetes Job runner reads these from the pod's log).
 */
export function progressPrinter(out: NodeJS.WriteStream = process.stderr): (e: RunEvent) => void {
  const tty = Boolean(out.isTTY);
  let last = 0;
  let drawn = false;
  const clear = () => {
    if (drawn) out.write("\r\x1b[K");
    drawn = false;
  };
  return (e: RunEvent) => {
    if (!tty) {
      if (e.type === "progress") {
        const p = e.progress;
        out.write(
          `${JSON.stringify({
            type: "progress",
            run: e.runId,
            stage: p.stage,
            message: p.message,
            ...(p.step !== null ? { step: p.step } : {}),
            ...(p.total !== null ? { total_steps: p.total } : {}),
            ...(p.eta_s !== null ? { eta_s: Math.round(p.eta_s) } : {}),
            ...p.metrics,
          })}\n`,
        );
      } else if (e.type === "log") out.write(`${JSON.stringify({ type: "log", run: e.runId, ...e.line })}\n`);
      else out.write(`${JSON.stringify(e)}\n`);
      return;
    }
    if (e.type === "progress") {
      // Training's own events (validation, checkpoint) show as log lines, not in the bar.
      if (e.progress.stage === "train" && e.progress.metrics.loss === undefined) return;
      const now = Date.now();
      if (now - last < 100) return;
      last = now;
      const p = e.progress;
      const frac = p.step !== null && p.total ? Math.min(1, p.step / p.total) : null;
      const bar =
        frac === null
          ? ""
          : `${"█".repeat(Math.round(frac * 24)).padEnd(24, "░")} ${(frac * 100).toFixed(0).padStart(3)}% `;
      const m = p.metrics;
      const stats =
        p.stage === "train" && m.loss !== undefined
          ? `${p.step}/${p.total} loss ${m.loss.toFixed(4)} acc ${(m.token_accuracy ?? 0).toFixed(3)} exact ${(m.exact_accuracy ?? 0).toFixed(3)} eta ${formatEta(p.eta_s)}`
          : p.message;
      clear();
      out.write(`[${p.stage}] ${bar}${stats}`.slice(0, (out.columns ?? 120) - 1));
      drawn = true;
    } else if (e.type === "stage") {
      if (e.status === "running") return;
      clear();
      const mark =
        e.status === "succeeded" ? "✓" : e.status === "partial" ? "~" : e.status === "skipped" ? "-" : "✗";
      out.write(`${mark} ${e.stage} ${e.status}${e.error ? `: ${e.error}` : ""}\n`);
    } else if (e.type === "retry") {
      clear();
      out.write(
        `! ${e.stage} attempt ${e.attempt} failed (${e.error}); retrying in ${Math.round(e.delay_ms / 1000)}s\n`,
      );
    } else if (e.type === "log" && e.line.level === "warn") {
      clear();
      out.write(`${e.line.level}: ${e.line.msg}\n`);
    } else if (e.type === "run" && e.status !== "running") clear();
  };
}

function runSummary(r: RunRecord, reportPath: string | null): string {
  const lines = [`run ${r.id} (${r.agent}): ${r.status}${r.error ? `: ${r.error}` : ""}`];
  for (const s of r.stages) {
    if (!s.requested) continue;
    const took =
      s.started_at && s.ended_at
        ? ` in ${((Date.parse(s.ended_at) - Date.parse(s.started_at)) / 1000).toFixed(1)}s`
        : "";
    const tries = s.attempts.length > 1 ? ` (${s.attempts.length} attempts)` : "";
    lines.push(`  ${s.name.padEnd(9)} ${s.status}${took}${tries}${s.error ? `: ${s.error}` : ""}`);
  }
  const ev = stageOutput(r, "evaluate");
  if (ev?.gate) {
    lines.push(`gate ${ev.gate.passed ? "passed" : "FAILED"}:`);
    for (const reason of ev.gate.reasons) lines.push(`  - ${reason}`);
  }
  const dep = stageOutput(r, "deploy");
  if (dep?.version)
    lines.push(
      `model version ${dep.version}${dep.promoted_to ? ` is now ${dep.promoted_to}` : " (not promoted)"}`,
    );
  if (reportPath) lines.push(`report: ${reportPath}`);
  return lines.join("\n");
}

interface RunOpts {
  agent: string;
  stages?: string;
  resume?: string;
  fromScratch?: boolean;
  dataset?: string;
  json?: boolean;
}

export function registerRunCommands(program: Command): void {
  program
    .command("run")
    .description(
      "Run the pipeline for an agent: collect, build, train, evaluate, deploy. An interrupted run of the agent is resumed first",
    )
    .requiredOption("--agent <name>", "the agent (a key of `agents` in the config)")
    .option("--stages <list>", `comma-separated stages to run (${STAGES.join(",")})`)
    .option(
      "--resume <run-id>",
      "continue this run from its first unfinished stage (with --stages: run just those stages of it)",
    )
    .option("--from-scratch", "train fresh weights instead of fine-tuning the champion")
    .option("--dataset <id>", "train and evaluate on this dataset instead of the newest")
    .option("--json", "print the final run record as JSON on stdout")
    .action(
      action(async (opts: RunOpts, cmd: Command) => {
        const { config } = loadCliConfig(cmd);
        const agent = agentOf(config, opts.agent);
        const stages = parseStages(opts.stages);
        const pipeline = createPipeline(config);
        const onEvent = progressPrinter();
        const trigger = { kind: "cli" as const, actor: actor(), reason: null };
        let started: StartedRun;
        if (opts.resume) {
          started = await pipeline.startRun({ agent, resume: opts.resume, stages, onEvent, trigger });
        } else {
          const resumed = await pipeline.resumeInterrupted({ agents: [agent], onEvent });
          if (resumed.length) process.stderr.write(`resuming the interrupted run ${resumed[0].runId}\n`);
          started =
            resumed[0] ??
            (await pipeline.startRun({
              agent,
              stages,
              fromScratch: opts.fromScratch,
              datasetId: opts.dataset,
              onEvent,
              trigger,
            }));
        }
        if (!started.started) {
          const r = await pipeline.getRun(started.runId, agent).catch(() => null);
          if (r && r.status !== "running") {
            emit(opts.json, r, () => runSummary(r, null));
            return r.status === "succeeded" ? 0 : 1;
          }
          emit(
            opts.json,
            { run_id: started.runId, started: false, status: "running" },
            () => `agent ${agent} already has a run in progress: ${started.runId}`,
          );
          return 0;
        }
        let stops = 0;
        const stop = () => {
          stops++;
          if (stops > 1) process.exit(130);
          process.stderr.write("\nstopping at the next step boundary (again to kill)\n");
          void pipeline.cancel(started.runId, agent);
        };
        process.on("SIGINT", stop);
        process.on("SIGTERM", stop);
        try {
          const r = await started.done;
          const worker = Boolean(opts.resume && stages?.length);
          const path = worker ? null : await reportPath(pipeline, r, false).catch(() => null);
          emit(opts.json, r, () => runSummary(r, path));
          return r.status === "succeeded" ? 0 : 1;
        } finally {
          process.off("SIGINT", stop);
          process.off("SIGTERM", stop);
        }
      }),
    );

  program
    .command("evaluate")
    .description(
      "Score a model version on the frozen validation set, per task, against the champion and the baselines",
    )
    .requiredOption("--agent <name>", "the agent")
    .requiredOption("--version <version>", "a version id, or champion, challenger, latest")
    .option("--against <ref>", "compare with this version or alias; none to skip", "champion")
    .option("--dataset <id>", "the dataset whose validation split to use (default: the newest)")
    .option("--json", "print the evaluation as JSON")
    .action(
      action(
        async (
          opts: { agent: string; version: string; against: string; dataset?: string; json?: boolean },
          cmd: Command,
        ) => {
          const { config } = loadCliConfig(cmd);
          const agent = agentOf(config, opts.agent);
          await initBackend(config.model.backend);
          const pipeline = createPipeline(config);
          const { result, key } = await evaluateVersion(pipeline, {
            agent,
            target: await evaluationTarget(pipeline.registry, agent, opts.version, opts.against),
            datasetId: opts.dataset,
            trigger: { kind: "cli", actor: actor(), reason: null },
          });
          emit(opts.json, { ...result, stored_at: key }, () => {
            const lines = [
              `${agent} ${result.candidate.label} on ${result.examples} validation examples of ${result.dataset_id}${result.champion ? `, against ${result.champion.version}` : ""}:`,
            ];
            for (const t of Object.values(result.tasks)) {
              const b = t.best_baseline ? t.baselines[t.best_baseline].score : null;
              lines.push(
                `  ${t.task.padEnd(16)} ${t.primary} ${pct(t.candidate.score)}  champion ${t.champion ? pct(t.champion.score) : "–"}  baseline ${b === null ? "–" : `${pct(b)} (${t.best_baseline})`}  n=${t.examples}`,
              );
              const iv = t.intervals;
              if (iv?.baseline || iv?.champion)
                lines.push(
                  `  ${"".padEnd(16)} 95% paired intervals: ${[
                    iv.baseline ? `- ${iv.baseline.against} ${formatInterval(iv.baseline)}` : "",
                    iv.champion ? `- champion ${formatInterval(iv.champion)}` : "",
                  ]
                    .filter(Boolean)
                    .join("  ")}`,
                );
            }
            for (const v of result.probe?.variants ?? [])
              lines.push(
                `  probe ${v.variant.padEnd(16)} ${v.examples} log lines: exact_all ${pct(v.clean.exact_all)} clean -> ${pct(v.probe.exact_all)}, level ${pct(v.clean.level_accuracy)} -> ${pct(v.probe.level_accuracy)} (served ${pct(v.served_level_accuracy)})`,
              );
            lines.push(
              `gate ${result.gate.passed ? "passed" : "FAILED"}:`,
              ...result.gate.reasons.map((r) => `  - ${r}`),
              `stored at ${key}`,
            );
            return lines.join("\n");
          });
          return result.gate.passed ? 0 : 1;
        },
      ),
    );
}
