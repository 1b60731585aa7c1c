import { median } from '../support/report.js';
import { lineCharts, type Panel } from '../support/svg.js';
import type { RefreshEvent } from '../support/daemon.js';
import type { Sample } from './sampler.js';

export interface Window {
  from: number;
  to: number;
  refreshes: number;
  p50: number;
  p95: number;
  samples: Sample[];
}

export interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return Number.NaN;
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

const maxOf = (xs: number[]) => (xs.length === 0 ? Number.NaN : Math.max(...xs.filter(Number.isFinite)));

/** Refresh times (the REFRESH statement, successful cycles) between two instants. */
function refreshTimes(events: RefreshEvent[], from: number, to: number): number[] {
  return events
    .filter((e) => e.at > from && e.at <= to && e.refreshMs !== undefined)
    .map((e) => e.refreshMs!);
}

/** The run cut into windows of windowS seconds (the last one may be shorter). */
export function windows(samples: Sample[], events: RefreshEvent[], t0: number, windowS: number): Window[] {
  const end = samples.at(-1)?.t ?? 0;
  const out: Window[] = [];
  for (let from = 0; from < end - 1e-6; from += windowS) {
    const to = Math.min(end, from + windowS);
    const times = refreshTimes(events, t0 + from * 1000, t0 + to * 1000);
    out.push({
      from,
      to,
      refreshes: times.length,
      p50: median(times),
      p95: quantile(times, 0.95),
      samples: samples.filter((s) => s.t > from && s.t <= to),
    });
  }
  return out;
}

const f0 = (n: number) =>
  Number.isFinite(n) ? Math.round(n).toLocaleString('en-US').replace(/,/g, ' ') : '—';
const f1 = (n: number) => (Number.isFinite(n) ? n.toFixed(1) : '—');

export function markdownTable(ws: Window[]): string {
  const head =
    '| minutes | refreshes | refresh ms p50 | p95 | staleness max s | daemon RSS MiB | heap MiB | fds | connections | largest refresh backend MiB | daemon backends MiB | mvrefresh tables KiB | catalogs MiB | catalog dead rows |';
  const rule = `|${head
    .split('|')
    .slice(1, -1)
    .map((c) => ` ${'-'.repeat(c.trim().length)} `)
    .join('|')}|`;
  const rows = ws.map((w) => {
    const m = (k: keyof Sample) => maxOf(w.samples.map((s) => s[k]));
    return `| ${f1(w.from / 60)}–${f1(w.to / 60)} | ${f0(w.refreshes)} | ${f1(w.p50)} | ${f1(w.p95)} | ${f1(m('stalenessS'))} | ${f1(m('daemonRssMiB'))} | ${f1(m('heapMiB'))} | ${f0(m('fds'))} | ${f0(m('connections'))} | ${f1(m('refreshBackendMiB'))} | ${f1(m('backendsMiB'))} | ${f0(m('mvrefreshKiB'))} | ${f1(m('catalogsMiB'))} | ${f0(m('catalogDeadRows'))} |`;
  });
  return [head, rule, ...rows].join('\n');
}

/** The trends the soak promises (issue 18), each with its numbers. */
export function checks(ws: Window[], samples: Sample[], unequal: number, refreshTolerance: number): Check[] {
  const first = ws[0]!;
  const last = ws.at(-1)!;
  // warm-up: the first window (caches filled, first autovacuums); compared with the last
  const warm = ws[1] ?? first;
  const half = (samples.at(-1)?.t ?? 0) / 2;
  const firstHalf = samples.filter((s) => s.t <= half);
  const lastSample = samples.at(-1)!;
  const growth = (a: number, b: number) => `${b >= a ? '+' : ''}${(((b - a) / a) * 100).toFixed(0)}%`;
  const bounded = (k: 'mvrefreshKiB' | 'catalogsMiB', slack: number, unit: string): Check => {
    const before = maxOf(firstHalf.map((s) => s[k]));
    const now = lastSample[k];
    return {
      name: `${k === 'mvrefreshKiB' ? "mvrefresh's tables" : 'catalogs'} bounded`,
      ok: now <= before * 1.25 + slack,
      detail: `${f1(now)} ${unit} at the end, at most ${f1(before)} ${unit} in the first half (allowed: +25% + ${slack} ${unit})`,
    };
  };
  // refresh backends grow until replaced: the peak of each window, not its median
  const memBefore = maxOf(warm.samples.map((s) => s.backendsMiB));
  const memAfter = maxOf(last.samples.map((s) => s.backendsMiB));
  return [
    {
      name: 'refresh time flat',
      ok: last.p50 <= first.p50 * (1 + refreshTolerance),
      detail: `median ${f1(first.p50)} ms in the first window, ${f1(last.p50)} ms in the last (${growth(first.p50, last.p50)}; allowed +${(refreshTolerance * 100).toFixed(0)}%)`,
    },
    {
      name: "daemon's backends' memory flat after warm-up",
      ok: memAfter <= memBefore * 1.25 + 4,
      detail: `peak ${f1(memBefore)} MiB in window ${ws[1] ? 2 : 1}, ${f1(memAfter)} MiB in the last (${growth(memBefore, memAfter)}; allowed +25% + 4 MiB)`,
    },
    bounded('mvrefreshKiB', 256, 'KiB'),
    bounded('catalogsMiB', 2, 'MiB'),
    {
      name: 'every view equals its query',
      ok: unequal === 0,
      detail: `${unequal} unequal`,
    },
  ];
}

export function csv(samples: Sample[], events: RefreshEvent[], t0: number, sampleS: number): string {
  const keys = Object.keys(samples[0] ?? {}) as (keyof Sample)[];
  const lines = samples.map((s) => {
    const times = refreshTimes(events, t0 + (s.t - sampleS) * 1000, t0 + s.t * 1000);
    return [
      ...keys.map((k) => (Number.isFinite(s[k]) ? s[k].toFixed(2) : '')),
      times.length,
      f1(median(times)),
    ].join(',');
  });
  return `${[...keys, 'refreshes', 'refreshMsP50'].join(',')}\n${lines.join('\n')}\n`;
}

export function svg(
  samples: Sample[],
  events: RefreshEvent[],
  t0: number,
  sampleS: number,
  caption: string,
): string {
  const minutes = (s: Sample) => s.t / 60;
  const series = (name: string, k: keyof Sample) => ({
    name,
    points: samples.map((s) => [minutes(s), s[k]] as [number, number]),
  });
  const refresh = {
    name: 'median per sample',
    points: samples.map(
      (s) =>
        [minutes(s), median(refreshTimes(events, t0 + (s.t - sampleS) * 1000, t0 + s.t * 1000))] as [
          number,
          number,
        ],
    ),
  };
  const panels: Panel[] = [
    { title: 'refresh time', yLabel: 'ms', series: [refresh] },
    {
      title: 'daemon',
      yLabel: 'MiB',
      series: [series('RSS', 'daemonRssMiB'), series('heap used', 'heapMiB')],
    },
    {
      title: "daemon's backends (RssAnon)",
      yLabel: 'MiB',
      series: [series('all', 'backendsMiB'), series('largest refresh', 'refreshBackendMiB')],
    },
    { title: 'staleness (worst view)', yLabel: 's', series: [series('max', 'stalenessS')] },
    { title: "mvrefresh's tables", yLabel: 'KiB', series: [series('total size', 'mvrefreshKiB')] },
    { title: 'catalogs', yLabel: 'MiB', series: [series('pg_class, pg_attribute, ...', 'catalogsMiB')] },
  ];
  const end = samples.at(-1)?.t ?? 60;
  const step = end / 60 > 10 ? 5 : 1;
  const ticks: number[] = [];
  for (let m = 0; m <= end / 60 + 1e-9; m += step) ticks.push(m);
  const xs = samples.map(minutes);
  return lineCharts(
    panels,
    [0, ...xs],
    caption,
    { scale: 'linear', label: 'minutes', ticks, dots: false },
    3,
  );
}
