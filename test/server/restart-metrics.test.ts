// The gauges that describe the store survive a restart: the real server process, started on a
// store with history it did not make, shows the store's last success, gate results, served
// versions, dataset size and validation scores on /metrics; killed and started again, it shows
// the same values.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeRawHomelab } from "../../src/bench/homelab-raw.js";
import { parseConfig } from "../../src/config/index.js";
import { timeId } from "../../src/pipeline/common/ids.js";
import { buildDataset } from "../../src/pipeline/dataset/build.js";
import { ModelRegistry } from "../../src/pipeline/deploy/registry.js";
import { writeRun } from "../../src/pipeline/record.js";
import { FsStore } from "../../src/store/index.js";
import { runRecord } from "../pipeline/retention/fixture.js";
import { registerTiny, removeDir, type ServerProcess, SRE, startServerProcess, tempDir } from "./helpers.js";

const GAUGES = [
  "trm_forge_run_last_success_timestamp_seconds",
  "trm_forge_gate_result",
  "trm_forge_served_model_info",
  "trm_forge_dataset_examples",
  "trm_forge_validation_score",
  "trm_forge_store_bytes",
];

async function scrape(server: ServerProcess): Promise<string[]> {
  const res = await fetch(server.url.replace(/\/mcp$/, "/metrics"));
  expect(res.status).toBe(200);
  const text = await res.text();
  return text
    .split("\n")
    .filter((l) => GAUGES.some((g) => l.startsWith(`${g}{`)))
    .sort();
}

describe("store gauges across a server restart", () => {
  const dir = tempDir("trm-restart-");
  const configPath = join(dir, "trm-forge.json");
  const input = {
    data_dir: join(dir, "data"),
    model: { backend: "cpu" },
    agents: { [SRE]: {} },
    schedule: { enabled: false },
    retention: { auto: false },
    dataset: {
      window: "2d",
      seq_len: 64,
      tasks: {
        code_infill: { enabled: false },
        metric_forecast: { enabled: false },
        log_triage: { max_examples: 40, min_examples: 0 },
        trace_outcome: { max_examples: 40, min_examples: 0 },
      },
    },
  };
  let server: ServerProcess | null = null;
  const seeded = { champion: "", failed: "", endedAt: "", train: 0, val: 0 };

  beforeAll(async () => {
    writeFileSync(configPath, JSON.stringify(input));
    const config = parseConfig(input);
    const store = new FsStore(join(dir, "data", "store"));
    const registry = new ModelRegistry(store);
    seeded.champion = await registerTiny(registry, SRE, { scores: { log_triage: 0.61 } });
    seeded.failed = await registerTiny(registry, SRE, { gate: false, scores: { log_triage: 0.42 } });
    await registry.promote(SRE, seeded.champion, { actor: "test", reason: "seed" });
    const end = Date.parse("2026-11-01T00:00:00Z");
    await writeRawHomelab({ store, agent: SRE, days: 2, end, files: 2, logLines: 80, traces: 40, series: 2 });
    const ds = await buildDataset({ store, agent: SRE, config: config.dataset, end });
    seeded.train = ds.manifest.counts.by_task.log_triage.train;
    seeded.val = ds.manifest.counts.by_task.log_triage.val;
    const older = new Date(end - 86_400_000);
    const newer = new Date(end);
    seeded.endedAt = newer.toISOString();
    await writeRun(store, runRecord(timeId("r", older), "succeeded", true, older, { agent: SRE }));
    await writeRun(store, runRecord(timeId("r", newer), "succeeded", false, newer, { agent: SRE }));
    await writeRun(
      store,
      runRecord(timeId("r", new Date(end + 1000)), "failed", false, new Date(end + 1000), { agent: SRE }),
    );
  }, 120_000);

  afterAll(async () => {
    server?.child.kill("SIGKILL");
    removeDir(dir);
  });

  it("computes them from the store at start, and the same values come back after a restart", {
    timeout: 300_000,
  }, async () => {
    server = await startServerProcess(configPath);
    const first = await scrape(server);
    const has = (re: RegExp) =>
      expect(
        first.some((l) => re.test(l)),
        `${re} in\n${first.join("\n")}`,
      ).toBe(true);
    const ts = Date.parse(seeded.endedAt) / 1000;
    has(new RegExp(`^trm_forge_run_last_success_timestamp_seconds\\{agent="${SRE}"[^}]*\\} ${ts}$`));
    has(new RegExp(`^trm_forge_gate_result\\{agent="${SRE}",version="${seeded.champion}"[^}]*\\} 1$`));
    has(new RegExp(`^trm_forge_gate_result\\{agent="${SRE}",version="${seeded.failed}"[^}]*\\} 0$`));
    has(
      new RegExp(
        `^trm_forge_served_model_info\\{agent="${SRE}",alias="champion",version="${seeded.champion}"[^}]*\\} 1$`,
      ),
    );
    has(
      new RegExp(
        `^trm_forge_validation_score\\{agent="${SRE}",task="log_triage",version="${seeded.champion}"[^}]*\\} 0.61$`,
      ),
    );
    has(
      new RegExp(
        `^trm_forge_dataset_examples\\{agent="${SRE}",task="log_triage",split="train"[^}]*\\} ${seeded.train}$`,
      ),
    );
    has(
      new RegExp(
        `^trm_forge_dataset_examples\\{agent="${SRE}",task="log_triage",split="val"[^}]*\\} ${seeded.val}$`,
      ),
    );
    has(new RegExp(`^trm_forge_store_bytes\\{agent="${SRE}",prefix="models"[^}]*\\} [1-9]\\d*$`));

    server.child.kill("SIGKILL");
    await server.exit;
    server = await startServerProcess(configPath);
    expect(await scrape(server)).toEqual(first);
  });
});
