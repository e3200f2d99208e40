// Formatters for people reading a command's output.

/** 0.1234 -> "12.3%"; NaN or Infinity -> "n/a". */
export const pct = (v: number) => (Number.isFinite(v) ? `${(v * 100).toFixed(1)}%` : "n/a");
