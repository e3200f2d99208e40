// store gc across hosts: processes with their own data_dir and host name share one store (the
// project's S3 endpoint). gc takes the agent's lease in the store, the one its runs take: two gcs
// started at the same instant never work at once (one deletes everything planned, the other then
// finds nothing); a gc refuses while a run on another host holds the lease, naming it; and a run
// that starts during a gc waits for it to end.

import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../../src/config/index.js";
import { isGcOwner, peekRunLease } from "../../../src/pipeline/common/lease.js";
import { runGc } from "../../../src/pipeline/retention/gc.js";
import { MinioStore } from "../../../src/store/index.js";
import { S3Endpoint } from "../../store/s3-endpoint.js";
import { type JsonChild, spawnJsonChild } from "../helpers/json-child.js";
import { AGENT, gcConfigInput, NOW, writeFixture } from "./fixture.js";

const CHILD = resolve("test/pipeline/retention/gc-child.mjs");
type Child = JsonChild;

function startChild(spec: Record<string, unknown>): Child {
  return spawnJsonChild(CHILD, {
    ...process.env,
    GC_CHILD: JSON.stringify(spec),
    TRM_FORGE_LOG_LEVEL: "error",
  });
}

async function ready(specs: Record<string, unknown>[]): Promise<Child[]> {
  const children = specs.map(startChild);
  for (const c of children) expect(await c.next()).toEqual({ ready: true });
  return children;
}

const tmp = (p: string) => mkdtempSync(join(tmpdir(), p));

describe("store gc under the agent's lease, across hosts", () => {
  const s3 = new S3Endpoint();
  let round = 0;

  beforeAll(async () => {
    if (!existsSync(resolve("dist/pipeline/retention/gc.js")))
      throw new Error("build first: npx tsc -p tsconfig.json (npm test does it in pretest)");
    await s3.start();
  });
  afterAll(() => s3.close());

  /** A fresh bucket holding the half-year fixture; the config each host uses on it. */
  async function setUp() {
    const bucket = `gc-lease-${round++}`;
    const storeConfig = {
      kind: "minio",
      endpoint: "127.0.0.1",
      port: s3.port,
      use_ssl: false,
      bucket,
      access_key: { env: "K" },
      secret_key: { env: "S" },
    };
    const configFor = (dataDir: string) => ({ ...gcConfigInput(dataDir), store: storeConfig });
    const store = new MinioStore({
      endPoint: "127.0.0.1",
      port: s3.port,
      useSSL: false,
      accessKey: "a",
      secretKey: "b",
      bucket,
      region: "us-east-1",
      pathStyle: true,
      partSize: 64 * 1024 * 1024,
    });
    const config = parseConfig(configFor(tmp("trm-gc-lease-data-")));
    const fx = await writeFixture(store, config);
    const plan = await runGc({
      store,
      registry: fx.registry,
      config,
      agent: AGENT,
      dryRun: true,
      now: NOW,
      actor: "t",
    });
    const spec = (host: string, action: string, extra: Record<string, unknown> = {}) => ({
      host,
      action,
      now: NOW.toISOString(),
      config: configFor(tmp("trm-gc-lease-data-")),
      ...extra,
    });
    return { store, planned: plan.items.flatMap((i) => i.keys).sort(), spec };
  }

  it("two hosts starting gc at the same instant never gc at once", async () => {
    const { planned, spec } = await setUp();
    expect(planned.length).toBeGreaterThan(10);
    const children = await ready([
      spec("host-a", "gc", { delete_ms: 20 }),
      spec("host-b", "gc", { delete_ms: 20 }),
    ]);
    for (const c of children) c.send("go");
    const answers = await Promise.all(children.map((c) => c.next()));
    for (const a of answers) expect(a.ok, JSON.stringify(a)).toBe(true);
    const deleted = answers.map((a) => a.deleted as { key: string; at: number }[]);
    // One gc deleted everything the plan named; the other came after it and found nothing left.
    expect(deleted.map((d) => d.length > 0).sort()).toEqual([false, true]);
    const [first] = deleted.filter((d) => d.length > 0);
    expect(first.map((d) => d.key).sort()).toEqual(planned);
    expect(answers.map((a) => a.planned).sort((x, y) => Number(x) - Number(y))).toEqual([0, planned.length]);
    expect(await Promise.all(children.map((c) => c.end()))).toEqual([0, 0]);
  }, 120_000);

  it("gc refuses while a run on another host holds the lease, and a run waits for a gc to end", async () => {
    const { store, planned, spec } = await setUp();
    // A run on host A holds the agent's lease: gc on host B fails at once, naming it.
    const [run, gc] = await ready([spec("host-a", "run", { run_id: "r-held" }), spec("host-b", "gc")]);
    run.send("go");
    expect(await run.next()).toMatchObject({ acquired: true });
    gc.send("go");
    const refused = await gc.next();
    expect(refused.ok).toBe(false);
    expect(refused.error).toMatch(
      /^agent sre: run r-held holds the agent's lease \(pid \d+ on host-a, since /,
    );
    expect(refused.deleted).toEqual([]);
    run.send("release");
    expect(await run.next()).toEqual({ released: true });

    // gc on host B holds the lease (its deletes are slow): a run starting on host A waits for it.
    const [gc2, run2] = await ready([
      spec("host-b", "gc", { delete_ms: 30 }),
      spec("host-a", "run", { run_id: "r-late" }),
    ]);
    gc2.send("go");
    for (;;) {
      const owner = await peekRunLease(store, AGENT);
      if (owner && isGcOwner(owner, AGENT)) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    run2.send("go");
    const done = await gc2.next();
    expect(done.ok).toBe(true);
    const deletes = done.deleted as { key: string; at: number }[];
    expect(deletes.map((d) => d.key).sort()).toEqual(planned);
    const got = await run2.next();
    expect(got).toMatchObject({ acquired: true });
    expect(got.at as number).toBeGreaterThanOrEqual(deletes[deletes.length - 1].at);
    run2.send("release");
    expect(await run2.next()).toEqual({ released: true });
    expect(await Promise.all([run, gc, gc2, run2].map((c) => c.end()))).toEqual([0, 0, 0, 0]);
  }, 120_000);
});
