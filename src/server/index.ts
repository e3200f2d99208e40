// The MCP server: the session factory, the shared process context, the transports, auth, jobs.
export {
  ADMIN,
  defaultScopes,
  ForbiddenError,
  type Identity,
  parseScopes,
  type Scope,
  TokenVerifier,
} from "./auth.js";
export { type Health, ServerContext, type ServerContextOptions } from "./context.js";
export { type HttpServer, type HttpServerOptions, isLoopback, startHttpServer } from "./http.js";
export {
  JobManager,
  JobRecord,
  type JobState,
  JobView,
  ShutdownError,
  type StartedJob,
} from "./jobs.js";
export { type CreateServerOptions, createServer, INSTRUCTIONS } from "./mcp.js";
export { guardStdout, type StdioSession, serveStdio } from "./stdio.js";
