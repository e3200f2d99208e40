// Every subcommand group, in the order `trm-forge --help` lists them.
import type { Command } from "commander";
import { registerCollectCommands } from "./collect.js";
import { registerDatasetCommands } from "./dataset.js";
import { registerDemo } from "./demo.js";
import { registerDeployCommand } from "./deploy.js";
import { registerDoctor } from "./doctor.js";
import { registerModelCommands } from "./model.js";
import { registerModelsCommands } from "./models.js";
import { registerModelsImportCommand } from "./models-import.js";
import { registerPredictCommand } from "./predict.js";
import { registerReportCommand } from "./report.js";
import { registerRunCommands } from "./run.js";
import { registerScanCommand } from "./scan.js";
import { registerScheduleCommand } from "./schedule.js";
import { registerServerCommand } from "./server.js";
import { registerSimulate } from "./simulate.js";
import { registerStoreCommands } from "./store.js";

export function registerCommands(program: Command): void {
  // Global options (-c, --log-level, --version) go before the subcommand, so a subcommand may
  // have its own --version (a model version) without the program printing its own.
  program.enablePositionalOptions();
  registerDoctor(program);
  registerModelCommands(program);
  registerSimulate(program);
  registerDemo(program);
  registerCollectCommands(program);
  registerDatasetCommands(program);
  registerRunCommands(program);
  registerModelsCommands(program);
  registerModelsImportCommand(program);
  registerReportCommand(program);
  registerScheduleCommand(program);
  registerServerCommand(program);
  registerStoreCommands(program);
  registerScanCommand(program);
  registerPredictCommand(program);
  registerDeployCommand(program);
}
