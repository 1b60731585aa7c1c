/**
 * The SQL an apply runs for an incremental view (routines/apply_view.sql), generated when the view is made
 * incremental (analyze.ts) and stored in its registration (mvrefresh.incremental.statements): the keys
 * table and what fills and reads it, the rewrite of the keys' rows, a delta view's statements and a
 * count(DISTINCT) multiset's. A registration keeps its statements until the view is made incremental again,
 * so apply_view() runs the ones of earlier versions too (the optional fields below say which).
 */
import { PROBE_ALIAS, type Average, type Extreme } from './delta.js';
import type { Column } from './types.js';

const qi = (s: string) => `"${s.replace(/"/g, '""')}"`;

export interface Statements {
  /**
   * The view's keys table (keysTableName()); absent in registrations of earlier versions, whose statements
   * use mvrefresh_keys, shared by all views.
   */
  keysName: string;
  /** CREATE TEMP TABLE <keysName>: the key columns, ON COMMIT DELETE ROWS (kept for the session). */
  keysTable: string;
  /** Per source oid: INSERT INTO the keys table SELECT DISTINCT ... (the batch tables exist). */
  keys: Record<string, string>;
  /** Whether the keys table holds a key with a NULL (then the *Null statements run too). */
  hasNullKeys: string;
  /** Delete the rows of the keys in the keys table from the view's table. */
  delete: string;
  deleteNull: string;
  /** Insert the rows of those keys from the definition. */
  insert: string;
  /**
   * delete and insert of the keys without a NULL in one statement that writes only what changed
   * (replaceStatement()); absent where a column's name clashes, and in registrations of earlier versions.
   */
  replace?: string;
  insertNull: string;
  /** Insert the rows of those keys from pg_temp.mvrefresh_full (a full recompute). */
  insertFull: string;
  insertFullNull: string;
  /** Fill the keys table with the keys whose rows differ between the table and pg_temp.mvrefresh_full. */
  fullKeys: string;
  /** The delta class (delta.ts): the fact's changes added to the groups, other changes recomputed. */
  delta?: DeltaStatements;
}

export interface DeltaStatements {
  /** The source (oid) whose changes are deltas: its key query is not run. */
  fact: string;
  /** CREATE TEMP TABLE mvrefresh_delta AS the deltas per group (the fact's batch tables exist). */
  build: string;
  /** Groups with a NULL key go to the keys table (recomputed), then every recomputed group's delta goes. */
  moveNullKeys: string;
  dropRecomputed: string;
  /**
   * One statement: add the deltas to existing groups, delete groups whose count falls to zero, insert new
   * groups (each group's row found once). A view registered by an earlier version has update, insert
   * and deleteEmpty instead, which apply_view() still runs.
   */
  upsert: string;
  /** A view with count(DISTINCT col) (delta.ts): its hidden multiset table and what keeps it. */
  distinct?: DistinctStatements;
  /** Or, where an index of the fact leads with the keys and col: the probes that replace the multiset. */
  probe?: ProbeStatements;
}

/**
 * A count(DISTINCT col) delta view without a multiset (delta.ts): per group and value of the batch, the
 * fact's rows holding it now are counted through an index (n), and the batch's net count d gives how many
 * held it before (n - d); the value joined the group when only n is positive, left it when only n - d is.
 * Exact for the same reason as the multiset: in the apply's snapshot the fact holds the rows of S, the batch
 * is the change from S_a to S. Nothing is kept between applies, so a full recompute and verify have no
 * hidden state to rebuild or compare.
 */
export interface ProbeStatements {
  /** pg_temp.mvrefresh_dd and pg_temp.mvrefresh_dc, as DistinctStatements'. */
  batchTables: string[];
  /** The owner's part: the batch's net counts into mvrefresh_dd. */
  batch: string;
  /** The owner's part: each group's change of its distinct count into mvrefresh_dc, by the probes. */
  probe: string;
  /** The owner's part: the distinct column of mvrefresh_delta from mvrefresh_dc. */
  setDelta: string;
}

/**
 * The multiset of a count(DISTINCT col) delta view, mvrefresh.distinct_<view id>: per group and non-NULL
 * value, how many rows hold it. Written by mvrefresh's roles only; the view's owner computes what goes in
 * (RLS and grants as in a REFRESH) into temporary tables that mvrefresh's role created and granted.
 */
export interface DistinctStatements {
  /** The table's qualified name. */
  table: string;
  create: string;
  /** pg_temp.mvrefresh_dd (keys, value, net count of the batch) and pg_temp.mvrefresh_dc (keys, change). */
  batchTables: string[];
  /** The owner's part: the batch's net counts into mvrefresh_dd. */
  batch: string;
  /** Adds them to the table; each group's change of its distinct count into mvrefresh_dc. */
  add: string;
  /** Drops the values whose count fell to 0. */
  dropZero: string;
  /** The owner's part: the distinct column of mvrefresh_delta from mvrefresh_dc. */
  setDelta: string;
  /** A full recompute: pg_temp.mvrefresh_dfull, the owner's INSERT of the whole multiset into it, the swap. */
  fullTable: string;
  full: string;
  replace: string[];
}

/**
 * The temporary table of the keys an apply recomputes, one per view, kept for the session: views of
 * different keys sharing one table would drop and create it again whenever the pool's session served
 * another view last (a catalog write, a grant and an ANALYZE per apply).
 */
export const keysTableName = (viewId: number): string => `mvrefresh_keys_${viewId}`;
/** The keys table as the statements name it. */
export const keysTableRef = (keysName: string): string => `pg_temp.${qi(keysName)}`;
/** The temporary table holding one source's batch during an apply. */
export const batchTable = (oid: string): string => `mvr_b_${oid}`;
/** The log of one source table. */
export const logTable = (oid: string): string => `log_${oid}`;

/** The keys without a NULL, deduplicated: joined by `=` (hash or index) and pushed into the definition. */
function plainKeys(keys: string, key: string[]): string {
  const cols = key.map(qi).join(', ');
  return `(SELECT DISTINCT ${cols} FROM ${keys} k WHERE ${key.map((k) => `k.${qi(k)} IS NOT NULL`).join(' AND ')})`;
}

/** A key of `alias`'s row equal to a key with a NULL (IS NOT DISTINCT FROM: no index, so only for those). */
function nullMatch(keys: string, alias: string, key: string[]): string {
  return (
    `(${key.map((k) => `${alias}.${qi(k)} IS NULL`).join(' OR ')}) AND EXISTS (SELECT FROM ${keys} k WHERE ` +
    `(${key.map((k) => `k.${qi(k)} IS NULL`).join(' OR ')}) AND ` +
    `${key.map((k) => `k.${qi(k)} IS NOT DISTINCT FROM ${alias}.${qi(k)}`).join(' AND ')})`
  );
}

/**
 * `q.k = ANY (ARRAY(SELECT ...))` per key column: PostgreSQL pushes it into the definition's scans (an
 * index condition on the source), which a join or IN (SELECT) above the aggregate would not be; for a
 * composite key, the exact pairs are then checked with a hashed IN.
 */
function pushedKeyMatch(keys: string, alias: string, key: string[]): string {
  const per = key.map(
    (k) => `${alias}.${qi(k)} = ANY (ARRAY(SELECT p.${qi(k)} FROM ${plainKeys(keys, key)} p))`,
  );
  if (key.length > 1)
    per.push(
      `(${key.map((k) => `${alias}.${qi(k)}`).join(', ')}) IN (SELECT * FROM ${plainKeys(keys, key)} p)`,
    );
  return per.join('\n   AND ');
}

/** Columns replaceStatement() adds to the definition's rows: a view with a column of such a name has none. */
const REPLACE_COLUMNS = ['mvr_ctid', 'mvr_same'];

/**
 * The keys' rows rewritten in one statement, in place of delete and insert: each key's new row (from the
 * definition) is joined to its row in the table once, by the key's index; a row that differs (binary, as
 * REFRESH CONCURRENTLY compares) is updated where it is (found by its ctid, no second probe; a HOT update
 * when its page has room, so the key index gains no entry), a key without a row is inserted, a row whose
 * key the definition no longer has is deleted, and a row that did not change is not written. Keys with a
 * NULL are left to deleteNull and insertNull. apply_view() runs it only while every unique index of the
 * table is on key columns alone: an update that moves a value of another unique column to a row whose old
 * value is updated later in the statement would break that index for a moment, which delete then insert
 * never does.
 */
function replaceStatement(
  x: string,
  keys: string,
  definition: string,
  key: string[],
  columns: Column[],
): string {
  const cols = columns.map((c) => qi(c.name));
  const onKey = key.map((k) => `x.${qi(k)} = n.${qi(k)}`).join(' AND ');
  const joinKey = key.map((k) => `x.${qi(k)} = p.${qi(k)}`).join(' AND ');
  const keyCols = key.map(qi).join(', ');
  return (
    `WITH n AS MATERIALIZED (SELECT q.* FROM (${definition}) q WHERE ${pushedKeyMatch(keys, 'q', key)}),\n` +
    `e AS MATERIALIZED (SELECT n.*, x.ctid AS mvr_ctid, x.* OPERATOR(pg_catalog.*=) n.* AS mvr_same FROM n LEFT JOIN ${x} x ON ${onKey}),\n` +
    `u AS (UPDATE ${x} x SET ${cols.map((c) => `${c} = e.${c}`).join(', ')} FROM e WHERE x.ctid = e.mvr_ctid AND NOT e.mvr_same),\n` +
    `d AS (DELETE FROM ${x} x USING (SELECT ${keyCols} FROM ${plainKeys(keys, key)} k EXCEPT SELECT ${keyCols} FROM n) p WHERE ${joinKey})\n` +
    `INSERT INTO ${x} (${cols.join(', ')}) SELECT ${cols.map((c) => `e.${c}`).join(', ')} FROM e WHERE e.mvr_ctid IS NULL`
  );
}

export function statements(
  view: { schema: string; name: string },
  definition: string,
  key: string[],
  columns: Column[],
  keysName: string,
): Omit<Statements, 'keys'> {
  const keys = keysTableRef(keysName);
  const x = `${qi(view.schema)}.${qi(view.name)}`;
  const keyCols = key.map(qi).join(', ');
  const keyTypes = key.map((k) => `${qi(k)} ${columns.find((c) => c.name === k)!.type}`).join(', ');
  const sameKey = key.map((k) => `f.${qi(k)} = x.${qi(k)}`).join(' AND ');
  const joinKey = (a: string) => key.map((k) => `${a}.${qi(k)} = p.${qi(k)}`).join(' AND ');
  return {
    keysName,
    keysTable: `CREATE TEMP TABLE ${qi(keysName)} (${keyTypes}) ON COMMIT DELETE ROWS`,
    hasNullKeys: `SELECT EXISTS (SELECT FROM ${keys} k WHERE ${key.map((k) => `k.${qi(k)} IS NULL`).join(' OR ')})`,
    delete: `DELETE FROM ${x} x USING ${plainKeys(keys, key)} p WHERE ${joinKey('x')}`,
    deleteNull: `DELETE FROM ${x} x WHERE ${nullMatch(keys, 'x', key)}`,
    insert: `INSERT INTO ${x} SELECT q.* FROM (${definition}) q WHERE ${pushedKeyMatch(keys, 'q', key)}`,
    ...(columns.some((c) => REPLACE_COLUMNS.includes(c.name))
      ? {}
      : { replace: replaceStatement(x, keys, definition, key, columns) }),
    insertNull: `INSERT INTO ${x} SELECT q.* FROM (${definition}) q WHERE ${nullMatch(keys, 'q', key)}`,
    insertFull: `INSERT INTO ${x} SELECT q.* FROM pg_temp.mvrefresh_full q JOIN ${plainKeys(keys, key)} p ON ${joinKey('q')}`,
    insertFullNull: `INSERT INTO ${x} SELECT q.* FROM pg_temp.mvrefresh_full q WHERE ${nullMatch(keys, 'q', key)}`,
    fullKeys:
      `INSERT INTO ${keys} (${keyCols})\n` +
      `SELECT ${key.map((k) => `x.${qi(k)}`).join(', ')} FROM ${x} x WHERE NOT EXISTS (SELECT FROM pg_temp.mvrefresh_full f WHERE ${sameKey} AND f.* OPERATOR(pg_catalog.*=) x.*)\n` +
      `UNION\n` +
      `SELECT ${key.map((k) => `f.${qi(k)}`).join(', ')} FROM pg_temp.mvrefresh_full f WHERE NOT EXISTS (SELECT FROM ${x} x WHERE ${sameKey} AND x.* OPERATOR(pg_catalog.*=) f.*)`,
  };
}

export function deltaStatements(
  view: { schema: string; name: string },
  keys: string,
  key: string[],
  columns: Column[],
  countColumn: string,
  fact: string,
  select: string,
  extremes: Extreme[],
  averages: Average[],
  distinct?: { column: string; valueType: string; batch: string; full: string; table: string },
  probe?: { column: string; valueType: string; batch: string; probe: string },
): DeltaStatements {
  const x = `${qi(view.schema)}.${qi(view.name)}`;
  const keyCols = key.map(qi).join(', ');
  const same = key.map((k) => `x.${qi(k)} = d.${qi(k)}`).join(' AND ');
  const extreme = new Map(extremes.map((e) => [e.column, e]));
  const bound = (e: Extreme, a: string, b: string) => `${e.fn === 'max' ? 'GREATEST' : 'LEAST'}(${a}, ${b})`;
  // delta.ts: a group whose removed extreme reaches the extreme of its rows and the added ones
  // (the group's row joined once, by its key: none for a new group or a NULL key)
  const lost = extremes.map((e) => {
    const [c, r] = [qi(e.column), qi(e.removed)];
    return `d.${r} ${e.fn === 'max' ? '>=' : '<='} ${bound(e, `x.${c}`, `d.${c}`)}`;
  });
  // only a group with a NULL key or a removed extreme can need it: the others skip the join
  const mayLose = [
    ...key.map((k) => `d.${qi(k)} IS NULL`),
    ...extremes.map((e) => `d.${qi(e.removed)} IS NOT NULL`),
  ];
  const deltaRows =
    extremes.length > 0
      ? `(SELECT * FROM pg_temp.mvrefresh_delta d WHERE ${mayLose.join(' OR ')}) d LEFT JOIN ${x} x ON ${same}`
      : 'pg_temp.mvrefresh_delta d';
  const aggs = columns.filter((c) => !key.includes(c.name)).map((c) => c.name);
  const average = new Map(averages.map((a) => [a.column, a]));
  // avg as PostgreSQL computes it from a group's sum and count (delta.ts), NULL without rows
  const mean = (sum: string, count: string) =>
    `(${sum})::pg_catalog.numeric / NULLIF(${count}, 0)::pg_catalog.numeric`;
  const added = (a: string) => {
    const e = extreme.get(a);
    const m = average.get(a);
    if (m)
      return mean(
        `x.${qi(m.sum)} + COALESCE(d.${qi(m.sum)}, 0)`,
        `x.${qi(m.count)} + COALESCE(d.${qi(m.count)}, 0)`,
      );
    return e ? bound(e, `x.${qi(a)}`, `d.${qi(a)}`) : `x.${qi(a)} + COALESCE(d.${qi(a)}, 0)`;
  };
  const inserted = (c: string) => {
    const m = average.get(c);
    if (m) return mean(`COALESCE(d.${qi(m.sum)}, 0)`, `COALESCE(d.${qi(m.count)}, 0)`);
    return key.includes(c) || extreme.has(c) ? `d.${qi(c)}` : `COALESCE(d.${qi(c)}, 0)`;
  };
  const count = qi(countColumn);
  // a group's count falls to zero only when its delta is negative; the groups the UPDATE found are the
  // ones that exist, so the INSERT takes the others (the delta has no NULL key left: moveNullKeys)
  const sameU = key.map((k) => `u.${qi(k)} = d.${qi(k)}`).join(' AND ');
  // a group whose delta changes nothing (an UPDATE of columns only other views read, a count(DISTINCT)
  // value that another of the group's rows still holds) is left as it is: rewriting it costs what a real
  // change costs (a row version, WAL, an index probe). An average follows its sum and count
  const changes = aggs
    .filter((a) => !average.has(a))
    .map((a) => (extreme.has(a) ? `d.${qi(a)} IS NOT NULL` : `d.${qi(a)} <> 0`));
  return {
    fact,
    build: `CREATE TEMP TABLE mvrefresh_delta ON COMMIT DROP AS ${select}`,
    moveNullKeys:
      `INSERT INTO ${keys} (${keyCols}) SELECT ${key.map((k) => `d.${qi(k)}`).join(', ')} ` +
      `FROM ${deltaRows} WHERE ${[...key.map((k) => `d.${qi(k)} IS NULL`), ...lost].join(' OR ')}`,
    // IN, which the planner hashes (IS NOT DISTINCT FROM is compared pair by pair: 3 000 groups against 500
    // keys, 1.5 million comparisons, 172 ms); a group with a NULL key is among the keys (moveNullKeys)
    dropRecomputed:
      `DELETE FROM pg_temp.mvrefresh_delta d WHERE ${key.map((k) => `d.${qi(k)} IS NULL`).join(' OR ')} ` +
      `OR (${key.map((k) => `d.${qi(k)}`).join(', ')}) IN (SELECT ${key.map((k) => `k.${qi(k)}`).join(', ')} FROM ${keys} k)`,
    upsert:
      `WITH u AS (UPDATE ${x} x SET ${aggs.map((a) => `${qi(a)} = ${added(a)}`).join(', ')} ` +
      `FROM pg_temp.mvrefresh_delta d WHERE ${same} AND x.${count} + d.${count} <> 0 AND (${changes.join(' OR ')}) ` +
      `RETURNING ${key.map((k) => `x.${qi(k)}`).join(', ')}), ` +
      `e AS (DELETE FROM ${x} x USING pg_temp.mvrefresh_delta d WHERE ${same} AND d.${count} < 0 AND x.${count} + d.${count} = 0) ` +
      `INSERT INTO ${x} (${columns.map((c) => qi(c.name)).join(', ')}) ` +
      `SELECT ${columns.map((c) => inserted(c.name)).join(', ')} ` +
      `FROM pg_temp.mvrefresh_delta d WHERE d.${count} > 0 AND NOT EXISTS (SELECT FROM u WHERE ${sameU})`,
    ...(distinct && { distinct: distinctStatements(key, columns, distinct) }),
    ...(probe && { probe: probeStatements(key, columns, probe) }),
  };
}

/**
 * Room left on each page of a multiset table: an apply changes a count in place (a HOT update, no new index
 * entry) where the page has room for the new version.
 */
const MULTISET_FILLFACTOR = 80;

/** What a multiset and probes share: the batch's net counts (dd), the groups' changes (dc), the delta's. */
function distinctBatch(
  key: string[],
  columns: Column[],
  d: { column: string; valueType: string; batch: string },
): Pick<DistinctStatements, 'batchTables' | 'batch' | 'setDelta'> {
  const keyDefs = key.map((k) => `${qi(k)} ${columns.find((c) => c.name === k)!.type}`);
  const entry = [...key.map(qi), 'mvr_value'];
  return {
    batchTables: [
      `CREATE TEMP TABLE mvrefresh_dd (${[...keyDefs, `mvr_value ${d.valueType}`, 'mvr_n bigint'].join(', ')}) ON COMMIT DROP`,
      `CREATE TEMP TABLE mvrefresh_dc (${[...keyDefs, 'mvr_dc bigint'].join(', ')}) ON COMMIT DROP`,
    ],
    batch: `INSERT INTO pg_temp.mvrefresh_dd (${entry.join(', ')}, mvr_n) ${d.batch}`,
    setDelta:
      `UPDATE pg_temp.mvrefresh_delta d SET ${qi(d.column)} = dc.mvr_dc FROM pg_temp.mvrefresh_dc dc ` +
      `WHERE ${key.map((k) => `d.${qi(k)} = dc.${qi(k)}`).join(' AND ')}`,
  };
}

function probeStatements(
  key: string[],
  columns: Column[],
  d: { column: string; valueType: string; batch: string; probe: string },
): ProbeStatements {
  const keyCols = key.map(qi).join(', ');
  // n: the rows holding the value now, n - mvr_n: before the batch (ProbeStatements). OFFSET 0 keeps the
  // probe in its subquery: pulled up, it was copied into each of the CASE's four references and run
  // twice per group and value
  const change =
    'CASE WHEN p.mvr_now > 0 AND p.mvr_now - p.mvr_n <= 0 THEN 1 ' +
    'WHEN p.mvr_now = 0 AND p.mvr_now - p.mvr_n > 0 THEN -1 ELSE 0 END';
  return {
    ...distinctBatch(key, columns, d),
    probe:
      `INSERT INTO pg_temp.mvrefresh_dc (${keyCols}, mvr_dc) SELECT ${key.map((k) => `p.${qi(k)}`).join(', ')}, sum(${change}) ` +
      `FROM (SELECT ${key.map((k) => `${PROBE_ALIAS}.${qi(k)}`).join(', ')}, ${PROBE_ALIAS}.mvr_n, (${d.probe}) AS mvr_now ` +
      `FROM pg_temp.mvrefresh_dd ${PROBE_ALIAS} OFFSET 0) p GROUP BY ${key.map((k) => `p.${qi(k)}`).join(', ')}`,
  };
}

function distinctStatements(
  key: string[],
  columns: Column[],
  d: { column: string; valueType: string; batch: string; full: string; table: string },
): DistinctStatements {
  const t = d.table;
  const keyDefs = key.map((k) => `${qi(k)} ${columns.find((c) => c.name === k)!.type}`);
  const multiset = [...keyDefs, `mvr_value ${d.valueType}`, 'mvr_n bigint'].join(', ');
  const entry = [...key.map(qi), 'mvr_value'];
  const on = (a: string, b: string) => entry.map((c) => `${a}.${c} = ${b}.${c}`).join(' AND ');
  const sameKey = key.map((k) => `m.${qi(k)} = dd.${qi(k)}`).join(' AND ');
  // a value new to its group (its count was 0: the count is now the batch's) adds 1, a value gone (count
  // 0 now) takes 1 away
  const change = 'CASE WHEN m.mvr_n = dd.mvr_n THEN 1 WHEN m.mvr_n = 0 THEN -1 ELSE 0 END';
  return {
    ...distinctBatch(key, columns, d),
    table: t,
    create: `CREATE TABLE ${t} (${[...keyDefs, `mvr_value ${d.valueType}`, 'mvr_n bigint NOT NULL'].join(', ')}, PRIMARY KEY (${entry.join(', ')})) WITH (fillfactor = ${MULTISET_FILLFACTOR})`,
    add:
      `WITH m AS (INSERT INTO ${t} AS t (${entry.join(', ')}, mvr_n) SELECT ${entry.join(', ')}, mvr_n FROM pg_temp.mvrefresh_dd ` +
      `ON CONFLICT (${entry.join(', ')}) DO UPDATE SET mvr_n = t.mvr_n + excluded.mvr_n RETURNING t.*) ` +
      `INSERT INTO pg_temp.mvrefresh_dc SELECT ${key.map((k) => `m.${qi(k)}`).join(', ')}, sum(${change}) ` +
      `FROM m JOIN pg_temp.mvrefresh_dd dd ON ${sameKey} AND m.mvr_value = dd.mvr_value GROUP BY ${key.map((k) => `m.${qi(k)}`).join(', ')}`,
    dropZero: `DELETE FROM ${t} m USING pg_temp.mvrefresh_dd dd WHERE ${on('m', 'dd')} AND dd.mvr_n < 0 AND m.mvr_n = 0`,
    fullTable: `CREATE TEMP TABLE mvrefresh_dfull (${multiset}) ON COMMIT DROP`,
    full: `INSERT INTO pg_temp.mvrefresh_dfull (${entry.join(', ')}, mvr_n) ${d.full}`,
    replace: [`DELETE FROM ${t}`, `INSERT INTO ${t} SELECT * FROM pg_temp.mvrefresh_dfull`],
  };
}

/** The hidden multiset table of the incremental view `viewId` (delta.ts, count(DISTINCT)). */
export const distinctTable = (viewId: number): string => `mvrefresh.${qi(`distinct_${viewId}`)}`;
