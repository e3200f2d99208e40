// `trm-forge demo` (`npm run demo`): the whole product on a built-in homelab. Ctrl-C stops the
// pipeline at its next step boundary (a checkpoint is written; running the demo again continues),
// or, once serving, stops the server.
import type { Command } from "commander";
import { FULL, QUICK } from "../demo/config.js";
import { DemoStopped, runDemo } from "../demo/run.js";
import { serveDemo } from "../demo/serve.js";
import { UsageError } from "../errors.js";
import { setLogLevel } from "../log.js";
import { action, parseIntOption } from "./common.js";

interface DemoOpts {
  dir: string;
  fresh?: boolean;
  serve: boolean;
  port?: number;
  quick?: boolean;
  seed?: number;
  steps?: number;
}

export function registerDemo(program: Command): void {
  program
    .command("demo")
    .description(
      "The whole product on a simulated homelab: collect 30 days over HTTP, build, train, evaluate against the baselines, promote, report, predict, then serve over MCP",
    )
    .option("--dir <path>", "data directory of the demo (kept between runs)", ".trm-forge-demo")
    .option("--fresh", "delete the data directory first and build everything again")
    .option("--no-serve", "stop after the predictions instead of starting the MCP server")
    .option(
      "--port <port>",
      "port of the MCP server (default 8750; a free one if taken)",
      parseIntOption("--port"),
    )
    .option("--quick", `the short schedule the tests use (${QUICK.days} days, ${QUICK.steps} steps)`)
    .option("--seed <n>", "seed of the simulated homelab", parseIntOption("--seed"))
    .option("--steps <n>", "training steps", parseIntOption("--steps"))
    .action(
      action(async (opts: DemoOpts, cmd: Command) => {
        const global = cmd.optsWithGlobals() as { logLevel?: string };
        if (!global.logLevel && !process.env.TRM_FORGE_LOG_LEVEL) setLogLevel("error");
        const base = opts.quick ? QUICK : FULL;
        const settings = { ...base, seed: opts.seed ?? base.seed, steps: opts.steps ?? base.steps };
        if (settings.seed < 0) throw new UsageError("--seed must be a non-negative integer");
        if (settings.steps < 1) throw new UsageError("--steps must be at least 1");
        if (opts.port !== undefined && (opts.port < 0 || opts.port > 65535))
          throw new UsageError(`--port must be in 0..65535, got ${opts.port}`);

        const stop = new AbortController();
        let signals = 0;
        let serving = false;
        const onSignal = () => {
          signals++;
          if (signals > 1) process.exit(130);
          process.stderr.write(
            serving
              ? "\nstopping the server and the simulator\n"
              : "\nstopping at the next step boundary (Ctrl-C again to quit at once)\n",
          );
          stop.abort();
        };
        process.on("SIGINT", onSignal);
        process.on("SIGTERM", onSignal);
        try {
          let run: Awaited<ReturnType<typeof runDemo>>;
          try {
            run = await runDemo({
              dir: opts.dir,
              settings,
              fresh: opts.fresh,
              serverPort: opts.port,
              signal: stop.signal,
            });
          } catch (err) {
            if (err instanceof DemoStopped) {
              process.stderr.write(`${err.message}\n`);
              return 130;
            }
            throw err;
          }
          if (!opts.serve || stop.signal.aborted) {
            await run.simulator.close();
            return 0;
          }
          serving = true;
          const server = await serveDemo(run, { port: opts.port });
          await new Promise<void>((resolve) => {
            if (stop.signal.aborted) resolve();
            else stop.signal.addEventListener("abort", () => resolve(), { once: true });
          });
          await server.close();
          await run.simulator.close();
          return 0;
        } finally {
          process.off("SIGINT", onSignal);
          process.off("SIGTERM", onSignal);
        }
      }),
    );
}
