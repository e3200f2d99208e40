// Formatters for people reading a command's output.

/** 0.1234 -> "12.3%"; null, NaN or Infinity -> `missing` ("n/a"). */
export const pct = (v: number | null | undefined, missing = "n/a"): string =>
  v === null || v === undefined || !Number.isFinite(v) ? missing : `${(v * 100).toFixed(1)}%`;
