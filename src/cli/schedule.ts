import type { Command } from "commander";
import { createPipeline } from "../pipeline/create.js";
import { scheduleStatus } from "../pipeline/schedule.js";
import { action, emit, loadCliConfig } from "./common.js";

export function registerScheduleCommand(program: Command): void {
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
