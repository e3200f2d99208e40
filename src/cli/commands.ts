// Every subcommand group, in the order `trm-forge --help` lists them.
import type { Command } from "commander";
import { registerDatasetCommands } from "./dataset.js";
import { registerServeCommands } from "./serve.js";

export function registerCommands(program: Command): void {
  registerDatasetCommands(program);
  // Last: `models compare` joins the `models` group if another module created it.
  registerServeCommands(program);
}
