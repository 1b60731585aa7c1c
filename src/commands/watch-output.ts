/**
 * What `watch` prints for each of its outcomes (src/incremental/commands.ts watchCommand), as lines for
 * stdout or stderr. Warnings and hints come first: on a terminal stderr is not interleaved with stdout in
 * the order written.
 */
import { formatMs } from '../duration.js';
import type { WatchOutcome } from '../incremental/commands.js';

export interface OutputLine {
  err: boolean;
  text: string;
}

const out = (text: string): OutputLine => ({ err: false, text });
const err = (text: string): OutputLine => ({ err: true, text });
const list = (items: readonly string[]) => (items.length ? items.join(', ') : '(none)');

export function watchLines(outcome: WatchOutcome): OutputLine[] {
  switch (outcome.kind) {
    case 'settings': {
      const r = outcome.report;
      const setting = (value: number | null, shown: (v: number) => string) =>
        value === null ? "the daemon's default" : shown(value);
      return [
        out(
          `updated ${r.view} (id ${r.id}); it stays incremental, with the plan made when it was made ` +
            'incremental (unwatch, then watch --incremental, plans it again: after adding an index)',
        ),
        out(
          `  staleness target: ${setting(r.max_staleness_ms, formatMs)}; ` +
            `refresh budget: ${setting(r.refresh_budget, (b) => `${Number((b * 100).toPrecision(6))}%`)}` +
            (r.refresh_interval_ms === null ? '' : `; also every ${formatMs(r.refresh_interval_ms)}`),
        ),
      ];
    }
    case 'incremental': {
      const r = outcome.report;
      return [
        ...r.hints.map((h) => err(`hint: ${h}`)),
        out(`${r.view} is incremental (key: ${r.key.join(', ')})`),
        out(`  changes captured on: ${r.sources.join(', ')}`),
        ...(r.dependants.length ? [out(`  dependants re-created: ${r.dependants.join(', ')}`)] : []),
      ];
    }
    case 'watched': {
      const r = outcome.report;
      const added = r.added ?? [];
      return [
        ...added.flatMap((a) => a.warnings.map((w) => err(`warning: ${w}`))),
        ...r.warnings.map((w) => err(`warning: ${w}`)),
        ...added.map((a) => out(`watching dependency ${a.view}; triggers on: ${list(a.tables)}`)),
        out(`${r.created ? 'watching' : 'updated'} ${r.view} (id ${r.id})`),
        out(`  triggers on: ${list(r.tables)}`),
        ...(r.dependencies.length
          ? [out(`  reads watched materialized views: ${list(r.dependencies)}`)]
          : []),
      ];
    }
  }
}
