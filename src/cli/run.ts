// `trm-forge run | evaluate | models list|show|promote|rollback | report | schedule`: the pipeline
// from the command line. Exit codes: 0 done, 1 the work failed (or was cancelled, or the gate
// refused), 2 bad usage or config.
import { spawn } from "node:child_process";
import { hostname, userInfo } from "node:os";
import { join } from "node:path";
import type { Command } from "commander";
import type { Config } from "../config/index.js";
import { UsageError } from "../errors.js";
import { initBackend } from "../model/backend.js";
import { stageOutput } from "../pipeline/contract.js";
import { createPipeline } from "../pipeline/create.js";
import { ALIASES, type Alias, prunedEntry } from "../pipeline/deploy/registry.js";
import { evaluateVersion } from "../pipeline/evaluate.js";
import { reportKey, writeRunReport } from "../pipeline/report.js";
import {
  type Pipeline,
  type RunEvent,
  type RunRecord,
  STAGES,
  type StageName,
  type StartedRun,
} from "../pipeline/run.js";
import { scheduleStatus } from "../pipeline/schedule.js";
import { FsStore } from "../store/index.js";
import { cliFreeText } from "../util/text.js";
import { action, emit, loadCliConfig } from "./common.js";

function actor(): string {
  try {
    return `cli:${userInfo().username}@${hostname()}`;
  } catch {
    return "cli";
  }
}

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

function agentOf(config: Config, agent: string): string {
  if (!(agent in config.agents)) {
    const known = Object.keys(config.agents);
    throw new UsageError(
      `unknown agent "${agent}" (${known.length ? `configured: ${known.join(", ")}` : "no agents configured"})`,
    );
  }
  return agent;
}

// ---- progress -----------------------------------------------------------------------------

const fmtEta = (s: number | null) =>
  s === null || !Number.isFinite(s)
    ? "?"
    : s < 90
      ? `${Math.round(s)}s`
      : s < 5400
        ? `${Math.floor(s / 60)}m${Math.round(s % 60)}s`
        : `${(s / 3600).toFixed(1)}h`;

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
          ? `${p.step}/${p.total} loss ${m.loss.toFixed(4)} acc ${(m.token_accuracy ?? 0).toFixed(3)} exact ${(m.exact_accuracy ?? 0).toFixed(3)} eta ${fmtEta(p.eta_s)}`
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

/** Where a person can open a run's report: the file in a local store, else a copy in data_dir/reports. */
async function reportPath(pipeline: Pipeline, r: RunRecord, regenerate: boolean): Promise<string> {
  const key = reportKey(r.agent, r.id);
  if (regenerate || !(await pipeline.store.exists(key))) await writeRunReport(pipeline.store, r);
  if (pipeline.store instanceof FsStore) return pipeline.store.pathOf(key);
  const local = join(pipeline.config.data_dir, "reports", `${r.agent}-${r.id}.html`);
  await pipeline.store.getFile(key, local);
  return local;
}

function openFile(path: string): void {
  const cmd = process.platform === "darwin" ? "open" : process.platform === "win32" ? "explorer" : "xdg-open";
  try {
    const child = spawn(cmd, [path], { detached: true, stdio: "ignore" });
    child.on("error", () => undefined);
    child.unref();
  } catch {
    // The path is printed either way.
  }
}

// ---- commands -----------------------------------------------------------------------------

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
          const { result, key } = await evaluateVersion({
            config,
            store: pipeline.store,
            registry: pipeline.registry,
            agent,
            version: opts.version,
            against: opts.against === "none" ? null : opts.against,
            datasetId: opts.dataset,
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
            }
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

  const models =
    program.commands.find((c) => c.name() === "models") ??
    program.command("models").description("Model versions, aliases and comparisons");

  models
    .command("list")
    .description("An agent's model versions, newest last, with their gate result and aliases")
    .requiredOption("--agent <name>", "the agent")
    .option("--json", "print JSON")
    .action(
      action(async (opts: { agent: string; json?: boolean }, cmd: Command) => {
        const { config } = loadCliConfig(cmd);
        const agent = agentOf(config, opts.agent);
        const index = await createPipeline(config).registry.read(agent);
        emit(opts.json, index, () => {
          if (!index.versions.length) return `${agent} has no model versions yet`;
          const alias = (v: string) =>
            ALIASES.filter((a) => index.aliases[a] === v)
              .map((a) => `[${a}]`)
              .join(" ");
          return index.versions
            .map((v) => {
              const gate =
                v.gate_passed === null ? "not evaluated" : v.gate_passed ? "gate passed" : "gate FAILED";
              const scores = Object.entries(v.scores)
                .map(([t, s]) => `${t} ${pct(s)}`)
                .join(", ");
              return `${v.version}  ${gate.padEnd(13)} ${scores}${v.parent_version ? `  (from ${v.parent_version})` : ""} ${alias(v.version)}`.trimEnd();
            })
            .join("\n");
        });
      }),
    );

  models
    .command("show")
    .description("A version's manifest (artifacts with sha256, lineage, gate) and its model card")
    .requiredOption("--agent <name>", "the agent")
    .requiredOption("--version <version>", "a version id, or champion, challenger, latest")
    .option("--json", "print JSON")
    .action(
      action(async (opts: { agent: string; version: string; json?: boolean }, cmd: Command) => {
        const { config } = loadCliConfig(cmd);
        const agent = agentOf(config, opts.agent);
        const { registry } = createPipeline(config);
        // A pruned version: its registry entry and why it went, instead of a failure.
        const index = await registry.read(agent);
        const pruned = prunedEntry(index, opts.version);
        if (pruned) {
          const entry = index.versions.find((v) => v.version === opts.version);
          emit(opts.json, { version: entry, pruned }, () =>
            [
              `${agent} ${opts.version}: pruned by retention at ${pruned.at} (${pruned.rule}, by ${pruned.actor})`,
              `its files are deleted; its registry entry stays: created ${entry?.created_at}, run ${entry?.run_id ?? "-"}, gate ${entry?.gate_passed ?? "not evaluated"}`,
            ].join("\n"),
          );
          return;
        }
        const version = await registry.resolve(agent, opts.version);
        const manifest = await registry.getManifest(agent, version);
        const card = manifest.artifacts.some((a) => a.name === "card.md")
          ? (await registry.readArtifact(agent, version, "card.md", manifest)).toString("utf8")
          : null;
        emit(opts.json, { manifest, card }, () =>
          [
            card ?? `${agent} ${version}`,
            "artifacts:",
            ...manifest.artifacts.map(
              (a) => `  ${a.name.padEnd(20)} ${String(a.size).padStart(10)} B  sha256 ${a.sha256}`,
            ),
          ].join("\n"),
        );
      }),
    );

  models
    .command("promote")
    .description(
      "Point an alias (default champion) at a version; a version that failed its gate needs --force",
    )
    .requiredOption("--agent <name>", "the agent")
    .requiredOption("--version <version>", "the version to promote")
    .option("--alias <alias>", `${ALIASES.join(" or ")}`, "champion")
    .option("--force", "promote even though the version failed (or never had) its evaluation gate")
    .option("--reason <text>", "why, for the history", "promoted from the CLI")
    .option("--json", "print JSON")
    .action(
      action(
        async (
          opts: {
            agent: string;
            version: string;
            alias: string;
            force?: boolean;
            reason: string;
            json?: boolean;
          },
          cmd: Command,
        ) => {
          const { config } = loadCliConfig(cmd);
          const agent = agentOf(config, opts.agent);
          if (!ALIASES.includes(opts.alias as Alias))
            throw new UsageError(`--alias must be one of ${ALIASES.join(", ")}`);
          const { registry } = createPipeline(config);
          const moves = await registry.promote(agent, opts.version, {
            alias: opts.alias as Alias,
            actor: actor(),
            reason: cliFreeText(opts.reason, "--reason", 500, 3),
            force: opts.force,
          });
          emit(opts.json, { moves }, () =>
            moves.length
              ? moves
                  .map(
                    (m) =>
                      `${m.alias}: ${m.from ?? "(none)"} -> ${m.to ?? "(none)"}${m.forced ? " (forced past the gate)" : ""}`,
                  )
                  .join("\n")
              : `${opts.alias} already points at ${opts.version}`,
          );
        },
      ),
    );

  models
    .command("rollback")
    .description("Point champion back at the previous champion in the alias history")
    .requiredOption("--agent <name>", "the agent")
    .option("--reason <text>", "why, for the history", "rolled back from the CLI")
    .option("--json", "print JSON")
    .action(
      action(async (opts: { agent: string; reason: string; json?: boolean }, cmd: Command) => {
        const { config } = loadCliConfig(cmd);
        const agent = agentOf(config, opts.agent);
        const { registry } = createPipeline(config);
        const m = await registry.rollback(agent, {
          actor: actor(),
          reason: cliFreeText(opts.reason, "--reason", 500, 3),
        });
        emit(opts.json, { move: m }, () => `champion: ${m.from} -> ${m.to}`);
      }),
    );

  program
    .command("report")
    .description("Print the path of a run's report.html (written when the run ended; made now if missing)")
    .argument("<run-id>", "the run")
    .option("--agent <name>", "the run's agent (default: searched)")
    .option("--open", "also open it in the default browser")
    .option("--json", "print JSON")
    .action(
      action(
        async (runId: string, opts: { agent?: string; open?: boolean; json?: boolean }, cmd: Command) => {
          const { config } = loadCliConfig(cmd);
          const pipeline = createPipeline(config);
          const r = await pipeline.getRun(runId, opts.agent ? agentOf(config, opts.agent) : undefined);
          const path = await reportPath(pipeline, r, r.status === "running");
          emit(opts.json, { run_id: r.id, agent: r.agent, path }, () => path);
          if (opts.open) openFile(path);
        },
      ),
    );

  program
    .command("schedule")
    .description("The schedule: next and last run of each agent's collect and train jobs")
    .option("--json", "print JSON")
    .action(
      action(async (opts: { json?: boolean }, cmd: Command) => {
        const { config } = loadCliConfig(cmd);
        const pipeline = createPipeline(config);
        const jobs = await scheduleStatus(config, pipeline.store);
        emit(opts.json, { enabled: config.schedule.enabled, jobs }, () => {
          if (!jobs.length) return "no agents configured";
          const head = config.schedule.enabled ? "" : "the schedule is disabled (schedule.enabled: false)\n";
          return (
            head +
            jobs
              .map((j) => {
                const last = j.last.last_fired_at
                  ? `last ${j.last.last_fired_at} (${j.last.last_result ?? "?"}${j.last.last_run_id ? `, ${j.last.last_run_id}` : ""})`
                  : "never ran";
                const stagger = j.staggered_by_min ? ` +${j.staggered_by_min}m stagger` : "";
                return `${j.agent.padEnd(14)} ${j.job.padEnd(8)} ${`${j.pattern} ${j.timezone}`.padEnd(26)} next ${j.next_run ?? "–"}  ${last}${stagger}`;
              })
              .join("\n")
          );
        });
      }),
    );
}

const pct = (v: number) => (Number.isFinite(v) ? `${(v * 100).toFixed(1)}%` : "n/a");
