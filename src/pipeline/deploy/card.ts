// The model card (card.md) stored with every version: what the model is, how it scored against
// the baselines and the champion, what data it saw, and what it cannot do.
import { pct } from "../../util/format.js";
import { formatInterval, type PairedInterval } from "../evaluate/bootstrap.js";
import type { EvaluationResult } from "../evaluate.js";
import type { Lineage } from "./registry.js";

export interface CardInput {
  agent: string;
  version: string;
  createdAt: string;
  model: {
    params: number;
    hidden_size: number;
    num_layers: number;
    H_cycles: number;
    L_cycles: number;
    halt_max_steps: number;
    vocab_size: number;
    seq_len: number;
  };
  training: {
    steps: number;
    best_step: number;
    stopped: string;
    seed: number;
    lr: number;
    batch_size: number;
    fine_tuned_from: string | null;
  } | null;
  dataset: {
    id: string;
    window: { start: string; end: string; split_at: string };
    counts: Record<string, { train: number; val: number }>;
    sources: Record<string, { enabled: boolean; segments: number }>;
  } | null;
  evaluation: EvaluationResult | null;
  promotedTo: string | null;
  lineage: Lineage;
}

type CardDataset = NonNullable<CardInput["dataset"]>;

/** The card's dataset section, from a built dataset's id and manifest. */
export function cardDataset(ds: {
  id: string;
  manifest: {
    window: CardDataset["window"];
    counts: { by_task: CardDataset["counts"] };
    sources: CardDataset["sources"];
  };
}): CardDataset {
  return {
    id: ds.id,
    window: ds.manifest.window,
    counts: ds.manifest.counts.by_task,
    sources: ds.manifest.sources,
  };
}

const TASK_WHAT: Record<string, string> = {
  code_infill: "fills masked spans of the agent's source files",
  log_triage:
    "reads a redacted log line and names its level, service and whether it is linked to an incident",
  metric_forecast: "forecasts the next points of a metric series (quantised)",
  trace_outcome: "reads a trace's call path and predicts its status, latency bucket and culprit service",
};

export function renderModelCard(c: CardInput): string {
  const e = c.evaluation;
  const lines: string[] = [];
  lines.push(`# ${c.agent} · TRM ${c.version}`, "");
  lines.push(
    `A Tiny Recursive Model (${(c.model.params / 1e6).toFixed(2)}M parameters: hidden ${c.model.hidden_size}, ${c.model.num_layers} layers, ` +
      `${c.model.H_cycles}×${c.model.L_cycles} recursions per step, up to ${c.model.halt_max_steps} supervision steps with learned halting) ` +
      `trained on ${c.agent}'s own homelab data. It answers fixed-format questions of ${Object.keys(e?.tasks ?? c.dataset?.counts ?? {}).length || "its"} tasks; ` +
      `it is not a language model. Created ${c.createdAt}.`,
    "",
  );
  for (const [task, what] of Object.entries(TASK_WHAT))
    if (e?.tasks[task] || c.dataset?.counts[task]) lines.push(`- **${task}**: ${what}.`);
  lines.push("");
  lines.push("## Verdict", "");
  if (!e) lines.push("Not evaluated: this version can only be promoted with force.");
  else {
    lines.push(
      `Gate **${e.gate.passed ? "passed" : "failed"}**; ${c.promotedTo ? `promoted to **${c.promotedTo}**` : "not promoted automatically"}.`,
      "",
    );
    for (const r of e.gate.reasons) lines.push(`- ${r}`);
  }
  lines.push("");
  if (e) {
    lines.push(`## Scores`, "");
    lines.push(
      `On ${e.examples} validation examples of dataset \`${e.dataset_id}\` (the newest days of its window, never trained on); ` +
        `the champion and the baselines answered the same examples.`,
      "",
    );
    const champ = e.champion ? `champion ${e.champion.version}` : "champion";
    lines.push(
      `| task | metric | this model | ${champ} | best baseline | − best baseline (95% CI) | − champion (95% CI) | examples |`,
      "|---|---|---|---|---|---|---|---|",
    );
    const ci = (iv: PairedInterval | null | undefined) => (iv ? formatInterval(iv) : "n/a");
    for (const t of Object.values(e.tasks)) {
      const b = t.best_baseline ? `${pct(t.baselines[t.best_baseline].score)} (${t.best_baseline})` : "n/a";
      lines.push(
        `| ${t.task}${t.enabled ? "" : " (disabled)"} | ${t.primary} | ${pct(t.candidate.score)} | ${t.champion ? pct(t.champion.score) : "n/a"} | ${b} | ${ci(t.intervals?.baseline)} | ${ci(t.intervals?.champion)} | ${t.examples}${t.judged ? "" : " (too few to judge)"} |`,
      );
    }
    lines.push(
      "",
      "Differences are this model's score minus the other's, with a paired bootstrap 95% interval over the same examples.",
    );
    if (e.probe?.variants.length) {
      lines.push(
        "",
        `Robustness (${e.probe.lines} ${e.probe.task} validation lines rewritten as agents paste them; exact_all clean → rewritten, level as served):`,
        "",
      );
      for (const v of e.probe.variants)
        lines.push(
          `- ${v.variant}: ${pct(v.clean.exact_all)} → ${pct(v.probe.exact_all)} on ${v.examples} lines; level ${pct(v.served_level_accuracy)}`,
        );
    }
    if (e.champion_note) lines.push("", `Note: ${e.champion_note}.`);
    for (const n of e.notes ?? []) lines.push("", `Note: ${n}.`);
    lines.push("");
  }
  lines.push("## Data", "");
  if (c.dataset) {
    const d = c.dataset;
    lines.push(
      `Dataset \`${d.id}\`: ${d.window.start} to ${d.window.end}, validation from ${d.window.split_at}.`,
      "",
    );
    lines.push("| task | train | val |", "|---|---|---|");
    for (const [t, n] of Object.entries(d.counts)) lines.push(`| ${t} | ${n.train} | ${n.val} |`);
    const srcs = Object.entries(d.sources)
      .map(([s, v]) => `${s} ${v.enabled ? `(${v.segments} segments)` : "(off)"}`)
      .join(", ");
    lines.push("", `Sources: ${srcs}. Secrets were redacted at collection, before anything was stored.`);
  } else lines.push("Unknown: the dataset was not recorded.");
  lines.push("");
  if (c.training) {
    const t = c.training;
    lines.push("## Training", "");
    lines.push(
      `${t.steps} steps (batch ${t.batch_size}, peak lr ${t.lr}, seed ${t.seed}), ${t.stopped === "early_stop" ? "stopped early" : "ran to the step limit"}; ` +
        `the weights are the EMA weights at step ${t.best_step}, the best validation score. ` +
        (t.fine_tuned_from ? `Fine-tuned from ${t.fine_tuned_from}.` : "Trained from scratch."),
      "",
    );
  }
  lines.push("## Limits", "");
  lines.push(
    "- It only knows the services, log shapes and metric series that were in its window; a new service gets a fresh token it has never learned.",
    "- Scores come from the last days of one window; behaviour drifts as the homelab changes, which is why it is retrained monthly and gated against the champion.",
    `- Answers are bounded to ${c.model.seq_len} tokens of input; longer inputs are truncated by the task encoders.`,
  );
  if (e) {
    const h = e.halting.candidate;
    lines.push(
      `- It halts on its own confidence: answers took ${h.mean.toFixed(2)} of at most ${h.max_steps} steps on average; a confident answer can still be wrong.`,
    );
    const unjudged = Object.values(e.tasks).filter((t) => t.enabled && !t.judged);
    if (unjudged.length)
      lines.push(
        `- Too few validation examples to judge: ${unjudged.map((t) => `${t.task} (${t.examples})`).join(", ")}.`,
      );
  }
  lines.push("");
  lines.push("## Lineage", "");
  lines.push(
    `- run: ${c.lineage.run_id ?? "n/a"}`,
    `- dataset: ${c.lineage.dataset_id ?? "n/a"} (${c.lineage.raw_segments.length} raw segments, each with its sha256 in the manifest)`,
    `- code: ${c.lineage.code_version}`,
    `- parent: ${c.lineage.parent_version ?? "none (from scratch)"}`,
    "",
  );
  return lines.join("\n");
}
