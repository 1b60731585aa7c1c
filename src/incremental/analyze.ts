/**
 * Watch time: can this materialized view be kept incrementally, and with which generated SQL?
 *
 * The apply (routines/apply_view.sql) recomputes the view's rows by key: it replaces the rows of the
 * affected keys with the definition's, wrapped (`SELECT q.* FROM (<definition>) q WHERE <key matches>`),
 * so the definition is never rewritten (the statements themselves: statements.ts). Only the affected keys are found by a
 * generated query, one per source table T: the definition with
 *  - T replaced by the batch, the logged images (old and new) of T's changed rows,
 *  - every other source U replaced by U's rows now and the logged images of U's batch (U as it was in the
 *    last applied snapshot is a subset of that: its rows since deleted or updated are logged),
 *  - outer joins with T on their nullable side made inner (a preserved row's result changes only when a
 *    changed row of T joins it),
 *  - the select list cut to the view's key, DISTINCT, without GROUP BY / HAVING / ORDER BY.
 * It lists a superset of the keys whose rows differ between the two snapshots, provided that every key's
 * row is made of source rows through joins, filters, grouping and DISTINCT only: no row may leave or join
 * the result because of rows it does not contain (LIMIT, windows, subquery expressions, aggregates inside
 * a subquery, NOT EXISTS...), nor because of the clock. Those clauses keep the view a full-refresh view,
 * and `reason` names the clause. A superset is harmless: recomputing an unchanged key rewrites its row.
 */
import type pg from 'pg';
import {
  deparse,
  nodeOf,
  parse,
  rangeSubselect,
  rangeVar,
  selectColumns,
  unionAll,
  walk,
  type Node,
} from './ast.js';
import { deltaPlan } from './delta.js';
import type { Column, Source } from './types.js';
import { incrementalSql } from './sql.js';
import {
  batchTable,
  deltaStatements,
  distinctTable,
  keysTableName,
  keysTableRef,
  statements,
  type Statements,
} from './statements.js';

export type { Column, Source } from './types.js';

export type Analysis =
  | {
      incremental: true;
      definition: string;
      key: string[];
      sources: Source[];
      statements: Statements;
      /** Advice on the view's cost that the analysis found (an index that would make it cheaper). */
      advice: string[];
    }
  | { incremental: false; reason: string };

/** A definition that cannot be kept incrementally: `reason` names the clause. */
class NotIncremental extends Error {}

const refuse = (reason: string): never => {
  throw new NotIncremental(reason);
};

/** Stable functions whose result changes without any write. */
const CLOCK_FUNCTIONS = new Set([
  'now',
  'statement_timestamp',
  'transaction_timestamp',
  'clock_timestamp',
  'timeofday',
  'current_setting',
]);
const CLOCK_VALUES = /^SVFOP_(CURRENT_DATE|CURRENT_TIME|CURRENT_TIMESTAMP|LOCALTIME|LOCALTIMESTAMP)/;

interface Relation {
  oid: string;
  kind: string;
  schema: string;
  name: string;
  /** Partitioned, or an inheritance parent. */
  hasChildren: boolean;
}

const qi = (s: string) => `"${s.replace(/"/g, '""')}"`;
const relKey = (schema: string, name: string) => `${schema}.${name}`;

async function relations(db: pg.ClientBase, keys: string[]): Promise<Map<string, Relation>> {
  const pairs = keys.map((k) => {
    const dot = k.indexOf('.');
    return [k.slice(0, dot), k.slice(dot + 1)] as const;
  });
  const { rows } = await db.query<Relation>(incrementalSql.relations, [
    pairs.map((p) => p[0]),
    pairs.map((p) => p[1]),
  ]);
  return new Map(rows.map((r) => [relKey(r.schema, r.name), r]));
}

/** The SelectStmt fields of a `{SelectStmt: ...}` node. */
const selectOf = (n: unknown): Node | undefined => {
  const x = nodeOf(n);
  return x && x[0] === 'SelectStmt' ? x[1] : undefined;
};

/** Replaces, in place, every FROM item for which `fn` returns a node (RangeVars, recursively). */
function mapFromItems(value: unknown, fn: (type: string, fields: Node) => Node | undefined): void {
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i += 1) {
      const n = nodeOf(value[i]);
      const replacement = n && fn(n[0], n[1]);
      if (replacement) value[i] = replacement;
      else mapFromItems(value[i], fn);
    }
    return;
  }
  if (value === null || typeof value !== 'object') return;
  const n = nodeOf(value);
  const fields = n ? n[1] : (value as Node);
  for (const [k, v] of Object.entries(fields)) {
    const child = nodeOf(v);
    const replacement = child && fn(child[0], child[1]);
    if (replacement) fields[k] = replacement;
    else mapFromItems(v, fn);
  }
}

/** The aliases (or relation names) of the FROM items under `value`. */
function aliasesUnder(value: unknown): Set<string> {
  const out = new Set<string>();
  walk(value, (type, f) => {
    if (type === 'RangeVar' || type === 'RangeSubselect') {
      const alias = (f['alias'] as { aliasname?: string } | undefined)?.aliasname;
      out.add(alias ?? String(f['relname'] ?? ''));
    }
  });
  return out;
}

/** The output name of a select-list entry, when it has one. */
function outputName(target: Node): string | undefined {
  const t = nodeOf(target)?.[1];
  if (!t) return undefined;
  if (typeof t['name'] === 'string') return t['name'];
  const ref = nodeOf(t['val']);
  if (ref?.[0] !== 'ColumnRef') return undefined;
  const last = (ref[1]['fields'] as unknown[]).at(-1);
  return typeof nodeOf(last)?.[1]['sval'] === 'string' ? String(nodeOf(last)![1]['sval']) : undefined;
}

/**
 * `SELECT a, b FROM (<query>) v` (a plain view read whole, the way many projects wrote their materialized
 * views) is `<query>` with its select list in that order: returns that query, so that a grouping plain
 * view is judged as if written inline; anything else is returned unchanged.
 */
export function flattenProjection(top: Node): Node {
  const s = nodeOf(top)?.[1];
  const from = s?.['fromClause'] as unknown[] | undefined;
  if (
    !s ||
    from?.length !== 1 ||
    s['whereClause'] ||
    s['groupClause'] ||
    s['havingClause'] ||
    s['distinctClause']
  )
    return top;
  if (s['withClause'] || s['limitCount'] || s['windowClause']) return top;
  const sub = nodeOf(from[0]);
  if (sub?.[0] !== 'RangeSubselect') return top;
  const inner = nodeOf(sub[1]['subquery']);
  if (inner?.[0] !== 'SelectStmt' || (inner[1]['op'] && inner[1]['op'] !== 'SETOP_NONE')) return top;
  const alias = (sub[1]['alias'] as { aliasname?: string } | undefined)?.aliasname;
  const innerTargets = (inner[1]['targetList'] as Node[] | undefined) ?? [];
  const targets: Node[] = [];
  for (const t of (s['targetList'] as Node[] | undefined) ?? []) {
    const ref = nodeOf(nodeOf(t)?.[1]['val']);
    if (ref?.[0] !== 'ColumnRef') return top;
    const fields = (ref[1]['fields'] as unknown[]).map((x) => nodeOf(x)?.[1]['sval']);
    if (fields.some((f) => typeof f !== 'string')) return top;
    if (fields.length === 2 && fields[0] !== alias) return top;
    if (fields.length > 2) return top;
    const column = String(fields.at(-1));
    const found = innerTargets.filter((it) => outputName(it) === column);
    if (found.length !== 1) return top;
    const name = outputName(t) ?? column;
    targets.push({ ResTarget: { name, val: nodeOf(found[0])![1]['val'] } });
  }
  return { SelectStmt: { ...structuredClone(inner[1]), targetList: structuredClone(targets) } };
}

interface FunctionInfo {
  name: string;
  volatile: boolean;
  builtin: boolean;
  aggregate: boolean;
}

/** Inlines plain views (as subqueries under their alias) until only tables, CTE names and others remain. */
async function inlineViews(
  db: pg.ClientBase,
  top: Node,
  cteNames: Set<string>,
): Promise<Map<string, Relation>> {
  const seen = new Map<string, Relation>();
  for (let depth = 0; depth < 32; depth += 1) {
    const wanted = new Set<string>();
    // CTE names first: the parse tree lists a query's WITH clause after its FROM clause
    walk(top, (type, f) => {
      if (type === 'CommonTableExpr') cteNames.add(String(f['ctename']));
    });
    walk(top, (type, f) => {
      if (type === 'RangeVar' && f['schemaname'])
        wanted.add(relKey(String(f['schemaname']), String(f['relname'])));
      if (type === 'RangeVar' && !f['schemaname'] && !cteNames.has(String(f['relname'])))
        refuse(`reads ${String(f['relname'])}, a system catalog or an unqualified name`);
    });
    const missing = [...wanted].filter((k) => !seen.has(k));
    for (const [k, r] of await relations(db, missing)) seen.set(k, r);
    const views = [...wanted].map((k) => seen.get(k)).filter((r): r is Relation => r?.kind === 'v');
    if (views.length === 0) return seen;
    const defs = new Map<string, Node>();
    for (const v of views) {
      const { rows } = await db.query<{ def: string }>(incrementalSql.viewDefinition, [v.oid]);
      const parsed = await parse(rows[0]!.def);
      defs.set(relKey(v.schema, v.name), parsed.stmts[0]!.stmt);
    }
    mapFromItems(top, (type, f) => {
      if (type !== 'RangeVar' || !f['schemaname']) return undefined;
      const def = defs.get(relKey(String(f['schemaname']), String(f['relname'])));
      if (!def) return undefined;
      const alias = (f['alias'] as { aliasname?: string } | undefined)?.aliasname ?? String(f['relname']);
      return rangeSubselect(structuredClone(def), alias);
    });
  }
  return refuse('plain views nested more than 32 deep');
}

async function functionInfo(db: pg.ClientBase, names: string[]): Promise<Map<string, FunctionInfo>> {
  const { rows } = await db.query<FunctionInfo>(incrementalSql.functions, [names]);
  return new Map(rows.map((r) => [r.name, r]));
}

/** The refusals that do not depend on the key: clauses whose rows do not follow from the rows they read. */
async function checkClauses(
  db: pg.ClientBase,
  viewOid: string,
  top: Node,
  rels: Map<string, Relation>,
  cteNames: Set<string>,
): Promise<void> {
  const calls: string[] = [];
  const tables = new Map<string, number>();
  walk(top, (type, f) => {
    switch (type) {
      case 'SelectStmt':
        if ((f['withClause'] as { recursive?: boolean } | undefined)?.recursive) refuse('WITH RECURSIVE');
        if (f['op'] && f['op'] !== 'SETOP_NONE') refuse('UNION, INTERSECT or EXCEPT');
        if (f['limitCount'] || f['limitOffset']) refuse('LIMIT or OFFSET');
        if (Array.isArray(f['distinctClause']) && f['distinctClause'].some((d) => nodeOf(d) !== undefined))
          refuse('DISTINCT ON');
        if (Array.isArray(f['windowClause']) && f['windowClause'].length > 0) refuse('a window function');
        if (Array.isArray(f['valuesLists'])) refuse('VALUES');
        break;

      case 'SubLink':
        refuse('a subquery expression (EXISTS, IN or a scalar subquery)');
        break;
      case 'JoinExpr':
        if (f['jointype'] === 'JOIN_FULL') refuse('FULL JOIN');
        if (f['isNatural']) refuse('NATURAL JOIN');
        break;
      case 'RangeFunction':
        refuse('a function in FROM');
        break;
      case 'RangeTableSample':
        refuse('TABLESAMPLE');
        break;
      case 'RangeTableFunc':
        refuse('XMLTABLE');
        break;
      case 'SQLValueFunction':
        if (CLOCK_VALUES.test(String(f['op']))) refuse('the clock (CURRENT_DATE, CURRENT_TIMESTAMP, ...)');
        break;
      case 'FuncCall': {
        if (f['over']) refuse('a window function');
        const n = (f['funcname'] as unknown[]).map((x) => String(nodeOf(x)?.[1]['sval'] ?? ''));
        calls.push(n.join('.'));
        break;
      }
      case 'RangeVar': {
        if (!f['schemaname']) break;
        const r = rels.get(relKey(String(f['schemaname']), String(f['relname'])));
        if (!r)
          refuse(`reads ${String(f['schemaname'])}.${String(f['relname'])}, which the catalog does not list`);
        else {
          if (r.kind === 'm')
            refuse(`reads materialized view ${r.schema}.${r.name} (a REFRESH fires no trigger)`);
          if (r.kind === 'f') refuse(`reads foreign table ${r.schema}.${r.name}`);
          if (r.kind === 'p' || r.hasChildren)
            refuse(`reads ${r.schema}.${r.name}, a partitioned or inherited table (not yet supported)`);
          if (r.kind !== 'r') refuse(`reads ${r.schema}.${r.name}, which is not a table`);
          tables.set(r.oid, (tables.get(r.oid) ?? 0) + 1);
          if ((tables.get(r.oid) ?? 0) > 1) refuse(`reads ${r.schema}.${r.name} twice (a self-join)`);
        }
        break;
      }
    }
  });
  void cteNames;
  const info = await functionInfo(db, [...new Set(calls)]);
  for (const c of calls) {
    const bare = c.split('.').pop() ?? c;
    if (!info.get(c)) refuse(`calls ${c}, which the catalog does not resolve`);
    else if (CLOCK_FUNCTIONS.has(bare)) refuse(`the clock or a setting (${c})`);
  }
  // the functions the rules really call (their oids in the stored query trees: a name alone does not
  // say which overload, and timezone(text, timetz) is volatile while timezone(text, timestamptz) is not)
  const views = [...rels.values()].filter((r) => r.kind === 'v').map((r) => r.oid);
  const { rows: called } = await db.query<{ name: string; volatile: boolean; builtin: boolean }>(
    incrementalSql.calledFunctions,
    [[viewOid, ...views]],
  );
  for (const f of called) {
    if (f.volatile) refuse(`a volatile function (${f.name})`);
    if (!f.builtin)
      refuse(`a function that is not built in (${f.name}): it may read tables no trigger covers`);
  }
  // aggregation below the top query: a filter on a partial aggregate could drop a key from the key query
  const top$ = selectOf(top);
  walk(top, (type, f) => {
    if (type === 'SelectStmt' && f !== top$) {
      if ((f['groupClause'] as unknown[] | undefined)?.length || f['havingClause'] || f['distinctClause'])
        refuse('grouping or DISTINCT inside a subquery or a plain view');
      walk(f['targetList'], (t, g) => {
        if (t === 'FuncCall') {
          const n = (g['funcname'] as unknown[]).map((x) => String(nodeOf(x)?.[1]['sval'] ?? '')).join('.');
          if (info.get(n)?.aggregate) refuse('an aggregate inside a subquery or a plain view');
        }
      });
    }
  });
}

interface ViewCatalog {
  oid: string;
  definition: string;
  columns: Column[];
  key: string[] | null;
}

/** The view's key expressions, checked: no aggregate, and on the preserved side of every outer join. */
async function keyTargets(db: pg.ClientBase, top: Node, view: ViewCatalog): Promise<Node[]> {
  if (!view.key) return refuse('no unique index on plain columns (the view key)');
  const targets = (selectOf(top)?.['targetList'] as Node[] | undefined) ?? [];
  if (targets.length !== view.columns.length) refuse("a select list that does not match the view's columns");
  const nullable = new Set<string>();
  walk(top, (type, f) => {
    if (type !== 'JoinExpr') return;
    if (f['jointype'] === 'JOIN_LEFT') for (const a of aliasesUnder(f['rarg'])) nullable.add(a);
    if (f['jointype'] === 'JOIN_RIGHT') for (const a of aliasesUnder(f['larg'])) nullable.add(a);
  });
  const out: Node[] = [];
  for (const k of view.key) {
    const i = view.columns.findIndex((c) => c.name === k);
    const t = nodeOf(targets[i])?.[1];
    if (!t) return refuse(`the key column ${k} is not in the select list`);
    const calls: string[] = [];
    walk(t['val'], (type, f) => {
      if (type === 'FuncCall')
        calls.push((f['funcname'] as unknown[]).map((x) => String(nodeOf(x)?.[1]['sval'] ?? '')).join('.'));
      if (type === 'ColumnRef' && nullable.size > 0) {
        const fields = f['fields'] as unknown[];
        const qual = fields.length > 1 ? String(nodeOf(fields[0])?.[1]['sval'] ?? '') : undefined;
        if (qual === undefined || nullable.has(qual))
          refuse(`an outer join with the view key (${k}) from its nullable side`);
      }
    });
    const info = await functionInfo(db, calls);
    if (calls.some((c) => info.get(c)?.aggregate)) refuse(`the key column ${k} is an aggregate`);
    out.push(t['val'] as Node);
  }
  return out;
}

/** The key query of source `t`: see the header. */
/**
 * The alias of `t` in the query's own FROM list (not inside a subquery), when every column the key
 * expressions read is one of t's: then t's changed rows give their keys without any join (a superset:
 * rows the joins or filters would drop only add keys), and the key query reads the batch alone. Without
 * this, a change of a row that many rows join (a branch joined by its accounts) would list its key once
 * per joined row before DISTINCT.
 */
function ownKeyAlias(top: Node, t: Source, keyExprs: Node[]): string | undefined {
  const s = selectOf(top)!;
  const top$: { alias: string; src: boolean }[] = [];
  walk(s['fromClause'], (type, f) => {
    if (type === 'RangeSubselect') {
      top$.push({ alias: String((f['alias'] as { aliasname?: string } | undefined)?.aliasname), src: false });
      return false;
    }
    if (type === 'RangeVar') {
      const alias = (f['alias'] as { aliasname?: string } | undefined)?.aliasname ?? String(f['relname']);
      top$.push({ alias, src: f['schemaname'] === t.schema && f['relname'] === t.name });
    }
    return undefined;
  });
  const mine = top$.filter((x) => x.src);
  if (mine.length !== 1) return undefined;
  const alias = mine[0]!.alias;
  let own = true;
  walk(keyExprs, (type, f) => {
    if (type === 'SubLink') own = false;
    if (type !== 'ColumnRef') return;
    const fields = (f['fields'] as unknown[]).map((x) => nodeOf(x)?.[1]['sval']);
    if (!(fields.length === 2 && fields[0] === alias) && !(fields.length === 1 && top$.length === 1))
      own = false;
  });
  return own ? alias : undefined;
}

function keyQuery(
  top: Node,
  t: Source,
  others: Source[],
  keyExprs: Node[],
  keyNames: string[],
  netted: Node | undefined,
): Node {
  const batch = (alias: string) =>
    netted ? rangeSubselect(structuredClone(netted), alias) : rangeVar('pg_temp', batchTable(t.oid), alias);
  const alias = ownKeyAlias(top, t, keyExprs);
  const where = selectOf(top)!['whereClause'] as Node | undefined;
  if (alias !== undefined)
    return {
      SelectStmt: {
        targetList: keyExprs.map((val, i) => ({
          ResTarget: { name: keyNames[i], val: structuredClone(val) },
        })),
        distinctClause: [{}],
        fromClause: [batch(alias)],
        // the filter too, when it reads t alone: an image that fails it contributes to no row
        ...(where && ownKeyAlias(top, t, [where]) === alias ? { whereClause: structuredClone(where) } : {}),
        limitOption: 'LIMIT_OPTION_DEFAULT',
        op: 'SETOP_NONE',
      },
    };
  const q = structuredClone(top);
  const s = selectOf(q)!;
  s['targetList'] = keyExprs.map((val, i) => ({
    ResTarget: { name: keyNames[i], val: structuredClone(val) },
  }));
  s['distinctClause'] = [{}];
  for (const f of ['groupClause', 'havingClause', 'sortClause', 'windowClause', 'groupDistinct']) delete s[f];
  // outer joins with t on their nullable side become inner
  walk(q, (type, f) => {
    if (type !== 'JoinExpr') return;
    const underRight = containsRelation(f['rarg'], t);
    const underLeft = containsRelation(f['larg'], t);
    if ((f['jointype'] === 'JOIN_LEFT' && underRight) || (f['jointype'] === 'JOIN_RIGHT' && underLeft))
      f['jointype'] = 'JOIN_INNER';
  });
  mapFromItems(q, (type, f) => {
    if (type !== 'RangeVar' || !f['schemaname']) return undefined;
    const alias = (f['alias'] as { aliasname?: string } | undefined)?.aliasname ?? String(f['relname']);
    if (f['schemaname'] === t.schema && f['relname'] === t.name) return batch(alias);
    const u = others.find((o) => f['schemaname'] === o.schema && f['relname'] === o.name);
    if (!u) return undefined;
    const cols = u.columns.map((c) => c.name);
    return rangeSubselect(
      unionAll(
        selectColumns(cols, rangeVar(u.schema, u.name, u.name)),
        selectColumns(cols, rangeVar('pg_temp', batchTable(u.oid), 'b')),
      ),
      alias,
    );
  });
  return q;
}

function containsRelation(value: unknown, t: Source): boolean {
  let found = false;
  walk(value, (type, f) => {
    if (type === 'RangeVar' && f['schemaname'] === t.schema && f['relname'] === t.name) found = true;
  });
  return found;
}

/**
 * Whether every column's type has an equality (EXPLAIN of an EXCEPT ALL, which needs one, succeeds), so that
 * images can be paired or grouped; in the caller's transaction, under a savepoint.
 */
export async function comparable(db: pg.ClientBase, table: string, cols: string): Promise<boolean> {
  await db.query('SAVEPOINT mvrefresh_comparable');
  try {
    await db.query(`EXPLAIN SELECT ${cols} FROM ${table} EXCEPT ALL SELECT ${cols} FROM ${table}`);
    await db.query('RELEASE SAVEPOINT mvrefresh_comparable');
    return true;
  } catch {
    await db.query('ROLLBACK TO SAVEPOINT mvrefresh_comparable');
    return false;
  }
}

/**
 * Source t's batch as the view's key query reads it: the images of the columns this view reads whose count
 * the batch changed. The log holds the columns of every incremental view reading the table, so an UPDATE of
 * a column another view reads logs an old and a new image that are equal in this view's columns: they
 * cancel out here, and the update costs this view no key (post_commenters does not recompute a post whose
 * comment's score changed). Exact: the definition reads t only through these columns, and the batch is every
 * change between the two snapshots. Values equal by their type's equality but written differently (numeric
 * 1.0 and 1.00) count as unchanged, as in the capture's pairing of an UPDATE's images. Undefined (the batch
 * as it is) when a column's type has no equality.
 */
async function nettedBatch(db: pg.ClientBase, t: Source): Promise<Node | undefined> {
  const cols = t.columns.map((c) => qi(c.name)).join(', ');
  if (!(await comparable(db, `${qi(t.schema)}.${qi(t.name)}`, cols))) return undefined;
  const parsed = await parse(
    `SELECT ${cols} FROM pg_temp.${qi(batchTable(t.oid))} GROUP BY ${cols} ` +
      'HAVING pg_catalog.sum(mvr_sign) OPERATOR(pg_catalog.<>) 0',
  );
  return parsed.stmts[0]!.stmt;
}

/**
 * Whether a count(DISTINCT) view keeps a multiset (delta.ts) rather than recomputing its groups by key,
 * from the fact's rows and the view's (its groups) when it is made incremental. A group recomputed by key
 * costs a read of each of its rows (about 3 µs each through an index, measured: docs/benchmarks.md), the
 * multiset about 20 µs per changed row and a table of one row per group and value: worth it for groups of
 * MULTISET_MIN_ROWS_PER_GROUP rows or more on average, and for any fact under MULTISET_SMALL_FACT rows.
 */
export function keepsMultiset(factRows: number, groups: number): boolean {
  return factRows < MULTISET_SMALL_FACT || factRows / Math.max(1, groups) >= MULTISET_MIN_ROWS_PER_GROUP;
}
export const MULTISET_MIN_ROWS_PER_GROUP = 32;
export const MULTISET_SMALL_FACT = 10_000;

/**
 * Whether a count(DISTINCT) view probes its fact (statements.ts ProbeStatements) instead of keeping a
 * multiset or recomputing its groups: when an index of the fact leads with the keys' and the value's
 * columns, a probe reads only the rows of one group holding one value (for a new comment, its own row)
 * where a recompute reads every row of the group, and nothing is kept beside the view. Without such an
 * index a probe would read the group's rows once per value: keepsMultiset() decides.
 */
async function hasProbeIndex(db: pg.ClientBase, fact: string, columns: string[]): Promise<boolean> {
  return (await db.query<{ found: boolean }>(incrementalSql.probeIndex, [fact, columns])).rows[0]!.found;
}

/** What a count(DISTINCT) view recomputed by key would gain from an index its probes could use. */
function probeAdvice(
  view: { schema: string; name: string },
  fact: Source,
  column: string,
  columns: string[],
): string {
  return (
    `${column} of ${view.schema}.${view.name} (a count(DISTINCT)) is recomputed from every row of each changed group: ` +
    `an index on ${fact.schema}.${fact.name} (${columns.join(', ')}) would let an apply count each change with one probe of it instead ` +
    `(once it exists, make the view incremental again: unwatch, then watch --incremental)`
  );
}

/** A relation's rows: the planner's count, or counted when it was never counted. */
async function rowCount(db: pg.ClientBase, rel: string): Promise<number> {
  const n = (await db.query<{ n: number }>(incrementalSql.reltuples, [rel])).rows[0]?.n ?? -1;
  if (n >= 0) return n;
  const name = (await db.query<{ name: string }>(incrementalSql.tableName, [rel])).rows[0]!.name;
  return (await db.query<{ n: number }>(incrementalSql.countRows(name))).rows[0]!.n;
}

/**
 * Analyzes the materialized view `oid` (its definition read with every name qualified) and generates the
 * apply's statements, or says which clause keeps it a full-refresh view.
 */
export async function analyze(db: pg.ClientBase, oid: string, viewId: number): Promise<Analysis> {
  const { rows } = await db.query<ViewCatalog & { schema: string; name: string }>(
    incrementalSql.viewCatalog,
    [oid],
  );
  const found = rows[0];
  if (!found) throw new Error(`relation ${oid} is gone`);
  // pg_get_viewdef() ends the query with a semicolon; the apply wraps it as a subquery
  const view = { ...found, definition: found.definition.trim().replace(/;\s*$/, '') };
  try {
    const parsed = await parse(view.definition);
    const parsedTop = parsed.stmts[0]?.stmt;
    if (!parsedTop || !selectOf(parsedTop)) return refuse('a definition that is not a single SELECT');
    const cteNames = new Set<string>();
    const rels = await inlineViews(db, parsedTop, cteNames);
    const top = flattenProjection(parsedTop);
    await checkClauses(db, oid, top!, rels, cteNames);
    const keyExprs = await keyTargets(db, top!, view);
    const tables = [...rels.values()].filter((r) => r.kind === 'r');
    const { rows: cols } = await db.query<{ oid: string; name: string; type: string }>(
      incrementalSql.readColumns,
      [oid, [...rels.values()].filter((r) => r.kind === 'v').map((r) => r.oid)],
    );
    const sources: Source[] = tables.map((t) => ({
      oid: t.oid,
      schema: t.schema,
      name: t.name,
      columns: cols.filter((c) => c.oid === t.oid).map((c) => ({ name: c.name, type: c.type })),
    }));
    if (sources.length === 0) refuse('no table to capture changes from');
    for (const s of sources) if (s.columns.length === 0) refuse(`reads no column of ${s.schema}.${s.name}`);
    const keysName = keysTableName(viewId);
    const keysRef = keysTableRef(keysName);
    const keys: Record<string, string> = {};
    for (const t of sources) {
      const q = keyQuery(
        top!,
        t,
        sources.filter((s) => s !== t),
        keyExprs,
        view.key!,
        await nettedBatch(db, t),
      );
      keys[t.oid] = `INSERT INTO ${keysRef} (${view.key!.map(qi).join(', ')})\n${await deparse(q)}`;
    }
    const { rows: nn } = await db.query<{ c: string }>(incrementalSql.notNullColumns, [
      sources.map((x) => x.oid),
    ]);
    // deltas add up every change the log holds; under a policy the owner sees some rows only, which a
    // recompute as the owner gives (apply_view.sql recomputes in full a delta view a policy applies to later)
    const underPolicy = (
      await db.query<{ found: boolean }>(incrementalSql.ownerUnderPolicy, [oid, sources.map((x) => x.oid)])
    ).rows[0]!.found;
    let plan = underPolicy
      ? undefined
      : deltaPlan(top!, view.columns, view.key!, sources, new Set(nn.map((r) => r.c)));
    const probeColumns = plan?.distinct?.probeColumns;
    const probed =
      plan !== undefined && probeColumns !== undefined && (await hasProbeIndex(db, plan.fact, probeColumns));
    const advice: string[] = [];
    if (plan?.distinct && !probed && !keepsMultiset(await rowCount(db, plan.fact), await rowCount(db, oid))) {
      if (probeColumns)
        advice.push(
          probeAdvice(
            view,
            sources.find((x) => x.oid === plan!.fact)!,
            plan.distinct.column,
            probeColumns,
          ),
        );
      plan = undefined;
    }
    const delta = plan && {
      delta: deltaStatements(
        view,
        keysRef,
        view.key!,
        view.columns,
        plan.countColumn,
        plan.fact,
        await deparse(plan.select),
        plan.extremes,
        plan.averages,
        plan.distinct && !probed
          ? {
              column: plan.distinct.column,
              valueType: plan.distinct.valueType,
              batch: await deparse(plan.distinct.batch),
              full: await deparse(plan.distinct.full),
              table: distinctTable(viewId),
            }
          : undefined,
        plan.distinct && probed
          ? {
              column: plan.distinct.column,
              valueType: plan.distinct.valueType,
              batch: await deparse(plan.distinct.batch),
              probe: await deparse(plan.distinct.probe),
            }
          : undefined,
      ),
    };
    return {
      incremental: true,
      definition: view.definition,
      key: view.key!,
      sources,
      statements: {
        ...statements(view, view.definition, view.key!, view.columns, keysName),
        keys,
        ...delta,
      },
      advice,
    };
  } catch (err) {
    if (err instanceof NotIncremental) return { incremental: false, reason: err.message };
    throw err;
  }
}
