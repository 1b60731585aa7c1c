/** Helpers the benches share to read their settings, summarize rounds and write their section of docs/benchmarks.md. */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { packageRoot } from '../../src/paths.js';

/** The results file (BENCH_OUT; docs/benchmarks.md by default; `-` for none: the section is only printed). */
export const RESULTS_FILE = process.env['BENCH_OUT'] ?? join(packageRoot, 'docs', 'benchmarks.md');
const NO_OUTPUT = '-';

/** A number from the environment variable `name`, else `fallback`; anything that is not a number is refused. */
export function numberEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value)) throw new Error(`${name} must be a number, got ${raw}`);
  return value;
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return Number.NaN;
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** The p-th percentile (nearest rank) of xs, which need not be sorted; NaN when there are none. */
export function percentile(xs: readonly number[] | Float64Array, p: number): number {
  if (xs.length === 0) return Number.NaN;
  const sorted = Float64Array.from(xs).sort();
  return sorted[Math.max(0, Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/**
 * The results file with the section that starts with `title` (a "## " heading) replaced by `text`, or
 * `text` appended when there is no such section; the other sections are kept as they are.
 */
export function replaceSection(current: string, title: string, text: string): string {
  const file = current.trim() === '' ? '# Benchmarks\n' : current;
  const start = file.indexOf(title);
  if (start < 0) return `${file.trimEnd()}\n\n${text.trimEnd()}\n`;
  const next = file.indexOf('\n## ', start + title.length);
  return `${file.slice(0, start)}${text.trimEnd()}\n${next < 0 ? '' : file.slice(next)}`;
}

/**
 * Replaces (or appends) the section `title` of the results file (RESULTS_FILE unless `path` is given), which
 * may not exist yet; nothing when it is `-`.
 */
export async function writeSection(title: string, text: string, path = RESULTS_FILE): Promise<void> {
  if (path === NO_OUTPUT) return;
  const current = await readFile(path, 'utf8').catch(() => '');
  await writeFile(path, replaceSection(current, title, text));
}
