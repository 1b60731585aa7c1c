import type pg from 'pg';
import { migrate } from '../db/migrate.js';
import { requirePrimary } from '../db/primary.js';
import { requireSchema } from '../db/schema-version.js';
import { sql } from '../db/sql.js';
import { retryOnLockTimeout } from '../db/lock-retry.js';
import { LockHeldError, lockHolders } from '../db/lock-holders.js';
import { SqlState, isPgError } from '../db/errors.js';
import { WATCH_LOCK_KEY } from '../db/protocol.js';
import { loadStatus, type StatusRow } from '../db/status.js';

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

/**
 * Runs fn; when it fails on its lock_timeout while another session holds mvrefresh's advisory lock `key`
 * (any role that can connect can take one), fails with an error naming that session instead.
 */
async function namingHolder<T>(
  db: pg.ClientBase,
  key: number,
  what: string,
  fn: () => Promise<T>,
): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (isPgError(err) && err.code === SqlState.lockNotAvailable) {
      const holders = await lockHolders(db, key).catch(() => []);
      if (holders.length > 0) throw new LockHeldError(what, holders);
    }
    throw err;
  }
}

const WATCH_LOCK = "mvrefresh's watch / unwatch lock";

export async function runMigrate(db: pg.ClientBase) {
  await requirePrimary(db, 'migrate');
  return migrate(db);
}

export async function watchView(db: pg.ClientBase, name: string, opts: WatchOptions): Promise<WatchReport> {
  await requirePrimary(db, 'watch');
  await requireSchema(db);
  const { rows } = await retryOnLockTimeout(() =>
    namingHolder(db, WATCH_LOCK_KEY, WATCH_LOCK, () =>
      db.query<{ report: WatchReport }>(sql.watch, [
        name,
        opts.debounceMs ?? null,
        opts.maxWaitMs ?? null,
        opts.refreshIntervalMs ?? null,
        opts.allowBlockingRefresh ?? false,
        opts.withDependencies ?? false,
      ]),
    ),
  );
  return rows[0]!.report;
}

export async function unwatchView(
  db: pg.ClientBase,
  name: string,
): Promise<{ id: number; view: string; tables: string[] }> {
  await requirePrimary(db, 'unwatch');
  await requireSchema(db);
  const { rows } = await retryOnLockTimeout(() =>
    namingHolder(db, WATCH_LOCK_KEY, WATCH_LOCK, () =>
      db.query<{ report: { id: number; view: string; tables: string[] } }>(sql.unwatch, [name]),
    ),
  );
  return rows[0]!.report;
}

export async function unwatchAll(
  db: pg.ClientBase,
): Promise<{ id: number; view: string; tables: string[] }[]> {
  await requirePrimary(db, 'unwatch');
  await requireSchema(db);
  const { rows } = await retryOnLockTimeout(() =>
    namingHolder(db, WATCH_LOCK_KEY, WATCH_LOCK, () =>
      db.query<{ report: { id: number; view: string; tables: string[] }[] }>(sql.unwatchAll),
    ),
  );
  return rows[0]!.report;
}

export async function viewStatus(db: pg.ClientBase | pg.Pool): Promise<StatusRow[]> {
  await requireSchema(db);
  return loadStatus(db);
}

/**
 * A text safe to print on a terminal: control characters (in a view name or an error text they could move
 * the cursor or rewrite the screen) become \uXXXX escapes.
 */
export function printable(text: string): string {
  return text.replace(
    // eslint-disable-next-line no-control-regex
    /[\u0000-\u001f\u007f-\u009f]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/** A plain-text table for `mvrefresh status`; every cell printable(). */
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
  for (const l of lines) for (let i = 0; i < l.length; i += 1) l[i] = printable(l[i]!);
  const locked = rows.flatMap((r) =>
    r.lock_holders.length > 0 ? [printable(`${r.view}: lock held by ${r.lock_holders.join('; ')}`)] : [],
  );
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  return [
    ...[header, ...lines].map((l) =>
      l.map((c, i) => (i === l.length - 1 ? c : c.padEnd(widths[i]!))).join('  '),
    ),
    ...locked,
  ].join('\n');
}
