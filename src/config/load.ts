// Finds, parses and validates the config file, then applies TRM_FORGE_* environment overrides.
import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { isAbsolute, join, resolve } from "node:path";
import { parse as parseYaml } from "yaml";
import * as z from "zod";
import { ConfigError } from "../errors.js";
import { type Config, ConfigSchema } from "./schema.js";

export interface LoadedConfig {
  config: Config;
  /** The file that was read, or null when only defaults (and env) apply. */
  path: string | null;
  /** Where each candidate path came from, in search order, for `doctor`. */
  searched: string[];
  /** Key paths set from the environment. */
  envOverrides: string[];
}

export interface LoadOptions {
  /** An explicit --config path: it must exist. */
  path?: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

const ENV_PREFIX = "TRM_FORGE_";
/** Env vars with this prefix that are not config keys. */
const ENV_RESERVED = new Set(["CONFIG", "LOG_LEVEL", "SKIP_NATIVE", "TOKEN", "BENCH", "UNSAFE_TEST_CLOCK"]);

export function candidatePaths(opts: LoadOptions = {}): string[] {
  const env = opts.env ?? process.env;
  const cwd = opts.cwd ?? process.cwd();
  if (opts.path) return [resolve(cwd, opts.path)];
  if (env.TRM_FORGE_CONFIG) return [resolve(cwd, env.TRM_FORGE_CONFIG)];
  return [
    join(cwd, "trm-forge.yaml"),
    join(cwd, "trm-forge.yml"),
    join(homedir(), ".config", "trm-forge", "config.yaml"),
  ];
}

export function loadConfig(opts: LoadOptions = {}): LoadedConfig {
  const env = opts.env ?? process.env;
  const searched = candidatePaths(opts);
  const explicit = Boolean(opts.path || env.TRM_FORGE_CONFIG);
  let path: string | null = null;
  let raw: unknown = {};
  for (const p of searched) {
    if (existsSync(p)) {
      path = p;
      break;
    }
  }
  if (explicit && !path) throw new ConfigError(`config file not found: ${searched[0]}`);
  if (path) raw = parseFile(path);
  const envOverrides = applyEnv(raw as Record<string, unknown>, env);
  const config = validate(raw, path);
  // Relative paths in the file are relative to the file, not to wherever the command ran.
  if (path && !isAbsolute(config.data_dir)) config.data_dir = resolve(join(path, ".."), config.data_dir);
  else if (!isAbsolute(config.data_dir))
    config.data_dir = resolve(opts.cwd ?? process.cwd(), config.data_dir);
  return { config, path, searched, envOverrides };
}

/** Validates an in-memory config object (tests, the demo). */
export function parseConfig(raw: unknown, source: string | null = null): Config {
  return validate(raw, source);
}

function parseFile(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new ConfigError(`cannot read config ${path}: ${(err as Error).message}`);
  }
  try {
    const doc = parseYaml(text);
    if (doc === null || doc === undefined) return {};
    if (typeof doc !== "object" || Array.isArray(doc)) throw new Error("the top level must be a mapping");
    return doc;
  } catch (err) {
    throw new ConfigError(`config ${path} is not valid YAML: ${(err as Error).message.split("\n")[0]}`);
  }
}

function validate(raw: unknown, source: string | null): Config {
  const res = ConfigSchema.safeParse(raw);
  if (res.success) return res.data;
  throw new ConfigError(describeIssues(res.error, source));
}

export function describeIssues(error: z.ZodError, source: string | null): string {
  const where = source ? ` in ${source}` : "";
  const parts = error.issues.slice(0, 5).map((i) => {
    const key = i.path.length ? i.path.join(".") : "(top level)";
    return `${key}: ${issueText(i)}`;
  });
  const more = error.issues.length > 5 ? ` (and ${error.issues.length - 5} more)` : "";
  return `bad config${where}: ${parts.join("; ")}${more}`;
}

function issueText(i: z.core.$ZodIssue): string {
  if (i.code === "unrecognized_keys") return `unknown key(s) ${i.keys.map((k) => `"${k}"`).join(", ")}`;
  // A bad record key (an agent name): what is wrong with it, not just "Invalid key in record".
  if (i.code === "invalid_key") return i.issues.map(issueText).join("; ");
  return i.message.replace(/^Invalid input: /, "");
}

/**
 * TRM_FORGE_MODEL__HIDDEN_SIZE=128 sets model.hidden_size. Levels are split by "__"; names match
 * the schema case-insensitively, and values are parsed as YAML scalars (numbers, booleans).
 */
function applyEnv(target: Record<string, unknown>, env: NodeJS.ProcessEnv): string[] {
  const applied: string[] = [];
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith(ENV_PREFIX) || value === undefined) continue;
    const rest = name.slice(ENV_PREFIX.length);
    if (ENV_RESERVED.has(rest)) continue;
    const segments = rest.split("__").filter(Boolean);
    if (!segments.length) continue;
    let node: Record<string, unknown> = target;
    let shape: unknown = ConfigSchema;
    const keys: string[] = [];
    for (let i = 0; i < segments.length; i++) {
      const key = matchKey(segments[i], node, shape);
      keys.push(key);
      if (i === segments.length - 1) {
        node[key] = parseScalar(value);
      } else {
        const next = node[key];
        if (typeof next !== "object" || next === null || Array.isArray(next)) node[key] = {};
        node = node[key] as Record<string, unknown>;
        shape = childSchema(shape, key);
      }
    }
    applied.push(keys.join("."));
  }
  return applied;
}

function schemaKeys(schema: unknown): string[] {
  const s = unwrap(schema);
  if (s instanceof z.ZodObject) return Object.keys(s.shape);
  if (s instanceof z.ZodDiscriminatedUnion) {
    return [...new Set(s.options.flatMap((o) => schemaKeys(o)))];
  }
  return [];
}

function childSchema(schema: unknown, key: string): unknown {
  const s = unwrap(schema);
  if (s instanceof z.ZodObject) return (s.shape as Record<string, unknown>)[key];
  if (s instanceof z.ZodRecord) return s.valueType;
  if (s instanceof z.ZodDiscriminatedUnion) {
    for (const o of s.options) {
      const c = childSchema(o, key);
      if (c) return c;
    }
  }
  return undefined;
}

function unwrap(schema: unknown): unknown {
  let s = schema;
  for (let i = 0; i < 10; i++) {
    if (s instanceof z.ZodDefault || s instanceof z.ZodOptional || s instanceof z.ZodNullable) {
      s = s.unwrap();
    } else if (s instanceof z.ZodPipe) {
      s = s.in;
    } else break;
  }
  return s;
}

function matchKey(segment: string, node: Record<string, unknown>, schema: unknown): string {
  const lower = segment.toLowerCase();
  for (const k of [...schemaKeys(schema), ...Object.keys(node)]) {
    if (k.toLowerCase() === lower) return k;
  }
  return lower;
}

function parseScalar(value: string): unknown {
  try {
    const v = parseYaml(value);
    return v === null ? value : v;
  } catch {
    return value;
  }
}
