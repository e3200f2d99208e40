// Every subcommand group, in the order `trm-forge --help` lists them.
import type { Command } from "commander";

export function registerCommands(_program: Command): void {}
