import pg from 'pg';
import { replaceSql } from './sql.js';

/**
 * What a replacement keeps of a relation (the materialized view replaced, and every view or materialized
 * view that reads it), read from the catalog, and the statements that give a new relation the same.
 */
export interface Grant {
  /** null: PUBLIC */
  grantee: string | null;
  privilege: string;
  grantable: boolean;
}

export interface ColumnGrant extends Grant {
  column: string;
}

export interface Column {
  column: string;
  type: string;
  comment: string | null;
}

export interface Index {
  name: string;
  /** the name as pg_get_indexdef() prints it (quoted only where needed) */
  printed: string;
  def: string;
  comment: string | null;
  tablespace: string | null;
  clustered: boolean;
}

export interface Relation {
  oid: string;
  schema: string;
  name: string;
  /** r: an incremental view's table (src/incremental/) */
  kind: 'm' | 'v' | 'r';
  /** schema.name as pg_get_indexdef() prints it */
  printed: string;
  owner: string;
  has_acl: boolean;
  acl: Grant[];
  column_acl: ColumnGrant[];
  comment: string | null;
  columns: Column[];
  reloptions: string[];
  toast_options: string[];
  tablespace: string | null;
  access_method: string | null;
  definition: string;
  indexes: Index[];
  triggers: string[];
  other_rules: number;
}

export interface Dependant {
  relation: Relation;
  depth: number;
}

export const qi = (name: string): string => pg.escapeIdentifier(name);
export const qname = (schema: string, name: string): string => `${qi(schema)}.${qi(name)}`;
const literal = (s: string): string => pg.escapeLiteral(s);

/** A refusal: nothing was changed, and the message says why. */
export class ReplaceRefused extends Error {
  override name = 'ReplaceRefused';
}

export async function captureRelation(client: pg.ClientBase, oid: string): Promise<Relation> {
  const { rows } = await client.query<Relation>(replaceSql.capture, [oid]);
  const rel = rows[0];
  if (!rel) throw new ReplaceRefused(`relation ${oid} vanished while it was being read`);
  return rel;
}

/** Every view and materialized view reading oid, directly or not, in an order that can create them. */
export async function captureDependants(client: pg.ClientBase, oid: string): Promise<Dependant[]> {
  const { rows } = await client.query<{ oid: string; depth: number }>(replaceSql.dependants, [oid]);
  const out: Dependant[] = [];
  for (const r of rows) {
    const relation = await captureRelation(client, r.oid);
    if (relation.other_rules > 0)
      throw new ReplaceRefused(
        `${shownName(relation.schema, relation.name)} reads the view and has rules of its own, which replace cannot re-create`,
      );
    out.push({ relation, depth: r.depth });
  }
  return out;
}

/**
 * Refuses (ReplaceRefused) when a view reading `oid` uses a column that `columns` (the new version's)
 * lacks or gives another type.
 */
export async function checkDependantColumns(
  client: pg.ClientBase,
  oid: string,
  columns: readonly Column[],
): Promise<void> {
  const { rows } = await client.query<{ dependant: string; column: string; type: string }>(
    replaceSql.usedColumns,
    [oid],
  );
  const byName = new Map(columns.map((c) => [c.column, c.type]));
  const problems = rows.flatMap((r) => {
    const type = byName.get(r.column);
    if (type === undefined)
      return [`${r.dependant} uses column ${shown(r.column)}, which the new definition drops`];
    if (type !== r.type)
      return [
        `${r.dependant} uses column ${shown(r.column)}, which the new definition retypes from ${r.type} to ${type}`,
      ];
    return [];
  });
  if (problems.length > 0)
    throw new ReplaceRefused(`${problems.join('; ')}; change or drop the dependant first`);
}

/** WITH (...) of reloptions ("fillfactor=70", "toast.autovacuum_enabled=false"), or ''. */
export function withOptions(reloptions: readonly string[], toastOptions: readonly string[] = []): string {
  const parts = [...reloptions.map((o) => ['', o]), ...toastOptions.map((o) => ['toast.', o])].map(
    ([prefix, o]) => {
      const eq = o!.indexOf('=');
      return `${prefix}${o!.slice(0, eq)} = ${literal(o!.slice(eq + 1))}`;
    },
  );
  return parts.length > 0 ? ` WITH (${parts.join(', ')})` : '';
}

const grantee = (g: Grant): string => (g.grantee === null ? 'PUBLIC' : qi(g.grantee));
const grantOption = (g: Grant): string => (g.grantable ? ' WITH GRANT OPTION' : '');

/**
 * Statements giving the relation named `target` the owner, grants (table and column), comments (its own
 * and its columns') of `rel`. Column grants and comments of columns that `columns` lacks are dropped.
 */
export function propertyStatements(rel: Relation, target: string, columns: readonly Column[]): string[] {
  const keyword = relationKeyword(rel.kind);
  const has = new Set(columns.map((c) => c.column));
  const out = [`ALTER ${keyword} ${target} OWNER TO ${qi(rel.owner)}`];
  if (rel.has_acl) {
    // the new relation starts with its owner's default privileges (and any default privileges of the
    // creating role): cleared, then exactly the old list
    out.push(`REVOKE ALL ON ${target} FROM PUBLIC, ${qi(rel.owner)}`);
    for (const g of rel.acl) out.push(`GRANT ${g.privilege} ON ${target} TO ${grantee(g)}${grantOption(g)}`);
  }
  for (const g of rel.column_acl)
    if (has.has(g.column))
      out.push(`GRANT ${g.privilege} (${qi(g.column)}) ON ${target} TO ${grantee(g)}${grantOption(g)}`);
  if (rel.comment !== null) out.push(`COMMENT ON ${keyword} ${target} IS ${literal(rel.comment)}`);
  for (const c of rel.columns)
    if (c.comment !== null && has.has(c.column))
      out.push(`COMMENT ON COLUMN ${target}.${qi(c.column)} IS ${literal(c.comment)}`);
  return out;
}

/**
 * pg_get_indexdef() of an index of `rel`, rewritten to create it as `newName` on `target`. The function
 * prints `CREATE [UNIQUE] INDEX name ON [ONLY] schema.table USING ...` with names quoted as needed.
 */
export function indexStatement(rel: Relation, index: Index, target: string, newName: string): string {
  for (const unique of ['UNIQUE ', '']) {
    const prefix = `CREATE ${unique}INDEX ${index.printed} ON ${rel.printed} `;
    if (index.def.startsWith(prefix))
      return `CREATE ${unique}INDEX ${qi(newName)} ON ${target} ${index.def.slice(prefix.length)}`;
  }
  throw new Error(`cannot read the definition of index ${index.name}: ${index.def}`);
}

/** The keyword of ALTER / COMMENT ON for a relation kind. */
export function relationKeyword(kind: Relation['kind']): string {
  return kind === 'm' ? 'MATERIALIZED VIEW' : kind === 'r' ? 'TABLE' : 'VIEW';
}

/** A name as PostgreSQL prints it in messages: quoted only when it must be. */
export const shown = (name: string): string => (/^[a-z_][a-z0-9_$]*$/.test(name) ? name : qi(name));
/** schema.name for messages and reports. */
export const shownName = (schema: string, name: string): string => `${shown(schema)}.${shown(name)}`;

/** Statements that re-create a dependant as it was (its definition names the replaced view by name). */
export function recreateStatements(rel: Relation): string[] {
  const target = qname(rel.schema, rel.name);
  const definition = rel.definition.trim().replace(/;$/, '');
  const out =
    rel.kind === 'v'
      ? [`CREATE VIEW ${target}${withOptions(rel.reloptions)} AS ${definition}`]
      : [`CREATE MATERIALIZED VIEW ${target}${storageClauses(rel)} AS ${definition} WITH DATA`];
  for (const index of rel.indexes) out.push(index.def, ...indexExtras(index, rel.schema, index.name, target));
  out.push(...rel.triggers);
  out.push(...propertyStatements(rel, target, rel.columns));
  return out;
}

function accessMethod(rel: Relation): string {
  return rel.access_method && rel.access_method !== 'heap' ? ` USING ${qi(rel.access_method)}` : '';
}

function tablespace(name: string | null): string {
  return name ? ` TABLESPACE ${qi(name)}` : '';
}

/**
 * A relation's storage as CREATE TABLE and CREATE MATERIALIZED VIEW write it after the name (or the column
 * list): its access method, storage parameters (its TOAST table's too) and tablespace, or ''.
 */
export function storageClauses(rel: Relation): string {
  return `${accessMethod(rel)}${withOptions(rel.reloptions, rel.toast_options)}${tablespace(rel.tablespace)}`;
}

/** An index's comment, tablespace and CLUSTER mark, for the index now called `indexName` on `table`. */
export function indexExtras(
  index: Index,
  schema: string,
  indexName: string,
  table: string,
  keyword = 'MATERIALIZED VIEW',
): string[] {
  const qualified = qname(schema, indexName);
  return [
    ...(index.tablespace ? [`ALTER INDEX ${qualified} SET TABLESPACE ${qi(index.tablespace)}`] : []),
    ...(index.comment !== null ? [`COMMENT ON INDEX ${qualified} IS ${literal(index.comment)}`] : []),
    ...(index.clustered ? [`ALTER ${keyword} ${table} CLUSTER ON ${qi(indexName)}`] : []),
  ];
}
