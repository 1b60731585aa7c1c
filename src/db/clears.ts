import type pg from 'pg';
import { sql } from './sql.js';

/**
 * sync_table_triggers() (watch, unwatch, capture changes, migrate) deletes the marks of tables no view
 * reads and draws a clear; until clears_settled catches up, every writer of a watched table probes for its
 * table's mark on every statement instead of trusting its memo (routines/mark_table.sql, step 1), which
 * costs the writers more than the whole mark trigger otherwise does. Run after the change committed.
 * Best effort: a running daemon's sweep settles as well.
 */
export async function settleClears(db: pg.ClientBase): Promise<void> {
  await db.query(sql.settleClears).catch(() => undefined);
}
