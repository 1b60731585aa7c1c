/**
 * `mvrefresh verify <view>`: compares an incremental view with its definition and repairs it. In one
 * REPEATABLE READ transaction under the view's advisory lock: an apply first (the table then equals the
 * definition in this snapshot, apply_view.sql A), then EXCEPT ALL both ways as the view's owner; on a
 * difference, a full recompute (rewriting only the rows that differ) in the same transaction. Counts only
 * are reported: row values can be sensitive.
 */
import type pg from 'pg';
import { SqlState, isPgError } from '../db/errors.js';
import { LOCK_NAMESPACE } from '../db/protocol.js';
import { qname, shownName } from '../replace/plan.js';
import { IncrementalRefused } from './convert.js';
import { incrementalSql } from './sql.js';

/** How long `mvrefresh verify` waits for a refresh cycle holding the view's lock. */
export const VERIFY_LOCK_TIMEOUT_MS = 30_000;

export interface VerifyReport {
  view: string;
  /** Rows in the table that the definition does not give. */
  extra: number;
  /** Rows the definition gives that the table lacks. */
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
    await client.query<{ view_id: number; definition: string; state: string }>(incrementalSql.incremental, [
      schema,
      name,
    ])
  ).rows[0];
  if (!reg || reg.state !== 'active')
    throw new IncrementalRefused(`${shownName(schema, name)} is not an incremental view`);
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
  try {
    await client.query(incrementalSql.setSearchPath);
    await client.query(`SELECT pg_catalog.set_config('lock_timeout', $1, true)`, [`${lockTimeoutMs}ms`]);
    await client.query('SELECT pg_catalog.pg_advisory_xact_lock($1, $2)', [LOCK_NAMESPACE, reg.view_id]);
    const rel = (
      await client.query<{ oid: string; owner: string; ownerName: string }>(
        `SELECT c.oid::int8::text AS oid, c.relowner::int8::text AS owner, pg_catalog.pg_get_userbyid(c.relowner) AS "ownerName"
           FROM pg_catalog.pg_class c WHERE c.oid = pg_catalog.to_regclass($1)`,
        [qname(schema, name)],
      )
    ).rows[0];
    if (!rel) throw new IncrementalRefused(`${shownName(schema, name)} is gone`);
    await client.query('SELECT * FROM mvrefresh.apply_view($1, $2::pg_catalog.oid, $3::pg_catalog.oid)', [
      reg.view_id,
      rel.oid,
      rel.owner,
    ]);
    await client.query(incrementalSql.setRole, [rel.ownerName]);
    const x = qname(schema, name);
    const { rows } = await client.query<{ extra: string; missing: string }>(
      `SELECT (SELECT pg_catalog.count(*) FROM (TABLE ${x} EXCEPT ALL SELECT * FROM (${reg.definition}) q) a) AS extra,
              (SELECT pg_catalog.count(*) FROM (SELECT * FROM (${reg.definition}) q EXCEPT ALL TABLE ${x}) b) AS missing`,
    );
    await client.query(incrementalSql.resetRole);
    const extra = Number(rows[0]?.extra ?? 0);
    const missing = Number(rows[0]?.missing ?? 0);
    const differs = extra + missing > 0;
    if (differs && repair)
      await client.query(
        `SELECT * FROM mvrefresh.apply_view($1, $2::pg_catalog.oid, $3::pg_catalog.oid, 'verify')`,
        [reg.view_id, rel.oid, rel.owner],
      );
    await client.query(
      `UPDATE mvrefresh.incremental SET last_verify_at = pg_catalog.now(),
              verify_mismatches = verify_mismatches + CASE WHEN $2 THEN 1 ELSE 0 END WHERE view_id = $1`,
      [reg.view_id, differs],
    );
    await client.query('COMMIT');
    return {
      view: shownName(schema, name),
      extra,
      missing,
      repaired: differs && repair,
      durationMs: Date.now() - t0,
    };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
