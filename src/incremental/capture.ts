/**
 * Capture: per source table of any incremental view, a log (mvrefresh.log_<oid>) and one AFTER ... FOR
 * EACH STATEMENT trigger per event with transition tables (PostgreSQL allows transition tables only with a
 * single event), each one INSERT ... SELECT of the read columns of the changed rows into the log:
 *  - INSERT logs the new rows (mvr_sign 1), DELETE the old ones (mvr_sign -1);
 *  - UPDATE logs old (-1) and new (1) images whose read columns differ (EXCEPT ALL both ways), so a statement that
 *    changes nothing an incremental view reads records nothing;
 *  - TRUNCATE logs one row with mvr_trunc: every view reading the table recomputes in full.
 * The log's columns are the union of what the incremental views reading the table read, so a writing
 * statement costs one INSERT whatever the number of views. The log row carries its writer's top-level
 * transaction id (pg_current_xact_id() is the top-level id in a subtransaction too): it commits, aborts or
 * is rolled back to a savepoint with the rows it describes (L in routines/apply_view.sql).
 * The log row also carries mvr_at, its writer's transaction start: the staleness clock.
 * The capture functions do nothing else: an incremental view is due while its logs hold a committed row its
 * applied snapshot does not show (routines/capture_logs.sql), which the daemon polls for, so a table that
 * only incremental views read has no mark step at all (mvrefresh.logged_only()). A table that a
 * materialized view (or an incremental view still being built) reads too keeps mvrefresh_mark beside
 * them. syncCapture() ends with sync_table_triggers(), in the same transaction, which places or drops
 * mvrefresh_mark by that rule: no commit leaves a watched table's writes reaching neither a log nor a mark.
 */
import type pg from 'pg';
import type { Column } from './analyze.js';
import { CAPTURE_TRIGGERS, LOCK_NAMESPACE, WATCH_LOCK_KEY } from '../db/protocol.js';
import { comparable } from './analyze.js';
import { logTable } from './statements.js';
import { incrementalSql } from './sql.js';

const qi = (s: string) => `"${s.replace(/"/g, '""')}"`;

const captureFunction = (oid: string, event: 'ins' | 'upd' | 'del') =>
  `mvrefresh.${qi(`cap_${oid}_${event}`)}`;

/** The union of the columns each source's incremental views read, from their registrations. */
export function unionOfNeeds(
  registrations: { source_columns: Record<string, Column[]> }[],
): Map<string, Column[]> {
  const out = new Map<string, Column[]>();
  for (const r of registrations)
    for (const [oid, cols] of Object.entries(r.source_columns)) {
      const have = out.get(oid) ?? [];
      for (const c of cols) if (!have.some((h) => h.name === c.name)) have.push(c);
      out.set(oid, have);
    }
  return out;
}

function functionSql(oid: string, event: 'ins' | 'upd' | 'del', cols: string, pairs: boolean): string {
  const log = `mvrefresh.${qi(logTable(oid))}`;
  const into = `INSERT INTO ${log} (mvr_sign, ${cols})`;
  const body =
    event === 'ins'
      ? `${into} SELECT 1, ${cols} FROM n;`
      : event === 'del'
        ? `${into} SELECT -1, ${cols} FROM o;`
        : pairs
          ? `${into}
    SELECT -1, ${cols} FROM (SELECT ${cols} FROM o EXCEPT ALL SELECT ${cols} FROM n) changed_old
    UNION ALL
    SELECT 1, ${cols} FROM (SELECT ${cols} FROM n EXCEPT ALL SELECT ${cols} FROM o) changed_new;`
          : `${into} SELECT -1, ${cols} FROM o UNION ALL SELECT 1, ${cols} FROM n;`;
  // SECURITY DEFINER: writers need no privilege on the log. No SET clause (a GUC nest level per call on
  // the hot path): the names are the qualified log and the transition tables, which resolve first.
  return `CREATE OR REPLACE FUNCTION ${captureFunction(oid, event)}() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
AS $mvrefresh$
BEGIN
    ${body}
    RETURN NULL;
END
$mvrefresh$`;
}

/**
 * The lock of watch, unwatch and the drift check (routines/watch.sql), which place mark triggers too, for
 * the rest of the transaction. Taken before any other lock of the transaction (table locks, rows of
 * mvrefresh.incremental, which the drift check updates), in their order, so that neither waits for the
 * other in a circle.
 */
export async function lockTriggers(client: pg.ClientBase): Promise<void> {
  await client.query('SELECT pg_catalog.pg_advisory_xact_lock($1::pg_catalog.int4, $2::pg_catalog.int4)', [
    LOCK_NAMESPACE,
    WATCH_LOCK_KEY,
  ]);
}

/**
 * Brings the logs, functions and triggers in line with `needs` (source oid -> columns), and then the mark
 * triggers (sync_table_triggers()), in the caller's transaction, which holds lockTriggers() (taken here
 * too, for a caller that took no other lock). Each source is locked SHARE ROW EXCLUSIVE: every transaction
 * that wrote it before has ended when this one commits, and every later writer runs the functions and
 * triggers created here.
 */
export async function syncCapture(
  client: pg.ClientBase,
  needs: ReadonlyMap<string, Column[]>,
): Promise<void> {
  await lockTriggers(client);
  const { rows: existing } = await client.query<{ oid: string }>(
    `SELECT substr(c.relname, 5) AS oid FROM pg_catalog.pg_class c
      WHERE c.relnamespace = 'mvrefresh'::pg_catalog.regnamespace AND c.relkind = 'r' AND c.relname ~ '^log_[0-9]+$'`,
  );
  for (const { oid } of existing) if (!needs.has(oid)) await dropCapture(client, oid);
  for (const [oid, columns] of needs) {
    const table = (await client.query<{ name: string }>(incrementalSql.tableName, [oid])).rows[0]!.name;
    await client.query(incrementalSql.lockShare(table));
    const log = `mvrefresh.${qi(logTable(oid))}`;
    await client.query(
      `CREATE TABLE IF NOT EXISTS ${log} (
         mvr_xid pg_catalog.xid8 NOT NULL DEFAULT pg_catalog.pg_current_xact_id(),
         mvr_trunc boolean NOT NULL DEFAULT false,
         mvr_sign pg_catalog.int2 NOT NULL DEFAULT 1,
         mvr_at pg_catalog.timestamptz NOT NULL DEFAULT pg_catalog.now()
       ) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000)`,
    );
    // the index on mvr_xid bounds every look at the log by what is new (capture_logs.sql, the apply's
    // batch copy): without it each look read the log whole, which after a bulk load holds the load until
    // the slowest view has applied it. Its price on the writers: docs/design/incremental.md 10.2.
    await client.query(`CREATE INDEX IF NOT EXISTS ${qi(`${logTable(oid)}_xid`)} ON ${log} (mvr_xid)`);
    for (const c of columns)
      await client.query(`ALTER TABLE ${log} ADD COLUMN IF NOT EXISTS ${qi(c.name)} ${c.type}`);
    const cols = columns.map((c) => qi(c.name)).join(', ');
    const pairs = await comparable(client, table, cols);
    for (const event of ['ins', 'upd', 'del'] as const)
      await client.query(functionSql(oid, event, cols, pairs));
    const { rows: present } = await client.query<{ name: string; enabled: string }>(incrementalSql.triggers, [
      oid,
    ]);
    const has = new Map(present.map((p) => [p.name, p.enabled]));
    const create: Record<keyof typeof CAPTURE_TRIGGERS, string> = {
      ins: `AFTER INSERT ON ${table} REFERENCING NEW TABLE AS n FOR EACH STATEMENT EXECUTE FUNCTION ${captureFunction(oid, 'ins')}()`,
      upd: `AFTER UPDATE ON ${table} REFERENCING OLD TABLE AS o NEW TABLE AS n FOR EACH STATEMENT EXECUTE FUNCTION ${captureFunction(oid, 'upd')}()`,
      del: `AFTER DELETE ON ${table} REFERENCING OLD TABLE AS o FOR EACH STATEMENT EXECUTE FUNCTION ${captureFunction(oid, 'del')}()`,
      trunc: `AFTER TRUNCATE ON ${table} FOR EACH STATEMENT EXECUTE FUNCTION mvrefresh.capture_truncate()`,
    };
    const owned =
      (await client.query<{ owned: boolean }>(incrementalSql.ownsTable, [oid])).rows[0]?.owned ?? false;
    for (const [event, name] of Object.entries(CAPTURE_TRIGGERS) as [
      keyof typeof CAPTURE_TRIGGERS,
      string,
    ][]) {
      if (!has.has(name)) await client.query(`CREATE TRIGGER ${qi(name)} ${create[event]}`);
      // changes applied by logical replication (session_replication_role = replica) are captured too
      if (owned && has.get(name) !== 'A')
        await client.query(`ALTER TABLE ${table} ENABLE ALWAYS TRIGGER ${qi(name)}`);
    }
  }
  await client.query('SELECT mvrefresh.sync_table_triggers()');
}

/** Removes a source's capture: triggers, functions and log. */
async function dropCapture(client: pg.ClientBase, oid: string): Promise<void> {
  const { rows } = await client.query<{ name: string | null }>(
    `SELECT (SELECT c.oid::pg_catalog.regclass::text FROM pg_catalog.pg_class c WHERE c.oid = $1::pg_catalog.oid) AS name`,
    [oid],
  );
  const table = rows[0]?.name;
  if (table)
    for (const name of Object.values(CAPTURE_TRIGGERS))
      await client.query(`DROP TRIGGER IF EXISTS ${qi(name)} ON ${table}`);
  for (const event of ['ins', 'upd', 'del'] as const)
    await client.query(`DROP FUNCTION IF EXISTS ${captureFunction(oid, event)}()`);
  await client.query(`DROP TABLE IF EXISTS mvrefresh.${qi(logTable(oid))}`);
}
