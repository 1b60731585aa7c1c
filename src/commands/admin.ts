import type pg from 'pg';
import { callerSearchPath } from '../db/connect.js';
import { migrate } from '../db/migrate.js';
import { requirePrimary } from '../db/primary.js';
import { requireSchema } from '../db/schema-version.js';
import { sql } from '../db/sql.js';
import { settleClears } from '../db/clears.js';
import { retryOnLockTimeout } from '../db/lock-retry.js';
import { describeConflict, minInterval } from '../budget.js';
import { formatMs } from '../duration.js';
import { CLEAR_LOCK, LockHeldError, clearLockHolders, lockHolders } from '../db/lock-holders.js';
import { SqlState, isPgError } from '../db/errors.js';
import { CHANNEL, VIEWS_CHANGED, WATCH_LOCK_KEY } from '../db/protocol.js';
import { blindSpots, isGone, loadStatus, type StatusRow } from '../db/status.js';

export interface WatchOptions {
  maxStalenessMs?: number | undefined;
  refreshBudget?: number | undefined;
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
  /** The materialized views --with-dependencies watched, deepest first, with their triggers' tables. */
  added?: { view: string; tables: string[]; warnings: string[] }[];
}

/**
 * Runs fn; when it fails on its lock_timeout while another session holds mvrefresh's advisory lock `key`,
 * or the clear lock exclusively (sync_table_triggers() clears the marks of unwatched tables under it; any
 * role that can connect can take either), fails with an error naming that session instead.
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
      // a daemon's settle_clears() holds it exclusively for microseconds: retried, not reported
      const clearing = (await clearLockHolders(db)).filter((h) => !h.ours);
      if (clearing.length > 0) throw new LockHeldError(`the ${CLEAR_LOCK}`, clearing);
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
        null,
        null,
        opts.refreshIntervalMs ?? null,
        opts.allowBlockingRefresh ?? false,
        opts.withDependencies ?? false,
        opts.maxStalenessMs ?? null,
        opts.refreshBudget ?? null,
        callerSearchPath(db),
      ]),
    ),
  );
  await announceViewsChanged(db);
  return rows[0]!.report;
}

/**
 * Tells running daemons that the views or their settings changed (after the change committed, so that
 * their reload sees it): they reload at once instead of at their next sweep. A lost notification costs
 * only that wait, so a failure here is not the command's. Settles the clear the change may have drawn.
 */
async function announceViewsChanged(db: pg.ClientBase): Promise<void> {
  await db.query(sql.notify, [CHANNEL, VIEWS_CHANGED]).catch(() => undefined);
  await settleClears(db);
}

export async function unwatchView(
  db: pg.ClientBase,
  name: string,
): Promise<{ id: number; view: string; tables: string[] }> {
  await requirePrimary(db, 'unwatch');
  await requireSchema(db);
  const { rows } = await retryOnLockTimeout(() =>
    namingHolder(db, WATCH_LOCK_KEY, WATCH_LOCK, () =>
      db.query<{ report: { id: number; view: string; tables: string[] } }>(sql.unwatch, [
        name,
        callerSearchPath(db),
      ]),
    ),
  );
  await announceViewsChanged(db);
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
  await announceViewsChanged(db);
  return rows[0]!.report;
}

export interface PauseReport {
  id: number;
  view: string;
  paused: boolean;
  changed: boolean;
  dirty: boolean;
}

export async function setPaused(db: pg.ClientBase, name: string, paused: boolean): Promise<PauseReport> {
  await requirePrimary(db, paused ? 'pause' : 'resume');
  await requireSchema(db);
  const { rows } = await db.query<{ report: PauseReport }>(sql.setPaused, [
    name,
    paused,
    callerSearchPath(db),
  ]);
  return rows[0]!.report;
}

export interface SettingsReport {
  id: number;
  view: string;
  refresh_interval_ms: number | null;
  max_staleness_ms: number | null;
  refresh_budget: number | null;
}

/**
 * `watch` of a view that is already incremental: its settings alone (routines/set_settings.sql), as a
 * re-watch replaces a materialized view's; an option left out is the daemon's default again.
 */
export async function setIncrementalSettings(
  db: pg.ClientBase,
  name: string,
  opts: WatchOptions,
): Promise<SettingsReport> {
  await requirePrimary(db, 'watch');
  await requireSchema(db);
  const { rows } = await db.query<{ report: SettingsReport }>(sql.setSettings, [
    name,
    opts.refreshIntervalMs ?? null,
    opts.maxStalenessMs ?? null,
    opts.refreshBudget ?? null,
    callerSearchPath(db),
  ]);
  await announceViewsChanged(db);
  return rows[0]!.report;
}

export async function viewStatus(db: pg.ClientBase | pg.Pool): Promise<StatusRow[]> {
  await requireSchema(db);
  return loadStatus(db);
}

/**
 * A text safe to print on a terminal: control characters (in a view name or an error text they could move
 * the cursor or rewrite the screen), format characters (bidirectional overrides and isolates, U+202A-U+202E
 * and U+2066-U+2069, which make a name read otherwise than it is; zero-width characters) and the line and
 * paragraph separators become \uXXXX escapes.
 */
export function printable(text: string): string {
  return text.replace(UNPRINTABLE, (c) => {
    const code = c.codePointAt(0)!;
    return code > 0xffff ? `\\u{${code.toString(16)}}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}

/**
 * What status says under its table of a view's mode: for an incremental view its last apply and verify, for
 * a view whose --incremental was refused the clause; nothing for a view refreshed in full by choice.
 */
function modeNote(r: StatusRow, now: Date): string | undefined {
  const inc = r.incremental;
  if (!inc)
    return r.mode_reason === null
      ? undefined
      : `refreshed in full: ${r.mode_reason} needs a full refresh (watch --incremental refused)`;
  const apply =
    inc.last_apply_kind === null
      ? 'no apply yet'
      : `last apply ${inc.last_apply_kind}, ${inc.last_apply_keys ?? 0} keys in ${formatMs(inc.last_apply_ms ?? 0)}`;
  const full = inc.last_full_ms === null ? '' : `; last full recompute ${formatMs(inc.last_full_ms)}`;
  const verify =
    inc.last_verify_at === null
      ? 'never verified'
      : `verified ${Math.round((now.getTime() - inc.last_verify_at.getTime()) / 1000)}s ago`;
  return `incremental: ${apply}${full}; ${verify}, ${inc.verify_mismatches} mismatches found`;
}

/** What status says of a gone view: a plain sentence with the command. */
const GONE_NOTE = (view: string) =>
  `the materialized view no longer exists (dropped or renamed); it is refreshed again if it is re-created, ` +
  `else run: mvrefresh unwatch ${view}`;

const UNPRINTABLE = /[\p{Cc}\p{Cf}\u2028\u2029]/gu;

/**
 * A plain-text table for `mvrefresh status`. TARGET and BUDGET are the view's own or the defaults given;
 * EVERY is how often the budget lets it refresh at its last duration, with "!" when that cannot meet the
 * target (the reason follows the table); MISSES counts refreshes that ended later than the target and how
 * stale the last of them was; BLIND SPOTS names what the view's warnings say no trigger sees; STATE gone: the
 * view was dropped or renamed (not a failure).
 */
export function formatStatus(
  rows: StatusRow[],
  defaults: { maxStalenessMs: number; refreshBudget: number },
  now: Date = new Date(),
): string {
  if (rows.length === 0) return 'no materialized view is watched (mvrefresh watch <view>)';
  const header = [
    'VIEW',
    'STATE',
    'MODE',
    'BLIND SPOTS',
    'STALENESS',
    'TARGET',
    'BUDGET',
    'EVERY',
    'MISSES',
    'LAST REFRESH',
    'DURATION',
    'FAILURES',
    'LAST ERROR',
  ];
  const notes: string[] = [];
  const lines = rows.map((r) => {
    const target = r.max_staleness_ms ?? defaults.maxStalenessMs;
    const budget = r.refresh_budget ?? defaults.refreshBudget;
    const expected = r.last_duration_ms;
    let every = '-';
    if (expected !== null) {
      const conflict = minInterval(expected, budget) + expected > target;
      every = `${formatMs(minInterval(expected, budget))}${conflict ? '!' : ''}`;
      if (conflict) notes.push(`${r.view}: ${describeConflict(expected, budget, target)}`);
    }
    const gone = isGone(r);
    if (gone) notes.push(`${r.view}: ${GONE_NOTE(r.view)}`);
    const spots = blindSpots(r.warnings);
    const mode = modeNote(r, now);
    if (mode) notes.push(printable(`${r.view}: ${mode}`));
    return [
      r.view,
      r.paused
        ? 'paused'
        : gone
          ? 'gone'
          : r.consecutive_failures > 0
            ? 'failing'
            : r.dirty
              ? 'dirty'
              : 'fresh',
      r.incremental ? 'incremental' : 'full',
      spots.length > 0 ? spots.join(', ') : '-',
      `${r.staleness_seconds.toFixed(1)}s`,
      `${formatMs(target)}${r.max_staleness_ms === null ? '*' : ''}`,
      `${Math.round(budget * 100)}%${r.refresh_budget === null ? '*' : ''}`,
      every,
      r.last_miss_staleness_ms === null
        ? String(r.target_misses)
        : `${r.target_misses}, last ${formatMs(r.last_miss_staleness_ms)} stale`,
      r.last_refreshed_at
        ? `${Math.round((now.getTime() - r.last_refreshed_at.getTime()) / 1000)}s ago`
        : 'never',
      expected === null ? '-' : `${Math.round(expected)}ms`,
      String(r.consecutive_failures),
      r.last_error ? `${r.last_error}${r.last_sqlstate ? ` [${r.last_sqlstate}]` : ''}` : '-',
    ];
  });
  for (const l of lines) for (let i = 0; i < l.length; i += 1) l[i] = printable(l[i]!);
  const locked = rows.flatMap((r) =>
    r.lock_holders.length > 0 ? [printable(`${r.view}: lock held by ${r.lock_holders.join('; ')}`)] : [],
  );
  const drift =
    rows[0]?.drift_detection === 'event_trigger'
      ? 'changes of the sources (partitions, view definitions, triggers) are found at once: event trigger mvrefresh_ddl'
      : "changes of the sources (partitions, view definitions, triggers) are found by the daemon's periodic check (driftCheckIntervalMs): no event trigger (a superuser installs it: mvrefresh install-ddl-watch)";
  const warnings = rows.flatMap((r) => r.warnings.map((w) => `warning: ${r.view}: ${w}`));
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  return [
    ...[header, ...lines].map((l) =>
      l.map((c, i) => (i === l.length - 1 ? c : c.padEnd(widths[i]!))).join('  '),
    ),
    '(* the default; BLIND SPOTS: changes that no write shows, which the warnings below explain; MODE: incremental views apply only what changed, the others are refreshed in full)',
    ...notes,
    ...locked,
    ...warnings.map(printable),
    '',
    drift,
  ].join('\n');
}
