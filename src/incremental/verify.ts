/**
 * `mvrefresh verify <view>`: compares an incremental view with its definition and repairs it, through the
 * procedure mvrefresh.verify() (routines/verify.sql: an apply, then EXCEPT ALL both ways as the owner, then
 * the repair, in one REPEATABLE READ transaction under the view's lock), called again when its apply found a
 * source rewritten after its snapshot. Counts only are reported: row values can be sensitive.
 */
import type pg from 'pg';
import { SqlState, isPgError } from '../db/errors.js';
import { qname, shownName } from '../replace/plan.js';
import { IncrementalRefused } from './convert.js';
import { incrementalSql } from './sql.js';

/** How long `mvrefresh verify` waits for a refresh cycle holding the view's lock. */
export const VERIFY_LOCK_TIMEOUT_MS = 30_000;

export interface VerifyReport {
  view: string;
  /** Rows in the table that the definition does not give (and entries of its hidden multiset, if any). */
  extra: number;
  /** Rows the definition gives that the table lacks (and entries its hidden multiset lacks). */
  missing: number;
  repaired: boolean;
  durationMs: number;
}

/** Attempts of a verify whose apply found a source rewritten after its snapshot (40001). */
const VERIFY_ATTEMPTS = 3;

export async function verifyView(
  client: pg.ClientBase,
  schema: string,
  name: string,
  repair = true,
  lockTimeoutMs = VERIFY_LOCK_TIMEOUT_MS,
): Promise<VerifyReport> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await verifyOnce(client, schema, name, repair, lockTimeoutMs);
    } catch (err) {
      if (!(isPgError(err) && err.code === SqlState.serializationFailure) || attempt >= VERIFY_ATTEMPTS)
        throw err;
    }
  }
}

async function verifyOnce(
  client: pg.ClientBase,
  schema: string,
  name: string,
  repair: boolean,
  lockTimeoutMs: number,
): Promise<VerifyReport> {
  const t0 = Date.now();
  const reg = (
    await client.query<{ view_id: number; state: string }>(incrementalSql.incremental, [schema, name])
  ).rows[0];
  if (!reg || reg.state !== 'active')
    throw new IncrementalRefused(`${shownName(schema, name)} is not an incremental view`);
  const { rows } = await client.query<{ extra: string; missing: string; repaired: boolean }>(
    'CALL mvrefresh.verify($1, NULL, NULL, NULL, $2, $3)',
    [qname(schema, name), repair, lockTimeoutMs],
  );
  const extra = Number(rows[0]?.extra ?? 0);
  const missing = Number(rows[0]?.missing ?? 0);
  return {
    view: shownName(schema, name),
    extra,
    missing,
    repaired: rows[0]?.repaired ?? false,
    durationMs: Date.now() - t0,
  };
}
