// model_import through a real MCP client: only paths inside import.dir, promote scope, and the
// same checks, evaluation and gate as `models import`.
import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeRawHomelab } from "../../src/bench/homelab-raw.js";
import { Trainer } from "../../src/model/trainer.js";
import { buildDataset, openDataset } from "../../src/pipeline/dataset/index.js";
import { configForDataset } from "../../src/pipeline/import/index.js";
import { logTraceDataset, tinyModel } from "../helpers/tiny-config.js";
import { call, identity, SRE, startTestServer, type TestServer, tempDir, textOf } from "../server/helpers.js";

const DATASET = logTraceDataset(30);
const MODEL = tinyModel({ backend: "auto" });

describe("model_import", () => {
  let t: TestServer;
  let off: TestServer;
  let sre: Client;
  const dir = tempDir("trm-import-tool-");
  const importDir = join(dir, "incoming");

  beforeAll(async () => {
    mkdirSync(join(importDir, "run-1"), { recursive: true });
    t = await startTestServer({
      dir,
      extra: { import: { dir: importDir }, dataset: DATASET, model: MODEL, gate: { min_examples: 5 } },
    });
    await writeRawHomelab({
      store: t.ctx.store,
      agent: SRE,
      days: 4,
      files: 8,
      logLines: 400,
      traces: 200,
      series: 4,
      end: Date.parse("2026-11-29T00:00:00Z"),
    });
    await buildDataset({ store: t.ctx.store, agent: SRE, config: t.config.dataset });
    const ds = await openDataset(t.ctx.store, SRE);
    const tr = Trainer.create(configForDataset(t.config, ds), {}, 11);
    writeFileSync(join(importDir, "run-1", "model.safetensors"), tr.exportModel());
    writeFileSync(join(dir, "secret.safetensors"), tr.exportModel());
    tr.dispose();
    symlinkSync(join(dir, "secret.safetensors"), join(importDir, "escape.safetensors"));
    sre = await t.client(identity(SRE));
    off = await startTestServer({ dir: tempDir("trm-import-off-") });
  }, 120_000);
  afterAll(async () => {
    await t?.close();
    await off?.close();
  });

  it("imports a folder inside import.dir: evaluated, registered with its origin, promoted only by the gate", async () => {
    const r = await call(sre, "model_import", { path: "run-1" });
    expect(r.isError, textOf(r)).toBeFalsy();
    const s = r.structuredContent as any;
    expect(s.origin).toMatchObject({
      file: "model.safetensors",
      format: "safetensors",
      config_from: "metadata",
    });
    expect(Object.keys(s.scores).sort()).toEqual(["log_triage", "trace_outcome"]);
    expect(s.promoted_to).toBe(s.gate.passed ? "champion" : null);
    const index = await t.ctx.registry.read(SRE);
    expect(index.versions.map((v) => v.version)).toEqual([s.version]);
    expect(index.aliases.champion).toBe(s.gate.passed ? s.version : null);
    const m = await t.ctx.registry.getManifest(SRE, s.version);
    expect(m.created_by).toBe(`import:mcp:${SRE}`);
    // Imported weights get the dataset's path memory, as a trained version does.
    expect(m.artifacts.map((a) => a.name)).toContain("memory.json");
    const card = await call(sre, "model_card", { version: s.version, max_chars: 50_000 });
    expect(textOf(card)).toContain("Imported, not trained by trm-forge: `model.safetensors`");
    expect(textOf(card)).not.toContain(importDir);
  }, 120_000);

  it("refuses paths outside the folder: .., absolute paths elsewhere, links out", async () => {
    for (const path of [
      "../secret.safetensors",
      "run-1/../../secret.safetensors",
      join(dir, "secret.safetensors"),
    ]) {
      const r = await call(sre, "model_import", { path });
      expect(r.isError).toBe(true);
      expect(textOf(r)).toMatch(/is outside the import folder/);
      expect(textOf(r)).not.toContain(importDir);
    }
    const link = await call(sre, "model_import", { path: "escape.safetensors" });
    expect(textOf(link)).toMatch(/leads outside the import folder/);
    const missing = await call(sre, "model_import", { path: "nothing-here" });
    expect(textOf(missing)).toMatch(/does not exist in the import folder/);
    expect((await t.ctx.registry.read(SRE)).versions).toHaveLength(1);
  });

  it("needs the promote scope, and is disabled without import.dir", async () => {
    const reader = await t.client(identity(SRE, ["read", "train"]));
    const r = await call(reader, "model_import", { path: "run-1" });
    expect(r.isError).toBe(true);
    expect(textOf(r)).toMatch(/promote/);
    const c = await off.client(identity(SRE));
    expect(textOf(await call(c, "model_import", { path: "run-1" }))).toMatch(
      /disabled on this server: its config sets no import\.dir/,
    );
  });
});
