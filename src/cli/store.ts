// `trm-forge store usage|gc`: what the store holds per agent and prefix, and retention's gc.
import { userInfo } from "node:os";
import type { Command } from "commander";
import { UsageError } from "../errors.js";
import { ModelRegistry } from "../pipeline/deploy/registry.js";
import { type GcResult, runGc, storeUsage } from "../pipeline/retention/gc.js";
import { openStore } from "../store/index.js";
import { action, emit, loadCliConfig } from "./common.js";

/** Bytes for people: B, KB, MB, GB (powers of 1024). */
function size(bytes: number): string {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${u === 0 ? v : v.toFixed(1)} ${units[u]}`;
}

export function registerStoreCommands(program: Command): void {
  const store = program.command("store").description("Store usage and retention (gc)");

  store
    .command("usage")
    .description(
      "Bytes and objects per agent and prefix (raw per source, datasets, runs, checkpoints, models)",
    )
    .option("--agent <name>", "one agent only")
    .option("--json", "print JSON")
    .action(
      action(async (opts: { agent?: string; json?: boolean }, cmd: Command) => {
        const { config } = loadCliConfig(cmd);
        const usage = await storeUsage(openStore(config), opts.agent ? [opts.agent] : undefined);
        emit(opts.json, { agents: usage }, () => {
          if (!usage.length) return "the store holds no agent data";
          return usage
            .map((a) =>
              [
                `${a.agent}  ${size(a.bytes)} in ${a.objects} objects`,
                ...a.prefixes.map(
                  (p) =>
                    `  ${p.prefix.padEnd(18)} ${size(p.bytes).padStart(10)} ${String(p.objects).padStart(8)} objects`,
                ),
              ].join("\n"),
            )
            .join("\n");
        });
      }),
    );

  store
    .command("gc")
    .description("Delete what retention no longer keeps: each item with the rule that chose it and its bytes")
    .option("--agent <name>", "one agent only (default: every configured agent)")
    .option("--dry-run", "show the plan, delete nothing")
    .option("--json", "print JSON")
    .action(
      action(async (opts: { agent?: string; dryRun?: boolean; json?: boolean }, cmd: Command) => {
        const { config } = loadCliConfig(cmd);
        const agents = opts.agent ? [opts.agent] : Object.keys(config.agents);
        for (const a of agents)
          if (!(a in config.agents))
            throw new UsageError(
              `unknown agent "${a}" (configured: ${Object.keys(config.agents).join(", ") || "none"})`,
            );
        const objectStore = openStore(config);
        const registry = new ModelRegistry(objectStore, { dataDir: config.data_dir });
        const results: GcResult[] = [];
        for (const agent of agents)
          results.push(
            await runGc({
              store: objectStore,
              registry,
              config,
              agent,
              dryRun: opts.dryRun,
              actor: `cli:${userInfo().username}`,
            }),
          );
        emit(opts.json, { agents: results }, () => results.map(gcText).join("\n"));
      }),
    );
}

function gcText(r: GcResult): string {
  const head = r.dry_run
    ? `${r.agent}: would delete ${r.items.length} items, ${size(r.planned_bytes)} in ${r.planned_objects} objects (dry run)`
    : `${r.agent}: deleted ${r.items.length} items, ${size(r.deleted_bytes)} in ${r.deleted_objects} objects (${r.duration_ms} ms)`;
  const lines = r.items.map(
    (i) =>
      `  ${i.kind.padEnd(11)} ${i.id.padEnd(34)} ${size(i.bytes).padStart(10)} ${String(i.objects).padStart(5)} obj  ${i.rule}`,
  );
  const kept = Object.entries(r.kept.versions).map(([v, why]) => `  kept ${v}: ${why.join(", ")}`);
  return [head, ...lines, ...kept].join("\n");
}
