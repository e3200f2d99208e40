#!/usr/bin/env node
// The trm-forge command. Each domain adds its subcommands from src/cli/<domain>.ts.
import { readFileSync, realpathSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { Command, CommanderError } from "commander";
import { registerCommands } from "./cli/commands.js";
import { setLogLevel } from "./log.js";

const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as {
  version: string;
};

export function buildProgram(): Command {
  const program = new Command("trm-forge")
    .description(
      "Collect your homelab's data, train a Tiny Recursive Model on it, evaluate it and serve it over MCP.",
    )
    .version(pkg.version, "-V, --version")
    .option(
      "-c, --config <path>",
      "config file (default: $TRM_FORGE_CONFIG, ./trm-forge.yaml, ~/.config/trm-forge/config.yaml)",
    )
    .option("--log-level <level>", "fatal|error|warn|info|debug|trace|silent")
    .showHelpAfterError("(run with --help for usage)")
    .exitOverride();
  program.hook("preAction", (cmd) => {
    const level = cmd.optsWithGlobals().logLevel as string | undefined;
    if (level) setLogLevel(level);
  });
  registerCommands(program);
  return program;
}

async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version exit 0; anything else commander rejects is bad usage.
      process.exitCode = err.exitCode === 0 ? 0 : 2;
      return;
    }
    throw err;
  }
}

function invokedDirectly(): boolean {
  try {
    return import.meta.url === pathToFileURL(realpathSync(process.argv[1] ?? "")).href;
  } catch {
    return false;
  }
}

if (invokedDirectly()) {
  main(process.argv).catch((err) => {
    process.stderr.write(`trm-forge: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  });
}
