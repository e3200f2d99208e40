// The MCP tools, grouped by domain (one file each), in the order tools/list shows them.
import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { Config } from "../config/index.js";
import { type AnyTool, registerTool, type ToolEnv } from "./common.js";
import { dataCollect, dataStatus, sourcesCheck } from "./data.js";
import { modelImport } from "./import.js";
import { jobCancel, jobLogs, jobStatus, jobsList } from "./jobs.js";
import { modelCard, modelCompare, modelEvaluate, modelPromote, modelRollback, modelsList } from "./models.js";
import { modelPredict } from "./predict.js";
import { anomaliesScan } from "./scan.js";
import { scheduleStatusTool, trainingStart } from "./training.js";

export { CALL_LIMIT_MS, callerOf, MAX_WAIT_S, type ToolEnv } from "./common.js";

export function allTools(config: Config): AnyTool[] {
  return [
    sourcesCheck,
    dataCollect,
    dataStatus,
    trainingStart,
    scheduleStatusTool,
    jobStatus,
    jobLogs,
    jobCancel,
    jobsList,
    modelsList,
    modelCard,
    modelEvaluate,
    modelCompare,
    modelPromote,
    modelRollback,
    modelImport,
    modelPredict(config),
    anomaliesScan,
  ];
}

export function registerTools(server: McpServer, env: ToolEnv): void {
  for (const t of allTools(env.ctx.config)) registerTool(server, env, t);
}
