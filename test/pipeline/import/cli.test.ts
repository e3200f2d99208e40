// `trm-forge models import` through the built CLI: a clear error and exit code 1 for a bad file,
// a registered version (JSON) for a good one.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { writeRawHomelab } from "../../../src/bench/homelab-raw.js";
import { parseConfig } from "../../../src/config/index.js";
import { initBackend } from "../../../src/model/backend.js";
import { Trainer } from "../../../src/model/trainer.js";
import { buildDataset, openDataset } from "../../../src/pipeline/dataset/index.js";
import { ModelRegistry } from "../../../src/pipeline/deploy/registry.js";
import { configForDataset } from "../../../src/pipeline/import/index.js";
import { FsStore } from "../../../src/store/index.js";
import { logTraceDataset, tinyModel } from "../../helpers/tiny-config.js";

const CLI = resolve("dist/cli.js");
const SETTINGS = {
  agents: { sre: {} },
  model: tinyModel(),
  dataset: logTraceDataset(30),
  gate: { min_examples: 5 },
};

describe("trm-forge models import", () => {
  const dir = mkdtempSync(join(tmpdir(), "trm-import-cli-"));
  const store = new FsStore(join(dir, "data", "store"));
  const cli = (...args: string[]) => {
    const r = spawnSync(
      process.execPath,
      [CLI, "-c", join(dir, "trm-forge.json"), "models", "import", ...args],
      {
        cwd: dir,
        encoding: "utf8",
        env: { ...process.env, TRM_FORGE_LOG_LEVEL: "silent" },
      },
    );
    return { code: r.status, out: r.stdout, err: r.stderr };
  };

  beforeAll(async () => {
    if (!existsSync(CLI))
      throw new Error("build first: npx tsc -p tsconfig.json (npm test does it in pretest)");
    writeFileSync(join(dir, "trm-forge.json"), JSON.stringify({ data_dir: "data", ...SETTINGS }));
    await initBackend("auto");
    const config = parseConfig({ data_dir: join(dir, "data"), ...SETTINGS });
    await writeRawHomelab({
      store,
      agent: "sre",
      days: 4,
      files: 8,
      logLines: 400,
      traces: 200,
      series: 4,
      end: Date.parse("2026-11-29T00:00:00Z"),
    });
    await buildDataset({ store, agent: "sre", config: config.dataset });
    const t = Trainer.create(configForDataset(config, await openDataset(store, "sre")), {}, 4);
    writeFileSync(join(dir, "good.safetensors"), t.exportModel());
    t.dispose();
    writeFileSync(join(dir, "junk.safetensors"), "not a safetensors file");
  }, 120_000);

  it("says what is wrong with a bad file and exits 1; --format is checked", () => {
    const junk = cli("--agent", "sre", "junk.safetensors");
    expect(junk.code).toBe(1);
    expect(junk.err).toMatch(/junk\.safetensors: header length \d+ is/);
    const fmt = cli("--agent", "sre", "--format", "pickle", "good.safetensors");
    expect(fmt.code).toBe(2);
    expect(fmt.err).toContain("--format must be one of safetensors, trm-repo");
  });

  it("registers a good file and prints the version, its scores and the gate's verdict", async () => {
    const r = cli("--agent", "sre", "good.safetensors", "--json");
    expect(r.code, r.err).toBe(0);
    const out = JSON.parse(r.out);
    expect(out.origin).toMatchObject({ file: "good.safetensors", format: "safetensors" });
    const index = await new ModelRegistry(store).read("sre");
    expect(index.versions.map((v) => v.version)).toEqual([out.version]);
    expect(index.aliases.champion).toBe(out.gate.passed ? out.version : null);
    const text = cli("--agent", "sre", "good.safetensors");
    expect(text.code).toBe(0);
    expect(text.out).toMatch(
      /^sre v\d{8}-\S+: imported good\.safetensors \(safetensors, sha256 [0-9a-f]{12}…\)/,
    );
    expect(text.out).toMatch(/gate (passed|FAILED):/);
  }, 120_000);
});
