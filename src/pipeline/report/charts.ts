// Inline SVG charts for report.html: a line chart, grouped bars and a heat strip. Plain strings,
// no dependencies, no scripts; every mark carries data-* attributes and a <title> tooltip, so the
// numbers can be read back from the SVG (the tests do) and by hovering.

export const COLORS = {
  candidate: "#2563eb",
  champion: "#9333ea",
  baseline: "#9ca3af",
  pass: "#16a34a",
  fail: "#dc2626",
  accent: "#f59e0b",
  teal: "#0d9488",
  ink: "#1f2937",
  grid: "#e5e7eb",
  muted: "#6b7280",
};

/** Distinct colours for per-task lines. */
export const TASK_COLORS = ["#2563eb", "#0d9488", "#f59e0b", "#db2777", "#7c3aed", "#65a30d"];

export function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

const f = (n: number) => (Math.round(n * 10) / 10).toString();

export function fmt(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (Number.isInteger(v) && Math.abs(v) < 1e6) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(2);
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  return v.toFixed(3).replace(/\.?0+$/, "") || "0";
}

/** Round tick values covering [lo, hi]. */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return [0, 1];
  if (hi === lo) {
    hi = lo + (lo === 0 ? 1 : Math.abs(lo) * 0.1);
  }
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const start = Math.floor(lo / step) * step;
  const ticks: number[] = [];
  for (let v = start; v <= hi + step * 1e-9; v += step) ticks.push(Math.round(v / step) * step);
  if (ticks[ticks.length - 1] < hi) ticks.push(ticks[ticks.length - 1] + step);
  return ticks;
}

export interface Series {
  name: string;
  color: string;
  points: [number, number][];
  dashed?: boolean;
  /** Marks each point with a dot (sparse series such as validation scores). */
  dots?: boolean;
}

export interface LineChartOptions {
  title: string;
  series: Series[];
  xLabel: string;
  yLabel: string;
  width?: number;
  height?: number;
  yMin?: number;
  yMax?: number;
  /** A vertical marker, e.g. the best checkpoint's step. */
  marker?: { x: number; label: string };
}

const M = { l: 52, r: 16, t: 34, b: 40 };

/** Legend entries laid out in rows that fit the width; returns the markup and the rows used. */
function legend(
  items: { name: string; color: string }[],
  w: number,
  swatch: "line" | "box",
): { svg: string; rows: number } {
  let x = M.l;
  let row = 0;
  const parts: string[] = [];
  for (const it of items) {
    const width = 24 + it.name.length * 6.4;
    if (x + width > w - M.r && x > M.l) {
      row++;
      x = M.l;
    }
    const y = 8 + row * 16;
    const mark =
      swatch === "line"
        ? `<rect x="${f(x)}" y="${y + 2}" width="12" height="4" rx="2" fill="${it.color}"/>`
        : `<rect x="${f(x)}" y="${y}" width="10" height="10" rx="2" fill="${it.color}"/>`;
    parts.push(
      `<g class="legend">${mark}<text x="${f(x + 16)}" y="${y + 9}" font-size="11" fill="${COLORS.ink}">${esc(it.name)}</text></g>`,
    );
    x += width;
  }
  return { svg: parts.join(""), rows: items.length ? row + 1 : 0 };
}

function frame(w: number, h: number, title: string, body: string, kind: string): string {
  return `<svg xmlns="http://www.w3.org/2000/svg" class="chart" data-chart="${esc(kind)}" viewBox="0 0 ${w} ${h}" width="100%" role="img" aria-label="${esc(title)}"><title>${esc(title)}</title>${body}</svg>`;
}

function empty(w: number, h: number, title: string, kind: string, why: string): string {
  return frame(
    w,
    h,
    title,
    `<rect x="0" y="0" width="${w}" height="${h}" rx="8" fill="#f9fafb"/><text class="empty" x="${w / 2}" y="${h / 2}" text-anchor="middle" fill="${COLORS.muted}" font-size="13">${esc(why)}</text>`,
    kind,
  );
}

export function lineChart(o: LineChartOptions): string {
  const w = o.width ?? 560;
  const h = o.height ?? 260;
  const pts = o.series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  if (pts.length === 0) return empty(w, h, o.title, "line", "no data yet");
  const xs = pts.map((p) => p[0]);
  const ys = pts.map((p) => p[1]);
  const xTicks = niceTicks(Math.min(...xs), Math.max(...xs));
  const yTicks = niceTicks(o.yMin ?? Math.min(...ys), o.yMax ?? Math.max(...ys));
  const [x0, x1] = [xTicks[0], xTicks[xTicks.length - 1]];
  const [y0, y1] = [o.yMin ?? yTicks[0], o.yMax ?? yTicks[yTicks.length - 1]];
  const leg = legend(
    o.series.filter((x) => x.points.length).map((x) => ({ name: x.name, color: x.color })),
    w,
    "line",
  );
  const top = 18 + leg.rows * 16;
  const pw = w - M.l - M.r;
  const ph = h - top - M.b;
  const sx = (x: number) => M.l + ((x - x0) / (x1 - x0 || 1)) * pw;
  const sy = (y: number) => top + ph - ((y - y0) / (y1 - y0 || 1)) * ph;
  const parts: string[] = [];
  for (const t of yTicks.filter((t) => t >= y0 - 1e-12 && t <= y1 + 1e-12)) {
    parts.push(
      `<line x1="${M.l}" x2="${w - M.r}" y1="${f(sy(t))}" y2="${f(sy(t))}" stroke="${COLORS.grid}"/><text x="${M.l - 6}" y="${f(sy(t) + 4)}" text-anchor="end" font-size="11" fill="${COLORS.muted}">${fmt(t)}</text>`,
    );
  }
  for (const t of xTicks) {
    parts.push(
      `<text x="${f(sx(t))}" y="${h - M.b + 16}" text-anchor="middle" font-size="11" fill="${COLORS.muted}">${fmt(t)}</text>`,
    );
  }
  parts.push(
    `<text x="${M.l + pw / 2}" y="${h - 6}" text-anchor="middle" font-size="11" fill="${COLORS.muted}">${esc(o.xLabel)}</text>`,
    `<text x="12" y="${top + ph / 2}" text-anchor="middle" font-size="11" fill="${COLORS.muted}" transform="rotate(-90 12 ${top + ph / 2})">${esc(o.yLabel)}</text>`,
  );
  if (o.marker) {
    const mx = f(sx(o.marker.x));
    parts.push(
      `<g class="marker" data-x="${o.marker.x}"><line x1="${mx}" x2="${mx}" y1="${top}" y2="${top + ph}" stroke="${COLORS.accent}" stroke-dasharray="4 3"/><text x="${mx}" y="${top + 10}" dx="4" font-size="10" fill="${COLORS.accent}">${esc(o.marker.label)}</text></g>`,
    );
  }
  parts.push(leg.svg);
  o.series.forEach((s) => {
    const p = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
    if (p.length === 0) return;
    const d = p
      .map(([x, y], i) => `${i ? "L" : "M"}${f(sx(x))} ${f(sy(Math.min(y1, Math.max(y0, y))))}`)
      .join(" ");
    const dash = s.dashed ? ` stroke-dasharray="6 4"` : "";
    parts.push(
      `<path class="series" data-series="${esc(s.name)}" data-points="${p.length}" d="${d}" fill="none" stroke="${s.color}" stroke-width="2" stroke-linejoin="round"${dash}><title>${esc(s.name)}: last ${fmt(p[p.length - 1][1])}</title></path>`,
    );
    if (s.dots)
      for (const [x, y] of p)
        parts.push(
          `<circle cx="${f(sx(x))}" cy="${f(sy(y))}" r="3" fill="${s.color}"><title>${esc(s.name)} @ ${fmt(x)}: ${fmt(y)}</title></circle>`,
        );
  });
  return frame(w, h, o.title, parts.join(""), "line");
}

export interface Bar {
  name: string;
  value: number | null;
  color: string;
}

export interface BarGroup {
  label: string;
  bars: Bar[];
  /** A horizontal tick across the group, e.g. an absolute floor. */
  floor?: number | null;
}

export interface BarChartOptions {
  title: string;
  groups: BarGroup[];
  yLabel: string;
  yMax?: number;
  width?: number;
  height?: number;
  /** Formats a value label above its bar. */
  format?: (v: number) => string;
}

export function groupedBars(o: BarChartOptions): string {
  const w = o.width ?? 560;
  const h = o.height ?? 260;
  const values = o.groups
    .flatMap((g) => g.bars.map((b) => b.value))
    .filter((v): v is number => v !== null && Number.isFinite(v));
  if (o.groups.length === 0 || values.length === 0) return empty(w, h, o.title, "bars", "nothing to compare");
  const yTicks = niceTicks(0, o.yMax ?? Math.max(...values, 1e-9));
  const y1 = o.yMax ?? yTicks[yTicks.length - 1];
  const names = [...new Map(o.groups.flatMap((g) => g.bars).map((b) => [b.name, b.color])).entries()];
  const leg = legend(
    names.map(([name, color]) => ({ name, color })),
    w,
    "box",
  );
  const top = 22 + leg.rows * 16;
  const pw = w - M.l - M.r;
  const ph = h - top - M.b;
  const sy = (y: number) => top + ph - (Math.max(0, Math.min(y1, y)) / (y1 || 1)) * ph;
  const parts: string[] = [];
  for (const t of yTicks.filter((t) => t <= y1 + 1e-12)) {
    parts.push(
      `<line x1="${M.l}" x2="${w - M.r}" y1="${f(sy(t))}" y2="${f(sy(t))}" stroke="${COLORS.grid}"/><text x="${M.l - 6}" y="${f(sy(t) + 4)}" text-anchor="end" font-size="11" fill="${COLORS.muted}">${fmt(t)}</text>`,
    );
  }
  parts.push(
    `<text x="12" y="${top + ph / 2}" text-anchor="middle" font-size="11" fill="${COLORS.muted}" transform="rotate(-90 12 ${top + ph / 2})">${esc(o.yLabel)}</text>`,
  );
  const gw = pw / o.groups.length;
  const format = o.format ?? fmt;
  o.groups.forEach((g, gi) => {
    const n = g.bars.length;
    const bw = Math.min(36, (gw * 0.8) / Math.max(1, n));
    const gx = M.l + gi * gw + (gw - bw * n) / 2;
    g.bars.forEach((b, bi) => {
      const x = gx + bi * bw;
      if (b.value === null || !Number.isFinite(b.value)) {
        parts.push(
          `<text class="na" data-group="${esc(g.label)}" data-series="${esc(b.name)}" x="${f(x + bw / 2)}" y="${f(top + ph - 4)}" text-anchor="middle" font-size="9" fill="${COLORS.muted}">n/a</text>`,
        );
        return;
      }
      const by = sy(b.value);
      parts.push(
        `<rect class="bar" data-group="${esc(g.label)}" data-series="${esc(b.name)}" data-value="${b.value}" x="${f(x + 1)}" y="${f(by)}" width="${f(bw - 2)}" height="${f(top + ph - by)}" rx="3" fill="${b.color}"><title>${esc(g.label)} · ${esc(b.name)}: ${format(b.value)}</title></rect>`,
        `<text x="${f(x + bw / 2)}" y="${f(by - 3)}" text-anchor="middle" font-size="9" fill="${COLORS.ink}">${esc(format(b.value))}</text>`,
      );
    });
    if (g.floor !== undefined && g.floor !== null) {
      const fy = f(sy(g.floor));
      parts.push(
        `<line class="floor" data-group="${esc(g.label)}" data-value="${g.floor}" x1="${f(gx - 4)}" x2="${f(gx + bw * n + 4)}" y1="${fy}" y2="${fy}" stroke="${COLORS.fail}" stroke-width="2" stroke-dasharray="3 2"><title>floor ${format(g.floor)}</title></line>`,
      );
    }
    parts.push(
      `<text x="${f(M.l + gi * gw + gw / 2)}" y="${h - M.b + 16}" text-anchor="middle" font-size="11" fill="${COLORS.ink}">${esc(g.label)}</text>`,
    );
  });
  parts.push(leg.svg);
  return frame(w, h, o.title, parts.join(""), "bars");
}

export interface HeatRow {
  label: string;
  /** A source collected as a snapshot (the code repository): empty days are not gaps. */
  snapshot?: boolean;
  /** One value per day of `days` (same order); 0 = nothing collected. */
  values: number[];
  /** Tooltip text per cell. */
  notes?: string[];
}

/** One row per source, one cell per day; darker = more data, red = none. */
export function heatStrip(o: { title: string; days: string[]; rows: HeatRow[]; width?: number }): string {
  const w = o.width ?? 760;
  const labelW = 96;
  const cellH = 18;
  const top = 24;
  const h = top + o.rows.length * (cellH + 6) + 22;
  if (o.days.length === 0 || o.rows.length === 0)
    return empty(w, 80, o.title, "heat", "no collected data in the window");
  const cw = (w - labelW - 8) / o.days.length;
  const parts: string[] = [];
  o.rows.forEach((r, ri) => {
    const y = top + ri * (cellH + 6);
    const max = Math.max(...r.values, 0);
    parts.push(
      `<text x="${labelW - 8}" y="${y + 13}" text-anchor="end" font-size="12" fill="${COLORS.ink}">${esc(r.label)}</text>`,
    );
    r.values.forEach((v, di) => {
      const x = labelW + di * cw;
      const fill = v > 0 ? blend(0.2 + 0.8 * (max > 0 ? v / max : 0)) : r.snapshot ? "#f3f4f6" : "#fde2e2";
      const note = r.notes?.[di] ?? (v > 0 ? fmt(v) : r.snapshot ? "unchanged" : "nothing collected");
      parts.push(
        `<rect class="cell" data-row="${esc(r.label)}" data-day="${esc(o.days[di])}" data-value="${v}" x="${f(x + 0.5)}" y="${y}" width="${f(Math.max(1, cw - 1))}" height="${cellH}" rx="2" fill="${fill}"><title>${esc(r.label)} ${esc(o.days[di])}: ${esc(note)}</title></rect>`,
      );
    });
  });
  const first = o.days[0];
  const last = o.days[o.days.length - 1];
  parts.push(
    `<text x="${labelW}" y="14" font-size="11" fill="${COLORS.muted}">${esc(first)}</text>`,
    `<text x="${w - 8}" y="14" text-anchor="end" font-size="11" fill="${COLORS.muted}">${esc(last)}</text>`,
    `<text x="${labelW}" y="${h - 6}" font-size="10" fill="${COLORS.muted}">darker = more data that day · red = nothing collected · grey = snapshot source, unchanged</text>`,
  );
  return frame(w, h, o.title, parts.join(""), "heat");
}

/** White to the candidate blue. */
function blend(t: number): string {
  const a = [239, 246, 255];
  const b = [30, 64, 175];
  const c = a.map((x, i) => Math.round(x + (b[i] - x) * Math.max(0, Math.min(1, t))));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}
