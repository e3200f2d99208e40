import { WorkError } from "../../errors.js";
import { collect } from "../collect/index.js";
import { CancelledError, TransientError } from "../common/retry.js";
import type { CollectOutput, StageContext } from "../contract.js";

export async function collectStage(ctx: StageContext): Promise<CollectOutput> {
  const report = await collect(ctx.config, {
    agent: ctx.agent,
    store: ctx.store,
    signal: ctx.signal,
    now: ctx.now().getTime(),
    onQuery: (q) => {
      ctx.progress({
        message: `${q.source}/${q.query}: ${q.records} records (${q.status})`,
        step: null,
        total: null,
        eta_s: null,
        metrics: {},
      });
    },
  });
  if (report.status === "cancelled") throw new CancelledError("collection cancelled");
  const errors = report.sources.flatMap((s) => s.queries.flatMap((q) => q.errors));
  const out = {
    collection_report: report.report_key,
    records: report.totals.records,
    segments: report.totals.segments,
    errors: report.totals.errors,
    sources: Object.fromEntries(report.sources.map((s) => [s.source, s.status])),
  };
  if (report.status === "failed") {
    const msg = `every source failed: ${errors.slice(0, 3).join("; ")}`;
    // Sources that are down or slow may be back in a minute; a bad credential will not.
    if (errors.some((e) => /timed? ?out|timeout|ECONN|EAI_AGAIN|socket|network|\b5\d\d\b|\b429\b/i.test(e)))
      throw new TransientError(msg);
    throw new WorkError(msg);
  }
  if (report.status === "partial")
    return {
      ...out,
      status: "partial" as const,
      partial_reason: `some queries failed: ${errors.slice(0, 3).join("; ")}`,
    };
  return out;
}
