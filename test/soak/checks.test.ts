// The soak's coverage check: a collection killed after committing segments but before writing its
// report moved the watermark past data that is in the store; those days are not missing.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { SoakState } from "../../src/bench/soak-checks.js";
import { writeSegment } from "../../src/pipeline/collect/raw-store.js";
import type { LogEntryRecord } from "../../src/pipeline/collect/records.js";
import { FsStore } from "../../src/store/index.js";
import { collectReportKey } from "../../src/store/layout.js";

const H = 3_600_000;
const T0 = Date.parse("2025-01-03T00:00:00Z");
const iso = (ms: number) => new Date(ms).toISOString();

function logs(from: number, to: number): LogEntryRecord[] {
  const out: LogEntryRecord[] = [];
  for (let t = from; t < to; t += H / 2)
    out.push({ kind: "log_entry", query: "q", ts_ns: `${BigInt(t) * 1_000_000n}`, labels: {}, line: "ok" });
  return out;
}

async function report(store: FsStore, id: string, from: number, to: number, segments: string[]) {
  const rep = {
    sources: [
      { source: "loki", queries: [{ status: "ok", window: { start: iso(from), end: iso(to) }, segments }] },
    ],
  };
  await store.put(collectReportKey("agent-sre", id), JSON.stringify(rep));
}

describe("soak coverage", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "soak-checks-"));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it("counts a killed collection's committed segments, and only what they hold", async () => {
    const state = new SoakState(["agent-sre"], dir);
    const store = new FsStore(dir);
    const first = await writeSegment(store, "agent-sre", "loki", "2025-01-03", "a", logs(T0, T0 + 24 * H));
    await report(store, "r1", T0, T0 + 24 * H, [first.key]);
    // Killed mid-collect: the 4th's data committed, no report; the next report starts on the 5th.
    await writeSegment(store, "agent-sre", "loki", "2025-01-04", "b", logs(T0 + 24 * H, T0 + 40 * H));
    await report(store, "r3", T0 + 48 * H, T0 + 72 * H, []);
    await state.readCollections("agent-sre");
    // 16:00 to 24:00 on the 4th was never collected: that stays missing.
    expect(state.missingDays("agent-sre", "loki", T0, T0 + 72 * H)).toEqual(["2025-01-04"]);
    await writeSegment(store, "agent-sre", "loki", "2025-01-04", "c", logs(T0 + 40 * H, T0 + 48 * H));
    await state.readCollections("agent-sre");
    expect(state.missingDays("agent-sre", "loki", T0, T0 + 72 * H)).toEqual([]);
  });
});
