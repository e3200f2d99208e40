// Ids that sort by time: a prefix, the UTC time to the millisecond, and an optional random tail.
import { randomBytes } from "node:crypto";

const ID_RE = /^[a-z]\d{8}-\d{6}-\d{3}(-[0-9a-f]{4})?$/;

export function timeId(prefix: string, at: Date, random = true): string {
  const iso = at.toISOString(); // 2026-11-29T17:46:53.123Z
  const stamp = `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}-${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}-${iso.slice(20, 23)}`;
  return random ? `${prefix}${stamp}-${randomBytes(2).toString("hex")}` : `${prefix}${stamp}`;
}

/** The time an id was made, or null for an id of another shape. */
export function timeOfId(id: string): Date | null {
  if (!ID_RE.test(id)) return null;
  const s = id.slice(1);
  const iso = `${s.slice(0, 4)}-${s.slice(4, 6)}-${s.slice(6, 8)}T${s.slice(9, 11)}:${s.slice(11, 13)}:${s.slice(13, 15)}.${s.slice(16, 19)}Z`;
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? null : d;
}

export function isTimeId(id: string, prefix: string): boolean {
  return id.startsWith(prefix) && ID_RE.test(id);
}
