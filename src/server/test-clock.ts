// `serve --unsafe-test-clock`: the soak drives the server's simulated clock over the IPC channel.
// {type: "trm-forge:advance", id, to} waits for every run to end, fires the schedule's jobs due
// up to `to` (each at its due time, waiting for it), and answers {type: "trm-forge:advanced", id,
// now} once nothing runs, so the soak never has to sleep to let the server catch up.
// {type: "trm-forge:store-faults", every, until} makes every n-th store write fail, transiently,
// until the simulated time `until` (the store is wrapped by faultyStore only under this flag).
import { setTimeout as sleep } from "node:timers/promises";
import * as z from "zod";
import { log } from "../log.js";
import type { ObjectStore } from "../store/index.js";
import { setTestClock } from "../util/clock.js";
import type { ServerContext } from "./context.js";

const Advance = z
  .object({ type: z.literal("trm-forge:advance"), id: z.number().int(), to: z.number() })
  .strict();
const StoreFaults = z
  .object({ type: z.literal("trm-forge:store-faults"), every: z.number().int().min(2), until: z.number() })
  .strict();

let storeFaults: { every: number; until: number } | null = null;
let writes = 0;

/** The store, with the soak's transient write failures (put and putIf) when it asks for them. */
export function faultyStore(store: ObjectStore): ObjectStore {
  return new Proxy(store, {
    get(target, prop) {
      const v = Reflect.get(target, prop, target);
      if (typeof v !== "function") return v;
      if (prop !== "put" && prop !== "putIf") return v.bind(target);
      return async (...args: unknown[]) => {
        if (storeFaults && Date.now() < storeFaults.until && ++writes % storeFaults.every === 0)
          throw Object.assign(
            new Error(`injected transient store write failure (soak): ${String(args[0])}`),
            {
              transient: true,
            },
          );
        return v.apply(target, args);
      };
    },
  });
}

export type AdvanceReply =
  | { type: "trm-forge:advanced"; id: number; now: number }
  | { type: "trm-forge:advance-failed"; id: number; error: string };

/** Resolves once no run or job is active in this process. */
async function quiet(ctx: ServerContext): Promise<void> {
  for (;;) {
    await ctx.scheduler?.settle();
    await ctx.jobs.idle();
    if (!ctx.pipeline.activeRuns().length && !ctx.jobs.active().length) return;
    await sleep(50);
  }
}

export function driveTestClock(ctx: ServerContext): void {
  let queue = Promise.resolve();
  // The soak is gone (killed, timed out): stop as on SIGTERM rather than run on unwatched.
  process.on("disconnect", () => process.kill(process.pid, "SIGTERM"));
  process.on("message", (msg) => {
    const f = StoreFaults.safeParse(msg);
    if (f.success) storeFaults = { every: f.data.every, until: f.data.until };
    const m = Advance.safeParse(msg);
    if (!m.success) return;
    const { id, to } = m.data;
    queue = queue.then(async () => {
      let reply: AdvanceReply;
      try {
        await quiet(ctx);
        if (ctx.scheduler) await ctx.scheduler.advance(new Date(to), setTestClock);
        else if (to > Date.now()) setTestClock(to);
        await quiet(ctx);
        reply = { type: "trm-forge:advanced", id, now: Date.now() };
      } catch (err) {
        log.error({ err }, "test clock: advance failed");
        reply = { type: "trm-forge:advance-failed", id, error: (err as Error).message };
      }
      process.send?.(reply);
    });
  });
}
