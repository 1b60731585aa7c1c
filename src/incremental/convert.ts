/**
 * `watch --incremental` and its reverse (`unwatch` of an incremental view): the object under the view's
 * name changes from a materialized view to a regular table, or back, with short locks:
 *  A. register the view (state 'building', a snapshot for pruning) and create the capture of its sources
 *     (capture.ts; each source locked SHARE ROW EXCLUSIVE, so every write not committed before A commits
 *     fires the capture triggers);
 *  B. REPEATABLE READ, snapshot S0: create the table beside the view, fill it from the definition as the
 *     view's owner, give it the view's indexes, and store S0 as the applied snapshot. Every write committed
 *     before S0 is in the table, every later one has a log row: invariant A of apply_view.sql holds;
 *  C. the swap, one short transaction under lock_timeout, retried: the view's dependants dropped, the view
 *     dropped, the table renamed to its name, with the view's indexes' names, owner, grants and comments,
 *     the guard trigger (refuse_write.sql), the dependants created again; the view is marked, so that the
 *     writes since S0 are applied at once;
 *  D. the triggers brought in line (sync_table_triggers()): a source that only incremental views read now
 *     loses its mvrefresh_mark, their views being due from its log (routines/capture_logs.sql).
 * Readers wait only for C; writers never wait for more than A's lock.
 */
import type pg from 'pg';
import { CHANNEL, DDL_LOCK_TIMEOUT_MS, LOCK_NAMESPACE, VIEWS_CHANGED } from '../db/protocol.js';
import { sql } from '../db/sql.js';
import { retryOnLockTimeout } from '../db/lock-retry.js';
import { inTransaction } from '../db/transaction.js';
import {
  captureDependants,
  captureRelation,
  indexExtras,
  indexStatement,
  propertyStatements,
  qi,
  qname,
  recreateStatements,
  shownName,
  storageClauses,
  type Dependant,
  type Relation,
} from '../replace/plan.js';
import { replaceSql } from '../replace/sql.js';
import { analyze, type Column } from './analyze.js';
import type { DistinctStatements } from './statements.js';
import { lockTriggers, syncCapture, unionOfNeeds } from './capture.js';
import { recomputeHints } from './hints.js';
import { incrementalSql } from './sql.js';

/** The longest one swap attempt waits for a lock; readers queue behind a waiting swap that long. */
const SWAP_LOCK_TIMEOUT = '500ms';
/** Capture's lock on the sources: writers queue behind it that long at most. */
const CAPTURE_LOCK_TIMEOUT = '2s';
/** How long the swap and the capture are tried again. */
const RETRY_DEADLINE_MS = 120_000;
export const GUARD_TRIGGER = 'mvrefresh_guard';

/** A view that cannot become incremental, or a state that forbids the change: nothing was changed. */
export class IncrementalRefused extends Error {
  override name = 'IncrementalRefused';
}

function tx<T>(client: pg.ClientBase, fn: () => Promise<T>, begin = 'BEGIN'): Promise<T> {
  return inTransaction(
    client,
    async () => {
      await client.query(incrementalSql.setSearchPath);
      return fn();
    },
    begin,
  );
}

const tempName = (view: string, suffix: string): string => {
  let head = view;
  while (Buffer.byteLength(head + suffix) > 63) head = head.slice(0, -1);
  return head + suffix;
};

async function regenerateCapture(client: pg.ClientBase): Promise<void> {
  const { rows } = await client.query<{ source_columns: Record<string, Column[]> }>(incrementalSql.needs);
  await syncCapture(client, unionOfNeeds(rows));
  // the multisets of views no longer registered (unwatched, undone, or dropped by their owner)
  const { rows: orphans } = await client.query<{ name: string }>(incrementalSql.orphanMultisets);
  for (const { name } of orphans) await client.query(`DROP TABLE ${name}`);
}

/**
 * Creates the multiset of a count(DISTINCT) view (DistinctStatements) and fills it in the caller's
 * snapshot, its rows computed as the view's owner, as the table is: by the rebuild of a full recompute
 * (routines/apply_view.sql, apply_distinct()).
 */
async function buildMultiset(client: pg.ClientBase, d: DistinctStatements, owner: string): Promise<void> {
  await client.query(`DROP TABLE IF EXISTS ${d.table}`);
  await client.query(d.create);
  await client.query(incrementalSql.rebuildMultiset, [JSON.stringify(d), owner]);
  await client.query(incrementalSql.resetRole);
}

async function relationOid(
  client: pg.ClientBase,
  schema: string,
  name: string,
): Promise<{ oid: string; kind: string } | undefined> {
  return (await client.query<{ oid: string; kind: string }>(replaceSql.relation, [schema, name])).rows[0];
}

async function lockDependants(client: pg.ClientBase, deps: Dependant[]): Promise<void> {
  for (const d of [...deps].reverse())
    await client.query(
      d.relation.kind === 'v'
        ? `LOCK TABLE ${qname(d.relation.schema, d.relation.name)} IN ACCESS EXCLUSIVE MODE`
        : `ALTER MATERIALIZED VIEW ${qname(d.relation.schema, d.relation.name)} OWNER TO ${qi(d.relation.owner)}`,
    );
}

/** Drops the dependants (outermost first) and returns what re-creates them and watches them again. */
async function dropDependants(client: pg.ClientBase, deps: Dependant[]) {
  const settings: { d: Dependant; s: Record<string, unknown> }[] = [];
  for (const d of deps)
    if (d.relation.kind === 'm') {
      const s = (
        await client.query<Record<string, unknown>>(replaceSql.watched, [d.relation.schema, d.relation.name])
      ).rows[0];
      if (s) settings.push({ d, s });
    }
  for (const d of [...deps].reverse())
    await client.query(
      `DROP ${d.relation.kind === 'm' ? 'MATERIALIZED VIEW' : 'VIEW'} ${qname(d.relation.schema, d.relation.name)}`,
    );
  return async () => {
    for (const d of deps) for (const stmt of recreateStatements(d.relation)) await client.query(stmt);
    for (const { d, s } of settings)
      await client.query(replaceSql.rewatch, [
        d.relation.schema,
        d.relation.name,
        s['debounce_ms'],
        s['max_wait_ms'],
        s['refresh_interval_ms'],
        s['allow_blocking_refresh'],
        s['max_staleness_ms'],
        s['refresh_budget'],
      ]);
  };
}

/** Copies `live`'s indexes onto `target` under temporary names; returns original -> temporary. */
async function copyIndexes(
  client: pg.ClientBase,
  live: Relation,
  target: string,
  prefix: string,
  keyword: string,
) {
  const names = new Map<string, string>();
  for (const [n, index] of live.indexes.entries()) {
    const name = `${prefix}_${n}`;
    await client.query(indexStatement(live, index, target, name));
    for (const stmt of indexExtras(index, live.schema, name, target, keyword)) await client.query(stmt);
    names.set(index.name, name);
  }
  return names;
}

export interface ConvertReport {
  view: string;
  sources: string[];
  key: string[];
  dependants: string[];
  swapMs: number;
  /** Advice on the view's cost (hints.ts), for the user to act on or not. */
  hints: string[];
}

/**
 * Makes the watched materialized view `schema.name` incremental (steps A-C of the header). Refuses, with
 * the clause, a definition that cannot be kept incrementally; on any failure the view is as it was.
 */
export async function makeIncremental(
  client: pg.ClientBase,
  schema: string,
  name: string,
): Promise<ConvertReport> {
  const shown = shownName(schema, name);
  const found = await relationOid(client, schema, name);
  if (!found) throw new IncrementalRefused(`${shown} does not exist`);
  if (found.kind === 'r' && (await client.query(incrementalSql.incremental, [schema, name])).rows[0])
    throw new IncrementalRefused(`${shown} is already incremental`);
  if (found.kind !== 'm') throw new IncrementalRefused(`${shown} is not a materialized view`);
  const viewId = (await client.query<{ id: number }>(incrementalSql.watchedId, [schema, name])).rows[0]?.id;
  if (viewId === undefined) throw new IncrementalRefused(`${shown} is not watched`);
  const analysis = await tx(client, () => analyze(client, found.oid, viewId));
  if (!analysis.incremental) {
    await client.query(incrementalSql.setModeReason, [viewId, analysis.reason]);
    throw new IncrementalRefused(`${shown} cannot be incremental: ${analysis.reason} needs a full refresh`);
  }
  const live = await tx(client, () => captureRelation(client, found.oid));
  const temp = tempName(name, `__mvr_inc_${viewId}`);
  const sourceColumns = Object.fromEntries(analysis.sources.map((s) => [s.oid, s.columns]));
  try {
    // A
    await retryOnLockTimeout(
      () =>
        tx(client, async () => {
          await client.query(`SELECT pg_catalog.set_config('lock_timeout', $1, true)`, [
            CAPTURE_LOCK_TIMEOUT,
          ]);
          await lockTriggers(client);
          await client.query(incrementalSql.register, [
            viewId,
            analysis.definition,
            analysis.key,
            analysis.sources.map((s) => s.oid),
            JSON.stringify(sourceColumns),
            JSON.stringify(analysis.statements),
          ]);
          await regenerateCapture(client);
        }),
      RETRY_DEADLINE_MS,
    );
    // B
    const indexNames = await tx(
      client,
      async () => {
        const target = qname(schema, temp);
        // the materialized view's access method, storage parameters (fillfactor, autovacuum's) and tablespace
        await client.query(`CREATE TABLE ${target} (LIKE ${qname(schema, name)})${storageClauses(live)}`);
        await client.query(`ALTER TABLE ${target} OWNER TO ${qi(live.owner)}`);
        await client.query(incrementalSql.setRole, [live.owner]);
        await client.query(`INSERT INTO ${target} SELECT q.* FROM (${analysis.definition}) q`);
        await client.query(incrementalSql.resetRole);
        const multiset = analysis.statements.delta?.distinct;
        if (multiset) await buildMultiset(client, multiset, live.owner);
        const names = await copyIndexes(
          client,
          { ...live, printed: live.printed },
          target,
          `mvr_inc_${viewId}`,
          'TABLE',
        );
        await client.query(incrementalSql.populated, [viewId]);
        return names;
      },
      'BEGIN ISOLATION LEVEL REPEATABLE READ',
    );
    await client.query(`ANALYZE ${qname(schema, temp)}`);
    // C
    const t0 = Date.now();
    const dependants = await retryOnLockTimeout(
      () =>
        tx(client, async () => {
          await client.query(`SELECT pg_catalog.set_config('lock_timeout', $1, true)`, [SWAP_LOCK_TIMEOUT]);
          await client.query(replaceSql.viewLock, [LOCK_NAMESPACE, viewId]);
          const first = await captureDependants(client, found.oid);
          await lockDependants(client, first);
          await client.query(`ALTER MATERIALIZED VIEW ${qname(schema, name)} OWNER TO ${qi(live.owner)}`);
          const deps = await captureDependants(client, found.oid);
          const recreate = await dropDependants(client, deps);
          await client.query(`DROP MATERIALIZED VIEW ${qname(schema, name)}`);
          await client.query(`ALTER TABLE ${qname(schema, temp)} RENAME TO ${qi(name)}`);
          for (const [original, t] of indexNames)
            await client.query(`ALTER INDEX ${qname(schema, t)} RENAME TO ${qi(original)}`);
          const target = qname(schema, name);
          for (const stmt of propertyStatements({ ...live, kind: 'r' }, target, live.columns))
            await client.query(stmt);
          await client.query(
            `CREATE TRIGGER ${GUARD_TRIGGER} BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON ${target} ` +
              'FOR EACH STATEMENT EXECUTE FUNCTION mvrefresh.refuse_write()',
          );
          await client.query(`ALTER TABLE ${target} ENABLE ALWAYS TRIGGER ${GUARD_TRIGGER}`);
          await recreate();
          await client.query(incrementalSql.activate, [viewId]);
          await client.query(incrementalSql.storeFingerprint, [viewId]);
          await client.query(incrementalSql.setModeReason, [viewId, null]);
          await client.query(incrementalSql.mark, [viewId]);
          await client.query(replaceSql.notify, [CHANNEL, String(viewId)]);
          await client.query(replaceSql.notify, [CHANNEL, VIEWS_CHANGED]);
          return deps;
        }),
      RETRY_DEADLINE_MS,
    );
    // D: a source that no materialized view reads any more loses its mvrefresh_mark (its views are due
    // from its log). DROP TRIGGER locks the table against its writers: a short lock, tried until the
    // deadline; a mark trigger left in place costs writers its mark step and nothing else, and the daemon's
    // drift check drops it later
    await retryOnLockTimeout(
      () =>
        tx(client, async () => {
          await client.query(`SELECT pg_catalog.set_config('lock_timeout', $1, true)`, [
            `${DDL_LOCK_TIMEOUT_MS}ms`,
          ]);
          await lockTriggers(client);
          await client.query(sql.syncTableTriggers);
        }),
      RETRY_DEADLINE_MS,
    ).catch(() => undefined);
    return {
      view: shown,
      sources: analysis.sources.map((s) => shownName(s.schema, s.name)),
      key: analysis.key,
      dependants: dependants.map((d) => shownName(d.relation.schema, d.relation.name)),
      swapMs: Date.now() - t0,
      hints: [
        ...analysis.advice,
        ...(analysis.statements.delta ? [] : await recomputeHints(client, { schema, name, ...analysis })),
      ],
    };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    await undoBuilding(client, viewId, schema, temp).catch(() => undefined);
    throw err;
  }
}

/** After a failed conversion: the registration, the half-built table, and this view's capture needs go. */
async function undoBuilding(
  client: pg.ClientBase,
  viewId: number,
  schema: string,
  temp: string,
): Promise<void> {
  await client.query(`DROP TABLE IF EXISTS ${qname(schema, temp)}`);
  await retryOnLockTimeout(
    () =>
      tx(client, async () => {
        await client.query(`SELECT pg_catalog.set_config('lock_timeout', $1, true)`, [CAPTURE_LOCK_TIMEOUT]);
        await lockTriggers(client);
        await client.query(`DELETE FROM mvrefresh.incremental WHERE view_id = $1 AND state = 'building'`, [
          viewId,
        ]);
        await regenerateCapture(client);
      }),
    RETRY_DEADLINE_MS,
  );
}

/**
 * Turns the incremental view `schema.name` back into a materialized view of its stored definition, built
 * beside it, swapped in one short transaction; its sources' capture is regenerated without its needs.
 * The view stays watched (with full refreshes).
 */
export async function makeMaterialized(client: pg.ClientBase, schema: string, name: string): Promise<void> {
  const shown = shownName(schema, name);
  const reg = (
    await client.query<{ view_id: number; definition: string; state: string }>(incrementalSql.incremental, [
      schema,
      name,
    ])
  ).rows[0];
  if (!reg) throw new IncrementalRefused(`${shown} is not an incremental view`);
  const found = await relationOid(client, schema, name);
  if (reg.state === 'building' || !found || found.kind !== 'r') {
    await undoBuilding(client, reg.view_id, schema, tempName(name, `__mvr_inc_${reg.view_id}`));
    return;
  }
  const live = await tx(client, () => captureRelation(client, found.oid));
  const temp = tempName(name, `__mvr_mv_${reg.view_id}`);
  const target = qname(schema, temp);
  try {
    const indexNames = await tx(client, async () => {
      await client.query(
        `CREATE MATERIALIZED VIEW ${target}${storageClauses(live)} AS ${reg.definition} WITH NO DATA`,
      );
      await client.query(`ALTER MATERIALIZED VIEW ${target} OWNER TO ${qi(live.owner)}`);
      await client.query(`REFRESH MATERIALIZED VIEW ${target}`);
      return copyIndexes(client, live, target, `mvr_mv_${reg.view_id}`, 'MATERIALIZED VIEW');
    });
    await retryOnLockTimeout(
      () =>
        tx(client, async () => {
          await client.query(`SELECT pg_catalog.set_config('lock_timeout', $1, true)`, [SWAP_LOCK_TIMEOUT]);
          await client.query(replaceSql.viewLock, [LOCK_NAMESPACE, reg.view_id]);
          await lockDependants(client, await captureDependants(client, found.oid));
          await client.query(`LOCK TABLE ${qname(schema, name)} IN ACCESS EXCLUSIVE MODE`);
          const deps = await captureDependants(client, found.oid);
          const recreate = await dropDependants(client, deps);
          await client.query(`DROP TABLE ${qname(schema, name)}`);
          await client.query(`ALTER MATERIALIZED VIEW ${target} RENAME TO ${qi(name)}`);
          for (const [original, t] of indexNames)
            await client.query(`ALTER INDEX ${qname(schema, t)} RENAME TO ${qi(original)}`);
          for (const stmt of propertyStatements({ ...live, kind: 'm' }, qname(schema, name), live.columns))
            await client.query(stmt);
          await client.query(incrementalSql.forget, [reg.view_id]);
          await recreate();
          await client.query(incrementalSql.mark, [reg.view_id]);
          await client.query(replaceSql.notify, [CHANNEL, VIEWS_CHANGED]);
        }),
      RETRY_DEADLINE_MS,
    );
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    await client.query(`DROP MATERIALIZED VIEW IF EXISTS ${target}`).catch(() => undefined);
    throw err;
  }
  await retryOnLockTimeout(
    () =>
      tx(client, async () => {
        await client.query(`SELECT pg_catalog.set_config('lock_timeout', $1, true)`, [CAPTURE_LOCK_TIMEOUT]);
        await regenerateCapture(client);
      }),
    RETRY_DEADLINE_MS,
  );
}
