// Three simulated months of the real server (`trm-forge serve`, schedule on) against the
// simulator, on the soak's clock, with every fault of the plan: SIGKILL mid-collect, mid-train
// and mid-gc, store writes failing, a week of downtime, Loki down 10 days, Tempo failing a day.
// Each month's checks (one monthly run per agent, gate verdicts with reasons, a champion that
// answers, every kept version loading, nothing left running, an append-only registry, data
// missing exactly where the outages cost it, /metrics agreeing with the store) find nothing.
// The year is the bench: `npm run bench -- soak --months 12`.
import { describe, expect, it } from "vitest";
import { runSoak } from "../../src/bench/soak.js";

describe("soak: three simulated months with faults", () => {
  it("keeps every month's promises", { timeout: 1_200_000 }, async () => {
    const r = await runSoak({ months: 3, agents: 1, faults: true });
    expect(r.violations).toEqual([]);
    expect(r.months.map((m) => [m.month, m.from, m.to])).toEqual([
      [1, "2025-01-01", "2025-01-31"],
      [2, "2025-02-01", "2025-02-28"],
      [3, "2025-03-01", "2025-03-31"],
    ]);
    for (const m of r.months) {
      // The server ran on the soak's clock: one training on the 1st at 02:00, daily collections.
      expect(m.runs.monthly).toBe(1);
      expect(m.gate).toHaveLength(1);
      expect(m.gate[0].run.startsWith(`r2025${m.from.slice(5, 7)}01-0200`)).toBe(true);
      expect(m.gate[0].passed === true || m.gate[0].reasons.length > 0).toBe(true);
      expect(m.champion["agent-sre"]).toMatch(/^v2025/);
      expect(m.bytes["raw/loki"]).toBeGreaterThan(0);
      expect(m.rss_bytes).toBeGreaterThan(0);
    }
    const [jan, feb, mar] = r.months;
    expect(jan.runs.collects).toBeGreaterThanOrEqual(28);
    expect(jan.events.some((e) => e.startsWith("SIGKILL mid-collect on 2025-01-"))).toBe(true);
    expect(jan.events).toContain("the store fails one write in three from 2025-01-20 to 2025-01-22");
    // Lost collections (failed writes) cost only what a source no longer held the next day.
    expect(Object.keys(jan.gaps).filter((k) => !k.endsWith("/tempo"))).toEqual([]);
    // The killed runs were resumed, not started again.
    expect(jan.runs.resumed + feb.runs.resumed).toBeGreaterThanOrEqual(2);
    expect(feb.events.filter((f) => f.startsWith("SIGKILL")).map((f) => f.split(" on ")[0])).toEqual([
      "SIGKILL mid-train",
      "SIGKILL mid-gc",
    ]);
    // A week down: one catch-up collection, which names what Loki (7d) and Tempo (2d) no longer hold.
    expect(feb.runs.catch_up).toBe(1);
    expect(feb.events.some((f) => /catch-up: .*lost to retention: loki .*tempo/.test(f))).toBe(true);
    expect(feb.gaps["agent-sre/tempo"]?.length).toBeGreaterThanOrEqual(4);
    expect(feb.gaps["agent-sre/prometheus"]).toBeUndefined();
    // Loki down ten days, three more than it keeps: the days beyond its retention are gone.
    expect(mar.gaps["agent-sre/loki"]?.length).toBeGreaterThanOrEqual(2);
    expect(mar.runs.collects_failed).toBe(0);
    // Retention at work: gc deleted raw data every month.
    for (const m of r.months) expect(m.gc.deleted_bytes).toBeGreaterThan(0);
  });
});
