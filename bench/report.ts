/** Helpers the benches share to summarize rounds and to write their section of docs/benchmarks.md. */
import { readFile, writeFile } from 'node:fs/promises';

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return Number.NaN;
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
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

/** Replaces (or appends) the section `title` of the results file at `path`, which may not exist yet. */
export async function writeSection(path: string, title: string, text: string): Promise<void> {
  const current = await readFile(path, 'utf8').catch(() => '');
  await writeFile(path, replaceSection(current, title, text));
}
