export { candidatePaths, describeIssues, type LoadedConfig, loadConfig, parseConfig } from "./load.js";
export { ADMIN_IDENTITY, agentName, identityName, RESERVED_AGENT_NAMES } from "./names.js";
export { type Config, ConfigSchema, ModelSchema, type ModelSection } from "./schema.js";
