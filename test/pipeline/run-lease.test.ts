// One run per agent across hosts: real processes, each with its own data_dir and host name,
// sharing only the store (the project's S3 endpoint, which honours If-None-Match / If-Match, or
// one fs store directory). They start their runs at the same instant, 20 times; exactly one
// starts and the other learns its run id. Four registrations at once all land in the index. A
// holder killed with SIGKILL is taken over by another host once its lease has expired. A cancel
// asked on one host stops the run on another (a marker in the store beside the lease). A holder
// whose event loop was blocked past the lease renews it with a whole lease from the moment it
// writes, and a run renews before its end hook's gc checks that it holds the lease.

import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config/index.js";
import { cancelKey, LeaseBody, peekLease, runLeaseKey, tryLease } from "../../src/pipeline/common/lease.js";
import { SuspendSignal } from "../../src/pipeline/common/retry.js";
import { ModelRegistry } from "../../src/pipeline/deploy/registry.js";
import { Pipeline, type RunRecord, type StageFn } from "../../src/pipeline/run.js";
import { FsStore, MinioStore, type ObjectStore } from "../../src/store/index.js";
import { S3Endpoint } from "../store/s3-endpoint.js";
import { type JsonChild, spawnJsonChild } from "./helpers/json-child.js";

const CHILD = resolve("test/pipeline/helpers/lease-child.mjs");

type Child = JsonChild;

function startChild(spec: Record<string, unknown>): Child {
  return spawnJsonChild(CHILD, { ...process.env, LEASE_CHILD: JSON.stringify(spec) });
}

/** Starts the children and waits until all are ready. */
async function ready(specs: Record<string, unknown>[]): Promise<Child[]> {
  const children = specs.map(startChild);
  for (const c of children) expect(await c.next()).toEqual({ ready: true });
  return children;
}

/** Lets every child go at the same instant. */
function go(children: Child[], line = "go"): void {
  for (const c of children) c.proc.stdin.write(`${line}\n`);
}

async function together(specs: Record<string, unknown>[]): Promise<Child[]> {
  const children = await ready(specs);
  go(children);
  return children;
}

const tmp = (p: string) => mkdtempSync(join(tmpdir(), p));

/** Holds the event loop, as a long synchronous training step does. */
function blockFor(ms: number): void {
  const until = Date.now() + ms;
  while (Date.now() < until);
}

/** The store, with `before` awaited ahead of every conditional write (the lease's): a slow or hung store. */
function beforePutIf(store: FsStore, before: () => Promise<unknown>): FsStore {
  return new Proxy(store, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver);
      if (prop !== "putIf") return typeof v === "function" ? v.bind(target) : v;
      return async (...args: Parameters<FsStore["putIf"]>) => {
        await before();
        return target.putIf(...args);
      };
    },
  });
}

/** Runs the collect stage alone for agent alpha, with this lease, on this store. */
async function runCollect(
  dir: string,
  lease: string,
  store: FsStore,
  collect: StageFn,
  onRunEnd?: (record: RunRecord) => Promise<void>,
): Promise<{ runId: string; status: string }> {
  const config = parseConfig({ data_dir: join(dir, "data"), agents: { alpha: {} }, runs: { lease } });
  const none: StageFn = async () => ({});
  const pipeline = new Pipeline({
    config,
    store,
    stages: { collect, build: none, train: none, evaluate: none, deploy: none },
    sleep: async () => {},
    onRunEnd,
  });
  const started = await pipeline.startRun({ agent: "alpha", stages: ["collect"] });
  return { runId: started.runId, status: (await started.done).status };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Shared {
  name: string;
  spec(round: number): Record<string, unknown>;
  store(round: number): ObjectStore;
}

describe("one run per agent across hosts", () => {
  const s3 = new S3Endpoint();
  const fsRoot = tmp("trm-lease-fs-");
  const shared: Shared[] = [
    {
      name: "the S3 endpoint",
      spec: (round) => ({
        store: {
          kind: "minio",
          endpoint: "127.0.0.1",
          port: s3.port,
          use_ssl: false,
          bucket: `lease-${round}`,
          access_key: { env: "K" },
          secret_key: { env: "S" },
        },
      }),
      store: (round) =>
        new MinioStore({
          endPoint: "127.0.0.1",
          port: s3.port,
          useSSL: false,
          accessKey: "a",
          secretKey: "b",
          bucket: `lease-${round}`,
          region: "us-east-1",
          pathStyle: true,
          partSize: 64 * 1024 * 1024,
        }),
    },
    {
      name: "one fs store directory",
      spec: (round) => ({ fs_root: join(fsRoot, String(round)) }),
      store: (round) => new FsStore(join(fsRoot, String(round))),
    },
  ];

  beforeAll(async () => {
    if (!existsSync(resolve("dist/pipeline/run.js")))
      throw new Error("build first: npx tsc -p tsconfig.json (npm test does it in pretest)");
    await s3.start();
  });
  afterAll(() => s3.close());

  for (const sh of shared) {
    it(`on ${sh.name}: of two hosts starting a run at the same instant, 20 times, exactly one runs and the other gets its run id`, async () => {
      const round = 0;
      const children = await ready(
        ["host-a", "host-b"].map((host) => ({
          ...sh.spec(round),
          host,
          data_dir: tmp("trm-lease-data-"),
          action: "run",
          hold_ms: 200,
        })),
      );
      const store = sh.store(round);
      for (let i = 0; i < 20; i++) {
        go(children, `go ${i}`);
        const answers = await Promise.all(children.map((c) => c.next()));
        const started = answers.filter((a) => a.started === true);
        const lost = answers.filter((a) => a.started === false);
        expect(started, `round ${i}: ${JSON.stringify(answers)}`).toHaveLength(1);
        expect(lost).toHaveLength(1);
        expect(lost[0].runId).toBe(started[0].runId);
        const winner = children[answers.indexOf(started[0])];
        expect(await winner.next()).toEqual({ done: started[0].runId, status: "succeeded" });
        // One run record in the store, and the lease released by its holder.
        expect((await store.list(`runs/a${i}`)).filter((o) => o.key.endsWith("/run.json"))).toHaveLength(1);
        const lease = LeaseBody.parse(JSON.parse((await store.get(runLeaseKey(`a${i}`))).toString()));
        expect(lease.released).toBe(true);
        expect(lease.owner.holder).toBe(started[0].runId);
      }
      go(children, "exit");
      expect(await Promise.all(children.map((c) => c.exited))).toEqual([0, 0]);
    }, 120_000);

    it(`on ${sh.name}: four hosts registering at once all land in the index`, async () => {
      const round = 100;
      const children = await together(
        ["h1", "h2", "h3", "h4"].map((host) => ({
          ...sh.spec(round),
          host,
          data_dir: tmp("trm-lease-data-"),
          action: "register",
        })),
      );
      const versions = (await Promise.all(children.map((c) => c.next()))).map((a) => a.version);
      const index = await new ModelRegistry(sh.store(round)).read("alpha");
      expect(index.versions.map((v) => v.version).sort()).toEqual([...versions].sort());
      expect(new Set(versions).size).toBe(4);
    }, 60_000);
  }

  it("takes over a run whose holder was killed with SIGKILL, once its lease has expired", async () => {
    const sh = shared[0];
    const round = 200;
    const [holder] = await together([
      { ...sh.spec(round), host: "host-a", data_dir: tmp("trm-lease-data-"), action: "hold", lease: "2s" },
    ]);
    const first = await holder.next();
    expect(first.started).toBe(true);
    // A second host is ready and waiting while the first renews its lease (every 2s / 3).
    const [taker] = await together([
      { ...sh.spec(round), host: "host-b", data_dir: tmp("trm-lease-data-"), action: "resume", lease: "2s" },
    ]);
    await new Promise((r) => setTimeout(r, 1500));
    const store = sh.store(round);
    expect((await store.getVersioned(runLeaseKey("alpha"))) !== null).toBe(true);
    holder.proc.kill("SIGKILL");
    await holder.exited;
    const killedAt = Date.now();
    const lease = LeaseBody.parse(JSON.parse((await store.get(runLeaseKey("alpha"))).toString()));
    expect(lease.owner.host).toBe("host-a");
    expect(lease.owner.holder).toBe(first.runId);
    const taken = await taker.next();
    // The same run continues on the other host, not before the dead holder's lease ran out.
    expect(taken.resumed).toBe(first.runId);
    expect(taken.at as number).toBeGreaterThanOrEqual(lease.expires_at);
    expect((taken.at as number) - killedAt).toBeLessThan(2000 + 1500);
    expect(await taker.next()).toEqual({ status: "succeeded" });
    expect(await taker.exited).toBe(0);
  }, 60_000);

  for (const sh of shared) {
    it(`on ${sh.name}: a cancel asked on one host stops the run on another`, async () => {
      const round = 300;
      const [holder, canceller] = await ready([
        { ...sh.spec(round), host: "host-a", data_dir: tmp("trm-lease-data-"), action: "hold" },
        { ...sh.spec(round), host: "host-b", data_dir: tmp("trm-lease-data-"), action: "cancel" },
      ]);
      go([holder]);
      const started = await holder.next();
      expect(started.started).toBe(true);
      const store = sh.store(round);
      canceller.proc.stdin.write(`cancel ${started.runId}\n`);
      const asked = await canceller.next();
      expect(asked.cancelled).toBe(true);
      const ended = await holder.next();
      expect(ended.status).toBe("cancelled");
      // Seen at the holder's next look (every 50 ms here), not at a lease renewal or expiry.
      expect((ended.at as number) - (asked.at as number)).toBeLessThan(1500);
      const record = JSON.parse((await store.get(`runs/alpha/${started.runId}/run.json`)).toString());
      expect(record.status).toBe("cancelled");
      // The marker went with the run, and the lease was released.
      expect(await store.exists(cancelKey("alpha", started.runId as string))).toBe(false);
      expect(LeaseBody.parse(JSON.parse((await store.get(runLeaseKey("alpha"))).toString())).released).toBe(
        true,
      );
      expect(await Promise.all([holder.exited, canceller.exited])).toEqual([0, 0]);
    }, 60_000);
  }

  it("a holder that renews late keeps its lease when nobody took it, and loses it (stops) when someone did", async () => {
    const store = new FsStore(tmp("trm-lease-late-"));
    // Renewing only every 400 ms a lease of 100 ms: each renewal comes after the expiry.
    const a = await tryLease(store, "locks/x/run.json", "run x", "r-a", { ttlMs: 100, renewMs: 400 });
    expect(a.acquired).toBe(true);
    await sleep(900);
    expect(a.acquired && a.lost.aborted).toBe(false);
    // Expired now, and taken by another holder before the next renewal.
    await sleep(150);
    const b = await tryLease(store, "locks/x/run.json", "run x", "r-b", { ttlMs: 60_000 });
    expect(b).toMatchObject({ acquired: true, owner: { holder: "r-b" } });
    await sleep(500);
    expect(a.acquired && a.lost.aborted).toBe(true);
    expect(a.acquired && a.lost.reason).toBeInstanceOf(SuspendSignal);
    const c = await tryLease(store, "locks/x/run.json", "run x", "r-c", { ttlMs: 60_000 });
    expect(c).toMatchObject({ acquired: false, owner: { holder: "r-b" } });
    if (a.acquired) await a.release(); // a lost lease's release changes nothing
    if (b.acquired) await b.release();
    expect(LeaseBody.parse(JSON.parse((await store.get("locks/x/run.json")).toString())).owner.holder).toBe(
      "r-b",
    );
  });

  it("renew() after a blocked event loop: a full lease from when it is written, and whether it is still held", async () => {
    const fsStore = new FsStore(tmp("trm-lease-renew-"));
    // Every conditional write takes 300 ms, as a slow store's does: a renewal queued behind two
    // others lands 900 ms after it was queued, and must still carry a whole lease from then.
    const slow = beforePutIf(fsStore, () => sleep(300));
    const key = "locks/y/run.json";
    const a = await tryLease(slow, key, "run y", "r-a", { ttlMs: 500, renewMs: 60_000 });
    if (!a.acquired) throw new Error("not acquired");
    // The event loop held for longer than the lease: it has expired, and nobody took it.
    blockFor(600);
    expect(await peekLease(fsStore, key)).toBeNull();
    const t0 = Date.now();
    expect(await Promise.all([a.renew(), a.renew(), a.renew()])).toEqual([true, true, true]);
    // The third body was made after two 300 ms writes, so it expires a whole lease after that; one
    // made when it was queued would have expired 400 ms before it was written.
    const body = LeaseBody.parse(JSON.parse((await fsStore.get(key)).toString()));
    expect(body.owner.holder).toBe("r-a");
    expect(body.expires_at).toBeGreaterThanOrEqual(t0 + 2 * 300 + 500);
    expect(await peekLease(fsStore, key)).toMatchObject({ holder: "r-a" });
    // Expired again and taken over: renew() says so, and the lease is lost.
    await sleep(550);
    const b = await tryLease(fsStore, key, "run y", "r-b", { ttlMs: 60_000 });
    expect(b).toMatchObject({ acquired: true, owner: { holder: "r-b" } });
    expect(await a.renew()).toBe(false);
    expect(a.lost.aborted).toBe(true);
    if (b.acquired) await b.release();
  });

  it("a run whose stage held the event loop past its lease still holds it when its end hook (gc) runs", async () => {
    const dir = tmp("trm-lease-blocked-");
    const fsStore = new FsStore(join(dir, "store"));
    // Conditional writes (the lease's) take 400 ms: the renewal the timer starts after the stage
    // lands only after the run record's writes, so without a renewal of its own before the hook
    // the run would find its lease expired there.
    const store = beforePutIf(fsStore, () => sleep(400));
    const atEnd: { holder?: string | null; runId?: string } = {};
    // A stage that computes synchronously for a lease and a half, as a long training step does.
    const run = await runCollect(
      dir,
      "1s",
      store,
      async () => {
        blockFor(1500);
        return {};
      },
      async (record) => {
        atEnd.holder = (await peekLease(fsStore, runLeaseKey("alpha")))?.holder ?? null;
        atEnd.runId = record.id;
      },
    );
    expect(run.status).toBe("succeeded");
    expect(atEnd.runId).toBe(run.runId);
    expect(atEnd.holder).toBe(run.runId);
  });

  it("a stage that computes in long synchronous steps keeps its lease by pausing between them", async () => {
    const dir = tmp("trm-lease-steps-");
    const seen: (string | null)[] = [];
    // Eight steps of half a lease each, as an in-process training's (a CLI run). The lease's
    // renewal is a dozen file operations, each waiting for a turn of the event loop: without the
    // pause's wait for it, it would land only after several steps, long after the lease expired.
    const run = await runCollect(dir, "1s", new FsStore(join(dir, "store")), async (ctx) => {
      for (let i = 0; i < 8; i++) {
        blockFor(500);
        // Read without a turn of the event loop, as the next step would begin.
        const lease = LeaseBody.parse(
          JSON.parse(readFileSync(join(dir, "store", runLeaseKey("alpha")), "utf8")),
        );
        seen.push(lease.expires_at > Date.now() ? lease.owner.holder : null);
        await ctx.pause();
      }
      return {};
    });
    expect(run.status).toBe("succeeded");
    expect(seen).toEqual(new Array(8).fill(run.runId));
  });

  it("a pause waits for a store that hangs once, not at every step", async () => {
    const dir = tmp("trm-lease-hang-");
    // The lease is taken, then its renewal hangs until the test lets it go.
    let letGo = () => {};
    const hung = new Promise<void>((r) => {
      letGo = r;
    });
    let calls = 0;
    const store = beforePutIf(new FsStore(join(dir, "store")), async () => {
      if (++calls > 1) await hung;
    });
    const pauses: number[] = [];
    const run = await runCollect(dir, "1s", store, async (ctx) => {
      for (let i = 0; i < 3; i++) {
        blockFor(400);
        const t = Date.now();
        await ctx.pause();
        pauses.push(Date.now() - t);
      }
      letGo();
      return {};
    });
    expect(run.status).toBe("succeeded");
    expect(pauses[0]).toBeGreaterThanOrEqual(4_900);
    expect(pauses[1]).toBeLessThan(1_000);
    expect(pauses[2]).toBeLessThan(1_000);
  }, 30_000);
});
