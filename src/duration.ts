const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * Milliseconds from "10s", "500ms", "1.5s", "2m", "1h" or a plain number of milliseconds; undefined for
 * anything else (no negative, no empty, no unknown unit).
 */
export function parseDuration(text: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(text);
  if (!m?.[1]) return undefined;
  const ms = Number(m[1]) * UNITS[m[2] ?? 'ms']!;
  return Number.isFinite(ms) ? Math.round(ms) : undefined;
}

/**
 * The smallest refresh budget: below it the interval between a view's refreshes (cost / budget) is beyond
 * any useful staleness (a 10 ms refresh at 0.1% runs every 10 s), and a tiny one overflows timers.
 */
export const MIN_REFRESH_BUDGET = 0.001;

/** A share of time from "0.2" or "20%"; undefined unless it is more than 0 and at most 1. */
export function parseShare(text: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(%)?\s*$/.exec(text);
  if (!m?.[1]) return undefined;
  const share = m[2] ? Number(m[1]) / 100 : Number(m[1]);
  return share > 0 && share <= 1 ? share : undefined;
}

/** "0.8 s", "120 ms": durations in log lines and status output. */
export function formatMs(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  return `${s < 10 ? s.toFixed(1).replace(/\.0$/, '') : Math.round(s)} s`;
}
