// Collection reports are named by their collection's time ("20260710T030000Z-3b9829"), not by a
// run id: gc keeps them with the raw days they describe and deletes them with those days (the
// soak found them piling up for ever).
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ModelRegistry } from "../../../src/pipeline/deploy/registry.js";
import { runGc } from "../../../src/pipeline/retention/gc.js";
import { FsStore } from "../../../src/store/index.js";
import { AGENT, gcConfig, NOW } from "./fixture.js";

describe("store gc and collection reports", () => {
  it("deletes the reports of raw days beyond retention and keeps the recent ones", async () => {
    const dir = mkdtempSync(join(tmpdir(), "trm-gc-reports-"));
    const config = gcConfig(join(dir, "data"));
    const store = new FsStore(join(dir, "data", "store"));
    // Window 2d + 1 day beyond: kept from 2026-07-17 on.
    const old = [
      `raw/${AGENT}/_reports/20260710T030000Z-aaaaaa.json`,
      `raw/${AGENT}/_reports/20260716T030000Z-bbbbbb.json`,
    ];
    const recent = [
      `raw/${AGENT}/_reports/20260717T030000Z-cccccc.json`,
      `raw/${AGENT}/_reports/20260719T030000Z-dddddd.json`,
    ];
    for (const k of [...old, ...recent]) await store.put(k, '{"status":"ok"}\n');
    const r = await runGc({
      store,
      registry: new ModelRegistry(store),
      config,
      agent: AGENT,
      dryRun: false,
      now: NOW,
      actor: "test",
    });
    expect(
      r.items
        .filter((i) => i.kind === "raw")
        .flatMap((i) => i.keys)
        .sort(),
    ).toEqual(old);
    for (const k of old) expect(await store.exists(k)).toBe(false);
    for (const k of recent) expect(await store.exists(k)).toBe(true);
  });
});
