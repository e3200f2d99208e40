// Step 10 of the demo: the MCP server over Streamable HTTP on loopback, with the agent's generated
// token, serving the champion the demo just promoted. The simulator stays up beside it, so the
// data tools (collect, sources check) have a homelab to talk to.
import { relative } from "node:path";
import { log } from "../log.js";
import { type HttpServer, ServerContext, startHttpServer } from "../server/index.js";
import { DEMO_AGENT } from "./config.js";
import { stepTitle } from "./output.js";
import type { DemoRun } from "./run.js";

export interface ServingDemo {
  url: string;
  close(): Promise<void>;
}

export async function serveDemo(run: DemoRun, opts: { port?: number } = {}): Promise<ServingDemo> {
  const { out } = run;
  out.line(`\n${stepTitle("serve")}`);
  const ctx = new ServerContext({ config: run.config, schedule: false });
  await ctx.start();
  let http: HttpServer;
  const port = opts.port ?? run.config.server.port;
  try {
    http = await startHttpServer(ctx, { host: "127.0.0.1", port });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EADDRINUSE" || port === 0) {
      await ctx.stop(1000);
      throw err;
    }
    log.debug({ port }, "demo: port in use, taking a free one");
    http = await startHttpServer(ctx, { host: "127.0.0.1", port: 0 });
  }
  const url = http.url;
  const token = relative(process.cwd(), run.tokenFile) || run.tokenFile;
  const config = relative(process.cwd(), run.configPath) || run.configPath;
  const served = ctx.models.status().find((s) => s.agent === DEMO_AGENT)?.champion?.version ?? "nothing";
  for (const l of [
    `   MCP server (Streamable HTTP): ${url}, serving ${DEMO_AGENT}'s champion ${served}`,
    `   Bearer token of ${DEMO_AGENT} (scopes read, train, promote): in ${token}`,
    "",
    "   Claude Code:",
    `     claude mcp add --transport http trm-forge ${url} --header "Authorization: Bearer $(cat ${run.tokenFile})"`,
    "   MCP Inspector:",
    "     npx @modelcontextprotocol/inspector",
    `     then Transport Type "Streamable HTTP", URL ${url}, and under Authentication the bearer token from ${token}`,
    "",
    `   The report: ${run.reportPath}`,
    `   Other commands on the demo's store: npx trm-forge -c ${config} models list --agent ${DEMO_AGENT}`,
    `                                       npx trm-forge -c ${config} predict --agent ${DEMO_AGENT} --task log_triage --input "ERROR connection refused"`,
    "",
    "   Ctrl-C stops the server and the simulator.",
  ])
    out.line(l);
  return {
    url,
    close: async () => {
      await http.close(2000);
      await ctx.stop(2000);
    },
  };
}
