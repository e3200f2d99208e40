// A local Ollama for tests: the endpoints the deploy uses, speaking the wire format of Ollama's API
// documentation (ollama/ollama docs/api.md; docs.ollama.com/api/errors):
// - create/generate stream NDJSON (application/x-ndjson); create ends with {"status":"success"},
//   generate with a chunk that has "done": true and the timing fields;
// - an empty prompt loads a model (a single object, done: true), with keep_alive 0 it unloads it
//   (done_reason "unload");
// - copy/delete answer 200 with no body, or 404 when the model does not exist;
// - errors are JSON {"error": "..."}; an error after a stream started is an {"error"} line.
// Like the real scheduler (server/sched.go), loaded runners are keyed by the weights blob, so two
// tags built FROM the same base share one runner. Failures can be injected per endpoint.
import { createHash } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

interface FakeModel {
  name: string;
  weights: string;
  system: string;
  parameters: Record<string, unknown>;
  digest: string;
  modified_at: string;
}

export interface FakeOllamaFaults {
  /** Answer this many /api/copy calls with 500 before succeeding. */
  copyFailures: number;
  /** Delay between create progress lines. */
  createDelayMs: number;
  /** Fail a create mid-stream with an error line. */
  createError: string | null;
  /** Generate with a prompt answers with no text. */
  emptyGenerate: boolean;
}

export interface LoggedRequest {
  method: string;
  path: string;
  body: any;
}

export class FakeOllama {
  readonly models = new Map<string, FakeModel>();
  /** weights blob -> the model name that loaded the runner */
  readonly loaded = new Map<string, { name: string; digest: string; expires_at: string }>();
  readonly requests: LoggedRequest[] = [];
  faults: FakeOllamaFaults = { copyFailures: 0, createDelayMs: 0, createError: null, emptyGenerate: false };
  private server: Server | null = null;
  url = "";

  constructor(baseModels: Record<string, string> = { "llama3.2:3b": "base-llama" }) {
    for (const [name, weightsSeed] of Object.entries(baseModels)) {
      const weights = sha(weightsSeed);
      this.models.set(name, this.model(name, weights, "", {}));
    }
  }

  async start(): Promise<string> {
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((err) => {
        if (!res.headersSent) json(res, 500, { error: String(err) });
        else res.end();
      });
    });
    await new Promise<void>((r) => this.server!.listen(0, "127.0.0.1", r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this.url;
  }

  async stop(): Promise<void> {
    if (!this.server) return;
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server!.close(() => r()));
    this.server = null;
  }

  calls(path: string): LoggedRequest[] {
    return this.requests.filter((r) => r.path === path);
  }

  private model(
    name: string,
    weights: string,
    system: string,
    parameters: Record<string, unknown>,
  ): FakeModel {
    const digest = sha(JSON.stringify({ weights, system, parameters }));
    return { name, weights, system, parameters, digest, modified_at: new Date().toISOString() };
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    const text = await readBody(req);
    let body: any = {};
    if (text) {
      try {
        body = JSON.parse(text);
      } catch (err) {
        return json(res, 400, { error: (err as Error).message });
      }
    }
    this.requests.push({ method: req.method ?? "", path, body });
    const route = `${req.method} ${path}`;
    switch (route) {
      case "POST /api/create":
        return this.create(body, res);
      case "POST /api/copy":
        return this.copy(body, res);
      case "DELETE /api/delete":
        return this.remove(body, res);
      case "GET /api/tags":
        return json(res, 200, { models: [...this.models.values()].map((m) => this.listed(m)) });
      case "GET /api/ps":
        return json(res, 200, {
          models: [...this.loaded.entries()].map(([, l]) => ({
            ...this.listed(this.models.get(l.name) ?? this.model(l.name, "", "", {})),
            digest: l.digest,
            expires_at: l.expires_at,
            size_vram: 0,
          })),
        });
      case "POST /api/show":
        return this.show(body, res);
      case "POST /api/generate":
        return this.generate(body, res);
      default:
        return json(res, 404, { error: "404 page not found" });
    }
  }

  private listed(m: FakeModel) {
    return {
      name: m.name,
      model: m.name,
      modified_at: m.modified_at,
      size: 2019393189,
      digest: m.digest,
      details: {
        parent_model: "",
        format: "gguf",
        family: "llama",
        families: ["llama"],
        parameter_size: "3.2B",
        quantization_level: "Q4_K_M",
      },
    };
  }

  private async create(body: any, res: ServerResponse): Promise<void> {
    const name = tagged(body.model);
    if (!body.model) return json(res, 400, { error: "missing model" });
    const stream = body.stream !== false;
    const lines: object[] = [{ status: "reading model metadata" }];
    const base = body.from ? this.models.get(tagged(body.from)) : undefined;
    if (body.system) lines.push({ status: "creating system layer" });
    if (base) lines.push({ status: `using already created layer sha256:${base.weights}` });
    if (body.parameters)
      lines.push({ status: `writing layer sha256:${sha(JSON.stringify(body.parameters))}` });
    lines.push({ status: "writing manifest" });
    if (!stream) {
      if (!base) return json(res, 404, { error: `model '${body.from}' not found` });
      this.models.set(name, this.model(name, base.weights, body.system ?? "", body.parameters ?? {}));
      return json(res, 200, { status: "success" });
    }
    res.writeHead(200, { "content-type": "application/x-ndjson" });
    for (const line of lines) {
      if (this.faults.createDelayMs) await sleep(this.faults.createDelayMs);
      if (res.destroyed) return;
      res.write(`${JSON.stringify(line)}\n`);
    }
    if (!base || this.faults.createError) {
      res.end(`${JSON.stringify({ error: this.faults.createError ?? `model '${body.from}' not found` })}\n`);
      return;
    }
    this.models.set(name, this.model(name, base.weights, body.system ?? "", body.parameters ?? {}));
    res.end(`${JSON.stringify({ status: "success" })}\n`);
  }

  private copy(body: any, res: ServerResponse): void {
    if (this.faults.copyFailures > 0) {
      this.faults.copyFailures--;
      json(res, 500, { error: "open manifest: resource temporarily unavailable" });
      return;
    }
    const src = this.models.get(tagged(body.source));
    if (!src) {
      json(res, 404, { error: `model '${body.source}' not found` });
      return;
    }
    const dest = tagged(body.destination);
    this.models.set(dest, { ...src, name: dest, modified_at: new Date().toISOString() });
    res.writeHead(200).end();
  }

  private remove(body: any, res: ServerResponse): void {
    // The documented field is `model`; ollama-js 0.6 still sends the older `name`, which Ollama accepts.
    const name = tagged(body.model ?? body.name);
    if (this.models.delete(name)) res.writeHead(200).end();
    else json(res, 404, { error: `model '${body.model ?? body.name}' not found` });
  }

  private show(body: any, res: ServerResponse): void {
    const m = this.models.get(tagged(body.model ?? body.name));
    if (!m) {
      json(res, 404, { error: `model '${body.model}' not found` });
      return;
    }
    const params = Object.entries(m.parameters)
      .map(([k, v]) => `${k.padEnd(30)} ${v}`)
      .join("\n");
    json(res, 200, {
      // Ollama's own blob path inside its container, as `ollama show` answers. check-paths: allow
      modelfile: `# Modelfile generated by "ollama show"\n\nFROM /root/.ollama/models/blobs/sha256:${m.weights}\nSYSTEM """${m.system}"""\n`,
      parameters: params,
      template: "{{ .System }}\nUSER: {{ .Prompt }}\nASSISTANT: ",
      system: m.system,
      details: this.listed(m).details,
      model_info: { "general.architecture": "llama" },
      capabilities: ["completion"],
    });
  }

  private async generate(body: any, res: ServerResponse): Promise<void> {
    const name = tagged(body.model);
    const m = this.models.get(name);
    if (!m) return json(res, 404, { error: `model '${body.model}' not found` });
    const created_at = new Date().toISOString();
    if (body.keep_alive === 0 || body.keep_alive === "0") {
      this.loaded.delete(m.weights);
      if (!body.prompt)
        return json(res, 200, {
          model: body.model,
          created_at,
          response: "",
          done: true,
          done_reason: "unload",
        });
    } else {
      this.loaded.set(m.weights, {
        name,
        digest: m.digest,
        expires_at: new Date(Date.now() + 5 * 60_000).toISOString(),
      });
    }
    if (!body.prompt) return json(res, 200, { model: body.model, created_at, response: "", done: true });
    const words = this.faults.emptyGenerate ? [] : ["I", " know", " about", ` ${m.system.length}`, " chars."];
    const final = {
      model: body.model,
      created_at,
      response: "",
      done: true,
      done_reason: "stop",
      context: [1, 2, 3],
      total_duration: 10706818083,
      load_duration: 6338219291,
      prompt_eval_count: 26,
      prompt_eval_duration: 130079000,
      eval_count: words.length,
      eval_duration: 4232710000,
    };
    if (body.stream === false) return json(res, 200, { ...final, response: words.join("") });
    res.writeHead(200, { "content-type": "application/x-ndjson" });
    for (const w of words)
      res.write(`${JSON.stringify({ model: body.model, created_at, response: w, done: false })}\n`);
    res.end(`${JSON.stringify(final)}\n`);
  }
}

function tagged(name: string | undefined): string {
  if (!name) return "";
  return name.includes(":") ? name : `${name}:latest`;
}

function sha(s: string): string {
  return createHash("sha256").update(s).digest("hex");
}

function json(res: ServerResponse, status: number, value: unknown): void {
  res.writeHead(status, { "content-type": "application/json; charset=utf-8" }).end(JSON.stringify(value));
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A port nothing listens on: bound once, then closed. */
export async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}
