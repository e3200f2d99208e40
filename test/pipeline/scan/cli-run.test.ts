// `trm-forge scan --end TIME --run RUN` through the built CLI: a past window (a validation day) is
// scanned with the agent's champion and stored with the run, whose report.html then shows it; a
// past window does not replace the agent's newest scan; bad --end and --run values are usage errors.
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../../src/config/index.js";
import { writeSegment } from "../../../src/pipeline/collect/raw-store.js";
import type { LogEntryRecord } from "../../../src/pipeline/collect/records.js";
import { ModelRegistry } from "../../../src/pipeline/deploy/registry.js";
import { readRunScans } from "../../../src/pipeline/report/scan.js";
import { reportKey } from "../../../src/pipeline/report.js";
import { Pipeline, type StageFns } from "../../../src/pipeline/run.js";
import { FsStore } from "../../../src/store/index.js";
import { scanKey } from "../../../src/store/layout.js";
import { CLI, cli } from "../../helpers/cli.js";
import { registerTiny } from "../../server/helpers.js";

const WINDOW = { start: "2026-11-28T06:00:00.000Z", end: "2026-11-28T08:00:00.000Z" };
const LINES = 40;

describe("trm-forge scan --end --run", () => {
  const dir = mkdtempSync(join(tmpdir(), "trm-scan-cli-"));
  const store = new FsStore(join(dir, "data", "store"));
  let runId: string;

  beforeAll(async () => {
    if (!existsSync(CLI)) throw new Error("build first: npx tsc -p tsconfig.json");
    writeFileSync(join(dir, "trm-forge.yaml"), "data_dir: data\nagents:\n  sre: {}\n");
    const registry = new ModelRegistry(store);
    const v = await registerTiny(registry, "sre", { seed: 3 });
    await registry.promote("sre", v, { actor: "test", reason: "setup" });
    // Log lines of two services across the window, a few errors among them.
    const t0 = Date.parse(WINDOW.start);
    const records: LogEntryRecord[] = Array.from({ length: LINES }, (_, i) => ({
      kind: "log_entry",
      query: "q",
      ts_ns: (BigInt(t0 + 60_000 + i * 170_000) * 1_000_000n).toString(),
      labels: { service_name: i % 2 ? "api" : "db" },
      line:
        i % 7 === 3 ? `level=error msg="db timeout after ${i} ms"` : `level=info msg="request ${i} served"`,
    }));
    await writeSegment(store, "sre", "loki", "2026-11-28", "s1", records);
    // A run whose dataset holds the window in its validation days.
    const dataset = {
      id: "ds-20261128-0123456789ab",
      window: {
        start: "2026-11-24T00:00:00.000Z",
        end: "2026-11-29T00:00:00.000Z",
        split_at: "2026-11-28T00:00:00.000Z",
        days: 5,
      },
      counts: { train: 10, val: 5, by_task: {} },
      sources: {},
      quality: { passed: true, failures: [], valid_ratio: 1, tasks: {} },
    };
    await store.put(`datasets/sre/${dataset.id}/manifest.json`, JSON.stringify(dataset));
    const stages = {
      collect: async () => ({ records: 1 }),
      build: async () => ({ dataset_id: dataset.id }),
      train: async () => ({}),
      evaluate: async () => ({}),
      deploy: async () => ({ version: v, promoted_to: null }),
    } as unknown as StageFns;
    const config = parseConfig({ data_dir: join(dir, "data"), agents: { sre: {} } });
    const pipeline = new Pipeline({ config, store, stages });
    runId = (await (await pipeline.startRun({ agent: "sre" })).done).id;
  }, 60_000);

  it("scans the past window, stores it with the run and redraws the run's report", async () => {
    const r = cli(
      dir,
      "scan",
      "--agent",
      "sre",
      "--since",
      "2h",
      "--end",
      WINDOW.end,
      "--run",
      runId,
      "--json",
    );
    expect(r.code, r.err).toBe(0);
    const out = JSON.parse(r.out);
    expect(out.window).toEqual(WINDOW);
    expect(out.scanned.logs).toBe(LINES);
    const scans = await readRunScans(store, "sre", runId);
    expect(scans.map((s) => s.window)).toEqual([WINDOW]);
    expect(scans[0].findings).toEqual(out.findings);
    const html = (await store.get(reportKey("sre", runId))).toString();
    const section = html.slice(html.indexOf('<section id="scan"'));
    expect(section).toContain(`2026-11-28 06:00–08:00 (${LINES} log lines, 0 traces, 0 series;`);
    expect(section).toContain('data-chart="timeline"');
    expect((section.match(/class="finding"/g) ?? []).length).toBe(out.findings.length);
    // A past window is not the agent's newest scan.
    expect(await store.exists(scanKey("sre"))).toBe(false);
  }, 120_000);

  it("refuses a bad --end or --run before loading the model", () => {
    for (const [args, why] of [
      [["--end", "yesterday"], /--end takes a time/],
      [["--end", "2999-01-01T00:00:00Z"], /in the future/],
      [["--run", "../../etc"], /--run takes a run id/],
    ] as const) {
      const r = cli(dir, "scan", "--agent", "sre", ...args);
      expect(r.code, r.err).toBe(2);
      expect(r.err).toMatch(why);
    }
    const r = cli(dir, "scan", "--agent", "sre", "--run", "r20990101-000000-000-abcd");
    expect(r.code).toBe(1);
    expect(r.err).toContain('agent sre has no run "r20990101-000000-000-abcd"');
  }, 120_000);
});
