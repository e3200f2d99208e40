import { mkdtempSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { VllmSchema } from "../../../src/config/schema.js";
import {
  chatTemplate,
  deployToVllm,
  ServedModelConfig,
  VllmError,
} from "../../../src/pipeline/deploy/vllm.js";
import { FsStore } from "../../../src/store/index.js";
import { sha256 } from "../../../src/util/fs.js";
import { closedPort } from "./fake-ollama.js";

// A local vLLM with the routes deploy uses, answering as vllm/entrypoints/openai/serving_models.py
// does: /v1/models is a ModelList (base names, then LoRA cards with parent), load_lora_adapter
// answers a plain-text success or an ErrorResponse (400 when the name is already loaded).
class FakeVllm {
  loras: { name: string; path: string }[] = [];
  requests: { path: string; body: any; auth: string | undefined }[] = [];
  private server: Server | null = null;
  url = "";
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
          ...this.loras.map((l) => ({
            id: l.name,
            object: "model",
            created: 1,
            owned_by: "vllm",
            root: l.path,
            parent: this.served[0],
            max_model_len: null,
            permission: [],
          })),
        ];
        res
          .writeHead(200, { "content-type": "application/json" })
          .end(JSON.stringify({ object: "list", data: cards }));
      } else if (req.method === "POST" && req.url === "/v1/load_lora_adapter") {
        if (!body?.lora_name || !body?.lora_path)
          return err(400, "Both 'lora_name' and 'lora_path' must be provided.", "InvalidUserInput");
        if (this.loras.some((l) => l.name === body.lora_name))
          return err(
            400,
            `The lora adapter '${body.lora_name}' has already been loaded.`,
            "InvalidUserInput",
          );
        if (!String(body.lora_path).startsWith("/adapters/"))
          return err(404, `No adapter found for ${body.lora_path}`, "NotFoundError");
        this.loras.push({ name: body.lora_name, path: body.lora_path });
        res.writeHead(200).end(`Success: LoRA adapter '${body.lora_name}' added successfully.`);
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

const CARD = "# agent-sre knowledge\n\n| caller | callee |\n{{ not a variable }} {% not a tag %}\n";

describe("vLLM deploy", () => {
  let fake: FakeVllm | null = null;
  afterEach(async () => {
    await fake?.stop();
    fake = null;
  });

  it("writes a chat template with the card in the system turn and a served-model config beside the version", async () => {
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
    // The card is inside the system turn, verbatim and protected from Jinja by a raw block.
    const system = template.slice(
      template.indexOf("<|start_header_id|>system<|end_header_id|>"),
      template.indexOf("<|eot_id|>"),
    );
    expect(system).toContain(`{% raw %}${CARD}{% endraw %}`);
    expect(template.indexOf("{% raw %}")).toBeLessThan(template.indexOf("{%- for message in messages %}"));
    const served = ServedModelConfig.parse(JSON.parse((await store.get(r.configKey)).toString("utf8")));
    expect(served).toMatchObject({
      agent: "agent-sre",
      version: "v20250101-000000-000",
      served_model_name: "agent-sre-homelab",
      base_model: "meta-llama/Llama-3.2-3B-Instruct",
      chat_template: { key: r.templateKey, sha256: sha256(template) },
      lora: null,
    });
    expect(served.vllm_args).toEqual([
      "meta-llama/Llama-3.2-3B-Instruct",
      "--served-model-name",
      "agent-sre-homelab",
      "--chat-template",
      "chat_template.jinja",
    ]);
  });

  it("cannot be escaped by an endraw inside the card", () => {
    const t = chatTemplate("before {% endraw %}{{ secret }}{%- endraw -%} after");
    expect(t.match(/\{%-?\s*endraw\s*-?%\}/g)).toHaveLength(1);
  });

  it("checks /v1/models for the served name and loads a versioned LoRA adapter", async () => {
    fake = new FakeVllm(["agent-sre-homelab"]);
    await fake.start();
    process.env.TRM_TEST_VLLM_KEY = "vllm-test-key";
    const store = new FsStore(mkdtempSync(join(tmpdir(), "trm-vllm-")));
    const cfg = VllmSchema.parse({
      enabled: true,
      base_url: fake.url,
      api_key: { env: "TRM_TEST_VLLM_KEY" },
      lora: { path: "/adapters/{agent}/{version}" },
    });
    const r1 = await deployToVllm({ store, agent: "agent-sre", version: "v1", card: CARD, config: cfg });
    expect(r1.check).toEqual({
      servedNameFound: true,
      models: ["agent-sre-homelab", "agent-sre-lora-v1"],
      adapterLoaded: "agent-sre-lora-v1",
    });
    expect(fake.requests.find((q) => q.path === "/v1/load_lora_adapter")?.body).toEqual({
      lora_name: "agent-sre-lora-v1",
      lora_path: "/adapters/agent-sre/v1",
    });
    expect(fake.requests.every((q) => q.auth === "Bearer vllm-test-key")).toBe(true);

    // The next version gets its own name beside the first, which stays loaded for clients that still use it.
    const r2 = await deployToVllm({ store, agent: "agent-sre", version: "v2", card: CARD, config: cfg });
    expect(r2.check?.adapterLoaded).toBe("agent-sre-lora-v2");
    expect(fake.loras.map((l) => l.name)).toEqual(["agent-sre-lora-v1", "agent-sre-lora-v2"]);

    // Deploying v2 again does not try to load it twice.
    const loads = fake.requests.filter((q) => q.path === "/v1/load_lora_adapter").length;
    await deployToVllm({ store, agent: "agent-sre", version: "v2", card: CARD, config: cfg });
    expect(fake.requests.filter((q) => q.path === "/v1/load_lora_adapter")).toHaveLength(loads);
  });

  it("reports a served name vLLM does not serve, a refused adapter, and an unreachable vLLM", async () => {
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

    const badPath = await deployToVllm({
      store,
      agent: "a",
      version: "v1",
      card: CARD,
      config: VllmSchema.parse({
        enabled: true,
        base_url: fake.url,
        served_model_name: "meta-llama/Llama-3.2-3B-Instruct",
        lora: { path: "/elsewhere/{version}" },
      }),
    }).catch((e) => e);
    expect(badPath).toBeInstanceOf(VllmError);
    expect(badPath.message).toContain("HTTP 404: No adapter found for /elsewhere/v1");

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
