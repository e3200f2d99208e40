// Model tools: the registry (versions, aliases, history), cards, evaluation (a job), side-by-side
// comparison, and the two alias moves: promote and roll back.
import * as z from "zod";
import {
  ALIASES,
  type AliasMove,
  GateRefusedError,
  type RegistryIndex,
} from "../pipeline/deploy/registry.js";
import { formatInterval } from "../pipeline/evaluate/bootstrap.js";
import { compareVersions, comparisonPair, comparisonSummary, TaskRow } from "../pipeline/evaluate/compare.js";
import { evaluationTarget } from "../pipeline/evaluate/version.js";
import { readShadowReport, type ShadowReport } from "../serve/index.js";
import {
  AgentName,
  bounded,
  type Call,
  defineTool,
  jobText,
  pct,
  Reason,
  type ToolEnv,
  VersionRef,
  WaitS,
  waitForJob,
} from "./common.js";
import { StartedJobOut } from "./data.js";

const ServedOut = z
  .object({
    champion: z.string().nullable(),
    challenger: z.string().nullable(),
    last_failure: z.string().nullable(),
  })
  .strict();

const MoveOut = z
  .object({
    seq: z.number().int(),
    at: z.string(),
    alias: z.enum(ALIASES),
    from: z.string().nullable(),
    to: z.string().nullable(),
    action: z.enum(["promote", "rollback", "clear"]),
    actor: z.string(),
    reason: z.string(),
    forced: z.boolean(),
  })
  .strict();

function served(env: ToolEnv, agent: string): z.infer<typeof ServedOut> {
  const s = env.ctx.models.status().find((x) => x.agent === agent);
  return {
    champion: s?.champion?.version ?? null,
    challenger: s?.challenger?.version ?? null,
    last_failure: s?.last_failure ? `${s.last_failure.to}: ${s.last_failure.error}` : null,
  };
}

/** Brings the served models in line with the registry now (bounded), so the answer shows the swap. */
async function swapNow(env: ToolEnv, agent: string, call: Call): Promise<void> {
  const models = env.ctx.models;
  const work = models.agents().includes(agent)
    ? models.reconcile(agent)
    : env.ctx.config.serve.agents.length === 0
      ? models.serveAgent(agent)
      : Promise.resolve();
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    work.catch(() => undefined),
    new Promise((r) => {
      timer = setTimeout(r, 20_000);
      call.signal.addEventListener("abort", r, { once: true });
    }),
  ]);
  clearTimeout(timer);
}

function aliasesOf(index: RegistryIndex, version: string): string[] {
  return ALIASES.filter((a) => index.aliases[a] === version);
}

export const modelsList = defineTool({
  name: "models_list",
  title: "List model versions",
  description:
    "The agent's registered model versions (newest first) with their gate verdict and headline score per task, which version is champion and challenger, " +
    "what this server is serving, and the latest alias moves (who promoted or rolled back what, and why). " +
    "Start here before model_compare, model_promote or model_rollback; model_card tells more about one version.",
  scope: "read",
  input: z
    .object({
      agent: AgentName.optional(),
      limit: z
        .number()
        .int()
        .min(1)
        .max(100)
        .default(20)
        .describe("Versions to return, newest first (1-100)."),
      history_limit: z
        .number()
        .int()
        .min(0)
        .max(100)
        .default(10)
        .describe("Alias moves to return, newest first (0-100)."),
    })
    .strict(),
  output: z
    .object({
      agent: z.string(),
      aliases: z.object({ champion: z.string().nullable(), challenger: z.string().nullable() }).strict(),
      versions: z.array(
        z
          .object({
            version: z.string(),
            created_at: z.string(),
            gate_passed: z.boolean().nullable(),
            scores: z.record(z.string(), z.number()),
            parent_version: z.string().nullable(),
            run_id: z.string().nullable(),
            aliases: z.array(z.enum(ALIASES)),
          })
          .strict(),
      ),
      total_versions: z.number().int(),
      truncated: z.boolean(),
      history: z.array(MoveOut),
      history_truncated: z.boolean(),
      served: ServedOut,
    })
    .strict(),
  annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
  async run(args, call, env) {
    const agent = call.agent(args.agent);
    const index = await env.ctx.registry.read(agent);
    const versions = [...index.versions]
      .reverse()
      .slice(0, args.limit)
      .map((v) => ({
        version: v.version,
        created_at: v.created_at,
        gate_passed: v.gate_passed,
        scores: v.scores,
        parent_version: v.parent_version,
        run_id: v.run_id,
        aliases: ALIASES.filter((a) => index.aliases[a] === v.version),
      }));
    const history = [...index.history].reverse().slice(0, args.history_limit);
    const s = served(env, agent);
    const text = index.versions.length
      ? [
          `${agent}: champion ${index.aliases.champion ?? "–"}, challenger ${index.aliases.challenger ?? "–"}; serving ${s.champion ?? "nothing"}${s.last_failure ? ` (last swap failed: ${s.last_failure})` : ""}`,
          ...versions.map(
            (v) =>
              `  ${v.version} ${v.gate_passed === null ? "not evaluated" : v.gate_passed ? "gate passed" : "gate FAILED"} ${Object.entries(
                v.scores,
              )
                .map(([t, x]) => `${t} ${pct(x)}`)
                .join(", ")}${v.aliases.length ? ` [${v.aliases.join(", ")}]` : ""}`,
          ),
          ...(index.versions.length > versions.length
            ? [`  (${index.versions.length - versions.length} older versions left out)`]
            : []),
          ...history.map(
            (m) =>
              `  #${m.seq} ${m.at} ${m.alias}: ${m.from ?? "–"} -> ${m.to ?? "–"} (${m.action} by ${m.actor}${m.forced ? ", forced" : ""}): ${m.reason}`,
          ),
        ].join("\n")
      : `${agent} has no model versions yet: training_start trains and registers one.`;
    return {
      data: {
        agent,
        aliases: index.aliases,
        versions,
        total_versions: index.versions.length,
        truncated: index.versions.length > versions.length,
        history,
        history_truncated: index.history.length > history.length,
        served: s,
      },
      text,
    };
  },
});

export const modelCard = defineTool({
  name: "model_card",
  title: "Model card",
  description:
    "A version's model card (what it was trained on, how it scored per task against the baselines and the champion, the gate's reasons, lineage) " +
    "or, with part: knowledge, the knowledge card its Ollama model was given (service topology, error signatures, metric baselines). " +
    "Read it before promoting, or to explain a version to a person.",
  scope: "read",
  input: z
    .object({
      agent: AgentName.optional(),
      version: VersionRef.default("champion"),
      part: z.enum(["card", "knowledge"]).default("card"),
      max_chars: z
        .number()
        .int()
        .min(200)
        .max(50_000)
        .default(6000)
        .describe("Longest text returned (200-50000)."),
    })
    .strict(),
  output: z
    .object({
      agent: z.string(),
      version: z.string(),
      part: z.enum(["card", "knowledge"]),
      text: z.string(),
      chars: z.number().int(),
      truncated: z.boolean(),
      created_at: z.string(),
      created_by: z.string(),
      gate: z
        .object({ passed: z.boolean(), reasons: z.array(z.string()) })
        .strict()
        .nullable(),
      scores: z.record(z.string(), z.number()),
      lineage: z
        .object({
          run_id: z.string().nullable(),
          dataset_id: z.string().nullable(),
          parent_version: z.string().nullable(),
          code_version: z.string(),
        })
        .strict(),
      artifacts: z.array(z.object({ name: z.string(), size: z.number().int() }).strict()),
    })
    .strict(),
  annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
  async run(args, call, env) {
    const agent = call.agent(args.agent);
    const registry = env.ctx.registry;
    const version = await registry.resolve(agent, args.version);
    const m = await registry.getManifest(agent, version);
    const name = args.part === "card" ? "card.md" : "knowledge.md";
    const full = (await registry.readArtifact(agent, version, name, m)).toString("utf8");
    const cut = bounded(full, args.max_chars);
    return {
      data: {
        agent,
        version,
        part: args.part,
        text: cut.text,
        chars: full.length,
        truncated: cut.truncated,
        created_at: m.created_at,
        created_by: m.created_by,
        gate: m.gate,
        scores: m.scores,
        lineage: {
          run_id: m.lineage.run_id,
          dataset_id: m.lineage.dataset_id,
          parent_version: m.lineage.parent_version,
          code_version: m.lineage.code_version,
        },
        artifacts: m.artifacts.map((a) => ({ name: a.name, size: a.size })),
      },
      text: cut.truncated
        ? `${cut.text}\n… (${full.length - cut.text.length} more characters: raise max_chars)`
        : cut.text,
    };
  },
});

export const modelEvaluate = defineTool({
  name: "model_evaluate",
  title: "Evaluate a version (job)",
  description:
    "Starts a job that scores a registered version on a frozen validation set (the newest dataset's, or dataset_id), per task, beside each task's baselines " +
    "and another version (default: the champion) on the same examples, then runs the gate. Returns the job at once. It is a run of the pipeline (its evaluate stage alone): " +
    "one run per agent at a time, so while the agent trains or evaluates, that job is returned instead. " +
    "Next: job_status (the result has the gate verdict and scores), then model_compare to see the two side by side.",
  scope: "train",
  input: z
    .object({
      agent: AgentName.optional(),
      version: VersionRef.default("latest"),
      against: z
        .union([VersionRef, z.literal("none")])
        .default("champion")
        .describe("Version or alias to score on the same examples; none for baselines only."),
      dataset_id: z
        .string()
        .regex(/^ds-\d{8}-[0-9a-f]{12}$/, "a dataset id such as ds-20260101-0123456789ab")
        .optional(),
      wait_s: WaitS,
    })
    .strict(),
  output: StartedJobOut,
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false },
  async run(args, call, env) {
    const agent = call.agent(args.agent);
    const { version, against } = await evaluationTarget(env.ctx.registry, agent, args.version, args.against);
    const { started, job } = await env.ctx.jobs.startEvaluation(agent, {
      version,
      against,
      datasetId: args.dataset_id,
      actor: call.actor,
    });
    const now = await waitForJob(env, call, job, args.wait_s);
    return {
      data: { started, job: now },
      text: `${started ? "started" : `not started: ${agent} already has a ${job.kind} job running, returned here`}\n${jobText(now)}`,
    };
  },
});

const VersionInfo = z
  .object({
    version: z.string(),
    aliases: z.array(z.enum(ALIASES)),
    created_at: z.string(),
    gate_passed: z.boolean().nullable(),
    parent_version: z.string().nullable(),
  })
  .strict();

export const modelCompare = defineTool({
  name: "model_compare",
  title: "Compare two versions",
  description:
    "Two versions side by side, per task: the primary metric of each, the difference, which is better, and the best baseline. " +
    "The numbers come from one evaluation of both on the same validation examples when one exists (the training run's, or a model_evaluate run's); " +
    "otherwise from each version's own evaluation, which the answer says. With champion and challenger it adds the live shadow comparison " +
    "(agreement on real queries). Defaults: a = champion, b = challenger (else the newest version). Next: model_promote or model_rollback.",
  scope: "read",
  input: z
    .object({
      agent: AgentName.optional(),
      a: VersionRef.default("champion"),
      b: VersionRef.optional().describe("Default: the challenger, else the newest version."),
    })
    .strict(),
  output: z
    .object({
      agent: z.string(),
      a: VersionInfo,
      b: VersionInfo,
      basis: z.enum(["same_examples", "separate_evaluations"]),
      dataset_id: z.string().nullable(),
      tasks: z.array(TaskRow),
      shadow: z
        .object({
          since: z.string(),
          dropped: z.number().int(),
          tasks: z.array(
            z
              .object({
                task: z.string(),
                shadowed: z.number().int(),
                agreement: z.number(),
                challenger_errors: z.number().int(),
              })
              .strict(),
          ),
        })
        .strict()
        .nullable(),
      summary: z.string(),
    })
    .strict(),
  annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
  async run(args, call, env) {
    const agent = call.agent(args.agent);
    const registry = env.ctx.registry;
    const index = await registry.read(agent);
    const { a, b } = await comparisonPair(registry, agent, index, args);
    const info = (v: string) => {
      const e = index.versions.find((x) => x.version === v)!;
      return {
        version: v,
        aliases: aliasesOf(index, v) as (typeof ALIASES)[number][],
        created_at: e.created_at,
        gate_passed: e.gate_passed,
        parent_version: e.parent_version,
      };
    };
    const cmp = await compareVersions({ store: env.ctx.store, agent, index, a, b });
    const { basis, dataset_id: datasetId, tasks } = cmp;
    let shadow: ShadowReport | null = null;
    const pair = new Set([a, b]);
    if (
      index.aliases.champion &&
      index.aliases.challenger &&
      pair.has(index.aliases.champion) &&
      pair.has(index.aliases.challenger)
    )
      shadow = env.ctx.models.compare(agent) ?? (await readShadowReport(env.ctx.store, agent));
    const summary = comparisonSummary(cmp, a, b);
    const text = [
      `${agent}: a = ${a}${info(a).aliases.length ? ` [${info(a).aliases.join(",")}]` : ""}, b = ${b}${info(b).aliases.length ? ` [${info(b).aliases.join(",")}]` : ""}`,
      ...tasks.map(
        (t) =>
          `  ${t.task}${t.metric ? ` (${t.metric})` : ""}: a ${pct(t.a)}  b ${pct(t.b)}  ${t.better ? `better: ${t.better}` : ""}${t.interval && t.delta !== null ? `  b - a ${formatInterval({ diff: t.delta, ...t.interval })} (95% paired)` : ""}${t.baseline ? `  baseline ${t.baseline.name} ${pct(t.baseline.score)}` : ""}`,
      ),
      ...(shadow
        ? [
            `  live shadow since ${shadow.since}: ${shadow.tasks.map((t) => `${t.task} ${t.shadowed} shadowed, agreement ${pct(t.agreement)}`).join("; ") || "no samples yet"}`,
          ]
        : []),
      summary,
    ].join("\n");
    return {
      data: {
        agent,
        a: info(a),
        b: info(b),
        basis,
        dataset_id: datasetId,
        tasks,
        shadow: shadow
          ? {
              since: shadow.since,
              dropped: shadow.dropped,
              tasks: shadow.tasks.map((t) => ({
                task: t.task,
                shadowed: t.shadowed,
                agreement: t.agreement,
                challenger_errors: t.challenger_errors,
              })),
            }
          : null,
        summary,
      },
      text,
    };
  },
});

const PromoteOut = z
  .object({
    agent: z.string(),
    alias: z.enum(ALIASES),
    version: z.string(),
    moves: z.array(MoveOut),
    forced: z.boolean(),
    served: ServedOut,
    next: z.string(),
  })
  .strict();

export const modelPromote = defineTool({
  name: "model_promote",
  title: "Promote a version",
  description:
    "Points an alias (champion by default, or challenger) at a version; the server swaps the served model at once and the agent's Ollama model follows on the next deploy. " +
    "A version that failed its evaluation gate (or was never evaluated) is refused unless force is true: read the gate's reasons (model_card, model_compare) before forcing. " +
    "The previous champion stays registered; model_rollback goes back to it. Recorded in the alias history with your reason.",
  scope: "promote",
  input: z
    .object({
      agent: AgentName.optional(),
      version: VersionRef,
      alias: z.enum(ALIASES).default("champion"),
      force: z
        .boolean()
        .default(false)
        .describe("Promote even though the version failed (or never had) its gate."),
      reason: Reason,
    })
    .strict(),
  output: PromoteOut,
  annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
  async run(args, call, env) {
    const agent = call.agent(args.agent);
    const registry = env.ctx.registry;
    const version = await registry.resolve(agent, args.version);
    let moves: AliasMove[];
    try {
      moves = await registry.promote(agent, version, {
        alias: args.alias,
        actor: call.actor,
        reason: args.reason,
        force: args.force,
      });
    } catch (err) {
      if (err instanceof GateRefusedError) {
        const m = await registry.getManifest(agent, version).catch(() => null);
        throw new GateRefusedError(
          `${err.message}.${m?.gate?.reasons.length ? ` Gate reasons: ${m.gate.reasons.slice(0, 5).join("; ")}.` : ""} Pass force: true only if you accept them.`,
        );
      }
      throw err;
    }
    await swapNow(env, agent, call);
    const s = served(env, agent);
    const forced = moves.some((m) => m.forced);
    const next =
      args.alias === "champion"
        ? `model_predict now answers with ${s.champion ?? version}; model_rollback goes back if it misbehaves.`
        : "The challenger is shadowed on a share of live queries; model_compare shows the agreement, model_promote makes it champion.";
    const text = moves.length
      ? `${moves.map((m) => `${m.alias}: ${m.from ?? "–"} -> ${m.to ?? "–"}${m.forced ? " (forced past the gate)" : ""}`).join("\n")}\nserving ${s.champion ?? "nothing"}${s.last_failure ? ` (swap failed: ${s.last_failure})` : ""}\nnext: ${next}`
      : `${args.alias} already points at ${version}; nothing moved`;
    return { data: { agent, alias: args.alias, version, moves, forced, served: s, next }, text };
  },
});

export const modelRollback = defineTool({
  name: "model_rollback",
  title: "Roll back the champion",
  description:
    "Points champion back at the previous champion, as the alias history records it, and swaps the served model. " +
    "Use it when the current champion misbehaves (wrong answers, low confidence, regressions in model_compare). Recorded in the alias history with your reason.",
  scope: "promote",
  input: z
    .object({
      agent: AgentName.optional(),
      reason: Reason,
    })
    .strict(),
  output: z.object({ agent: z.string(), move: MoveOut, served: ServedOut, next: z.string() }).strict(),
  annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: false },
  async run(args, call, env) {
    const agent = call.agent(args.agent);
    const move = await env.ctx.registry.rollback(agent, { actor: call.actor, reason: args.reason });
    await swapNow(env, agent, call);
    const s = served(env, agent);
    const next =
      "model_predict answers with the restored champion; training_start trains a better candidate.";
    return {
      data: { agent, move, served: s, next },
      text: `champion: ${move.from ?? "–"} -> ${move.to ?? "–"}; serving ${s.champion ?? "nothing"}\nnext: ${next}`,
    };
  },
});
