// A full collection against the simulator, the way a run does it (under the run's AbortSignal),
// with every source fetching many things at once, prints no process warning: each request used
// to add a listener of its own to the run's signal, and eleven in flight printed
// MaxListenersExceededWarning.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { parseConfig } from "../../src/config/index.js";
import { collect } from "../../src/pipeline/collect/index.js";
import { agentConfigFor, createSimulator, type Simulator } from "../../src/simulator/index.js";
import { END, END_MS } from "./helpers.js";

let sim: Simulator;
beforeAll(async () => {
  sim = await createSimulator({ seed: 8, days: 2, end: END });
}, 120_000);
afterAll(async () => {
  await sim.close();
});

it("a collection with many requests in flight emits no process warning", async () => {
  const agent = agentConfigFor(sim.url, { lookback: "2d" });
  agent.sources.tempo = { ...agent.sources.tempo, fetch_concurrency: 24 } as typeof agent.sources.tempo;
  const config = parseConfig({
    data_dir: mkdtempSync(join(tmpdir(), "trm-sim-warn-")),
    collect: { concurrency: 8 },
    agents: { "agent-sre": agent },
  });
  const warnings: string[] = [];
  const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}\n${w.stack}`);
  process.on("warning", onWarning);
  const run = new AbortController();
  try {
    const report = await collect(config, { agent: "agent-sre", now: END_MS, signal: run.signal });
    expect(report.sources.filter((s) => s.source !== "code").map((s) => [s.source, s.status])).toEqual([
      ["prometheus", "ok"],
      ["loki", "ok"],
      ["tempo", "ok"],
    ]);
    const tempo = report.sources.find((s) => s.source === "tempo")!;
    expect(tempo.queries.reduce((a, q) => a + q.requests, 0)).toBeGreaterThan(24);
    // Warnings are emitted on the next tick.
    await new Promise((r) => setImmediate(r));
  } finally {
    process.off("warning", onWarning);
  }
  expect(warnings).toEqual([]);
}, 300_000);
