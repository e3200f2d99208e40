// The Grafana dashboard: its structure, PromQL that Prometheus' own parser accepts, and metric
// names that trm-forge exports, read from the prom-client registry the server serves on /metrics.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { stringify } from "yaml";
import * as z from "zod";
import { registry } from "../../src/metrics.js";
import { K8S } from "./helpers.js";
import { exportedNames, metricNames, substituteGrafanaVariables } from "./promql.js";

const dashboard = JSON.parse(readFileSync(join(K8S, "base/grafana/trm-forge-dashboard.json"), "utf8"));

const GridPos = z
  .object({
    h: z.number().int().min(1),
    w: z.number().int().min(1).max(24),
    x: z.number().int().min(0).max(23),
    y: z.number().int().min(0),
  })
  .strict();
// Grafana's own variable syntax, not a template string.
const DATASOURCE_VARIABLE = ["$", "{datasource}"].join("");
const DataSource = z.object({ type: z.literal("prometheus"), uid: z.literal(DATASOURCE_VARIABLE) }).strict();
const Target = z.looseObject({
  refId: z.string().regex(/^[A-Z]$/),
  expr: z.string().min(1),
  datasource: DataSource,
  legendFormat: z.string().optional(),
  instant: z.boolean().optional(),
  format: z.enum(["time_series", "table", "heatmap"]).optional(),
});
const Panel = z.discriminatedUnion("type", [
  z.looseObject({
    type: z.literal("row"),
    id: z.number().int(),
    title: z.string().min(1),
    gridPos: GridPos,
    panels: z.array(z.unknown()),
  }),
  z.looseObject({
    type: z.enum(["timeseries", "stat", "bargauge", "table", "gauge", "barchart", "heatmap"]),
    id: z.number().int(),
    title: z.string().min(1),
    description: z.string().min(1),
    datasource: DataSource,
    gridPos: GridPos,
    targets: z.array(Target).min(1),
    fieldConfig: z.looseObject({
      defaults: z.record(z.string(), z.unknown()),
      overrides: z.array(z.unknown()),
    }),
  }),
]);
const Dashboard = z.looseObject({
  uid: z.string().regex(/^[a-zA-Z0-9_-]{1,40}$/),
  title: z.string().min(1),
  schemaVersion: z.number().int().min(36),
  time: z.object({ from: z.string(), to: z.string() }).strict(),
  templating: z.object({ list: z.array(z.looseObject({ name: z.string(), type: z.string() })) }).strict(),
  panels: z.array(Panel).min(1),
});

type P = z.infer<typeof Panel>;
const panels = (dashboard.panels as P[]).filter((p) => p.type !== "row") as Extract<
  P,
  { targets: unknown }
>[];
const expressions = panels.flatMap((p) => p.targets.map((t) => ({ panel: p.title, expr: t.expr as string })));
const variableQueries = (dashboard.templating.list as any[])
  .filter((v) => v.type === "query")
  .map((v) => v.query.query as string);

describe("Grafana dashboard", () => {
  it("has a valid structure: unique ids, a 24-column grid without overlaps, targets with refIds", () => {
    const res = Dashboard.safeParse(dashboard);
    expect(res.success ? [] : res.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`)).toEqual([]);
    const ids = dashboard.panels.map((p: any) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    const cells = new Set<string>();
    for (const p of dashboard.panels) {
      const g = p.gridPos;
      expect(g.x + g.w, p.title).toBeLessThanOrEqual(24);
      for (let x = g.x; x < g.x + g.w; x++) {
        for (let y = g.y; y < g.y + g.h; y++) {
          expect(cells.has(`${x},${y}`), `${p.title} overlaps at ${x},${y}`).toBe(false);
          cells.add(`${x},${y}`);
        }
      }
    }
    for (const p of panels) expect(new Set(p.targets.map((t) => t.refId)).size).toBe(p.targets.length);
  });

  it("defines every variable its queries use", () => {
    const defined = new Set(dashboard.templating.list.map((v: any) => v.name));
    expect(defined).toEqual(new Set(["datasource", "agent"]));
    for (const { expr } of expressions) {
      for (const m of expr.matchAll(/\$\{?(\w+)/g))
        if (!m[1].startsWith("__")) expect(defined, expr).toContain(m[1]);
    }
  });

  it("holds only PromQL that Prometheus' parser accepts (promtool)", () => {
    const dir = mkdtempSync(join(tmpdir(), "trm-dashboard-"));
    try {
      const rules = [...expressions.map((e) => e.expr), ...variableQueries.map(labelValuesAsSelector)].map(
        (expr, i) => ({
          record: `dashboard:expr_${i}`,
          expr: substituteGrafanaVariables(expr),
        }),
      );
      writeFileSync(join(dir, "rules.yml"), stringify({ groups: [{ name: "dashboard", rules }] }));
      const out = execFileSync("promtool", ["check", "rules", join(dir, "rules.yml")], { encoding: "utf8" });
      expect(out).toContain(`${rules.length} rules found`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("names only metrics the server exports", async () => {
    // The prom-client registry that /metrics serves (src/metrics.ts).
    const exported = exportedNames(await registry.metrics());
    expect(exported.size).toBeGreaterThan(10);
    const used = new Set(
      [...expressions.map((e) => e.expr), ...variableQueries.map(labelValuesAsSelector)].flatMap(metricNames),
    );
    expect(used.size).toBeGreaterThan(8);
    expect([...used].filter((n) => !exported.has(n))).toEqual([]);
  });

  it("shows what the issue lists", () => {
    const panelUsing = (metric: string, label?: string) =>
      expressions
        .filter((e) => metricNames(e.expr).includes(metric) && (!label || e.expr.includes(label)))
        .map((e) => e.panel);
    // Run durations by stage, and the last success per agent.
    expect(panelUsing("trm_forge_run_stage_duration_seconds_sum", "stage")).toContain(
      "Run duration by stage",
    );
    expect(panelUsing("trm_forge_run_last_success_timestamp_seconds", "agent")).toContain(
      "Last successful run",
    );
    // The validation score per task over versions; the gate results; the served version.
    expect(panelUsing("trm_forge_validation_score", "version")).toEqual(
      expect.arrayContaining(["Validation score per task", "Validation score by version"]),
    );
    expect(panelUsing("trm_forge_gate_result")).toContain("Gate results");
    expect(panelUsing("trm_forge_served_model_info", "version")).toContain("Served version");
    // Collection records and errors per source; prediction latency.
    expect(panelUsing("trm_forge_collect_records_total", "source")).toContain("Records collected per source");
    expect(panelUsing("trm_forge_collect_errors_total", "source")).toContain("Collection errors per source");
    expect(panelUsing("trm_forge_predict_duration_seconds_bucket", "histogram_quantile")).toContain(
      "Prediction latency",
    );
  });

  it("finds metric names the way PromQL reads them", () => {
    expect(
      metricNames(
        'histogram_quantile(0.99, sum by (le, task) (rate(a_bucket{agent=~"x|y", b="c{d}"}[5m]))) / on (task) group_left(x) b_total offset 1h > bool 2e3',
      ).sort(),
    ).toEqual(["a_bucket", "b_total"]);
    expect(exportedNames("# TYPE h histogram\n# TYPE c counter\nc 1\n")).toEqual(
      new Set(["h_bucket", "h_sum", "h_count", "c"]),
    );
  });
});

/** label_values(metric, label) as the selector Prometheus runs for it. */
function labelValuesAsSelector(q: string): string {
  const m = /^label_values\(\s*([^,]+),\s*\w+\s*\)$/.exec(q.trim());
  if (!m) throw new Error(`unexpected variable query ${q}`);
  return m[1];
}
