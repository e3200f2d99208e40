import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Template } from "@huggingface/jinja";
import { afterEach, describe, expect, it } from "vitest";
import { VllmSchema } from "../../../src/config/schema.js";
import {
  baseTemplate,
  deployToVllm,
  MAX_TOKENIZER_CONFIG_BYTES,
  ServedModelConfig,
  VllmError,
  withCard,
} from "../../../src/pipeline/deploy/vllm.js";
import { FsStore } from "../../../src/store/index.js";
import { sha256 } from "../../../src/util/fs.js";
import { closedPort } from "./fake-ollama.js";

// A local vLLM with the route deploy uses, answering as vllm/entrypoints/openai/serving_models.py
// does: /v1/models is a ModelList of the served names, errors an ErrorResponse.
class FakeVllm {
  requests: { path: string; body: any; auth: string | undefined }[] = [];
  private server: Server | null = null;
  url = "";
  /** Answers /v1/models with this many extra bytes of padding (a server gone wrong). */
  padding = 0;
  constructor(readonly served: string[]) {}
  async start() {
    this.server = createServer(async (req, res) => {
      let text = "";
      for await (const c of req) text += c;
      const body = text ? JSON.parse(text) : null;
      this.requests.push({ path: req.url ?? "", body, auth: req.headers.authorization });
      const err = (code: number, message: string, type: string) =>
        res
          .writeHead(code, { "content-type": "application/json" })
          .end(JSON.stringify({ object: "error", message, type, param: null, code }));
      if (req.method === "GET" && req.url === "/v1/models") {
        const cards = [
          ...this.served.map((id) => ({
            id,
            object: "model",
            created: 1,
            owned_by: "vllm",
            root: "/models/base",
            parent: null,
            max_model_len: 8192,
            permission: [],
          })),
        ];
        res
          .writeHead(200, { "content-type": "application/json" })
          .end(JSON.stringify({ object: "list", data: cards, padding: "x".repeat(this.padding) }));
      } else err(404, "Not Found", "NotFoundError");
    });
    await new Promise<void>((r) => this.server!.listen(0, "127.0.0.1", r));
    this.url = `http://127.0.0.1:${(this.server!.address() as AddressInfo).port}`;
  }
  async stop() {
    this.server?.closeAllConnections();
    await new Promise<void>((r) => this.server?.close(() => r()));
  }
}

const CARD =
  "# agent-sre knowledge\n\n| caller | callee |\n{{ not a variable }} {% not a tag %} {# no comment #}\n" +
  'a "quote", a \\backslash, {% endraw %} and {%- raw -%}, 100% sure, ünïcode 🚀\n';
const DEEPSEEK = fileURLToPath(
  new URL("../../fixtures/tokenizer-config/deepseek-r1-distill-qwen/", import.meta.url),
);

/** Renders a template as vLLM does for a request: the messages, the tokenizer's special tokens. */
function render(template: string, messages: { role: string; content: string }[], tokens = {}): string {
  return new Template(template).render({
    messages,
    add_generation_prompt: true,
    bos_token: "<s>",
    eos_token: "</s>",
    ...tokens,
  });
}
const CHAT = [{ role: "user", content: "Which service calls postgres?" }];
const card = CARD.trim();

describe("vLLM chat templates", () => {
  it("llama3: the card is the system turn, verbatim, before the user's turn", async () => {
    const { template, source } = await baseTemplate(VllmSchema.parse({ enabled: true }));
    expect(source).toBe("family:llama3");
    const out = render(withCard(CARD, template), CHAT, { bos_token: "<|begin_of_text|>" });
    expect(out).toBe(
      `<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n${card}<|eot_id|>` +
        "<|start_header_id|>user<|end_header_id|>\n\nWhich service calls postgres?<|eot_id|>" +
        "<|start_header_id|>assistant<|end_header_id|>\n\n",
    );
  });

  it("chatml (Qwen 2.5): a system message from the request follows the card in the same turn", async () => {
    const cfg = VllmSchema.parse({ enabled: true, base_model: "Qwen/Qwen2.5-7B-Instruct" });
    const { template, source } = await baseTemplate(cfg);
    expect(source).toBe("family:chatml");
    const out = render(withCard(CARD, template), [{ role: "system", content: "Answer briefly." }, ...CHAT]);
    expect(out).toBe(
      `<|im_start|>system\n${card}\n\nAnswer briefly.<|im_end|>\n` +
        "<|im_start|>user\nWhich service calls postgres?<|im_end|>\n<|im_start|>assistant\n",
    );
  });

  it("mistral: no system role, so the card opens the last user turn", async () => {
    const cfg = VllmSchema.parse({ enabled: true, base_model: "mistralai/Mistral-7B-Instruct-v0.3" });
    const { template } = await baseTemplate(cfg);
    const out = render(withCard(CARD, template), [
      { role: "user", content: "hi" },
      { role: "assistant", content: "hello" },
      ...CHAT,
    ]);
    expect(out).toBe(`<s>[INST] hi[/INST] hello</s>[INST] ${card}\n\nWhich service calls postgres?[/INST]`);
  });

  it("a model's own tokenizer_config.json (DeepSeek-R1-Distill-Qwen): its template, the card in its system slot", async () => {
    const cfg = VllmSchema.parse({
      enabled: true,
      base_model: "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B",
      chat_template: { tokenizer_config: DEEPSEEK },
    });
    const { template, source } = await baseTemplate(cfg);
    expect(source).toBe(`tokenizer_config:${DEEPSEEK}`);
    const out = render(withCard(CARD, template), CHAT, { bos_token: "<｜begin▁of▁sentence｜>" });
    expect(out).toBe(`<｜begin▁of▁sentence｜>${card}<｜User｜>Which service calls postgres?<｜Assistant｜>`);
    // The same file named directly.
    const direct = await baseTemplate(
      VllmSchema.parse({
        enabled: true,
        chat_template: { tokenizer_config: join(DEEPSEEK, "tokenizer_config.json") },
      }),
    );
    expect(direct.template).toBe(template);
  });

  it("a named family wins over the model id; an unknown model without either is a clear error", async () => {
    const named = await baseTemplate(
      VllmSchema.parse({ enabled: true, base_model: "my/own-model", chat_template: { family: "chatml" } }),
    );
    expect(named.source).toBe("family:chatml");
    const unknown = await baseTemplate(VllmSchema.parse({ enabled: true, base_model: "my/own-model" })).catch(
      (e) => e,
    );
    expect(unknown).toBeInstanceOf(VllmError);
    expect(unknown.message).toContain("vllm.chat_template.family to one of llama3, chatml, mistral");
  });

  it("tokenizer configs that are missing, too big, not JSON or without a template get clear errors", async () => {
    const dir = mkdtempSync(join(tmpdir(), "trm-tok-"));
    const at = (name: string, body: string | Buffer) => {
      const d = join(dir, name);
      mkdirSync(d);
      writeFileSync(join(d, "tokenizer_config.json"), body);
      return d;
    };
    const fail = (path: string) =>
      baseTemplate(VllmSchema.parse({ enabled: true, chat_template: { tokenizer_config: path } })).catch(
        (e) => e,
      );
    expect((await fail(join(dir, "nowhere"))).message).toContain("ENOENT");
    const big = at("big", Buffer.alloc(MAX_TOKENIZER_CONFIG_BYTES + 1, 32));
    expect((await fail(big)).message).toContain(`over the ${MAX_TOKENIZER_CONFIG_BYTES} read`);
    expect((await fail(at("bad", "{ not json"))).message).toContain("is not JSON");
    expect((await fail(at("none", '{"bos_token": "<s>"}'))).message).toContain("has no chat_template");
    expect((await fail(at("shape", '{"chat_template": 3}'))).message).toContain("wrong shape");
    // A list of named templates: the default one; a template saved beside the config is read too.
    const listed = at(
      "listed",
      JSON.stringify({
        chat_template: [
          { name: "tool_use", template: "T" },
          { name: "default", template: "D" },
        ],
      }),
    );
    expect(
      (await baseTemplate(VllmSchema.parse({ enabled: true, chat_template: { tokenizer_config: listed } })))
        .template,
    ).toBe("D");
    const beside = at("beside", "{}");
    writeFileSync(join(beside, "chat_template.jinja"), "J");
    expect(
      (await baseTemplate(VllmSchema.parse({ enabled: true, chat_template: { tokenizer_config: beside } })))
        .template,
    ).toBe("J");
  });
});

describe("vLLM deploy", () => {
  let fake: FakeVllm | null = null;
  afterEach(async () => {
    await fake?.stop();
    fake = null;
  });

  it("writes the chat template and a served-model config beside the version", async () => {
    const store = new FsStore(mkdtempSync(join(tmpdir(), "trm-vllm-")));
    const cfg = VllmSchema.parse({ enabled: true });
    const r = await deployToVllm({
      store,
      agent: "agent-sre",
      version: "v20250101-000000-000",
      card: CARD,
      config: cfg,
    });
    expect(r.check).toBeNull();
    const template = (await store.get(r.templateKey)).toString("utf8");
    expect(r.templateKey).toBe("deploy/agent-sre/vllm/v20250101-000000-000/chat_template.jinja");
    expect(render(template, CHAT)).toContain(
      `<|start_header_id|>system<|end_header_id|>\n\n${card}<|eot_id|>`,
    );
    const served = ServedModelConfig.parse(JSON.parse((await store.get(r.configKey)).toString("utf8")));
    expect(served).toMatchObject({
      agent: "agent-sre",
      version: "v20250101-000000-000",
      served_model_name: "agent-sre-homelab",
      base_model: "meta-llama/Llama-3.2-3B-Instruct",
      chat_template: { key: r.templateKey, sha256: sha256(template), source: "family:llama3" },
    });
    expect(served.vllm_args).toEqual([
      "meta-llama/Llama-3.2-3B-Instruct",
      "--served-model-name",
      "agent-sre-homelab",
      "--chat-template",
      "chat_template.jinja",
    ]);
  });

  it("no LoRA: the config refuses vllm.lora, since nothing trains an adapter", () => {
    const r = VllmSchema.safeParse({ enabled: true, lora: { path: "/adapters/x" } });
    expect(r.success).toBe(false);
  });

  it("checks /v1/models for the served name, with the API key", async () => {
    fake = new FakeVllm(["agent-sre-homelab"]);
    await fake.start();
    process.env.TRM_TEST_VLLM_KEY = "vllm-test-key";
    const store = new FsStore(mkdtempSync(join(tmpdir(), "trm-vllm-")));
    const cfg = VllmSchema.parse({
      enabled: true,
      base_url: fake.url,
      api_key: { env: "TRM_TEST_VLLM_KEY" },
    });
    const r = await deployToVllm({ store, agent: "agent-sre", version: "v1", card: CARD, config: cfg });
    expect(r.check).toEqual({ servedNameFound: true, models: ["agent-sre-homelab"] });
    expect(fake.requests.map((q) => q.path)).toEqual(["/v1/models"]);
    expect(fake.requests.every((q) => q.auth === "Bearer vllm-test-key")).toBe(true);
  });

  it("reports a served name vLLM does not serve, and an unreachable vLLM", async () => {
    fake = new FakeVllm(["meta-llama/Llama-3.2-3B-Instruct"]);
    await fake.start();
    const store = new FsStore(mkdtempSync(join(tmpdir(), "trm-vllm-")));
    const wrongName = await deployToVllm({
      store,
      agent: "a",
      version: "v1",
      card: CARD,
      config: VllmSchema.parse({ enabled: true, base_url: fake.url }),
    }).catch((e) => e);
    expect(wrongName).toBeInstanceOf(VllmError);
    expect(wrongName.message).toContain('does not serve "a-homelab"');
    expect(wrongName.message).toContain("--served-model-name a-homelab");

    // An answer bigger than any model list is refused, not read to the end.
    fake.padding = 8 * 1024 * 1024;
    const flood = await deployToVllm({
      store,
      agent: "a",
      version: "v1",
      card: CARD,
      config: VllmSchema.parse({
        enabled: true,
        base_url: fake.url,
        served_model_name: "meta-llama/Llama-3.2-3B-Instruct",
      }),
    }).catch((e) => e);
    expect(flood.message).toBe(`vLLM answered more than ${1024 * 1024} bytes`);

    const url = `http://127.0.0.1:${await closedPort()}`;
    const down = await deployToVllm({
      store,
      agent: "a",
      version: "v1",
      card: CARD,
      config: VllmSchema.parse({ enabled: true, base_url: url }),
    }).catch((e) => e);
    expect(down.message).toBe(`vLLM unreachable at ${url}: ECONNREFUSED`);
  });
});
