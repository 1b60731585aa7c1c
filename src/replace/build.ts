import type pg from 'pg';
import { describeError, isPgError } from '../db/errors.js';
import { inTransaction } from '../db/transaction.js';
import {
  ReplaceRefused,
  captureRelation,
  checkDependantColumns,
  indexExtras,
  indexStatement,
  propertyStatements,
  qi,
  qname,
  storageClauses,
  type Relation,
} from './plan.js';
import { replaceSql } from './sql.js';

/**
 * The new version, built beside the live view under a temporary name: nothing here locks the live view
 * beyond what reading its catalog rows takes, so readers keep reading it for the whole build.
 */

/** PostgreSQL's limit on a name's length, in bytes. */
const NAME_BYTES = 63;

/** `<view>__mvr_new_<id>`, the view's name cut so that the whole fits in a name. */
export function tempName(view: string, id: string): string {
  const suffix = `__mvr_new_${id}`;
  let head = view;
  while (Buffer.byteLength(head + suffix) > NAME_BYTES) head = head.slice(0, -1);
  return head + suffix;
}

/** A temporary name of the new version's index number n (the live view's indexes keep theirs until the swap). */
export const tempIndexName = (id: string, n: number): string => `mvr_replace_${id}_${n}`;

/** Strips what a definition file may add around its query: blanks and a final semicolon. */
export function normalizeDefinition(text: string): string {
  return text.trim().replace(/;\s*$/, '').trim();
}

/**
 * Creates the new version, empty, with the live view's access method, storage parameters, tablespace,
 * owner, grants and comments; refuses a definition PostgreSQL rejects, or one whose columns a dependant
 * of the live view could no longer read. Returns the new version's catalog row.
 */
export async function createNewVersion(
  client: pg.ClientBase,
  live: Relation,
  temp: string,
  definition: string,
  searchPath: string,
): Promise<Relation> {
  const target = qname(live.schema, temp);
  const oid = await inTransaction(client, async () => {
    // the definition's unqualified names resolve where the requester's did
    await client.query(replaceSql.setSearchPath, [searchPath]);
    try {
      await client.query(
        `CREATE MATERIALIZED VIEW ${target}${storageClauses(live)} AS ${normalizeDefinition(definition)}\nWITH NO DATA`,
      );
    } catch (err) {
      if (isPgError(err) && !['55P03', '40P01', '57014'].includes(err.code ?? ''))
        throw new ReplaceRefused(`the new definition fails: ${describeError(err)}`);
      throw err;
    }
    await client.query(replaceSql.setSearchPath, ['pg_catalog, pg_temp']);
    const { rows } = await client.query<{ oid: string }>(replaceSql.relation, [live.schema, temp]);
    return rows[0]!.oid;
  });
  const created = await captureRelation(client, oid);
  await checkDependantColumns(client, live.oid, created.columns);
  await inTransaction(client, async () => {
    for (const stmt of propertyStatements(live, target, created.columns)) await client.query(stmt);
  });
  return created;
}

/** Fills the new version (the slow part: a plain REFRESH, nobody reads it yet). */
export async function populate(client: pg.ClientBase, schema: string, temp: string): Promise<void> {
  await client.query(`REFRESH MATERIALIZED VIEW ${qname(schema, temp)}`);
}

/**
 * Creates the live view's indexes on the new version under temporary names (same definitions, comments,
 * tablespaces, CLUSTER mark), then gathers its statistics so that the first queries after the swap are
 * planned as well as before. Returns the temporary name of each index, by original name.
 */
export async function copyIndexes(
  client: pg.ClientBase,
  live: Relation,
  id: string,
  temp: string,
): Promise<Map<string, string>> {
  const target = qname(live.schema, temp);
  const names = new Map<string, string>();
  for (const [n, index] of live.indexes.entries()) {
    const name = tempIndexName(id, n);
    try {
      await client.query(indexStatement(live, index, target, name));
    } catch (err) {
      if (isPgError(err) && err.code === '42703')
        throw new ReplaceRefused(`index ${qi(index.name)} cannot be kept: ${describeError(err)}`);
      throw err;
    }
    for (const stmt of indexExtras(index, live.schema, name, target)) await client.query(stmt);
    names.set(index.name, name);
  }
  await client.query(`ANALYZE ${target}`);
  return names;
}
