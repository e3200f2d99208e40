// Watermarks: how far each (agent, source, query) has been collected. A segment is put first (an
// atomic write: temp file + rename, or one S3 PUT), and only then does the watermark move. A run
// killed in between re-collects from the old watermark and writes the same segment name again,
// replacing it: nothing is lost, nothing is duplicated, and no partial segment is ever visible.
import type * as z from "zod";
import { WorkError } from "../../errors.js";
import type { ObjectStore } from "../../store/index.js";
import { watermarkKey as layoutWatermarkKey } from "../../store/layout.js";
import { writeSegment } from "./raw-store.js";
import type { RecordOf, SourceName } from "./records.js";
import type { QueryReport } from "./report.js";

export function watermarkKey(agent: string, source: SourceName, query: string): string {
  return layoutWatermarkKey(agent, source, query);
}

/** The saved watermark, validated; null before the first collection. A corrupt one is an error, not a reset. */
export async function readWatermark<T>(
  store: ObjectStore,
  agent: string,
  source: SourceName,
  query: string,
  schema: z.ZodType<T>,
): Promise<T | null> {
  const key = watermarkKey(agent, source, query);
  if (!(await store.exists(key))) return null;
  let value: unknown;
  try {
    value = JSON.parse((await store.get(key)).toString("utf8"));
  } catch (err) {
    throw new WorkError(`watermark ${key} is not JSON (${(err as Error).message}); delete it to re-collect`);
  }
  const res = schema.safeParse(value);
  if (!res.success) {
    const i = res.error.issues[0];
    throw new WorkError(`watermark ${key} is invalid at ${i.path.join(".") || "(top)"}: ${i.message}`);
  }
  return res.data;
}

export async function writeWatermark(
  store: ObjectStore,
  agent: string,
  source: SourceName,
  query: string,
  value: unknown,
): Promise<void> {
  await store.put(watermarkKey(agent, source, query), `${JSON.stringify(value)}\n`, {
    contentType: "application/json",
  });
}

/**
 * Puts one segment and then moves the watermark, in that order, and counts it in the report.
 * `name` must be a function of where the segment starts, so a re-run after a crash reuses it.
 */
export async function commitSegment<S extends SourceName>(
  store: ObjectStore,
  agent: string,
  source: S,
  query: string,
  day: string,
  name: string,
  records: RecordOf<S>[],
  watermark: unknown,
  report: QueryReport,
): Promise<void> {
  if (records.length) {
    const seg = await writeSegment(store, agent, source, day, name, records);
    report.records += seg.records;
    report.bytes += seg.bytes;
    report.segments.push(seg.key);
  }
  await writeWatermark(store, agent, source, query, watermark);
}
