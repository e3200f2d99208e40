// Serving the trained model and deploying its knowledge: the in-process TRM server, the knowledge
// card, Ollama and vLLM.
import * as z from "zod";
import { SecretRefSchema } from "./fields.js";

/** The in-process TRM server: batching, hot swap and the A/B shadow. */
export const ServeSchema = z
  .object({
    /** Agents to serve; empty means every agent with a registry in the store. */
    agents: z.array(z.string().min(1)).default([]),
    /** Concurrent requests for one agent and model are batched up to this many samples... */
    max_batch_size: z.number().int().min(1).max(1024).default(32),
    /** ...or until the first of them has waited this long. */
    max_wait_ms: z.number().min(0).max(1000).default(3),
    /** Longest input accepted by predict, in characters (tasks truncate further to the sequence length). */
    max_input_chars: z.number().int().min(1).max(1_000_000).default(8192),
    /** How often registry.json is polled for alias moves. */
    poll_interval_ms: z.number().int().min(100).default(5000),
    /** Share of predictions that also run on the challenger in the background. */
    shadow_fraction: z.number().min(0).max(1).default(0.1),
    /** Shadow runs waiting beyond this are dropped, so a slow challenger never builds a backlog. */
    shadow_max_pending: z.number().int().min(0).default(64),
    /** How long a retired model may wait for its in-flight requests before its tensors are freed anyway. */
    drain_timeout_ms: z.number().int().min(0).default(30_000),
  })
  .strict();

/** The knowledge card (knowledge.md) distilled from the data for the agents' language models. */
export const KnowledgeSchema = z
  .object({
    max_tokens: z.number().int().min(500).max(100_000).default(6000),
    top_edges: z.number().int().min(1).default(40),
    top_errors_per_service: z.number().int().min(1).default(5),
    max_incidents: z.number().int().min(0).default(20),
    max_series: z.number().int().min(0).default(40),
  })
  .strict();

/** The agent's Ollama model: a base LLM with the knowledge card as SYSTEM. */
export const OllamaSchema = z
  .object({
    enabled: z.boolean().default(false),
    base_url: z.string().url().default("http://127.0.0.1:11434"),
    base_model: z.string().min(1).default("llama3.2:3b"),
    /** Name of the agent's model; "{agent}" is replaced. Versions are tags of it, the alias is `alias_tag`. */
    model_name: z.string().min(1).default("{agent}-homelab"),
    alias_tag: z.string().min(1).default("latest"),
    parameters: z
      .record(z.string(), z.union([z.number(), z.string(), z.boolean(), z.array(z.string())]))
      .default({ temperature: 0.2, num_ctx: 8192 }),
    /** keep_alive of the preload request (Ollama duration or seconds). */
    keep_alive: z.union([z.string(), z.number()]).default("30m"),
    /** Versioned tags kept besides the alias; older ones are deleted. */
    keep_versions: z.number().int().min(1).default(3),
    smoke_prompt: z.string().min(1).default("Name one service you know about, in one line."),
    smoke_num_predict: z.number().int().min(1).default(16),
    /** Limit for create and generate calls (create streams progress, so this is the whole stream). */
    timeout_s: z.number().positive().default(600),
    /** Limit for the short calls: copy, delete, tags, ps, show. */
    request_timeout_s: z.number().positive().default(30),
  })
  .strict();

/** Chat formats trm-forge writes a template for itself: Llama 3, ChatML (Qwen 2 and 2.5), Mistral. */
export const CHAT_TEMPLATE_FAMILIES = ["llama3", "chatml", "mistral"] as const;

/** vLLM serves a base model; it gets the card as the system turn of a chat template in the base model's format. */
export const VllmSchema = z
  .object({
    enabled: z.boolean().default(false),
    /** When set, deploy checks /v1/models for the served name. */
    base_url: z.string().url().optional(),
    api_key: SecretRefSchema.optional(),
    base_model: z.string().min(1).default("meta-llama/Llama-3.2-3B-Instruct"),
    /** "{agent}" is replaced. */
    served_model_name: z.string().min(1).default("{agent}-homelab"),
    /**
     * The template's format: the base model's own tokenizer_config.json (the file, or the model's
     * directory, as this server sees it), else a named family; neither: the family base_model names.
     */
    chat_template: z
      .object({
        tokenizer_config: z.string().min(1).optional(),
        family: z.enum(CHAT_TEMPLATE_FAMILIES).optional(),
      })
      .strict()
      .default({}),
    request_timeout_s: z.number().positive().default(30),
  })
  .strict();

export type ServeSection = z.infer<typeof ServeSchema>;
export type KnowledgeSection = z.infer<typeof KnowledgeSchema>;
export type OllamaSection = z.infer<typeof OllamaSchema>;
export type VllmSection = z.infer<typeof VllmSchema>;
