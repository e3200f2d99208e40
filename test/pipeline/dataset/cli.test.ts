import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { writeRawHomelab } from "../../../src/bench/homelab-raw.js";
import { buildProgram } from "../../../src/cli.js";
import { FsStore } from "../../../src/store/index.js";

const dir = mkdtempSync(join(tmpdir(), "trm-ds-cli-"));
const configPath = join(dir, "trm-forge.yaml");

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
    // commander usage errors: exit code set below
    process.exitCode = process.exitCode || 2;
  } finally {
    o.mockRestore();
    e.mockRestore();
  }
  const code = Number(process.exitCode ?? 0);
  process.exitCode = 0;
  return { code, out, err };
}

describe("trm-forge dataset", () => {
  beforeAll(async () => {
    writeFileSync(
      configPath,
      [
        "data_dir: data",
        "dataset:",
        "  window: 10d",
        "agents:",
        "  sre:",
        "    sources:",
        "      prometheus: {}",
        "      loki: {}",
        "      tempo: {}",
        "",
      ].join("\n"),
    );
    const store = new FsStore(join(dir, "data", "store"));
    await writeRawHomelab({
      store,
      agent: "sre",
      days: 10,
      files: 10,
      logLines: 2000,
      traces: 1000,
      series: 16,
    });
  });
  afterEach(() => {
    process.exitCode = 0;
  });

  it("builds, shows and exports", async () => {
    const built = await run("dataset", "build", "--agent", "sre", "--json");
    expect(built.code).toBe(0);
    const res = JSON.parse(built.out);
    expect(res.id).toMatch(/^ds-20260131-/);
    // The agent has no code source: its task is skipped with the reason.
    expect(res.quality.tasks.code_infill).toMatchObject({
      status: "skipped",
      reason: "the code source is disabled for agent sre",
    });
    expect(res.counts.by_task.trace_outcome.val).toBeGreaterThan(0);

    const human = await run("dataset", "build", "--agent", "sre");
    expect(human.code).toBe(0);
    expect(human.out).toContain(`dataset ${res.id} (agent sre)`);
    expect(human.out).toContain("already built from the same data and config");
    expect(human.out).toMatch(/log_triage: \d+ train, \d+ validation \(split by time\)/);
    expect(human.out).toMatch(/baseline majority \(to beat\): exact_all 0\.\d+/);

    const show = await run("dataset", "show", "--agent", "sre", "--examples", "2");
    expect(show.code).toBe(0);
    expect(show.out).toContain("trace_outcome, validation examples:");
    expect(show.out).toMatch(/-> status: (ok|error), latency: [^,]+, culprit: /);
    expect(show.out).toMatch(/-> level: \w+, service: [\w-]+, incident: (yes|no)/);
    const showJson = JSON.parse((await run("dataset", "show", res.id, "--agent", "sre", "--json")).out);
    expect(showJson.manifest.id).toBe(res.id);
    expect(showJson.examples.log_triage).toHaveLength(3);

    const out = join(dir, "export");
    const exp = await run("dataset", "export", "--agent", "sre", "--format", "trm-npy", out);
    expect(exp.code).toBe(0);
    expect(exp.out).toMatch(/^wrote .*export: train \d+ and test \d+ examples, seq_len 128/);
    expect(existsSync(join(out, "train", "all__inputs.npy"))).toBe(true);
    expect(existsSync(join(out, "test", "dataset.json"))).toBe(true);
  });

  it("exits 2 on bad usage and 1 when the build is refused", async () => {
    const bad = await run("dataset", "export", "--agent", "sre", "--format", "parquet", join(dir, "x"));
    expect(bad.code).toBe(2);
    expect(bad.err).toContain('--format must be trm-npy, got "parquet"');
    const unknown = await run("dataset", "build", "--agent", "nobody");
    expect(unknown.code).toBe(2);
    expect(unknown.err).toMatch(/agents\.nobody: no such agent/);
    writeFileSync(
      configPath,
      "data_dir: data\ndataset:\n  window: 10d\n  tasks:\n    log_triage:\n      min_examples: 99999999\nagents:\n  sre:\n    sources:\n      loki: {}\n",
    );
    const refused = await run("dataset", "build", "--agent", "sre");
    expect(refused.code).toBe(1);
    expect(refused.err).toMatch(/FAILED: log_triage has \d+ examples, fewer than its minimum 99999999/);
    expect(refused.err).toMatch(/trm-forge: dataset build for sre refused/);
    const none = await run("dataset", "show", "--agent", "sre", "ds-20000101-000000000000");
    expect(none.code).toBe(1);
    expect(none.err).toContain("not found");
  });
});
