// `trm-forge serve --stdio | --http`: the MCP server, with the schedule and the served models, in
// one process. SIGTERM (or SIGINT) finishes in-flight requests and stops running jobs at a step
// boundary with a checkpoint written; the next start resumes them. A second signal exits at once.
import { type Command, Option } from "commander";
import { UsageError } from "../errors.js";
import { log } from "../log.js";
import { checkIdentityName, defaultScopes, type Identity, parseScopes } from "../server/auth.js";
import { ServerContext } from "../server/context.js";
import { type HttpServer, startHttpServer } from "../server/http.js";
import { guardStdout, type StdioSession, serveStdio } from "../server/stdio.js";
import { driveTestClock, faultyStore } from "../server/test-clock.js";
import { openStore } from "../store/index.js";
import { installServerTestClock } from "../util/clock.js";
import { action, loadCliConfig, parseIntOption } from "./common.js";

interface ServeOpts {
  stdio?: boolean;
  http?: boolean;
  host?: string;
  port?: number;
  as: string;
  scopes?: string;
  schedule: boolean;
  unsafeTestClock?: boolean;
}

export function registerServerCommand(program: Command): void {
  program
    .command("serve")
    .description(
      "Serve the MCP tools: --stdio for a local client (Claude Desktop/Code, an IDE), --http for agents (Streamable HTTP on /mcp with bearer tokens, /healthz, /metrics); runs the schedule and the served models too",
    )
    .option("--stdio", "one session on stdin/stdout")
    .option("--http", "Streamable HTTP on /mcp")
    .option("--host <host>", "address to listen on (default: server.host, 127.0.0.1)")
    .option(
      "--port <port>",
      "port to listen on (default: server.port, 8750; 0 picks one)",
      parseIntOption("--port"),
    )
    .option(
      "--as <identity>",
      "who the stdio client is (and HTTP callers when no tokens are configured): an agent name or admin",
      "admin",
    )
    .option(
      "--scopes <list>",
      "its scopes, comma-separated: read,train,promote,admin (default: all it may have)",
    )
    .option("--no-schedule", "do not run the collect/train schedule in this process")
    // The soak's simulated clock (src/util/clock.ts); hidden: never for a real installation.
    .addOption(new Option("--unsafe-test-clock", "run on the parent soak's simulated clock").hideHelp())
    .action(
      action(async (opts: ServeOpts, cmd: Command) => {
        installServerTestClock(Boolean(opts.unsafeTestClock));
        if (Boolean(opts.stdio) === Boolean(opts.http))
          throw new UsageError("give exactly one of --stdio or --http");
        if (opts.stdio) guardStdout();
        if (opts.port !== undefined && (opts.port < 0 || opts.port > 65535))
          throw new UsageError(`--port must be 0..65535, got ${opts.port}`);
        const { config } = loadCliConfig(cmd);
        checkIdentityName(config, opts.as, "--as");
        const identity: Identity = {
          name: opts.as,
          scopes: opts.scopes ? parseScopes(opts.scopes) : defaultScopes(opts.as),
        };
        const ctx = new ServerContext({
          config,
          schedule: opts.schedule ? undefined : false,
          store: opts.unsafeTestClock ? faultyStore(openStore(config)) : undefined,
        });
        await ctx.start();
        for (const c of ctx.catchUps)
          log.info({ agent: c.agent, job: c.job, run: c.run_id, reason: c.reason }, "schedule catch-up");
        if (opts.unsafeTestClock) driveTestClock(ctx);

        let http: HttpServer | null = null;
        let stdio: StdioSession | null = null;
        try {
          if (opts.http) {
            http = await startHttpServer(ctx, { host: opts.host, port: opts.port, localIdentity: identity });
            process.stderr.write(`trm-forge: MCP over Streamable HTTP at ${http.url}\n`);
          } else stdio = await serveStdio(ctx, identity);
        } catch (err) {
          await ctx.stop(1000);
          throw err;
        }

        const grace = config.server.shutdown_grace;
        const stopped = new Promise<string>((resolve) => {
          let signals = 0;
          const onSignal = (sig: NodeJS.Signals) => {
            signals++;
            if (signals > 1) process.exit(130);
            resolve(sig);
          };
          process.on("SIGTERM", onSignal);
          process.on("SIGINT", onSignal);
          void stdio?.closed.then(() => resolve("stdin closed"));
        });
        const why = await stopped;
        log.info({ why }, "shutting down: finishing requests, stopping jobs at a checkpoint");
        await http?.close(grace);
        await stdio?.close();
        await ctx.stop(grace);
        // Anything still holding the event loop (a client's half-open socket) must not keep us alive.
        setTimeout(() => process.exit(process.exitCode ?? 0), 2000).unref();
        return 0;
      }),
    );
}
