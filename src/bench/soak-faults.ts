// The soak's faults, on a fixed plan by month and day, so a failing year can be replayed; all of
// them fall in the first three months, so the months after show the steady state:
//   month 1, day 5:     SIGKILL mid-collect     month 2, days 10-16: a week of server downtime
//   month 2, day 1:     SIGKILL mid-train       month 3, days 5-14:  Loki down (longer than its 7d)
//   month 2, day 3 on:  SIGKILL mid-gc          month 3, day 20:     Tempo answers 500 all day
//   month 1, days 20-22: the server's store fails one write in three, transiently
// A kill waits for its moment (a running collect or train stage, a gc with its plan journaled)
// and tries again the next day when the moment passed unseen.
import { setTimeout as sleep } from "node:timers/promises";
import { listRunIds, type RunRecord, readRun } from "../pipeline/record.js";
import { readGcState } from "../pipeline/retention/inventory.js";
import { readScheduleState } from "../pipeline/schedule.js";
import type { SoakState } from "./soak-checks.js";
import type { SoakServer } from "./soak-server.js";
import { SOURCE_RETENTION, type SoakHomelab, type SourceName } from "./soak-sim.js";

const DAY = 86_400_000;
/** A killed server comes back this long after the step's start (past every lease's expiry). */
const RESTART_AFTER_MS = 3.5 * 3_600_000;
const POLL_MS = 20;

type Start = (at: number) => Promise<SoakServer>;
type Moment = "collect" | "train" | "gc";

const dateOf = (ms: number) => new Date(ms).toISOString().slice(0, 10);

export class FaultPlan {
  private notes: string[] = [];
  private pendingKill: Moment | null = null;
  private downSince: number | null = null;
  private lastDown = 0;

  constructor(
    readonly months: number,
    readonly homelab: SoakHomelab,
    readonly state: SoakState,
  ) {}

  note(...lines: string[]): void {
    this.notes.push(...lines);
  }

  /** What the month's faults were, for its report. */
  takeMonth(): string[] {
    const n = this.notes;
    this.notes = [];
    return n;
  }

  /** Days a source may lack data because of an outage from `from` to `to` (ms). */
  private expectGap(source: SourceName, from: number, to: number): void {
    for (let t = from - DAY; t < to + DAY; t += DAY) this.state.expectedGaps.get(source)!.add(dateOf(t));
  }

  private outage(source: SourceName, from: number, to: number, status: number): void {
    this.homelab.outage({ source, from, to, status });
    this.expectGap(source, from, to);
    this.note(`${source} answers ${status} from ${dateOf(from)} to ${dateOf(to - 1)}`);
  }

  /**
   * Runs the step to `at` (day + the step hour) with the faults planned for it; returns the
   * server that runs afterwards (null while the server is down on purpose).
   */
  async step(day: number, at: number, server: SoakServer | null, start: Start): Promise<SoakServer | null> {
    const d = new Date(day);
    const month = d.getUTCMonth() + 1;
    const dom = d.getUTCDate();
    const planned = (m: number) => this.months >= m && month === m;
    if (planned(1) && dom === 5) this.pendingKill = "collect";
    if (planned(2) && dom === 1) this.pendingKill = "train";
    if (planned(2) && dom === 3) this.pendingKill = "gc";
    if (planned(3) && dom === 5) this.outage("loki", day, day + 10 * DAY, 503);
    if (planned(3) && dom === 20) this.outage("tempo", day, day + DAY, 500);
    if (planned(1) && dom === 20) {
      await server!.storeFaults(3, day + 3 * DAY);
      // A collection lost to a failed write is retried only by the next day's: a short retention loses data.
      for (const src of Object.keys(SOURCE_RETENTION)) this.expectGap(src as SourceName, day, day + 3 * DAY);
      this.note(`the store fails one write in three from ${dateOf(day)} to ${dateOf(day + 3 * DAY - 1)}`);
    }
    if (planned(2) && dom === 10) {
      await server!.kill("SIGTERM");
      this.downSince = day;
      this.lastDown = day;
      this.note(`the server is down from ${dateOf(day)}`);
      return null;
    }
    if (this.downSince !== null) {
      if (day - this.downSince < 7 * DAY) return null;
      // Sources whose retention is shorter than the downtime lose data.
      for (const [s, keep] of Object.entries(SOURCE_RETENTION))
        if (keep < at - this.downSince) this.expectGap(s as SourceName, this.downSince, day);
      this.downSince = null;
      const back = await start(at);
      this.note(`the server is back on ${dateOf(day)} after a week down`);
      await this.advance(back, at, start);
      await this.checkCatchUp(at - this.lastDown);
      return back;
    }
    if (this.pendingKill) {
      const moment = this.pendingKill;
      const killed = await this.killAt(server!, at, moment);
      if (!killed) return server;
      this.pendingKill = null;
      this.note(`SIGKILL mid-${moment} on ${dateOf(day)}`);
      const back = await start(day + RESTART_AFTER_MS);
      return this.advance(back, at, start);
    }
    return this.advance(server!, at, start);
  }

  /** A step; a server that dies unplanned is a violation, and is started again so the year goes on. */
  private async advance(server: SoakServer, at: number, start: Start): Promise<SoakServer> {
    try {
      await server.advance(at);
      return server;
    } catch (err) {
      if (!server.exitedAlready()) throw err;
      const why = (err as Error).message.slice(0, 1500);
      this.state.faultViolations.push(`the server died on ${dateOf(at)}: ${why}`);
      this.note(`the server died unplanned on ${dateOf(at)}`);
      const back = await start(at);
      await back.advance(at);
      return back;
    }
  }

  /** After the downtime: one catch-up collection per agent, its reason naming what retention took. */
  private async checkCatchUp(downMs: number): Promise<void> {
    const lost = Object.entries(SOURCE_RETENTION)
      .filter(([, keep]) => keep < downMs)
      .map(([s]) => s);
    for (const agent of this.state.agents) {
      const st = await readScheduleState(this.state.store, agent);
      const reason = st.jobs.collect.last_reason ?? "";
      this.note(`${agent} catch-up: ${reason}`);
      const missed = lost.filter((s) => !new RegExp(`lost to retention:.*\\b${s}\\b`).test(reason));
      if (!reason.startsWith("catch-up") || missed.length)
        this.state.faultViolations.push(
          `${agent}: the catch-up after the downtime does not report ${missed.join(", ") || "itself"}: "${reason}"`,
        );
    }
  }

  /** Advances to `at` and kills the server at the moment; false when the step ended first. */
  private async killAt(server: SoakServer, at: number, moment: Moment): Promise<boolean> {
    let ended = false;
    const step = server.advance(at).then(
      () => {
        ended = true;
      },
      () => {
        ended = true;
      },
    );
    while (!ended) {
      if (await this.atMoment(moment)) {
        await sleep(Math.floor(Math.random() * 50));
        await server.kill("SIGKILL");
        await step;
        return true;
      }
      await sleep(POLL_MS);
    }
    return false;
  }

  private async atMoment(moment: Moment): Promise<boolean> {
    for (const agent of this.state.agents) {
      if (moment === "gc") {
        // gc journals its plan before the first delete and empties it when done.
        const state = await readGcState(this.state.store, agent).catch(() => null);
        if (state?.pending.length) return true;
        continue;
      }
      const ids = await listRunIds(this.state.store, agent);
      const newest = ids.sort().at(-1);
      if (!newest) continue;
      let run: RunRecord;
      try {
        run = await readRun(this.state.store, agent, newest);
      } catch {
        continue; // being written
      }
      if (run.status !== "running") continue;
      const stage = run.stages.find((s) => s.name === moment);
      const training = run.stages.some((s) => s.name === "train" && s.requested);
      if (stage?.status === "running" && (moment === "train" || !training)) return true;
    }
    return false;
  }
}
