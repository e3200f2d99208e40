// `trm-forge serve --stdio`: one MCP session on stdin/stdout for a local client (Claude Desktop,
// Claude Code, an IDE). stdout carries nothing but protocol: logs go to stderr (pino on fd 2), and
// console.log and friends are sent to stderr too, so no library can corrupt the stream.
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import type { JSONRPCMessage } from "@modelcontextprotocol/sdk/types.js";
import type { Identity } from "./auth.js";
import type { ServerContext } from "./context.js";
import { createServer } from "./mcp.js";

/** How long requests in progress may take to answer after the client closed stdin. */
const CLOSE_GRACE_MS = 30_000;

/** Sends console.log/info/debug to stderr; call before anything else runs in stdio mode. */
export function guardStdout(): void {
  const toStderr = (...args: unknown[]) => console.error(...args);
  console.log = toStderr;
  console.info = toStderr;
  console.debug = toStderr;
  console.trace = toStderr;
}

export interface StdioSession {
  /** Settles when the client disconnects (stdin ends) or close() is called. */
  closed: Promise<void>;
  close(): Promise<void>;
}

export async function serveStdio(
  ctx: ServerContext,
  identity: Identity,
  io: { stdin?: NodeJS.ReadableStream; stdout?: NodeJS.WritableStream } = {},
): Promise<StdioSession> {
  const stdin = (io.stdin ?? process.stdin) as NodeJS.ReadStream;
  const server = createServer(ctx, { identity });
  const transport = new StdioServerTransport(stdin, (io.stdout ?? process.stdout) as NodeJS.WriteStream);
  let done!: () => void;
  const closed = new Promise<void>((r) => {
    done = r;
  });
  transport.onclose = () => done();
  await server.connect(transport);
  // Requests still being answered when stdin ends (a client that writes and closes) get their answers.
  let pending = 0;
  const idle = new Set<() => void>();
  const onmessage = transport.onmessage;
  transport.onmessage = (msg: JSONRPCMessage) => {
    if ("method" in msg && "id" in msg) pending++;
    onmessage?.(msg);
  };
  const send = transport.send.bind(transport);
  transport.send = async (msg: JSONRPCMessage) => {
    await send(msg);
    if (("result" in msg || "error" in msg) && "id" in msg && --pending <= 0) for (const fn of idle) fn();
  };
  const end = () => {
    const close = () => void transport.close();
    if (pending <= 0) return close();
    const timer = setTimeout(close, CLOSE_GRACE_MS);
    idle.add(() => {
      clearTimeout(timer);
      close();
    });
  };
  stdin.once("end", end);
  return {
    closed,
    async close() {
      stdin.off("end", end);
      await server.close().catch(() => undefined);
      done();
    },
  };
}
