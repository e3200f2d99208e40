// vLLM serves base models; what it takes from the pipeline is the knowledge card as a chat
// template (the card in the system turn) and a served-model config, both written to the store
// beside the version. With vllm.base_url set, deploy checks /v1/models for the served name, and
// with vllm.lora set it loads a versioned adapter through /v1/load_lora_adapter (vLLM refuses to
// load a name twice, so names carry the version; notes §3.5).
import { readFile } from "node:fs/promises";
import * as z from "zod";
import type { VllmSection } from "../../config/schema.js";
import { WorkError } from "../../errors.js";
import type { ObjectStore } from "../../store/index.js";
import { sha256 } from "../../util/fs.js";

export class VllmError extends WorkError {
  override name = "VllmError";
}

/** Store keys of the files deploy writes for a version. */
export function vllmKeys(agent: string, version: string): { template: string; config: string } {
  const base = `deploy/${agent}/vllm/${version}`;
  return { template: `${base}/chat_template.jinja`, config: `${base}/served-model.json` };
}

/**
 * A Jinja chat template in the Llama 3 format whose system turn starts with the card. A system
 * message from the request is appended after the card, not instead of it. The card sits in a raw
 * block, so braces in it are text; a literal endraw in the card is broken up.
 */
export function chatTemplate(card: string): string {
  const safe = card.replace(/\{%(-?)\s*endraw\s*(-?)%\}/g, "{ %$1 endraw $2% }");
  return [
    "{{- bos_token }}",
    '{%- set extra_system = "" %}',
    "{%- if messages and messages[0]['role'] == 'system' %}",
    "{%- set extra_system = messages[0]['content'] %}",
    "{%- set messages = messages[1:] %}",
    "{%- endif %}",
    "<|start_header_id|>system<|end_header_id|>\n\n",
    `{% raw %}${safe}{% endraw %}`,
    "{%- if extra_system %}\n\n{{ extra_system }}{%- endif %}",
    "<|eot_id|>",
    "{%- for message in messages %}",
    "<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n{{ message['content'] | trim }}<|eot_id|>",
    "{%- endfor %}",
    "{%- if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{%- endif %}",
    "",
  ].join("\n");
}

export const ServedModelConfig = z
  .object({
    agent: z.string(),
    version: z.string(),
    served_model_name: z.string(),
    base_model: z.string(),
    chat_template: z.object({ key: z.string(), sha256: z.string() }).strict(),
    lora: z.object({ name: z.string(), path: z.string() }).strict().nullable(),
    /** The arguments a `vllm serve` for this version takes (the template path is where you copy it to). */
    vllm_args: z.array(z.string()),
    created_at: z.string(),
  })
  .strict();
export type ServedModelConfig = z.infer<typeof ServedModelConfig>;

export function servedName(agent: string, cfg: VllmSection): string {
  return cfg.served_model_name.replaceAll("{agent}", agent);
}

export function loraFor(
  agent: string,
  version: string,
  cfg: VllmSection,
): { name: string; path: string } | null {
  if (!cfg.lora) return null;
  const fill = (s: string) => s.replaceAll("{agent}", agent).replaceAll("{version}", version);
  return { name: `${fill(cfg.lora.name)}-${version}`, path: fill(cfg.lora.path) };
}

export interface VllmDeployResult {
  templateKey: string;
  configKey: string;
  served: ServedModelConfig;
  /** What the running vLLM said, when base_url is configured. */
  check: { servedNameFound: boolean; models: string[]; adapterLoaded: string | null } | null;
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
  const template = chatTemplate(opts.card);
  const name = servedName(agent, cfg);
  const lora = loraFor(agent, version, cfg);
  const served: ServedModelConfig = {
    agent,
    version,
    served_model_name: name,
    base_model: cfg.base_model,
    chat_template: { key: keys.template, sha256: sha256(template) },
    lora,
    vllm_args: [
      cfg.base_model,
      "--served-model-name",
      name,
      "--chat-template",
      "chat_template.jinja",
      ...(lora ? ["--enable-lora"] : []),
    ],
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
  const check = cfg.base_url ? await checkVllm(cfg, name, lora) : null;
  return { templateKey: keys.template, configKey: keys.config, served, check };
}

const ModelList = z.object({ data: z.array(z.object({ id: z.string() }).passthrough()) }).passthrough();

async function checkVllm(
  cfg: VllmSection,
  name: string,
  lora: { name: string; path: string } | null,
): Promise<NonNullable<VllmDeployResult["check"]>> {
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
    const body = ModelList.safeParse(await res.json().catch(() => null));
    if (!body.success) throw new VllmError("vLLM /v1/models did not return a model list");
    return body.data.data.map((m) => m.id);
  };

  let models = await listModels();
  const servedNameFound = models.includes(name);
  if (!servedNameFound)
    throw new VllmError(
      `vLLM at ${base} does not serve "${name}" (it serves ${models.join(", ") || "nothing"}); start it with --served-model-name ${name}`,
    );
  let adapterLoaded: string | null = null;
  if (lora) {
    if (!models.includes(lora.name)) {
      const res = await call("/v1/load_lora_adapter", {
        method: "POST",
        body: JSON.stringify({ lora_name: lora.name, lora_path: lora.path }),
      });
      const text = await errorText(res);
      // A name loaded by an earlier attempt of this same deploy is fine; anything else is not.
      if (!res.ok && !(res.status === 400 && /already been loaded/.test(text)))
        throw new VllmError(`vLLM refused adapter ${lora.name} (${lora.path}): HTTP ${res.status}: ${text}`);
      models = await listModels();
      if (!models.includes(lora.name))
        throw new VllmError(`vLLM accepted adapter ${lora.name} but does not list it in /v1/models`);
    }
    adapterLoaded = lora.name;
  }
  return { servedNameFound, models, adapterLoaded };
}

async function errorText(res: Response): Promise<string> {
  const text = (await res.text().catch(() => "")).trim();
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
