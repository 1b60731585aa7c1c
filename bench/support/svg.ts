/**
 * A small line-chart writer for the benchmark's trade-off curve: panels side by side, each with its own y
 * axis, a shared x axis (log scale), one line per series. No dependency; the output is plain SVG text.
 */
export interface Series {
  name: string;
  points: [x: number, y: number][];
}

export interface Panel {
  title: string;
  yLabel: string;
  series: Series[];
  /** A horizontal reference line (a goal), if any. */
  goal?: { y: number; label: string };
}

/** The x axis: log scale with every x a tick (the trade-off curve), or linear with given ticks (a time series). */
export interface Axis {
  scale: 'log' | 'linear';
  label: string;
  /** Tick positions; default: every x. */
  ticks?: number[];
  /** A dot on every point (default true; off for long series). */
  dots?: boolean;
}

const DEFAULT_AXIS: Axis = { scale: 'log', label: 'staleness target (s)' };

const W = 330;
const H = 260;
const M = { left: 52, right: 12, top: 34, bottom: 46 };
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e'];

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const fmt = (n: number) =>
  Math.abs(n) >= 100 ? n.toFixed(0) : Math.abs(n) >= 10 ? n.toFixed(1) : n.toFixed(2);

function niceMax(v: number): number {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function panel(p: Panel, xs: number[], dx: number, dy: number, axis: Axis): string {
  const innerW = W - M.left - M.right;
  const innerH = H - M.top - M.bottom;
  const f = axis.scale === 'log' ? Math.log : (x: number) => x;
  const [x0, x1] = [f(Math.min(...xs)), f(Math.max(...xs))];
  const ys = p.series.flatMap((s) => s.points.map(([, y]) => y)).filter(Number.isFinite);
  const yMax = niceMax(Math.max(...ys, p.goal?.y ?? 0) * 1.05);
  const sx = (x: number) => dx + M.left + ((f(x) - x0) / (x1 - x0 || 1)) * innerW;
  const sy = (y: number) => dy + M.top + innerH - (Math.min(y, yMax) / yMax) * innerH;
  const top = dy + M.top;
  const bottom = dy + M.top + innerH;
  const out: string[] = [];
  out.push(
    `<text x="${dx + W / 2}" y="${dy + 18}" text-anchor="middle" font-weight="bold">${esc(p.title)}</text>`,
  );
  out.push(
    `<line x1="${dx + M.left}" y1="${bottom}" x2="${dx + W - M.right}" y2="${bottom}" stroke="#333"/>`,
    `<line x1="${dx + M.left}" y1="${top}" x2="${dx + M.left}" y2="${bottom}" stroke="#333"/>`,
  );
  for (let i = 0; i <= 4; i += 1) {
    const y = (yMax * i) / 4;
    out.push(
      `<line x1="${dx + M.left}" y1="${sy(y)}" x2="${dx + W - M.right}" y2="${sy(y)}" stroke="#ddd"/>`,
      `<text x="${dx + M.left - 4}" y="${sy(y) + 4}" text-anchor="end">${fmt(y)}</text>`,
    );
  }
  for (const x of axis.ticks ?? xs)
    out.push(`<text x="${sx(x)}" y="${bottom + 16}" text-anchor="middle">${fmt(x)}</text>`);
  out.push(
    `<text x="${dx + M.left + innerW / 2}" y="${dy + H - 8}" text-anchor="middle">${esc(axis.label)}</text>`,
    `<text transform="translate(${dx + 14},${top + innerH / 2}) rotate(-90)" text-anchor="middle">${esc(p.yLabel)}</text>`,
  );
  if (p.goal)
    out.push(
      `<line x1="${dx + M.left}" y1="${sy(p.goal.y)}" x2="${dx + W - M.right}" y2="${sy(p.goal.y)}" stroke="#999" stroke-dasharray="4 3"/>`,
      `<text x="${dx + W - M.right}" y="${sy(p.goal.y) - 4}" text-anchor="end" fill="#666">${esc(p.goal.label)}</text>`,
    );
  p.series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length]!;
    const pts = s.points.filter(([, y]) => Number.isFinite(y));
    out.push(
      `<polyline fill="none" stroke="${color}" stroke-width="2" points="${pts.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' ')}"/>`,
      ...(axis.dots === false
        ? []
        : pts.map(
            ([x, y]) => `<circle cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="3" fill="${color}"/>`,
          )),
      `<text x="${dx + M.left + 6}" y="${top + 12 + i * 14}" fill="${color}">${esc(s.name)}</text>`,
    );
  });
  return out.join('\n');
}

/** The panels side by side (`columns` per row, default all), every x value a tick unless the axis says. */
export function lineCharts(
  panels: Panel[],
  xs: number[],
  caption: string,
  axis: Axis = DEFAULT_AXIS,
  columns = panels.length,
): string {
  const rows = Math.ceil(panels.length / columns);
  const width = W * Math.min(columns, panels.length);
  const height = H * rows + 22;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    ...panels.map((p, i) => panel(p, xs, (i % columns) * W, Math.floor(i / columns) * H, axis)),
    `<text x="8" y="${height - 4}" fill="#666">${esc(caption)}</text>`,
    '</svg>',
    '',
  ].join('\n');
}
