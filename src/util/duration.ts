// Durations: the one form the config, the CLI and the tools take, a number and a unit ("500ms",
// "30s", "1.5h", "7d", "1w"), read into milliseconds here. The config schema applies it once
// (config/fields.ts), so the rest of the code sees milliseconds only.

/** Milliseconds per unit. Wire parsers of a remote's own duration form (Loki's) extend it. */
export const UNIT_MS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1e3,
  m: 60e3,
  h: 3600e3,
  d: 86400e3,
  w: 7 * 86400e3,
};

export const DURATION_PATTERN = /^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$/;

export const DURATION_HINT = "a duration such as 500ms, 30s, 5m, 12h or 7d";

/** "30s" -> 30000 (rounded to whole ms); null when the text is not a duration. */
export function parseDuration(text: string): number | null {
  const m = DURATION_PATTERN.exec(text.trim());
  return m ? Math.round(Number(m[1]) * UNIT_MS[m[2]!]!) : null;
}

/** 90000 -> "90s", 3600000 -> "1h", 604800000 -> "7d": the largest exact unit up to days (as configs are written), so parseDuration reads it back. */
export function formatDuration(ms: number): string {
  const whole = Math.max(0, Math.round(ms));
  for (const unit of ["d", "h", "m", "s"]) {
    const size = UNIT_MS[unit]!;
    if (whole >= size && whole % size === 0) return `${whole / size}${unit}`;
  }
  return `${whole}ms`;
}
