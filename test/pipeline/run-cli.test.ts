// The pipeline commands through the built CLI: models list|show|promote|rollback, report,
// schedule, and bad usage.
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { parseConfig } from "../../src/config/index.js";
import { ModelRegistry } from "../../src/pipeline/deploy/registry.js";
import { Pipeline, type StageFns } from "../../src/pipeline/run.js";
import { FsStore } from "../../src/store/index.js";
import { CLI, cli } from "../helpers/cli.js";

const CONFIG = `
data_dir: data
agents:
  sre: {}
  bruno: {}
schedule:
  timezone: Europe/Stockholm
`;

describe("trm-forge pipeline commands", () => {
  const dir = mkdtempSync(join(tmpdir(), "trm-cli-"));
  const store = new FsStore(join(dir, "data", "store"));
  const registry = new ModelRegistry(store);
  const versions: string[] = [];

  beforeAll(async () => {
    if (!existsSync(CLI))
      throw new Error("build first: npx tsc -p tsconfig.json (npm test does it in pretest)");
    writeFileSync(join(dir, "trm-forge.yaml"), CONFIG);
    const lineage = {
      run_id: null,
      dataset_id: null,
      raw_segments: [],
      code_version: "t",
      parent_version: null,
    };
    for (const passed of [true, true, false]) {
      const m = await registry.register("sre", {
        artifacts: [{ name: "model.safetensors", data: `weights ${versions.length}` }],
        versioned: (v) => [{ name: "card.md", data: `# card of ${v}\n` }],
        lineage,
        gate: { passed, reasons: [passed ? "beats every baseline" : "log_triage below its baseline"] },
        scores: { log_triage: passed ? 0.9 : 0.3 },
        createdBy: "test",
      });
      versions.push(m.version);
    }
  });

  it("lists, shows, promotes (refusing a failed gate without --force) and rolls back", {
    timeout: 300_000,
  }, () => {
    const [v1, v2, bad] = versions;
    const list = cli(dir, "models", "list", "--agent", "sre", "--json");
    expect(list.code).toBe(0);
    expect(JSON.parse(list.out).versions.map((v: { version: string }) => v.version)).toEqual(versions);

    expect(cli(dir, "models", "promote", "--agent", "sre", "--version", v1).code).toBe(0);
    const p2 = cli(dir, "models", "promote", "--agent", "sre", "--version", v2, "--reason", "better on logs");
    expect(p2.code).toBe(0);
    expect(p2.out.trim()).toBe(`champion: ${v1} -> ${v2}`);
    const refused = cli(dir, "models", "promote", "--agent", "sre", "--version", bad);
    expect(refused.code).toBe(1);
    expect(refused.err).toMatch(
      new RegExp(
        `version ${bad} of sre failed its evaluation gate; refusing to make it champion \\(use force to override\\)`,
      ),
    );
    const forced = cli(
      dir,
      "models",
      "promote",
      "--agent",
      "sre",
      "--version",
      bad,
      "--alias",
      "challenger",
      "--force",
      "--json",
    );
    expect(forced.code).toBe(0);
    expect(JSON.parse(forced.out).moves[0]).toMatchObject({ alias: "challenger", to: bad, forced: true });

    const human = cli(dir, "models", "list", "--agent", "sre");
    expect(human.out).toContain(`${v2}  gate passed`);
    expect(human.out).toContain("[champion]");
    expect(human.out).toContain(`${bad}  gate FAILED`);

    const back = cli(dir, "models", "rollback", "--agent", "sre", "--reason", "v2 misbehaves");
    expect(back.code).toBe(0);
    expect(back.out.trim()).toBe(`champion: ${v2} -> ${v1}`);
    const again = cli(dir, "models", "rollback", "--agent", "sre");
    expect(again.code).toBe(1);
    expect(again.err).toMatch(/no previous champion to roll back to/);

    const show = cli(dir, "models", "show", "--agent", "sre", "--version", "champion", "--json");
    const shown = JSON.parse(show.out);
    expect(shown.manifest.version).toBe(v1);
    expect(shown.card).toBe(`# card of ${v1}\n`);
    const history = JSON.parse(
      readFileSync(join(dir, "data", "store", "models", "sre", "registry.json"), "utf8"),
    ).history;
    expect(history.map((h: { actor: string }) => h.actor.startsWith("cli:"))).toEqual([
      true,
      true,
      true,
      true,
    ]);
    expect(history.at(-1)).toMatchObject({ action: "rollback", reason: "v2 misbehaves" });
  });

  it("prints the path of a run's report, and makes it when it is missing", { timeout: 300_000 }, async () => {
    const config = parseConfig({ ...parseYaml(CONFIG), data_dir: join(dir, "data") });
    const ok = async () => ({});
    const pipeline = new Pipeline({
      config,
      store,
      stages: { collect: ok, build: ok, train: ok, evaluate: ok, deploy: ok } as StageFns,
    });
    const rec = await (await pipeline.startRun({ agent: "bruno", stages: ["collect"] })).done;
    const r = cli(dir, "report", rec.id);
    expect(r.code).toBe(0);
    const path = r.out.trim();
    expect(path).toBe(join(dir, "data", "store", "runs", "bruno", rec.id, "report.html"));
    expect(readFileSync(path, "utf8")).toContain(`Run ${rec.id}`);
    expect(cli(dir, "report", "r-nope").code).toBe(1);
  });

  it("shows the schedule's next runs per agent and job, staggered and in the configured zone", {
    timeout: 300_000,
  }, () => {
    const r = cli(dir, "schedule", "--json");
    expect(r.code).toBe(0);
    const jobs = JSON.parse(r.out).jobs as {
      name: string;
      pattern: string;
      timezone: string;
      next_run: string;
    }[];
    expect(jobs.map((j) => [j.name, j.pattern, j.timezone])).toEqual([
      ["trm-forge:sre:collect", "0 3 * * *", "Europe/Stockholm"],
      ["trm-forge:sre:train", "0 2 1 * *", "Europe/Stockholm"],
      ["trm-forge:bruno:collect", "0 3 * * *", "Europe/Stockholm"],
      ["trm-forge:bruno:train", "0 3 1 * *", "Europe/Stockholm"],
    ]);
    for (const j of jobs) expect(Date.parse(j.next_run)).toBeGreaterThan(Date.now());
    expect(cli(dir, "schedule").out).toMatch(
      /bruno\s+train\s+0 3 1 \* \* Europe\/Stockholm.*never ran \+60m stagger/,
    );
  });

  it("refuses bad usage with exit code 2 and a clear reason", { timeout: 300_000 }, () => {
    const a = cli(dir, "run", "--agent", "nobody");
    expect(a.code).toBe(2);
    expect(a.err).toMatch(/unknown agent "nobody" \(configured: sre, bruno\)/);
    const b = cli(dir, "run", "--agent", "sre", "--stages", "train,bogus");
    expect(b.code).toBe(2);
    expect(b.err).toMatch(/--stages: "bogus" is not one of collect, build, train, evaluate, deploy/);
    expect(
      cli(dir, "models", "promote", "--agent", "sre", "--version", versions[0], "--alias", "prod").code,
    ).toBe(2);
  });
});
