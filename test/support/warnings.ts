import type pg from 'pg';
import { expect } from 'vitest';
import type { WatchReport } from '../../src/commands/admin.js';

/** Watches `name` through mvrefresh.watch() (with a refresh interval or none) and returns its report. */
export async function watchReport(
  client: pg.ClientBase,
  name: string,
  interval: number | null = null,
): Promise<WatchReport> {
  const { rows } = await client.query<{ r: WatchReport }>(
    'SELECT mvrefresh.watch($1, p_refresh_interval_ms => $2) AS r',
    [name, interval],
  );
  return rows[0]!.r;
}

/** Exactly one warning, naming every one of `parts`; `label` names the case in a failure. */
export function expectOneWarning(warnings: string[], parts: string[], label?: string): void {
  expect(warnings, label).toHaveLength(1);
  for (const part of parts) expect(warnings[0], label).toContain(part);
}
