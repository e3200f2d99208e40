// One "host" for the gc lease test (gc-lease.test.ts): a process with its own data_dir and host
// name that shares only the store. It prints {"ready":true}, waits for "go" on stdin, then:
//   gc:  runs store gc of agent "sre" (each delete takes spec.delete_ms, so the gc lasts a while)
//        and prints what it deleted and when, or its error;
//   run: takes the agent's run lease as a run would, prints when it got it, and releases it on
//        the next line.
// It runs the built code (dist/), from the repository root.
import { syncBuiltinESMExports } from "node:module";
import os from "node:os";
import { resolve } from "node:path";
import { createInterface } from "node:readline";

const spec = JSON.parse(process.env.GC_CHILD ?? "{}");
// Another host: the same-host liveness shortcut (a dead pid frees a lease at once) must not apply.
os.hostname = () => spec.host;
syncBuiltinESMExports();

const dist = (p) => import(resolve("dist", p));
const { parseConfig } = await dist("config/index.js");
const { openStore } = await dist("store/index.js");
const { ModelRegistry } = await dist("pipeline/deploy/registry.js");
const { runGc } = await dist("pipeline/retention/gc.js");
const { tryRunLease } = await dist("pipeline/common/lease.js");

const config = parseConfig(spec.config);
const store = openStore(config, { K: "test-access", S: "test-secret" });
const say = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const line = async () => (await lines.next()).value ?? "exit";

say({ ready: true });
await line();
if (spec.action === "gc") {
  const deleted = [];
  try {
    const r = await runGc({
      store,
      registry: new ModelRegistry(store, { dataDir: config.data_dir }),
      config,
      agent: "sre",
      now: new Date(spec.now),
      actor: `test:${spec.host}`,
      onDeleted: (key) => {
        const until = Date.now() + (spec.delete_ms ?? 0);
        while (Date.now() < until);
        deleted.push({ key, at: Date.now() });
      },
    });
    say({ ok: true, deleted, planned: r.planned_objects });
  } catch (err) {
    say({ ok: false, error: err.message, deleted });
  }
} else if (spec.action === "run") {
  const r = await tryRunLease(store, "sre", spec.run_id, 60_000, { pollMs: 50 });
  say({ acquired: r.acquired, at: Date.now(), holder: r.owner?.holder ?? null });
  await line();
  if (r.acquired) await r.release();
  say({ released: true });
}
