// The quality bench's chart: one panel per task, validation score against training CPU minutes,
// one line per model config, the strongest baseline as a dashed line. Plain SVG, no library.

/** One training run as the chart reads it: its line's name, its CPU time, each task's scores. */
export interface ChartRun {
  series: string;
  cpu_s: number;
  tasks: Record<string, { score: number; baseline_score: number | null; best_baseline: string | null }>;
}

const W = 360;
const H = 240;
const PAD = { l: 48, r: 12, t: 28, b: 36 };
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"];

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
const fx = (v: number) => Math.round(v * 10) / 10;

export function qualitySvg(runs: readonly ChartRun[]): string {
  const tasks = [...new Set(runs.flatMap((r) => Object.keys(r.tasks)))].sort();
  const configs = [...new Set(runs.map((r) => r.series))];
  const cols = 2;
  const rows = Math.ceil(tasks.length / cols);
  const legendH = 18 * configs.length + 24;
  const width = cols * W;
  const height = rows * H + legendH;
  const maxX = Math.max(1e-9, ...runs.map((r) => r.cpu_s / 60));
  const parts: string[] = [];
  tasks.forEach((task, k) => {
    const ox = (k % cols) * W;
    const oy = Math.floor(k / cols) * H;
    const pts = runs.filter((r) => r.tasks[task]);
    const ys = pts.flatMap((r) => [r.tasks[task].score, r.tasks[task].baseline_score ?? r.tasks[task].score]);
    let lo = Math.min(...ys);
    let hi = Math.max(...ys);
    const span = Math.max(hi - lo, 0.02);
    lo -= span * 0.08;
    hi += span * 0.08;
    const X = (v: number) => fx(ox + PAD.l + (v / maxX) * (W - PAD.l - PAD.r));
    const Y = (v: number) => fx(oy + H - PAD.b - ((v - lo) / (hi - lo)) * (H - PAD.t - PAD.b));
    parts.push(
      `<text x="${ox + W / 2}" y="${oy + 18}" text-anchor="middle" font-weight="bold">${esc(task)}</text>`,
      `<rect x="${ox + PAD.l}" y="${oy + PAD.t}" width="${W - PAD.l - PAD.r}" height="${H - PAD.t - PAD.b}" fill="none" stroke="#999"/>`,
      `<text x="${ox + PAD.l}" y="${oy + H - 6}" font-size="10">0</text>`,
      `<text x="${ox + W - PAD.r}" y="${oy + H - 6}" font-size="10" text-anchor="end">${fx(maxX)} CPU min</text>`,
      `<text x="${ox + PAD.l - 4}" y="${Y(hi) + 10}" font-size="10" text-anchor="end">${hi.toFixed(3)}</text>`,
      `<text x="${ox + PAD.l - 4}" y="${Y(lo)}" font-size="10" text-anchor="end">${lo.toFixed(3)}</text>`,
    );
    const base = pts.map((r) => r.tasks[task].baseline_score).find((v) => v !== null);
    if (base !== undefined && base !== null)
      parts.push(
        `<line x1="${X(0)}" y1="${Y(base)}" x2="${X(maxX)}" y2="${Y(base)}" stroke="#555" stroke-dasharray="4 3"/>`,
        `<text x="${X(maxX) - 2}" y="${Y(base) - 3}" font-size="9" text-anchor="end">${esc(pts[0].tasks[task].best_baseline ?? "baseline")} ${base.toFixed(3)}</text>`,
      );
    configs.forEach((name, j) => {
      const line = pts
        .filter((r) => r.series === name)
        .sort((a, b) => a.cpu_s - b.cpu_s)
        .map((r) => `${X(r.cpu_s / 60)},${Y(r.tasks[task].score)}`);
      if (!line.length) return;
      const c = COLORS[j % COLORS.length];
      parts.push(`<polyline points="${line.join(" ")}" fill="none" stroke="${c}" stroke-width="1.5"/>`);
      for (const p of line) {
        const [x, y] = p.split(",");
        parts.push(`<circle cx="${x}" cy="${y}" r="2.5" fill="${c}"/>`);
      }
    });
  });
  const ly = rows * H + 16;
  parts.push(
    `<text x="8" y="${ly}" font-size="11">validation score (held-out days) against training CPU minutes; dashed: the evaluation's best baseline</text>`,
  );
  configs.forEach((name, j) => {
    const y = ly + 18 * (j + 1);
    parts.push(
      `<line x1="12" y1="${y - 4}" x2="36" y2="${y - 4}" stroke="${COLORS[j % COLORS.length]}" stroke-width="2"/>`,
      `<text x="42" y="${y}" font-size="11">${esc(name)}</text>`,
    );
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">\n<rect width="100%" height="100%" fill="white"/>\n${parts.join("\n")}\n</svg>\n`;
}
