import type pg from 'pg';
import { migrate, latestVersion, installedVersion } from '../db/migrate.js';
import { sql } from '../db/sql.js';

export interface WatchOptions {
  debounceMs?: number | undefined;
  maxWaitMs?: number | undefined;
  refreshIntervalMs?: number | undefined;
  allowBlockingRefresh?: boolean | undefined;
  withDependencies?: boolean | undefined;
}

export interface WatchReport {
  id: number;
  view: string;
  created: boolean;
  tables: string[];
  dependencies: string[];
  warnings: string[];
}

export interface StatusRow {
  id: number;
  view: string;
  dirty: boolean;
  cycle_unfinished: boolean;
  dirty_since: Date | null;
  staleness_seconds: number;
  last_refreshed_at: Date | null;
  last_duration_ms: number | null;
  last_outcome: string | null;
  last_error: string | null;
  last_sqlstate: string | null;
  last_error_at: Date | null;
  consecutive_failures: number;
  next_attempt_at: Date | null;
  debounce_ms: number | null;
  max_wait_ms: number | null;
  refresh_interval_ms: number | null;
  allow_blocking_refresh: boolean;
  depth: number;
  sources: string[];
  warnings: string[];
  depends_on: string[];
}

export class SchemaMissingError extends Error {
  override name = 'SchemaMissingError';
}

/** Fails with a message that says what to run when the schema is missing or older than this build. */
export async function requireSchema(db: pg.ClientBase | pg.Pool): Promise<void> {
  const [have, want] = await Promise.all([installedVersion(db), latestVersion()]);
  if (have === null)
    throw new SchemaMissingError(
      'the mvrefresh schema is not installed in this database: run `mvrefresh migrate` first',
    );
  if (have < want)
    throw new SchemaMissingError(
      `the mvrefresh schema is at version ${have}, this build needs ${want}: run \`mvrefresh migrate\``,
    );
  if (have > want)
    throw new SchemaMissingError(
      `the mvrefresh schema is at version ${have}, newer than this build knows (${want}): upgrade mvrefresh`,
    );
}

export class StandbyError extends Error {
  override name = 'StandbyError';
}

/** A standby would fail with "read-only transaction"; say what is wrong instead. */
export async function requirePrimary(db: pg.ClientBase, command: string): Promise<void> {
  const { rows } = await db.query<{ in_recovery: boolean }>(sql.inRecovery);
  if (rows[0]?.in_recovery)
    throw new StandbyError(`the database is a standby (in recovery): ${command} needs the primary`);
}

export async function runMigrate(db: pg.ClientBase) {
  await requirePrimary(db, 'migrate');
  return migrate(db);
}

export async function watchView(db: pg.ClientBase, name: string, opts: WatchOptions): Promise<WatchReport> {
  await requireSchema(db);
  const { rows } = await db.query<{ report: WatchReport }>(sql.watch, [
    name,
    opts.debounceMs ?? null,
    opts.maxWaitMs ?? null,
    opts.refreshIntervalMs ?? null,
    opts.allowBlockingRefresh ?? false,
    opts.withDependencies ?? false,
  ]);
  return rows[0]!.report;
}

export async function unwatchView(
  db: pg.ClientBase,
  name: string,
): Promise<{ id: number; view: string; tables: string[] }> {
  await requirePrimary(db, 'unwatch');
  await requireSchema(db);
  const { rows } = await db.query<{ report: { id: number; view: string; tables: string[] } }>(sql.unwatch, [
    name,
  ]);
  return rows[0]!.report;
}

export async function unwatchAll(
  db: pg.ClientBase,
): Promise<{ id: number; view: string; tables: string[] }[]> {
  await requirePrimary(db, 'unwatch');
  await requireSchema(db);
  const { rows } = await db.query<{ report: { id: number; view: string; tables: string[] }[] }>(
    sql.unwatchAll,
  );
  return rows[0]!.report;
}

export async function viewStatus(db: pg.ClientBase | pg.Pool): Promise<StatusRow[]> {
  await requireSchema(db);
  return (await db.query<StatusRow>(sql.status)).rows;
}

/** A plain-text table for `mvrefresh status`. */
export function formatStatus(rows: StatusRow[], now: Date = new Date()): string {
  if (rows.length === 0) return 'no materialized view is watched (mvrefresh watch <view>)';
  const header = ['VIEW', 'STATE', 'STALENESS', 'LAST REFRESH', 'DURATION', 'FAILURES', 'LAST ERROR'];
  const lines = rows.map((r) => [
    r.view,
    r.consecutive_failures > 0 ? 'failing' : r.dirty ? 'dirty' : 'fresh',
    `${r.staleness_seconds.toFixed(1)}s`,
    r.last_refreshed_at
      ? `${Math.round((now.getTime() - r.last_refreshed_at.getTime()) / 1000)}s ago`
      : 'never',
    r.last_duration_ms === null ? '-' : `${Math.round(r.last_duration_ms)}ms`,
    String(r.consecutive_failures),
    r.last_error ? `${r.last_error}${r.last_sqlstate ? ` [${r.last_sqlstate}]` : ''}` : '-',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  return [header, ...lines]
    .map((l) => l.map((c, i) => (i === l.length - 1 ? c : c.padEnd(widths[i]!))).join('  '))
    .join('\n');
}
