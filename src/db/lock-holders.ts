import type pg from 'pg';
import { sql } from './sql.js';
import { AppName } from './connect.js';

export interface LockHolder {
  pid: number;
  role: string;
  application: string;
  since: Date | null;
  /** A refresh of mvrefresh's own role (another replica): expected while it refreshes. */
  ours: boolean;
}

/** Sessions other than this one that hold mvrefresh's advisory lock with the second key `key`. */
export async function lockHolders(db: pg.ClientBase | pg.Pool, key: number): Promise<LockHolder[]> {
  return (await db.query<LockHolder>(sql.lockHolders, [key, AppName.refresh])).rows;
}

/** "pid 123 (role app, application 'psql', since ...)" for messages and logs. */
export function describeHolders(holders: LockHolder[]): string {
  return holders
    .map(
      (h) =>
        `pid ${h.pid} (role ${h.role}, application ${JSON.stringify(h.application)}, since ${h.since?.toISOString() ?? '?'})`,
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
