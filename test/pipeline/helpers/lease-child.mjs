// One "host" for the cross-host lock tests (run-lease.test.ts): a process with its own data_dir
// and host name that shares only the store with the others. It prints {"ready":true}, waits for
// a line on stdin (so several start at the same instant), does its action and prints the result
// as one JSON line. "run" repeats: each line "go N" starts a run of agent aN at once, until
// "exit". "hold" runs agent alpha until it is cancelled (or killed) and prints its end; "cancel"
// reads "cancel <run id>" and asks for that run's cancel. It runs the built code (dist/), from
// the repository root.
import { syncBuiltinESMExports } from "node:module";
import os from "node:os";
import { resolve } from "node:path";
import { createInterface } from "node:readline";

const spec = JSON.parse(process.env.LEASE_CHILD ?? "{}");
// Another host: the same-host liveness shortcut (a dead pid frees a lock at once) must not apply.
os.hostname = () => spec.host;
syncBuiltinESMExports();

const dist = (p) => import(resolve("dist", p));
const { parseConfig } = await dist("config/index.js");
const { FsStore, openStore } = await dist("store/index.js");
const { Pipeline } = await dist("pipeline/run.js");
const { ModelRegistry } = await dist("pipeline/deploy/registry.js");

const config = parseConfig({
  data_dir: spec.data_dir,
  agents: Object.fromEntries(["alpha", ...Array.from({ length: 20 }, (_, i) => `a${i}`)].map((a) => [a, {}])),
  runs: { lease: spec.lease ?? "2s" },
  ...(spec.store ? { store: spec.store } : {}),
});
const store = spec.fs_root
  ? new FsStore(spec.fs_root)
  : openStore(config, { K: "test-access", S: "test-secret" });
const say = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const ok = (out) => async () => out;
const pipeline = new Pipeline({
  config,
  store,
  stages: {
    collect: async (ctx) => {
      if (spec.action === "hold") {
        // Works until asked to stop, checking at every step boundary.
        while (!ctx.signal.aborted) await sleep(20);
        throw new Error("stopped");
      }
      await sleep(spec.hold_ms ?? 0);
      return { records: 1 };
    },
    build: ok({ dataset_id: "d-1" }),
    train: ok({}),
    evaluate: ok({}),
    deploy: ok({}),
  },
  cancelPollMs: 50,
});

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const line = async () => (await lines.next()).value ?? "exit";
say({ ready: true });

if (spec.action === "run") {
  const running = [];
  for (let cmd = await line(); cmd !== "exit"; cmd = await line()) {
    const agent = `a${cmd.split(" ")[1]}`;
    const r = await pipeline.startRun({ agent, stages: ["collect"] });
    say({ started: r.started, runId: r.runId, host: spec.host });
    if (r.started) running.push(r.done.then((rec) => say({ done: rec.id, status: rec.status })));
  }
  await Promise.all(running);
} else if (spec.action === "hold") {
  await line();
  const r = await pipeline.startRun({ agent: "alpha", stages: ["collect"] });
  say({ started: r.started, runId: r.runId, host: spec.host });
  const rec = await r.done;
  say({ status: rec.status, at: Date.now() });
} else if (spec.action === "resume") {
  await line();
  // Start-up of a second host: resume the interrupted run as soon as its lease lets it.
  for (;;) {
    const [r] = await pipeline.resumeInterrupted({ agents: ["alpha"] });
    if (r) {
      say({ resumed: r.runId, at: Date.now() });
      say({ status: (await r.done).status });
      break;
    }
    await sleep(50);
  }
} else if (spec.action === "cancel") {
  const runId = (await line()).split(" ")[1];
  say({ cancelled: await pipeline.cancel(runId, "alpha"), at: Date.now() });
} else if (spec.action === "register") {
  await line();
  const registry = new ModelRegistry(store, { dataDir: spec.data_dir });
  const v = await registry.register("alpha", {
    artifacts: [{ name: "w.bin", data: spec.host }],
    lineage: { run_id: null, dataset_id: null, raw_segments: [], code_version: "t", parent_version: null },
    gate: { passed: true, reasons: [] },
    createdBy: spec.host,
  });
  say({ version: v.version });
}
process.exit(0);
