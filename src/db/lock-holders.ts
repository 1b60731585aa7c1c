import type pg from 'pg';
import { sql } from './sql.js';
import { AppName } from './connect.js';
import { CLEAR_LOCK_KEY, LOCK_NAMESPACE } from './protocol.js';

export interface LockHolder {
  pid: number;
  role: string;
  application: string;
  since: Date | null;
  /** pg_stat_activity.state: 'idle in transaction' for a session that took the lock and went quiet. */
  state: string | null;
  /** Its current or last query, cut short. */
  query: string | null;
  /** A refresh of mvrefresh's own role (another replica): expected while it refreshes. */
  ours: boolean;
}

/** The clear lock (routines/begin_clear.sql) as reports name it: its keys are what pg_locks shows. */
export const CLEAR_LOCK = `mvrefresh clear lock (advisory key ${LOCK_NAMESPACE},${CLEAR_LOCK_KEY})`;

/**
 * Sessions other than this one that hold mvrefresh's advisory lock with the second key `key`; with
 * `exclusive`, only those holding it exclusively (what makes a shared request wait).
 */
export async function lockHolders(
  db: pg.ClientBase | pg.Pool,
  key: number,
  { exclusive = false }: { exclusive?: boolean } = {},
): Promise<LockHolder[]> {
  return (await db.query<LockHolder>(sql.lockHolders, [key, AppName.refresh, exclusive])).rows;
}

/**
 * Sessions that hold the clear lock exclusively (what makes begin_clear()'s shared request wait); empty
 * when the lookup fails, so that the failure it explains is reported as it came.
 */
export async function clearLockHolders(db: pg.ClientBase | pg.Pool): Promise<LockHolder[]> {
  return lockHolders(db, CLEAR_LOCK_KEY, { exclusive: true }).catch(() => []);
}

/** "pid 123 (role app, application 'psql', since ..., state ..., query ...)" for messages and logs. */
export function describeHolders(holders: LockHolder[]): string {
  return holders
    .map(
      (h) =>
        `pid ${h.pid} (role ${h.role}, application ${JSON.stringify(h.application)}, since ${h.since?.toISOString() ?? '?'}, ` +
        `state ${h.state ?? '?'}, query ${JSON.stringify(h.query ?? '')})`,
    )
    .join(', ');
}

/**
 * Another session held one of mvrefresh's locks for longer than the command waits: who, and how to end it
 * if it is stuck.
 */
export class LockHeldError extends Error {
  override name = 'LockHeldError';
  constructor(what: string, holders: LockHolder[]) {
    super(
      `${what} is held by ${describeHolders(holders)}; waited the lock timeout. If that session is stuck, ` +
        `end it with SELECT pg_terminate_backend(${holders[0]?.pid ?? '<pid>'})`,
    );
  }
}
