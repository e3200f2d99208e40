export { candidatePaths, describeIssues, type LoadedConfig, loadConfig, parseConfig } from "./load.js";
export { type Config, ConfigSchema, ModelSchema, type ModelSection } from "./schema.js";
