import type pg from 'pg';
import { sql } from './sql.js';

/**
 * The catalogs that every REFRESH ... CONCURRENTLY churns: it creates, analyzes and drops temporary tables,
 * leaving dead rows in each of them. Without vacuum they grow without bound (pg_attribute reaches hundreds
 * of MB, a million dead rows, within tens of thousands of refreshes).
 */
export const CHURNED_CATALOGS = ['pg_class', 'pg_attribute', 'pg_depend', 'pg_statistic', 'pg_type'] as const;

/**
 * A table is bloated when its dead rows are both many and several times its live ones. The floors keep the
 * churn between two autovacuum runs from counting: a refresh leaves about 70 dead catalog rows, and the
 * soak saw 65 000-110 000 in all the catalogs between runs at 23 refreshes a second (docs/operations.md,
 * "Vacuum and the catalogs"); mvrefresh's marks are inserted and deleted by every write and cycle.
 */
export const BLOAT_MIN_DEAD_CATALOG = 500_000;
export const BLOAT_MIN_DEAD_OWN = 10_000;
export const BLOAT_DEAD_TO_LIVE = 4;

export interface TableHealth {
  /** `pg_attribute` for a catalog, `mvrefresh.view_state` for ours. */
  table: string;
  live: number;
  dead: number;
  bytes: number;
  /** Seconds since the last vacuum (manual or auto); null: never since the statistics were reset. */
  vacuumed_ago_s: number | null;
  /** False when the table's own storage parameter turns autovacuum off. */
  autovacuum_enabled: boolean;
}

export interface VacuumHealth {
  autovacuum: boolean;
  trackCounts: boolean;
  naptimeS: number;
  tables: TableHealth[];
}

/** One cheap look at the statistics (no table is read): settings, then each table's counters and size. */
export async function vacuumHealth(db: pg.Pool | pg.ClientBase): Promise<VacuumHealth> {
  const settings = await db.query<{ autovacuum: boolean; track_counts: boolean; naptime_s: number }>(
    sql.vacuumSettings,
  );
  const { rows } = await db.query<TableHealth>(sql.tableHealth, [CHURNED_CATALOGS]);
  const s = settings.rows[0];
  return {
    autovacuum: s?.autovacuum ?? false,
    trackCounts: s?.track_counts ?? false,
    naptimeS: s?.naptime_s ?? 60,
    tables: rows,
  };
}

export function isBloated(t: TableHealth): boolean {
  const floor = t.table.startsWith('mvrefresh.') ? BLOAT_MIN_DEAD_OWN : BLOAT_MIN_DEAD_CATALOG;
  return t.dead >= floor && t.dead > BLOAT_DEAD_TO_LIVE * t.live;
}

const MIB = 1024 * 1024;

/** "pg_attribute: 1600000 dead rows against 3000 live, 279.0 MiB, never vacuumed" */
export function describeBloat(t: TableHealth): string {
  const vacuumed =
    t.vacuumed_ago_s === null
      ? 'never vacuumed'
      : `last vacuumed ${Math.round(t.vacuumed_ago_s / 60)} min ago`;
  return `${t.table}: ${Math.round(t.dead)} dead rows against ${Math.round(t.live)} live, ${(t.bytes / MIB).toFixed(1)} MiB, ${vacuumed}`;
}
