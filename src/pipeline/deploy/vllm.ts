// vLLM serves base models; what it takes from the pipeline is the knowledge card in the system turn
// of a chat template in the base model's own format, and a served-model config, both written to the
// store beside the version. The format comes from the model's tokenizer_config.json when a path is
// configured, else from a named family. With vllm.base_url set, deploy checks /v1/models for the
// served name. Nothing here trains an adapter, so nothing loads one.
import { open, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import * as z from "zod";
import { CHAT_TEMPLATE_FAMILIES, type VllmSection } from "../../config/schema.js";
import { WorkError } from "../../errors.js";
import type { ObjectStore } from "../../store/index.js";
import { vllmPrefix } from "../../store/layout.js";
import { sha256 } from "../../util/fs.js";

export class VllmError extends WorkError {
  override name = "VllmError";
}

/** Store keys of the files deploy writes for a version. */
export function vllmKeys(agent: string, version: string): { template: string; config: string } {
  const base = vllmPrefix(agent, version);
  return { template: `${base}/chat_template.jinja`, config: `${base}/served-model.json` };
}

export type ChatFamily = (typeof CHAT_TEMPLATE_FAMILIES)[number];

// Each family's turn layout, written from its documented prompt format. The system turn is the
// first message; Mistral has none, so its text opens the last user turn, as Mistral's own do.
const FAMILY_TEMPLATES: Record<ChatFamily, string> = {
  llama3: [
    "{{- bos_token }}",
    "{%- for message in messages %}",
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + (message['content'] | trim) + '<|eot_id|>' }}",
    "{%- endfor %}",
    "{%- if add_generation_prompt %}",
    "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}",
    "{%- endif %}",
  ].join("\n"),
  chatml: [
    "{%- for message in messages %}",
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}",
    "{%- endfor %}",
    "{%- if add_generation_prompt %}",
    "{{- '<|im_start|>assistant\\n' }}",
    "{%- endif %}",
  ].join("\n"),
  mistral: [
    "{{- bos_token }}",
    "{%- set ns = namespace(system='', last_user=-1) %}",
    "{%- for message in messages %}",
    "{%- if message['role'] == 'system' %}{%- set ns.system = message['content'] %}{%- endif %}",
    "{%- if message['role'] == 'user' %}{%- set ns.last_user = loop.index0 %}{%- endif %}",
    "{%- endfor %}",
    "{%- for message in messages %}",
    "{%- if message['role'] == 'user' %}",
    "{%- if loop.index0 == ns.last_user and ns.system %}",
    "{{- '[INST] ' + ns.system + '\\n\\n' + message['content'] + '[/INST]' }}",
    "{%- else %}",
    "{{- '[INST] ' + message['content'] + '[/INST]' }}",
    "{%- endif %}",
    "{%- elif message['role'] == 'assistant' %}",
    "{{- ' ' + message['content'] + eos_token }}",
    "{%- endif %}",
    "{%- endfor %}",
  ].join("\n"),
};

/** The family a Hugging Face model id names, if it is one trm-forge knows. */
export function familyOf(baseModel: string): ChatFamily | null {
  if (/llama-?3/i.test(baseModel)) return "llama3";
  if (/qwen-?2/i.test(baseModel)) return "chatml";
  if (/mistral|mixtral/i.test(baseModel)) return "mistral";
  return null;
}

/** tokenizer_config.json files are small; a bigger one is not what the config meant. */
export const MAX_TOKENIZER_CONFIG_BYTES = 4 * 1024 * 1024;

const TokenizerConfig = z
  .object({
    chat_template: z
      .union([
        z.string(),
        // Newer tokenizers name several templates; "default" is the chat one.
        z.array(z.object({ name: z.string(), template: z.string() }).passthrough()),
      ])
      .optional(),
  })
  .passthrough();

async function readBounded(path: string, what: string): Promise<string> {
  const fh = await open(path, "r").catch((err: NodeJS.ErrnoException) => {
    throw new VllmError(`cannot read ${what} ${path}: ${err.code ?? err.message}`);
  });
  try {
    const { size } = await fh.stat();
    if (size > MAX_TOKENIZER_CONFIG_BYTES)
      throw new VllmError(`${what} ${path} is ${size} bytes, over the ${MAX_TOKENIZER_CONFIG_BYTES} read`);
    const buf = Buffer.alloc(size);
    const { bytesRead } = await fh.read(buf, 0, size, 0);
    return buf.subarray(0, bytesRead).toString("utf8");
  } finally {
    await fh.close();
  }
}

/** The chat_template of a model's tokenizer_config.json (the file, or the directory holding it). */
export async function readModelTemplate(path: string): Promise<string> {
  const isDir = (await stat(path).catch(() => null))?.isDirectory() ?? false;
  const file = isDir ? join(path, "tokenizer_config.json") : path;
  const text = await readBounded(file, "tokenizer_config");
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new VllmError(`tokenizer_config ${file} is not JSON: ${(err as Error).message}`);
  }
  const parsed = TokenizerConfig.safeParse(json);
  if (!parsed.success) throw new VllmError(`tokenizer_config ${file} has a chat_template of the wrong shape`);
  const t = parsed.data.chat_template;
  if (typeof t === "string" && t.trim()) return t;
  if (Array.isArray(t)) {
    const chosen = t.find((x) => x.name === "default") ?? t[0];
    if (chosen?.template.trim()) return chosen.template;
  }
  // transformers 4.43+ saves the template beside the config, as chat_template.jinja.
  if (isDir) {
    const beside = join(path, "chat_template.jinja");
    if (await stat(beside).catch(() => null)) return readBounded(beside, "chat template");
  }
  throw new VllmError(`tokenizer_config ${file} has no chat_template`);
}

/** The base model's own turn layout and where it came from. */
export async function baseTemplate(cfg: VllmSection): Promise<{ template: string; source: string }> {
  if (cfg.chat_template.tokenizer_config) {
    const path = cfg.chat_template.tokenizer_config;
    return { template: await readModelTemplate(path), source: `tokenizer_config:${path}` };
  }
  const family = cfg.chat_template.family ?? familyOf(cfg.base_model);
  if (!family)
    throw new VllmError(
      `no chat template format for vllm.base_model "${cfg.base_model}": set vllm.chat_template.tokenizer_config ` +
        `to its tokenizer_config.json, or vllm.chat_template.family to one of ${CHAT_TEMPLATE_FAMILIES.join(", ")}`,
    );
  return { template: FAMILY_TEMPLATES[family], source: `family:${family}` };
}

/**
 * A Jinja string literal holding text verbatim, in the escapes both Jinja2 (vLLM) and
 * @huggingface/jinja read: no delimiter character appears, so the card cannot open a tag.
 */
export function jinjaString(text: string): string {
  let out = "";
  for (const ch of text) {
    const code = ch.codePointAt(0)!;
    if (ch === "\\") out += "\\\\";
    else if (ch === '"') out += '\\"';
    else if (ch === "\n") out += "\\n";
    else if (ch === "{" || ch === "}" || ch === "%" || ch === "#" || code < 0x20 || code === 0x7f)
      out += `\\x${code.toString(16).padStart(2, "0")}`;
    else out += ch;
  }
  return `"${out}"`;
}

/**
 * The card in front of a model's template: the messages it renders start with a system turn
 * holding the card, and a system message from the request follows the card in that same turn.
 */
export function withCard(card: string, template: string): string {
  return [
    "{#- trm-forge: the knowledge card leads the system turn; the request's own system message follows it. -#}",
    `{%- set trm_forge_card = ${jinjaString(card.trim())} -%}`,
    "{%- set messages = ([{'role': 'system', 'content': trm_forge_card + '\\n\\n' + messages[0]['content']}] + messages[1:]) " +
      "if (messages and messages[0]['role'] == 'system') else ([{'role': 'system', 'content': trm_forge_card}] + messages) -%}",
    template,
  ].join("\n");
}

export const ServedModelConfig = z
  .object({
    agent: z.string(),
    version: z.string(),
    served_model_name: z.string(),
    base_model: z.string(),
    /** source: "family:<name>" or "tokenizer_config:<path>", the format the card was put into. */
    chat_template: z.object({ key: z.string(), sha256: z.string(), source: z.string() }).strict(),
    /** The arguments a `vllm serve` for this version takes (the template path is where you copy it to). */
    vllm_args: z.array(z.string()),
    created_at: z.string(),
  })
  .strict();
export type ServedModelConfig = z.infer<typeof ServedModelConfig>;

export function servedName(agent: string, cfg: VllmSection): string {
  return cfg.served_model_name.replaceAll("{agent}", agent);
}

export interface VllmDeployResult {
  templateKey: string;
  configKey: string;
  served: ServedModelConfig;
  /** What the running vLLM said, when base_url is configured. */
  check: { servedNameFound: boolean; models: string[] } | null;
}

/** Writes the template and served-model config for a version, then checks the running vLLM if configured. */
export async function deployToVllm(opts: {
  store: ObjectStore;
  agent: string;
  version: string;
  card: string;
  config: VllmSection;
  now?: () => Date;
}): Promise<VllmDeployResult> {
  const { store, agent, version, config: cfg } = opts;
  const keys = vllmKeys(agent, version);
  const base = await baseTemplate(cfg);
  const template = withCard(opts.card, base.template);
  const name = servedName(agent, cfg);
  const served: ServedModelConfig = {
    agent,
    version,
    served_model_name: name,
    base_model: cfg.base_model,
    chat_template: { key: keys.template, sha256: sha256(template), source: base.source },
    vllm_args: [cfg.base_model, "--served-model-name", name, "--chat-template", "chat_template.jinja"],
    created_at: (opts.now?.() ?? new Date()).toISOString(),
  };
  await store.put(keys.template, template, {
    contentType: "text/plain; charset=utf-8",
    meta: { agent, version, sha256: served.chat_template.sha256 },
  });
  await store.put(keys.config, `${JSON.stringify(ServedModelConfig.parse(served), null, 2)}\n`, {
    contentType: "application/json",
    meta: { agent, version },
  });
  const check = cfg.base_url ? await checkVllm(cfg, name) : null;
  return { templateKey: keys.template, configKey: keys.config, served, check };
}

const ModelList = z.object({ data: z.array(z.object({ id: z.string() }).passthrough()) }).passthrough();

async function checkVllm(cfg: VllmSection, name: string): Promise<NonNullable<VllmDeployResult["check"]>> {
  const base = cfg.base_url!.replace(/\/+$/, "");
  const headers: Record<string, string> = { "content-type": "application/json" };
  const key = await apiKey(cfg);
  if (key) headers.authorization = `Bearer ${key}`;
  const call = async (path: string, init: RequestInit = {}) => {
    try {
      return await fetch(`${base}${path}`, {
        ...init,
        headers,
        signal: AbortSignal.timeout(cfg.request_timeout_s * 1000),
      });
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause?.code;
      const why = (err as Error).name === "TimeoutError" ? "timed out" : (cause ?? (err as Error).message);
      throw new VllmError(`vLLM unreachable at ${base}: ${why}`);
    }
  };
  const listModels = async () => {
    const res = await call("/v1/models");
    if (!res.ok) throw new VllmError(`vLLM /v1/models answered HTTP ${res.status}: ${await errorText(res)}`);
    const text = await bodyText(res, MAX_MODEL_LIST_BYTES);
    let json: unknown = null;
    try {
      json = JSON.parse(text);
    } catch {
      // not JSON: not a model list
    }
    const body = ModelList.safeParse(json);
    if (!body.success) throw new VllmError("vLLM /v1/models did not return a model list");
    return body.data.data.map((m) => m.id);
  };

  const models = await listModels();
  const servedNameFound = models.includes(name);
  if (!servedNameFound)
    throw new VllmError(
      `vLLM at ${base} does not serve "${name}" (it serves ${models.join(", ") || "nothing"}); start it with --served-model-name ${name}`,
    );
  return { servedNameFound, models };
}

/** A model list for a few hundred served names is far below this; vLLM's answers are read up to it. */
const MAX_MODEL_LIST_BYTES = 1024 * 1024;

/** The body as text, or an error once it passes max bytes (the rest is not read). */
async function bodyText(res: Response, max: number): Promise<string> {
  if (!res.body) return "";
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res.body) {
    size += chunk.byteLength;
    // Leaving the loop cancels the rest of the stream.
    if (size > max) throw new VllmError(`vLLM answered more than ${max} bytes`);
    chunks.push(Buffer.from(chunk));
  }
  return Buffer.concat(chunks).toString("utf8");
}

async function errorText(res: Response): Promise<string> {
  const text = (await bodyText(res, 64 * 1024).catch(() => "")).trim();
  try {
    const j = JSON.parse(text) as { message?: string; error?: { message?: string } | string };
    const msg = j.message ?? (typeof j.error === "string" ? j.error : j.error?.message);
    if (msg) return msg;
  } catch {
    // not JSON: the text itself
  }
  return text.slice(0, 300);
}

async function apiKey(cfg: VllmSection): Promise<string | null> {
  if (!cfg.api_key) return null;
  if ("env" in cfg.api_key) {
    const v = process.env[cfg.api_key.env];
    if (!v) throw new VllmError(`vllm.api_key: environment variable ${cfg.api_key.env} is not set`);
    return v.trim();
  }
  return (await readFile(cfg.api_key.file, "utf8")).trim();
}
