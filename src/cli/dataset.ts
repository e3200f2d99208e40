// `trm-forge dataset build|show|export`: turn the raw store into the tasks' examples, read the
// quality report with a few decoded examples, and write the reference TRM repository's format.
import { resolve } from "node:path";
import type { Command } from "commander";
import { UsageError } from "../errors.js";
import {
  buildAgentDataset,
  type Dataset,
  DatasetQualityError,
  exportTrmNpy,
  type Manifest,
  openDataset,
  type QualityReport,
} from "../pipeline/dataset/index.js";
import { TASK_NAMES, TASKS, type TaskName } from "../pipeline/tasks/index.js";
import { openStore } from "../store/index.js";
import { action, durationOption, emit, loadCliConfig, parseIntOption } from "./common.js";

interface BuildOpts {
  agent: string;
  window?: string;
  json?: boolean;
}

function num(x: number): string {
  return Number.isInteger(x) ? String(x) : x.toFixed(3);
}

function qualityText(q: QualityReport): string[] {
  const lines: string[] = [];
  for (const name of TASK_NAMES) {
    const t = q.tasks[name];
    if (!t) continue;
    if (t.status === "skipped") {
      lines.push(`${name}: skipped (${t.reason})`);
      continue;
    }
    const invalid = t.records_read - t.records_valid;
    lines.push(
      `${name}: ${t.examples.train} train, ${t.examples.val} validation (split by ${t.split_by}); ` +
        `${t.records_read} records read, ${invalid} invalid`,
    );
    for (const i of t.invalid.slice(0, 5))
      lines.push(`  invalid: ${i.count} × ${i.reason}${i.examples.length ? ` (e.g. ${i.examples[0]})` : ""}`);
    const skipped = Object.entries(t.skipped);
    if (skipped.length) lines.push(`  skipped: ${skipped.map(([r, n]) => `${n} × ${r}`).join("; ")}`);
    if (t.dropped_as_leaks)
      lines.push(`  ${t.dropped_as_leaks} train examples dropped: same input in validation`);
    if (t.val_inputs_seen_in_train)
      lines.push(`  ${t.val_inputs_seen_in_train} validation examples have an input train also holds`);
    for (const [label, dist] of Object.entries(t.label_distribution)) {
      const top = Object.entries(dist).slice(0, 6);
      const rest = Object.keys(dist).length - top.length;
      lines.push(
        `  ${label}: ${top.map(([k, n]) => `${k} ${n}`).join(", ")}${rest > 0 ? `, +${rest} more` : ""}`,
      );
    }
    for (const [b, m] of Object.entries(t.baselines)) {
      const others = Object.entries(m)
        .filter(([k]) => k !== t.primary_metric)
        .map(([k, v]) => `${k} ${num(v)}`)
        .join(", ");
      lines.push(
        `  baseline ${b}${b === t.best_baseline ? " (to beat)" : ""}: ${t.primary_metric} ${num(m[t.primary_metric])} (${others})`,
      );
    }
  }
  if (q.failures.length) lines.push(...q.failures.map((f) => `FAILED: ${f}`));
  return lines;
}

function summary(m: Manifest): string[] {
  return [
    `dataset ${m.id} (agent ${m.agent})`,
    `window ${m.window.start} .. ${m.window.end}; validation from ${m.window.split_at} (${Math.round(m.split.val_fraction * 100)}%)`,
    `${m.counts.train} train, ${m.counts.val} validation examples; seq_len ${m.seq_len}; ` +
      `vocabulary ${m.vocab.size} tokens (revision ${m.vocab.revision}); ${m.incidents} incident windows; ` +
      `${m.segments.length} raw segments`,
  ];
}

function decodedExamples(
  ds: Dataset,
  perTask: number,
): Record<string, { input: string; labels: Record<string, string> }[]> {
  const out: Record<string, { input: string; labels: Record<string, string> }[]> = {};
  for (const name of TASK_NAMES) {
    const idx = ds.val.indicesOf(name);
    if (!idx.length) continue;
    // Spread the picks over the split rather than taking the first minutes.
    const picks = Array.from({ length: Math.min(perTask, idx.length) }, (_, i) =>
      Math.floor((i * idx.length) / Math.min(perTask, idx.length)),
    );
    out[name] = picks.map((p) => TASKS[name as TaskName].describe(ds.val.example(idx[p]), ds.vocab));
  }
  return out;
}

export function registerDatasetCommands(program: Command): void {
  const dataset = program
    .command("dataset")
    .description("Build training examples from the raw store, inspect their quality, export them");

  dataset
    .command("build")
    .description(
      "Build the agent's dataset from the raw store: the four tasks, the time split (newest 20% is validation), " +
        "the quality report; fails when too few records are valid or a task has too few examples",
    )
    .requiredOption("--agent <name>", "agent whose raw data to read")
    .option(
      "--window <duration>",
      "how much raw data to read, ending at the newest collection (default: dataset.window)",
    )
    .option("--json", "print the result as JSON")
    .action(
      action(async (opts: BuildOpts, cmd: Command) => {
        const { config } = loadCliConfig(cmd);
        const windowMs = opts.window ? durationOption(opts.window) : undefined;
        if (windowMs !== undefined && windowMs < 86_400_000)
          throw new UsageError("--window must be at least 1d");
        try {
          const res = await buildAgentDataset(config, opts.agent, { windowMs });
          const m = res.manifest;
          emit(
            opts.json,
            {
              id: res.id,
              reused: res.reused,
              prefix: res.prefix,
              window: m.window,
              counts: m.counts,
              quality: m.quality,
            },
            () =>
              [
                ...summary(m),
                res.reused ? "(already built from the same data and config; kept as it was)" : "",
                ...qualityText(m.quality),
              ]
                .filter(Boolean)
                .join("\n"),
          );
        } catch (err) {
          if (err instanceof DatasetQualityError) {
            if (opts.json) emit(true, { error: err.message, quality: err.report }, () => "");
            else process.stderr.write(`${qualityText(err.report).join("\n")}\n`);
          }
          throw err;
        }
      }),
    );

  dataset
    .command("show")
    .description(
      "The quality report of a dataset (the newest by default) and a few decoded validation examples",
    )
    .argument("[id]", "dataset id (default: the newest)")
    .requiredOption("--agent <name>", "agent")
    .option("--examples <n>", "decoded examples per task", parseIntOption("--examples"), 3)
    .option("--json", "print the result as JSON")
    .action(
      action(
        async (
          id: string | undefined,
          opts: { agent: string; examples: number; json?: boolean },
          cmd: Command,
        ) => {
          const { config } = loadCliConfig(cmd);
          const ds = await openDataset(openStore(config), opts.agent, id);
          const examples = decodedExamples(ds, Math.max(0, opts.examples));
          emit(opts.json, { manifest: ds.manifest, examples }, () => {
            const lines = [...summary(ds.manifest), "", ...qualityText(ds.manifest.quality)];
            for (const [task, list] of Object.entries(examples)) {
              lines.push("", `${task}, validation examples:`);
              for (const e of list) {
                lines.push(`  ${JSON.stringify(e.input)}`);
                lines.push(
                  `    -> ${Object.entries(e.labels)
                    .map(([k, v]) => `${k}: ${v}`)
                    .join(", ")}`,
                );
              }
            }
            return lines.join("\n");
          });
        },
      ),
    );

  dataset
    .command("export")
    .description(
      "Write a dataset in the official TRM repository's layout (train/ and test/ with all__*.npy and dataset.json), " +
        "so the PyTorch code can train on the same data",
    )
    .argument("<dir>", "output directory")
    .requiredOption("--agent <name>", "agent")
    .option("--id <id>", "dataset id (default: the newest)")
    .requiredOption("--format <format>", "export format: trm-npy")
    .option("--json", "print the result as JSON")
    .action(
      action(
        async (
          dir: string,
          opts: { agent: string; id?: string; format: string; json?: boolean },
          cmd: Command,
        ) => {
          if (opts.format !== "trm-npy")
            throw new UsageError(`--format must be trm-npy, got "${opts.format}"`);
          const { config } = loadCliConfig(cmd);
          const ds = await openDataset(openStore(config), opts.agent, opts.id);
          const res = await exportTrmNpy(ds, resolve(dir));
          emit(
            opts.json,
            { id: ds.id, ...res },
            () =>
              `wrote ${res.dir}: train ${res.train.total_puzzles} and test ${res.test.total_puzzles} examples, ` +
              `seq_len ${res.train.seq_len}, vocab_size ${res.train.vocab_size}`,
          );
        },
      ),
    );
}
