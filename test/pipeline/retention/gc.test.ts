// Store gc on both stores against a store with half a year of history: what goes, what stays and
// why, that every kept version still loads and every pruned one says so, and that a second gc
// finds nothing more.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { registry as metrics } from "../../../src/metrics.js";
import { listDatasets } from "../../../src/pipeline/dataset/reader.js";
import { PrunedVersionError } from "../../../src/pipeline/deploy/registry.js";
import { listRunIds } from "../../../src/pipeline/record.js";
import { applyPlan } from "../../../src/pipeline/retention/apply.js";
import { runGc, storeUsage } from "../../../src/pipeline/retention/gc.js";
import { listAgentObjects, readGcState, readPlanInput } from "../../../src/pipeline/retention/inventory.js";
import { planGc } from "../../../src/pipeline/retention/plan.js";
import { type StoreUnderTest, storesUnderTest } from "../helpers/stores.js";
import { AGENT, type Fixture, gcConfig, NOW, writeFixture } from "./fixture.js";

for (const kind of storesUnderTest()) {
  describe(`store gc on ${kind.name}`, () => {
    let s: StoreUnderTest;
    let fx: Fixture;
    const config = gcConfig(join(mkdtempSync(join(tmpdir(), "trm-gc-")), "data"));

    beforeAll(async () => {
      s = await kind.open();
      fx = await writeFixture(s.store, config);
    }, 120_000);
    afterAll(async () => {
      await s?.close();
    });

    it("plans by the rules and keeps every protected thing, on a dry run deleting nothing", async () => {
      const before = await listAgentObjects(s.store, AGENT);
      const plan = await runGc({
        store: s.store,
        registry: fx.registry,
        config,
        agent: AGENT,
        dryRun: true,
        now: NOW,
        actor: "test",
      });
      expect(await listAgentObjects(s.store, AGENT)).toEqual(before);
      const ids = (k: string) =>
        plan.items
          .filter((i) => i.kind === k)
          .map((i) => i.id)
          .sort();
      const { v, ds, runs } = fx;
      expect(ids("version")).toEqual([v[1], v[2], v[4]].sort());
      expect(plan.kept.versions[v[5]]).toContain("champion");
      expect(plan.kept.versions[v[6]]).toContain("challenger");
      expect(plan.kept.versions[v[3]]).toContain("previous champion (rollback target)");
      expect(Object.keys(plan.kept.versions).sort()).toEqual([v[3], v[5], v[6], v[7]].sort());
      expect(ids("dataset")).toEqual([ds[2]]);
      expect(plan.kept.datasets[ds[0]]).toEqual([`trained ${v[3]}`]);
      expect(plan.kept.datasets[ds[3]]).toContain("newest");
      expect(ids("run")).toEqual([runs.b, runs.c].sort());
      expect(ids("checkpoints")).toEqual([runs.a, runs.d].sort());
      expect(plan.kept.runs[runs.f]).toEqual(["can be resumed"]);
      expect(plan.kept.runs[runs.g]).toEqual(["can be resumed"]);
      expect(plan.kept.runs[runs.a]).toEqual(["made a kept version"]);
      expect(ids("evaluation")).toHaveLength(3);
      // A deleted run's job record goes with it; a job record whose run is gone goes too, unless
      // its run may still be starting (no run began after it).
      const item = (kind: string, id: string) => plan.items.find((i) => i.kind === kind && i.id === id)!;
      expect(item("run", runs.b).keys).toContain(`jobs/${AGENT}/${runs.b}.json`);
      expect(ids("job")).toEqual([fx.jobs.orphan]);
      // A pruned version's deploy files go with it; a kept one's and the target's state stay.
      expect(item("version", v[1]).keys).toEqual(
        expect.arrayContaining([
          `deploy/${AGENT}/${v[1]}/knowledge.md`,
          `deploy/${AGENT}/vllm/${v[1]}/tokenizer_config.json`,
        ]),
      );
      const planned = plan.items.flatMap((i) => i.keys);
      for (const k of [
        `deploy/${AGENT}/${v[5]}/knowledge.md`,
        `deploy/${AGENT}/ollama.json`,
        `jobs/${AGENT}/${runs.e}.json`,
        `jobs/${AGENT}/${runs.f}.json`,
        `jobs/${AGENT}/${fx.jobs.starting}.json`,
      ])
        expect(planned).not.toContain(k);
      // Raw: the dataset window (2d) plus one day before NOW is kept; so are the days of the
      // resumable run g's dataset (07-14 and 07-15, and a day either side). The rest go, per source.
      const rawDays = new Set(ids("raw").map((g) => g.split("/")[1]));
      expect([...rawDays].sort()).toEqual(["2026-07-10", "2026-07-11", "2026-07-12"]);
      expect(Object.keys(plan.kept.raw).sort()).toEqual([
        "2026-07-13",
        "2026-07-14",
        "2026-07-15",
        "2026-07-16",
      ]);
      expect(plan.kept.raw["2026-07-14"]).toEqual([`window of ${ds[1]}, run ${runs.g} can be resumed`]);
      for (const i of plan.items) {
        expect(i.rule.length).toBeGreaterThan(5);
        const sizes = new Map(before.map((o) => [o.key, o.size]));
        expect(i.bytes).toBe(i.keys.reduce((n, k) => n + sizes.get(k)!, 0));
      }
      // References go first: the manifest of a version, the run record of a run.
      for (const i of plan.items.filter((x) => x.kind === "version"))
        expect(i.keys[0]).toMatch(/\/manifest\.json$/);
      for (const i of plan.items.filter((x) => x.kind === "run")) expect(i.keys[0]).toMatch(/\/run\.json$/);
    });

    it("deletes the plan, frees the bytes it said, and every kept version still loads", async () => {
      const usageBefore = (await storeUsage(s.store, [AGENT]))[0];
      const indexKey = `models/${AGENT}/registry.json`;
      const indexBefore = (await s.store.stat(indexKey))!.size;
      const r = await runGc({
        store: s.store,
        registry: fx.registry,
        config,
        agent: AGENT,
        now: NOW,
        actor: "test",
      });
      expect(r.deleted_bytes).toBe(r.planned_bytes);
      expect(r.deleted_objects).toBe(r.planned_objects);
      const usageAfter = (await storeUsage(s.store, [AGENT]))[0];
      // gc adds gc.json (its journal and last result) and the pruned entries of registry.json.
      const gcJson = (await s.store.stat(`runs/${AGENT}/gc.json`))!.size;
      const indexGrew = (await s.store.stat(indexKey))!.size - indexBefore;
      expect(usageBefore.bytes - usageAfter.bytes).toBe(r.deleted_bytes - gcJson - indexGrew);
      expect(usageAfter.prefixes.find((p) => p.prefix === "checkpoints")?.bytes).toBeGreaterThan(0);

      const { v, ds, runs } = fx;
      for (const k of [v[3], v[5], v[6], v[7], "champion", "challenger"]) {
        const loaded = await fx.registry.load(AGENT, k);
        expect(loaded.files.get("model.safetensors")!.length).toBe(2048);
      }
      for (const k of [v[1], v[2], v[4]])
        await expect(fx.registry.load(AGENT, k)).rejects.toThrow(PrunedVersionError);
      await expect(fx.registry.load(AGENT, v[1])).rejects.toThrow(/pruned by retention/);
      // The history stays: every version entry and every alias move.
      const index = await fx.registry.read(AGENT);
      expect(index.versions.map((x) => x.version)).toEqual(v.slice(1));
      expect(index.history).toHaveLength(4);
      expect(index.pruned?.map((p) => p.version).sort()).toEqual([v[1], v[2], v[4]].sort());
      expect(await fx.registry.previousChampion(AGENT)).toBe(v[3]);

      expect((await listDatasets(s.store, AGENT)).map((d) => d.id).sort()).toEqual(
        [ds[0], ds[1], ds[3]].sort(),
      );
      expect((await listRunIds(s.store, AGENT)).sort()).toEqual(
        [runs.a, runs.d, runs.e, runs.f, runs.g].sort(),
      );
      const keys = (await listAgentObjects(s.store, AGENT)).map((o) => o.key);
      for (const id of [runs.a, runs.d]) {
        expect(keys.filter((k) => k.startsWith(`runs/${AGENT}/${id}/checkpoints/`))).toEqual([]);
        for (const f of ["run.json", "metrics.jsonl", "report.html"])
          expect(keys).toContain(`runs/${AGENT}/${id}/${f}`);
      }
      expect(keys.filter((k) => k.startsWith(`runs/${AGENT}/${runs.f}/checkpoints/`))).toHaveLength(4);
      expect(keys.filter((k) => /^raw\/[^/]+\/[^/]+\/2026-07-1[0-2]\//.test(k))).toEqual([]);
      for (const day of ["2026-07-13", "2026-07-14", "2026-07-15", "2026-07-16", "2026-07-17", "2026-07-19"])
        expect(
          keys.some((k) => k.startsWith(`raw/${AGENT}/loki/${day}/`)),
          day,
        ).toBe(true);

      const state = await readGcState(s.store, AGENT);
      expect(state.pending).toEqual([]);
      expect(state.last).toMatchObject({ ok: true, deleted_bytes: r.deleted_bytes });
      const text = await metrics.metrics();
      expect(text).toMatch(new RegExp(`trm_forge_gc_deleted_bytes_total\\{agent="${AGENT}"[^}]*\\} \\d+`));
      expect(text).toMatch(/trm_forge_store_bytes\{agent="sre",prefix="models"[^}]*\} \d+/);

      const again = await runGc({
        store: s.store,
        registry: fx.registry,
        config,
        agent: AGENT,
        now: NOW,
        actor: "test",
      });
      expect(again.items).toEqual([]);
    });

    it("deletes a dataset build that never wrote its manifest once it is a day old, not before", async () => {
      const at = (ms: number) =>
        runGc({
          store: s.store,
          registry: fx.registry,
          config,
          agent: AGENT,
          dryRun: true,
          now: new Date(ms),
          actor: "test",
        });
      const partialItem = (plan: Awaited<ReturnType<typeof at>>) =>
        plan.items.find((i) => i.kind === "dataset" && i.id === fx.partial);
      // Written moments ago: it may be a build still going.
      expect(partialItem(await at(Date.now()))).toBeUndefined();
      const later = partialItem(await at(Date.now() + 2 * 86_400_000));
      expect(later?.rule).toMatch(/never finished \(no manifest\)/);
      expect(later?.keys.sort()).toEqual([
        `datasets/${AGENT}/${fx.partial}/train.bin`,
        `datasets/${AGENT}/${fx.partial}/val.bin`,
      ]);
    });

    it("leaves a partial build's file that was written again between plan and delete, and all of it once it finished", async () => {
      const prefix = `datasets/${AGENT}/${fx.partial}/`;
      const t0 = Date.now();
      const plan = planGc(await readPlanInput(s.store, fx.registry, AGENT, []), {
        retention: config.retention,
        datasetWindowMs: config.dataset.window,
        now: new Date(t0 + 86_400_000),
      });
      const item = plan.items.find((i) => i.kind === "dataset" && i.id === fx.partial)!;
      expect(item.guard).toEqual({ before: t0, absent: `${prefix}manifest.json` });
      // The same build runs again from the CLI (no lease) and rewrites train.bin after the plan.
      await new Promise((r) => setTimeout(r, 1500)); // S3 times are whole seconds
      await s.store.put(`${prefix}train.bin`, "the build again\n");
      await applyPlan(s.store, fx.registry, { ...plan, items: [item] }, { actor: "test" });
      expect(await s.store.stat(`${prefix}train.bin`)).not.toBeNull();
      expect(await s.store.stat(`${prefix}val.bin`)).toBeNull();
      // It finishes (its manifest appears): an item planned before that deletes nothing.
      await s.store.put(`${prefix}val.bin`, "the build again\n");
      // Nor does an interrupted gc's journal finish it once the manifest is there.
      const settings = {
        retention: config.retention,
        datasetWindowMs: config.dataset.window,
        now: new Date(t0),
      };
      const journal = [{ ...item, keys: [`${prefix}gone.bin`, `${prefix}val.bin`] }];
      const input = await readPlanInput(s.store, fx.registry, AGENT, journal);
      const leftover = (p: ReturnType<typeof planGc>) =>
        p.items.some((i) => i.kind === "leftover" && i.id === fx.partial);
      expect(leftover(planGc(input, settings))).toBe(true);
      input.objects.push({ key: `${prefix}manifest.json`, size: 3, mtimeMs: Date.now() });
      expect(leftover(planGc(input, settings))).toBe(false);
      await s.store.put(`${prefix}manifest.json`, "{}\n");
      await applyPlan(
        s.store,
        fx.registry,
        { ...plan, items: [{ ...item, guard: { ...item.guard!, before: Date.now() + 60_000 } }] },
        { actor: "test" },
      );
      for (const f of ["train.bin", "val.bin", "manifest.json"])
        expect(await s.store.stat(`${prefix}${f}`)).not.toBeNull();
      await s.store.delete(`${prefix}manifest.json`); // listDatasets would refuse this stand-in manifest
    });
  });
}
