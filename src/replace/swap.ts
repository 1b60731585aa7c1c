import type pg from 'pg';
import { CHANNEL, LOCK_NAMESPACE, VIEWS_CHANGED } from '../db/protocol.js';
import {
  ReplaceRefused,
  captureDependants,
  captureRelation,
  checkDependantColumns,
  qi,
  qname,
  shownName,
  recreateStatements,
  type Dependant,
  type Relation,
} from './plan.js';
import { replaceSql } from './sql.js';

interface WatchSettings {
  id: number;
  debounce_ms: number | null;
  max_wait_ms: number | null;
  refresh_interval_ms: number | null;
  allow_blocking_refresh: boolean;
  max_staleness_ms: number | null;
  refresh_budget: number | null;
}

export interface SwapInput {
  requestId: string;
  live: Relation;
  temp: string;
  /** temporary index name by original name */
  indexNames: ReadonlyMap<string, string>;
  lockTimeoutMs: number;
  /** Test hook: called inside the transaction, after every change, before COMMIT. */
  beforeCommit?: () => Promise<void>;
}

export interface SwapResult {
  dependants: string[];
  rewatched: string[];
  /** Attempts of the swap transaction (each failed one waited at most lockTimeoutMs). */
  swapAttempts: number;
  /** How long the committed swap transaction took: about how long readers of the view waited at most. */
  swapMs: number;
}

async function watchSettings(client: pg.ClientBase, schema: string, name: string) {
  const { rows } = await client.query<WatchSettings>(replaceSql.watched, [schema, name]);
  return rows[0];
}

async function rewatch(client: pg.ClientBase, schema: string, name: string, s: WatchSettings) {
  await client.query(replaceSql.rewatch, [
    schema,
    name,
    s.debounce_ms,
    s.max_wait_ms,
    s.refresh_interval_ms,
    s.allow_blocking_refresh,
    s.max_staleness_ms,
    s.refresh_budget,
  ]);
}

/** ACCESS EXCLUSIVE on a view (LOCK TABLE, which refuses materialized views: ALTER ... OWNER TO for them). */
function lockSql(r: Relation): string {
  return r.kind === 'v'
    ? `LOCK TABLE ${qname(r.schema, r.name)} IN ACCESS EXCLUSIVE MODE`
    : `ALTER MATERIALIZED VIEW ${qname(r.schema, r.name)} OWNER TO ${qi(r.owner)}`;
}

/**
 * One attempt at the swap, in the caller's open transaction, which it commits or rolls back: every lock
 * is taken under lock_timeout, so that readers never queue behind a waiting swap for longer than that.
 * Under the live view's ACCESS EXCLUSIVE lock: its dependants are read again (what they are now, not at
 * the start of the build), checked against the new columns, dropped, the live view dropped, the new
 * version and its indexes renamed to the live names, the dependants created again (materialized ones with
 * their data, from the new version), and every watched one watched again with its own settings, which
 * re-syncs the triggers on its sources and marks it, so that writes committed during the build are
 * refreshed into it by the daemon at once.
 */
export async function swapOnce(
  client: pg.ClientBase,
  input: SwapInput,
): Promise<Omit<SwapResult, 'swapAttempts' | 'swapMs'>> {
  const { live, temp } = input;
  await client.query(replaceSql.setLockTimeout, [`${input.lockTimeoutMs}ms`]);
  const settings = await watchSettings(client, live.schema, live.name);
  // a refresh cycle of the live view holds this lock while it runs: the swap waits for none
  if (settings) await client.query(replaceSql.viewLock, [LOCK_NAMESPACE, settings.id]);
  // a reader of a dependant locks the dependant before the view it reads: the swap locks in the same order
  // (outermost first), or such a reader, holding the dependant while it waits for the view, deadlocks
  // with it and lock_timeout ends every attempt
  for (const d of (await captureDependants(client, live.oid)).reverse())
    await client.query(lockSql(d.relation));
  // LOCK TABLE refuses materialized views; ALTER ... OWNER TO takes ACCESS EXCLUSIVE even when the owner
  // does not change, before anything is read
  await client.query(`ALTER MATERIALIZED VIEW ${qname(live.schema, live.name)} OWNER TO ${qi(live.owner)}`);
  const now = (await client.query<{ oid: string }>(replaceSql.relation, [live.schema, live.name])).rows[0];
  if (now?.oid !== live.oid)
    throw new ReplaceRefused(`${shownName(live.schema, live.name)} was dropped or replaced during the build`);
  const created = await captureRelation(
    client,
    (await client.query<{ oid: string }>(replaceSql.relation, [live.schema, temp])).rows[0]!.oid,
  );
  await checkDependantColumns(client, live.oid, created.columns);
  const dependants: Dependant[] = await captureDependants(client, live.oid);
  const dependantSettings = new Map<Dependant, WatchSettings>();
  for (const d of dependants) {
    const s = d.relation.kind === 'm' && (await watchSettings(client, d.relation.schema, d.relation.name));
    if (s) dependantSettings.set(d, s);
  }
  for (const d of [...dependants].reverse())
    await client.query(
      `DROP ${d.relation.kind === 'm' ? 'MATERIALIZED VIEW' : 'VIEW'} ${qname(d.relation.schema, d.relation.name)}`,
    );
  await client.query(`DROP MATERIALIZED VIEW ${qname(live.schema, live.name)}`);
  await client.query(`ALTER MATERIALIZED VIEW ${qname(live.schema, temp)} RENAME TO ${qi(live.name)}`);
  for (const [original, tempIndex] of input.indexNames)
    await client.query(`ALTER INDEX ${qname(live.schema, tempIndex)} RENAME TO ${qi(original)}`);
  for (const d of dependants) for (const stmt of recreateStatements(d.relation)) await client.query(stmt);
  const rewatched: string[] = [];
  if (settings) {
    await rewatch(client, live.schema, live.name, settings);
    rewatched.push(shownName(live.schema, live.name));
  }
  for (const [d, s] of dependantSettings) {
    await rewatch(client, d.relation.schema, d.relation.name, s);
    rewatched.push(shownName(d.relation.schema, d.relation.name));
  }
  if (rewatched.length > 0) await client.query(replaceSql.notify, [CHANNEL, VIEWS_CHANGED]);
  await client.query(replaceSql.finish, [input.requestId, 'done', null]);
  await input.beforeCommit?.();
  return { dependants: dependants.map((d) => shownName(d.relation.schema, d.relation.name)), rewatched };
}
