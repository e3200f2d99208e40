// Log lines as the model sees them: variable parts (timestamps, UUIDs, IPs, hex ids, numbers)
// become placeholders, so lines of one template look alike. Levels come from labels or the line.

const RULES: [RegExp, string | ((m: string) => string)][] = [
  // ISO 8601 / RFC 3339 date-times, with or without zone.
  [/\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?/g, "<ts>"],
  // Common log format: 10/Oct/2000:13:55:36 -0700
  [/\b\d{2}\/[A-Z][a-z]{2}\/\d{4}:\d{2}:\d{2}:\d{2}(?: [+-]\d{4})?/g, "<ts>"],
  [/\b\d{4}\/\d{2}\/\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)?/g, "<ts>"],
  [/\b\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?\b/g, "<ts>"],
  [/\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b/gi, "<uuid>"],
  [/\b(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?\b/g, "<ip>"],
  [/\b(?:[0-9a-f]{1,4}:){3,7}[0-9a-f]{1,4}\b/gi, "<ip>"],
  // Hex ids: 0x-prefixed, or 8+ hex digits holding both a digit and a letter.
  [
    /\b(?:0x[0-9a-f]+|[0-9a-f]{8,})\b/gi,
    (m) => (m.startsWith("0x") || m.startsWith("0X") || (/\d/.test(m) && /[a-f]/i.test(m)) ? "<hex>" : m),
  ],
  // Numbers not glued to a word before them ("v2" and "http2" stay; "12ms" -> "<num>ms").
  [/(?<![\w.])[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?/gi, "<num>"],
];

/** The normalised form of a log line (trimmed, placeholders for variable parts). */
export function normaliseLogLine(line: string): string {
  let s = line.trim();
  for (const [re, rep] of RULES) s = s.replace(re, rep as string);
  return s;
}

export const LEVELS = ["debug", "info", "warn", "error", "fatal", "unknown"] as const;
export type Level = (typeof LEVELS)[number];

const LEVEL_WORDS: Record<string, Level> = {
  trace: "debug",
  debug: "debug",
  dbug: "debug",
  info: "info",
  information: "info",
  informational: "info",
  notice: "info",
  warn: "warn",
  warning: "warn",
  error: "error",
  err: "error",
  eror: "error",
  fatal: "fatal",
  critical: "fatal",
  crit: "fatal",
  panic: "fatal",
  emerg: "fatal",
  emergency: "fatal",
  alert: "fatal",
};

const LEVEL_LABELS = ["level", "detected_level", "severity", "severity_text", "lvl", "loglevel"];

export function levelWord(word: string | undefined): Level | null {
  if (!word) return null;
  return LEVEL_WORDS[word.trim().toLowerCase()] ?? null;
}

const JSON_LEVEL = /"(?:level|severity|lvl|loglevel)"\s*:\s*"([A-Za-z]+)"/i;
const KV_LEVEL = /(?:^|[\s,{])(?:level|severity|lvl)=["']?([A-Za-z]+)/i;
const BRACKET_LEVEL =
  /[[(<](TRACE|DEBUG|INFO|NOTICE|WARN|WARNING|ERROR|ERR|FATAL|CRITICAL|CRIT|PANIC|ALERT|EMERG|EMERGENCY)[\])>]/i;
const WORD_LEVEL = /^(?:\S+\s+){0,3}?(TRACE|DEBUG|INFO|NOTICE|WARN|WARNING|ERROR|FATAL|CRITICAL|PANIC)\b/;
const KLOG_LEVEL = /^([IWEF])\d{4} \d{2}:\d{2}:\d{2}/;

/**
 * A bracketed level first in a line or after up to three tokens with digits (dates, times, pids):
 * the header of rabbitmq or nginx, not "got [error] from upstream". A token matches one way only
 * (up to its first digit, then the rest), so a line of long numbers cannot make it backtrack.
 */
const HEADER_BRACKET_LEVEL = new RegExp(`^\\s*(?:[^\\s\\d]*\\d\\S*\\s+){0,3}?${BRACKET_LEVEL.source}`, "i");

/**
 * The level of a log entry: from its labels or metadata first, else from the line: a level field,
 * a bracketed level in the header, a bare level word near the start, then a bracketed level
 * anywhere (so logback's "[main] ERROR ... got [info] from x" is an error).
 */
export function logLevel(
  line: string,
  labels: Record<string, string>,
  metadata?: Record<string, string>,
): Level {
  for (const k of LEVEL_LABELS) {
    const l = levelWord(labels[k]) ?? levelWord(metadata?.[k]);
    if (l) return l;
  }
  const head = line.length > 2048 ? line.slice(0, 2048) : line;
  const m =
    JSON_LEVEL.exec(head) ??
    KV_LEVEL.exec(head) ??
    HEADER_BRACKET_LEVEL.exec(head) ??
    WORD_LEVEL.exec(head) ??
    BRACKET_LEVEL.exec(head);
  if (m) {
    const l = levelWord(m[1]);
    if (l) return l;
  }
  const k = KLOG_LEVEL.exec(head);
  if (k) return ({ I: "info", W: "warn", E: "error", F: "fatal" } as const)[k[1] as "I" | "W" | "E" | "F"];
  return "unknown";
}

/**
 * The level a line states in a field of its own (JSON "level": "error", logfmt level=error, a
 * bracketed "[error]" in its header), else null: the parts of logLevel's parsing that leave no
 * room for guessing. A bare "ERROR" word or a bracket deeper in the message may be prose.
 */
export function statedLevel(line: string): Level | null {
  const head = line.length > 2048 ? line.slice(0, 2048) : line;
  const m = JSON_LEVEL.exec(head) ?? KV_LEVEL.exec(head);
  if (m) return levelWord(m[1]);
  // As logLevel reads it; but with another bracketed level earlier in the line ("[12:00](info)
  // [error]") which one is the header's is a guess.
  const b = HEADER_BRACKET_LEVEL.exec(head);
  return b && BRACKET_LEVEL.exec(head)?.[1] === b[1] ? levelWord(b[1]) : null;
}

/** Share of a line's characters that are replacement characters or control bytes. */
export function garbageShare(line: string): number {
  if (!line.length) return 0;
  const n = Math.min(line.length, 4096);
  let bad = 0;
  for (let i = 0; i < n; i++) {
    const c = line.charCodeAt(i);
    if (c === 0xfffd || (c < 0x20 && c !== 0x09)) bad++;
  }
  return bad / n;
}
