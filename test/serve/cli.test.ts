import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { buildProgram } from "../../src/cli.js";
import { ModelRegistry } from "../../src/pipeline/deploy/registry.js";
import { ShadowRecorder } from "../../src/serve/index.js";
import { FsStore } from "../../src/store/index.js";
import { closedPort, FakeOllama } from "../pipeline/deploy/fake-ollama.js";
import { registerVersion } from "./helpers.js";

const dir = mkdtempSync(join(tmpdir(), "trm-serve-cli-"));
const configPath = join(dir, "trm-forge.yaml");
const AGENT = "agent-sre";

async function run(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const o = vi.spyOn(process.stdout, "write").mockImplementation((s) => {
    out += String(s);
    return true;
  });
  const e = vi.spyOn(process.stderr, "write").mockImplementation((s) => {
    err += String(s);
    return true;
  });
  process.exitCode = 0;
  try {
    await buildProgram().parseAsync(["node", "trm-forge", "--config", configPath, ...args]);
  } catch {
    process.exitCode = process.exitCode || 2;
  } finally {
    o.mockRestore();
    e.mockRestore();
  }
  const code = Number(process.exitCode ?? 0);
  process.exitCode = 0;
  return { code, out, err };
}

function writeConfig(ollamaUrl: string): void {
  writeFileSync(
    configPath,
    [
      "data_dir: data",
      "model:",
      "  backend: cpu",
      "ollama:",
      "  enabled: true",
      `  base_url: ${ollamaUrl}`,
      "",
    ].join("\n"),
  );
}

describe("trm-forge predict, deploy, models compare", () => {
  let v1 = "";
  let v2 = "";
  const store = new FsStore(join(dir, "data", "store"));
  beforeAll(async () => {
    writeConfig(`http://127.0.0.1:${await closedPort()}`);
    const registry = new ModelRegistry(store);
    v1 = await registerVersion(registry, AGENT, { seed: 1 });
    await registry.promote(AGENT, v1, { actor: "test", reason: "first" });
    v2 = await registerVersion(registry, AGENT, { seed: 2 });
    await registry.promote(AGENT, v2, { alias: "challenger", actor: "test", reason: "try" });
  });

  it("predict answers with the champion, as text or JSON, and refuses a bad query with exit code 2", async () => {
    const j = await run(
      "predict",
      "--agent",
      AGENT,
      "--task",
      "log_triage",
      "--input",
      "ERROR db timeout",
      "--json",
    );
    expect(j.code).toBe(0);
    const r = JSON.parse(j.out);
    expect(r).toMatchObject({ agent: AGENT, task: "log_triage", version: v1 });
    expect(Object.keys(r.answer).sort()).toEqual(["incident", "level", "service"]);

    const t = await run(
      "predict",
      "--agent",
      AGENT,
      "--task",
      "log_triage",
      "--input",
      '{"line": "WARN disk 91%"}',
    );
    expect(t.code).toBe(0);
    expect(t.out).toMatch(new RegExp(`^agent-sre log_triage \\(model ${v1}, [12]/2 steps`));
    expect(t.out).toMatch(/ {2}level: "\w+" \(confidence \d+\.\d%\)/);

    const bad = await run("predict", "--agent", AGENT, "--task", "log_triage", "--input", "{not json");
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/--input looks like JSON but does not parse/);
    const none = await run("predict", "--agent", "nobody", "--task", "log_triage", "--input", "x");
    expect(none.code).not.toBe(0);
    expect(none.err).toMatch(/nobody has no champion/);
  });

  it("deploy reports an unreachable Ollama with exit 1, and publishes once it answers", async () => {
    const down = await run("deploy", "--agent", AGENT, "--target", "ollama", "--json");
    expect(down.code).toBe(1);
    expect(JSON.parse(down.out)).toMatchObject({ status: "partial", version: v1 });
    expect(JSON.parse(down.out).partial_reason).toMatch(/ECONNREFUSED/);

    const fake = new FakeOllama();
    await fake.start();
    try {
      writeConfig(fake.url);
      const up = await run("deploy", "--agent", AGENT, "--target", "ollama");
      expect(up.code).toBe(0);
      expect(up.out).toContain(`ollama: ok — ${AGENT} ${v1}`);
      expect(fake.models.has("agent-sre-homelab:latest")).toBe(true);
      const wrong = await run("deploy", "--agent", AGENT, "--target", "lmstudio");
      expect(wrong.code).toBe(2);
      expect(wrong.err).toContain("--target must be one of ollama, vllm");
    } finally {
      await fake.stop();
    }
  });

  it("models compare shows validation scores and the live shadow record", async () => {
    const rec = new ShadowRecorder(AGENT, v1, v2);
    const ans = (level: string) => ({
      level: { value: level, confidence: 0.8 },
      service: { value: "api", confidence: 0.6 },
    });
    rec.record({
      task: "log_triage",
      champion: { answer: ans("error"), confidence: 0.6, steps: 1, latencyMs: 4 },
      challenger: { answer: ans("error"), confidence: 0.6, steps: 2, latencyMs: 6 },
    });
    rec.record({
      task: "log_triage",
      champion: { answer: ans("error"), confidence: 0.6, steps: 1, latencyMs: 4 },
      challenger: { answer: ans("warn"), confidence: 0.6, steps: 2, latencyMs: 6 },
    });
    await rec.flush(store);
    const j = await run("models", "compare", "--agent", AGENT, "--json");
    expect(j.code).toBe(0);
    const c = JSON.parse(j.out);
    expect(c.champion.version).toBe(v1);
    expect(c.challenger.version).toBe(v2);
    // The comparison model_compare makes: champion as a, challenger as b; no evaluation scored both.
    expect(c.a.version).toBe(v1);
    expect(c.b.version).toBe(v2);
    expect(c.basis).toBe("separate_evaluations");
    expect(c.summary).toMatch(/separate evaluations/);
    expect(c.shadow.tasks[0]).toMatchObject({
      task: "log_triage",
      shadowed: 2,
      agreement: 0.5,
      label_agreement: { level: 0.5, service: 1 },
    });
    const t = await run("models", "compare", "--agent", AGENT);
    expect(t.out).toContain("log_triage: 2 shadowed, agreement 50.0% (level 50.0%, service 100.0%)");
    expect(t.out).toContain(`a = ${v1}, b = ${v2}`);
    const same = await run("models", "compare", "--agent", AGENT, "--b", v1);
    expect(same.code).not.toBe(0);
    expect(same.err).toMatch(/both/);
  });
});
