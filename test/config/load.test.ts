import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/index.js";
import { ConfigError } from "../../src/errors.js";

function writeConfig(text: string): string {
  const dir = mkdtempSync(join(tmpdir(), "trm-cfg-"));
  const path = join(dir, "trm-forge.yaml");
  writeFileSync(path, text);
  return path;
}

describe("config", () => {
  it("uses defaults when no file exists", () => {
    const dir = mkdtempSync(join(tmpdir(), "trm-cfg-"));
    const loaded = loadConfig({ cwd: dir, env: {} });
    expect(loaded.path).toBeNull();
    expect(loaded.config.model.preset).toBe("7m");
    expect(loaded.config.store.kind).toBe("fs");
    expect(loaded.config.data_dir).toBe(join(dir, ".trm-forge"));
  });

  it("reads the file named by TRM_FORGE_CONFIG and resolves data_dir beside it", () => {
    const path = writeConfig("data_dir: data\nmodel:\n  preset: demo\n  hidden_size: 96\n");
    const loaded = loadConfig({ env: { TRM_FORGE_CONFIG: path } });
    expect(loaded.path).toBe(path);
    expect(loaded.config.model.hidden_size).toBe(96);
    expect(loaded.config.data_dir).toBe(join(path, "..", "data"));
  });

  it("applies TRM_FORGE_ env overrides, matching keys case-insensitively", () => {
    const path = writeConfig("model:\n  hidden_size: 96\n");
    const loaded = loadConfig({
      env: { TRM_FORGE_CONFIG: path, TRM_FORGE_MODEL__HIDDEN_SIZE: "128", TRM_FORGE_MODEL__H_CYCLES: "2" },
    });
    expect(loaded.config.model.hidden_size).toBe(128);
    expect(loaded.config.model.H_cycles).toBe(2);
    expect(loaded.envOverrides.sort()).toEqual(["model.H_cycles", "model.hidden_size"]);
  });

  it("names the bad key path and what was expected", () => {
    const path = writeConfig("model:\n  hidden_size: lots\n");
    expect(() => loadConfig({ env: { TRM_FORGE_CONFIG: path } })).toThrow(ConfigError);
    expect(() => loadConfig({ env: { TRM_FORGE_CONFIG: path } })).toThrow(
      /model\.hidden_size: expected number/,
    );
  });

  it("rejects unknown keys by name", () => {
    const path = writeConfig("model:\n  hiden_size: 12\n");
    expect(() => loadConfig({ env: { TRM_FORGE_CONFIG: path } })).toThrow(
      /model: unknown key\(s\) "hiden_size"/,
    );
  });

  it("fails clearly on a missing explicit file and on broken YAML", () => {
    expect(() => loadConfig({ path: "/nonexistent/trm.yaml", env: {} })).toThrow(/config file not found/);
    const path = writeConfig("model: [unclosed\n");
    expect(() => loadConfig({ env: { TRM_FORGE_CONFIG: path } })).toThrow(/not valid YAML/);
  });
});
