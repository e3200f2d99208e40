// Segments of the raw store: raw/<agent>/<source>/<yyyy-mm-dd>/<segment>.jsonl.gz, gzip'd JSON
// lines, one validated record per line. A segment is written whole (atomic put) or not at all.
import { promisify } from "node:util";
import { gunzipSync, gzip } from "node:zlib";
import type { ObjectStore } from "../../store/index.js";
import { segmentKey as layoutSegmentKey, rawPrefix } from "../../store/layout.js";
import { sha256 } from "../../util/fs.js";
import { RECORD_SCHEMA_BY_SOURCE, type RecordOf, type SourceName } from "./records.js";

const gzipAsync = promisify(gzip);

export interface SegmentRef {
  key: string;
  agent: string;
  source: SourceName;
  /** yyyy-mm-dd (UTC) */
  day: string;
  name: string;
  size: number;
}

const SEGMENT_RE = /^raw\/([^/]+)\/([^/]+)\/(\d{4}-\d{2}-\d{2})\/([^/]+)\.jsonl\.gz$/;

export function segmentKey(agent: string, source: SourceName, day: string, name: string): string {
  return layoutSegmentKey(agent, source, day, name);
}

/** yyyy-mm-dd of a unix-ms time, in UTC. */
export function dayOf(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

export async function writeSegment<S extends SourceName>(
  store: ObjectStore,
  agent: string,
  source: S,
  day: string,
  name: string,
  records: RecordOf<S>[],
): Promise<{ key: string; sha256: string; bytes: number; records: number }> {
  const schema = RECORD_SCHEMA_BY_SOURCE[source];
  const lines: string[] = [];
  // Validate, then write the record itself: strict schemas make the two equal, and no clone is kept.
  for (const r of records) {
    schema.parse(r);
    lines.push(JSON.stringify(r));
  }
  // Compressed on the libuv thread pool, beside the collector's own work.
  const body = await gzipAsync(`${lines.join("\n")}${lines.length ? "\n" : ""}`, { level: 6 });
  const key = segmentKey(agent, source, day, name);
  await store.put(key, body, { contentType: "application/gzip" });
  return { key, sha256: sha256(body), bytes: body.length, records: records.length };
}

/** Segments of one agent and source whose day lies in [fromDay, toDay] (inclusive), by key. */
export async function listSegments(
  store: ObjectStore,
  agent: string,
  source: SourceName,
  window?: { fromDay?: string; toDay?: string },
): Promise<SegmentRef[]> {
  const out: SegmentRef[] = [];
  for (const o of await store.list(rawPrefix(agent, source))) {
    const m = SEGMENT_RE.exec(o.key);
    if (!m) continue;
    const day = m[3];
    if (window?.fromDay && day < window.fromDay) continue;
    if (window?.toDay && day > window.toDay) continue;
    out.push({ key: o.key, agent: m[1], source: m[2] as SourceName, day, name: m[4], size: o.size });
  }
  return out;
}

export class CorruptSegmentError extends Error {
  override name = "CorruptSegmentError";
}

/** Reads and validates a segment. A bad line names the segment and line number. */
export async function readSegment<S extends SourceName>(
  store: ObjectStore,
  ref: { key: string; source: S },
): Promise<{ records: RecordOf<S>[]; sha256: string }> {
  const body = await store.get(ref.key);
  let text: string;
  try {
    text = gunzipSync(body).toString("utf8");
  } catch (err) {
    throw new CorruptSegmentError(`${ref.key}: not a gzip stream (${(err as Error).message})`);
  }
  const schema = RECORD_SCHEMA_BY_SOURCE[ref.source];
  const records: RecordOf<S>[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    if (!lines[i]) continue;
    let value: unknown;
    try {
      value = JSON.parse(lines[i]);
    } catch {
      throw new CorruptSegmentError(`${ref.key}: line ${i + 1} is not JSON`);
    }
    const res = schema.safeParse(value);
    if (!res.success) {
      const issue = res.error.issues[0];
      throw new CorruptSegmentError(`${ref.key}: line ${i + 1}: ${issue.path.join(".")}: ${issue.message}`);
    }
    records.push(res.data as RecordOf<S>);
  }
  return { records, sha256: sha256(body) };
}
