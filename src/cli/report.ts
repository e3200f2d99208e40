// `trm-forge report`: a run's report.html, written when the run ended (or now, for a running run).
import { spawn } from "node:child_process";
import { join } from "node:path";
import type { Command } from "commander";
import { createPipeline } from "../pipeline/create.js";
import { reportKey, writeRunReport } from "../pipeline/report.js";
import type { Pipeline, RunRecord } from "../pipeline/run.js";
import { FsStore } from "../store/index.js";
import { action, emit, loadCliConfig } from "./common.js";
import { agentOf } from "./context.js";

/** Where a person can open a run's report: the file in a local store, else a copy in data_dir/reports. */
export async function reportPath(pipeline: Pipeline, r: RunRecord, regenerate: boolean): Promise<string> {
  const key = reportKey(r.agent, r.id);
  if (regenerate || !(await pipeline.store.exists(key))) await writeRunReport(pipeline.store, r);
  if (pipeline.store instanceof FsStore) return pipeline.store.pathOf(key);
  const local = join(pipeline.config.data_dir, "reports", `${r.agent}-${r.id}.html`);
  await pipeline.store.getFile(key, local);
  return local;
}

export function openFile(path: string): void {
  const cmd = process.platform === "darwin" ? "open" : process.platform === "win32" ? "explorer" : "xdg-open";
  try {
    const child = spawn(cmd, [path], { detached: true, stdio: "ignore" });
    child.on("error", () => undefined);
    child.unref();
  } catch {
    // The path is printed either way.
  }
}

export function registerReportCommand(program: Command): void {
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
}
