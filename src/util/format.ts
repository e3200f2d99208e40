// Formatters for people reading a command's output.

/** 0.1234 -> "12.3%"; null, NaN or Infinity -> `missing` ("n/a"). */
export const pct = (v: number | null | undefined, missing = "n/a"): string =>
  v === null || v === undefined || !Number.isFinite(v) ? missing : `${(v * 100).toFixed(1)}%`;

/** A progress bar's time left: "45s", "12m5s", "2.3h"; unknown -> "?". */
export function formatEta(s: number | null): string {
  if (s === null || !Number.isFinite(s)) return "?";
  const r = Math.round(s); // rounded first: 599.6 s is 10m0s, not 9m60s
  if (r < 90) return `${r}s`;
  if (r < 5400) return `${Math.floor(r / 60)}m${r % 60}s`;
  return `${(s / 3600).toFixed(1)}h`;
}
