// Every subcommand group, in the order `trm-forge --help` lists them.
import type { Command } from "commander";
import { registerDatasetCommands } from "./dataset.js";

export function registerCommands(program: Command): void {
  registerDatasetCommands(program);
}
