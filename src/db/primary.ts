import type pg from 'pg';
import { sql } from './sql.js';

export class StandbyError extends Error {
  override name = 'StandbyError';
}

/** A standby would fail with "read-only transaction"; say what is wrong instead. */
export async function requirePrimary(db: pg.ClientBase, command: string): Promise<void> {
  const { rows } = await db.query<{ in_recovery: boolean }>(sql.inRecovery);
  if (rows[0]?.in_recovery)
    throw new StandbyError(`the database is a standby (in recovery): ${command} needs the primary`);
}
