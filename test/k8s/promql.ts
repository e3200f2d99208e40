// Metric names in PromQL expressions and in the Prometheus text exposition format.

const KEYWORDS = new Set([
  "by",
  "without",
  "on",
  "ignoring",
  "group_left",
  "group_right",
  "bool",
  "and",
  "or",
  "unless",
  "offset",
  "inf",
  "nan",
]);

/**
 * The metric names an expression selects. Grafana variables must already be substituted. Strings,
 * label matchers, ranges and grouping clauses are removed first; what remains that is neither a
 * function call, a keyword nor a number is a metric name.
 */
export function metricNames(expr: string): string[] {
  let s = expr.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""');
  s = s.replace(/\{[^}]*\}/g, " ");
  s = s.replace(/\[[^\]]*\]/g, " ");
  s = s.replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ");
  // Numbers and durations (1h, 2e3, 0.99): a token that starts with a digit is never a name.
  s = s.replace(/(?<![a-zA-Z0-9_:])\d[\w.]*/g, " ");
  const names = new Set<string>();
  for (const m of s.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const word = m[0];
    const after = s.slice(m.index! + word.length).trimStart();
    if (after.startsWith("(")) continue;
    if (KEYWORDS.has(word.toLowerCase())) continue;
    names.add(word);
  }
  return [...names];
}

/** Sample names a /metrics page can hold, from its # TYPE lines (histograms: _bucket, _sum, _count). */
export function exportedNames(exposition: string): Set<string> {
  const out = new Set<string>();
  for (const line of exposition.split("\n")) {
    const m = /^# TYPE (\S+) (\S+)/.exec(line);
    if (!m) continue;
    const [, name, type] = m;
    if (type === "histogram") for (const s of ["_bucket", "_sum", "_count"]) out.add(name + s);
    else if (type === "summary") for (const s of ["", "_sum", "_count"]) out.add(name + s);
    else out.add(name);
  }
  return out;
}

/** Grafana's variables replaced by values PromQL accepts, so the expression can be parsed. */
export function substituteGrafanaVariables(expr: string): string {
  return expr
    .replace(/\$__rate_interval|\$__interval|\$__range/g, "5m")
    .replace(/\$\{?agent(?::\w+)?\}?/g, ".*")
    .replace(/\$\{?datasource\}?/g, "prometheus");
}
