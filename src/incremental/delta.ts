/**
 * The delta class (issue 27: count / sum maintained by adding deltas where groups are large). A view
 * qualifies when its top query is `SELECT <key columns>, <aggregates> FROM ... [WHERE ...] GROUP BY
 * <key columns>` with inner joins only, no HAVING, no DISTINCT, its aggregates are count(*), count(col),
 * sum(col) of a NOT NULL integer or numeric column, min(col) and max(col), all reading one source (the
 * fact), and count(*) is among them (it tells when a group vanishes). Then a change of the fact is applied as a delta: the
 * definition with the fact replaced by its batch of signed images (old -1, new +1; capture.ts), count(*)
 * turned into sum(sign), count(x) into sum(sign) FILTER (WHERE x IS NOT NULL), sum(x) into sum(x * sign),
 * added to the groups' rows. The other sources (dimensions) are read as they are now, which is right for
 * every fact row whose dimension rows did not change in the batch; the groups a dimension change may touch
 * are recomputed by key instead (their key queries, analyze.ts), and their deltas dropped. A group whose
 * key has a NULL is recomputed too (`=` does not find it).
 * min(col) / max(col) of the fact qualify as well: the batch gives the extreme of the added images (sign 1)
 * and, in a hidden column, that of the removed ones (sign -1), each counting only the values the batch adds
 * more often than it removes, or the reverse, in the same group (netted(): an UPDATE of another column, or
 * a row added and removed again, leaves col's values as they were). With M the extreme of the group's rows
 * and the added ones (GREATEST(view's value, added) for max), a removed value beyond M is impossible and one
 * short of it leaves M in the group, so the new value is M; a removed value equal to M may have taken M's
 * only instance (a delete, an UPDATE of col or of the row's group), and only then is the group recomputed
 * by key (min after a delete stays right; a group of many rows rarely loses its extreme).
 * avg(col) of the fact qualifies beside sum(col) and a count of col's rows (count(col), or count(*) with col
 * NOT NULL) in the same view: PostgreSQL's avg of an integer or numeric column is exactly
 * sum::numeric / count::numeric (int8_avg, numeric_avg), so the upsert sets it from the group's new sum and
 * count; it has no delta of its own (0 in the delta).
 * count(DISTINCT col) of the fact qualifies in a view that reads the fact alone (no join), once per view:
 * a hidden table (mvrefresh.distinct_<view id>, analyze.ts) keeps how many of the group's rows hold each
 * non-NULL value of col (a multiset, as pg_ivm keeps DISTINCT); the batch's net count per group and value
 * is added to it, and a value whose count leaves 0 adds 1 to the group's distinct count, one whose count
 * falls to 0 takes 1 away. With col NOT NULL it also tells when a group vanishes, in place of count(*).
 */
import { nodeOf, rangeSubselect, rangeVar, str, walk, type Node } from './ast.js';
import type { Column, Source } from './types.js';

export interface DeltaPlan {
  /** The source whose changes become deltas. */
  fact: string;
  /** The view's column of count(*). */
  countColumn: string;
  /** The SELECT computing the deltas (AST), its columns named as the view's, then `removed` ones. */
  select: Node;
  /** The view's min/max columns, each with the delta's column of its removed images' extreme. */
  extremes: Extreme[];
  /** The view's count(DISTINCT col) column, if it has one. */
  distinct?: DistinctPlan;
  /** The view's avg(col) columns, each with the view's columns of sum(col) and of col's count. */
  averages: Average[];
}

export interface Average {
  column: string;
  sum: string;
  count: string;
}

export interface DistinctPlan {
  column: string;
  /** The type of col, as format_type prints it. */
  valueType: string;
  /**
   * SELECT of the view's keys, col as mvr_value and the net count as mvr_n per group and value of the
   * batch (`batch`), or of the fact itself (`full`, the hidden table's contents), NULL keys and values
   * left out.
   */
  batch: Node;
  full: Node;
  /**
   * The fact's columns that the keys and col are (undefined when a key is an expression), and `SELECT
   * count(*)` of the fact's rows of one group and value under the view's WHERE, the group and value read
   * from the outer `mvr_dd` (PROBE_ALIAS): counted through an index on those columns, a probe reads only
   * the rows holding that value.
   */
  probeColumns?: string[];
  probe: Node;
}

/** The alias of the batch's net counts (pg_temp.mvrefresh_dd) in a probe (DistinctPlan.probe). */
export const PROBE_ALIAS = 'mvr_dd';

export interface Extreme {
  column: string;
  fn: 'min' | 'max';
  removed: string;
}

const INTEGRAL = /^(smallint|integer|bigint|numeric(\(.*\))?)$/;
const funcName = (f: Node): string =>
  ((f['funcname'] as unknown[]) ?? []).map((x) => String(nodeOf(x)?.[1]['sval'] ?? '')).pop() ?? '';
const colRef = (alias: string, col: string): Node => ({ ColumnRef: { fields: [str(alias), str(col)] } });

/** The alias and column of a qualified column reference, if `v` is one. */
function qualified(v: unknown): [string, string] | undefined {
  const n = nodeOf(v);
  if (!n || n[0] !== 'ColumnRef') return undefined;
  const fields = (n[1]['fields'] as unknown[]).map((x) => nodeOf(x)?.[1]['sval']);
  return fields.length === 2 && typeof fields[0] === 'string' && typeof fields[1] === 'string'
    ? [fields[0], fields[1]]
    : undefined;
}

/** An unqualified column reference of the only top-level relation, as [alias, column]. */
function bare(v: unknown, aliases: ReadonlyMap<string, Source>): [string, string] | undefined {
  const n = nodeOf(v);
  if (!n || n[0] !== 'ColumnRef' || aliases.size !== 1) return undefined;
  const fields = (n[1]['fields'] as unknown[]).map((x) => nodeOf(x)?.[1]['sval']);
  return fields.length === 1 && typeof fields[0] === 'string'
    ? [[...aliases.keys()][0]!, fields[0]]
    : undefined;
}

/**
 * The delta plan of a view (its analyzed top query `top`, after plain views were inlined), or undefined
 * when it does not qualify: then every key is recomputed.
 */
export function deltaPlan(
  top: Node,
  columns: Column[],
  key: string[],
  sources: Source[],
  notNull: ReadonlySet<string>,
): DeltaPlan | undefined {
  const s = nodeOf(top)?.[1];
  if (!s || !(s['groupClause'] as unknown[] | undefined)?.length || s['havingClause'] || s['distinctClause'])
    return undefined;
  const from = (s['fromClause'] as unknown[] | undefined) ?? [];
  const single = from.length === 1 && nodeOf(from[0])?.[0] === 'RangeVar';
  let outer = false;
  walk(s['fromClause'], (type, f) => {
    if (type === 'JoinExpr' && f['jointype'] !== 'JOIN_INNER') outer = true;
    if (type === 'RangeSubselect') outer = true;
  });
  if (outer) return undefined;
  // top-level relations by alias
  const aliases = new Map<string, Source>();
  walk(s['fromClause'], (type, f) => {
    if (type !== 'RangeVar') return;
    const src = sources.find((x) => x.schema === f['schemaname'] && x.name === f['relname']);
    const alias = (f['alias'] as { aliasname?: string } | undefined)?.aliasname ?? String(f['relname']);
    if (src) aliases.set(alias, src);
  });
  const targets = (s['targetList'] as Node[]).map((t) => nodeOf(t)![1]);
  let fact: string | undefined;
  let countColumn: string | undefined;
  let distinct: { column: string; arg: Node; type: string; notNull: boolean } | undefined;
  const rewritten: Node[] = [];
  for (const [i, t] of targets.entries()) {
    const name = columns[i]!.name;
    const val = nodeOf(t['val']);
    if (key.includes(name)) {
      if (val?.[0] === 'FuncCall' && ['count', 'sum', 'min', 'max'].includes(funcName(val[1])))
        return undefined;
      rewritten.push({ ResTarget: { name, val: t['val'] } });
      continue;
    }
    if (!val || val[0] !== 'FuncCall') return undefined;
    const f = val[1];
    if (f['agg_filter'] || f['agg_order'] || f['over'] || f['agg_within_group']) return undefined;
    const fn = funcName(f);
    const args = (f['args'] as unknown[] | undefined) ?? [];
    let alias: string | undefined;
    // the fact's column a one-argument aggregate reads
    let column: string | undefined;
    if (f['agg_distinct']) {
      // a GROUP BY by position would name another column once the multiset's columns are listed
      const byPosition = (s['groupClause'] as unknown[]).some((g) => nodeOf(g)?.[0] === 'A_Const');
      if (fn !== 'count' || args.length !== 1 || !single || distinct || byPosition) return undefined;
      const ref = qualified(args[0]) ?? bare(args[0], aliases);
      const src = ref && aliases.get(ref[0]);
      const col = src?.columns.find((c) => c.name === ref![1]);
      if (!ref || !src || !col) return undefined;
      alias = ref[0];
      distinct = {
        column: name,
        arg: args[0] as Node,
        type: col.type,
        notNull: notNull.has(`${src.oid}.${ref[1]}`),
      };
    } else if (fn === 'count' && f['agg_star']) {
      countColumn ??= name;
    } else if (['count', 'sum', 'min', 'max', 'avg'].includes(fn) && args.length === 1) {
      // PostgreSQL 16+ prints a column of a single-relation query without its relation
      const ref = qualified(args[0]) ?? bare(args[0], aliases);
      if (!ref) return undefined;
      [alias, column] = ref;
      const src = aliases.get(alias);
      if (!src) return undefined;
      if (fn === 'sum' || fn === 'avg') {
        const col = src.columns.find((c) => c.name === ref[1]);
        if (!col || !INTEGRAL.test(col.type) || !notNull.has(`${src.oid}.${ref[1]}`)) return undefined;
      }
    } else return undefined;
    if (alias !== undefined) {
      if (fact !== undefined && fact !== alias) return undefined;
      fact = alias;
    }
    rewritten.push({
      ResTarget: { name, val: { FuncCall: { ...f, agg_star: undefined, args: [] } } },
      marker: { fn, alias, args, column },
    } as Node);
  }
  const averages = averagesOf(rewritten, countColumn);
  if (!averages) return undefined;
  // a group exists while it has a row: count(*), or the distinct count of a column no row leaves NULL
  if (countColumn === undefined && distinct?.notNull) countColumn = distinct.column;
  if (countColumn === undefined) return undefined;
  // count(*) only: the fact is the first top-level relation
  fact ??= [...aliases.keys()][0];
  const factSource = fact === undefined ? undefined : aliases.get(fact);
  if (!fact || !factSource) return undefined;
  const sign = colRef(fact, 'mvr_sign');
  const signIs = (v: 1 | -1): Node => ({
    A_Expr: { kind: 'AEXPR_OP', name: [str('=')], lexpr: sign, rexpr: { A_Const: { ival: { ival: v } } } },
  });
  const agg = (fn: string, args: unknown[], filter?: Node): Node => ({
    FuncCall: {
      funcname: [str(fn)],
      args,
      ...(filter ? { agg_filter: filter } : {}),
      funcformat: 'COERCE_EXPLICIT_CALL',
    },
  });
  const extremes: Extreme[] = [];
  const hidden: Node[] = [];
  // the fact's columns that place a row in its group (or leave it out), for netting each extreme's values
  const placing = placingColumns(s, rewritten, fact, aliases);
  // (every aggregate reads the fact: checked above)
  const extremeColumns = (rewritten as { marker?: { fn: string; column?: string } }[])
    .filter((r) => r.marker?.fn === 'min' || r.marker?.fn === 'max')
    .map((r) => r.marker!.column!);
  const nets = placing !== undefined && extremeColumns.length > 0 ? extremeColumns : undefined;
  const targetList = rewritten.map((r) => {
    const marker = (r as { marker?: { fn: string; args: unknown[] } }).marker;
    const rt = (r as { ResTarget: Node }).ResTarget;
    if (!marker) return { ResTarget: rt };
    const name = String(rt['name']);
    // the distinct count's delta comes from the hidden table (apply_view.sql): 0 until then; an average
    // is set from the group's sum and count (deltaStatements)
    if (name === distinct?.column || averages.some((a) => a.column === name))
      return { ResTarget: { name, val: ZERO } };
    if (marker.fn === 'min' || marker.fn === 'max') {
      const i = extremes.length;
      const removed = `mvr_removed_${i}`;
      const netted = (v: 1 | -1): Node =>
        nets ? { BoolExpr: { boolop: 'AND_EXPR', args: [signIs(v), netOf(fact, i, v)] } } : signIs(v);
      extremes.push({ column: name, fn: marker.fn, removed });
      hidden.push({ ResTarget: { name: removed, val: agg(marker.fn, marker.args, netted(-1)) } });
      return { ResTarget: { name, val: agg(marker.fn, marker.args, netted(1)) } };
    }
    const val =
      marker.fn === 'count' && marker.args.length === 0
        ? agg('sum', [sign])
        : marker.fn === 'count'
          ? agg('sum', [sign], { NullTest: { arg: marker.args[0], nulltesttype: 'IS_NOT_NULL' } })
          : agg('sum', [
              { A_Expr: { kind: 'AEXPR_OP', name: [str('*')], lexpr: marker.args[0], rexpr: sign } },
            ]);
    return { ResTarget: { name, val } };
  });
  const select = structuredClone({
    SelectStmt: { ...s, targetList: [...targetList, ...hidden] },
  }) as Node;
  // the fact read from its batch (with each extreme's net count of its value beside each row, when it has extremes)
  walk((select as { SelectStmt: Node }).SelectStmt['fromClause'], (type, f, node) => {
    if (type !== 'RangeVar' || f['schemaname'] !== factSource.schema || f['relname'] !== factSource.name)
      return;
    const batch = rangeVar('pg_temp', `mvr_b_${factSource.oid}`, nets ? BATCH_ALIAS : fact);
    delete node['RangeVar'];
    Object.assign(node, nets ? rangeSubselect(netted(batch, placing!, nets), fact) : batch);
  });
  return {
    fact: factSource.oid,
    countColumn,
    select,
    extremes,
    averages,
    ...(distinct && {
      distinct: {
        column: distinct.column,
        valueType: distinct.type,
        batch: multisetSelect(select, rewritten, distinct.arg, agg('sum', [sign]), true),
        full: multisetSelect({ SelectStmt: s }, rewritten, distinct.arg, { FuncCall: COUNT_STAR }, false),
        probe: probeSelect(s, rewritten, distinct.arg),
        ...probeColumnsOf(rewritten, distinct.arg, fact, aliases),
      },
    }),
  };
}

/** The alias of the batch inside the netted subselect (netted()). */
const BATCH_ALIAS = 'mvr_b';

/**
 * `<alias>.mvr_net_<i> > 0` (v 1) or `< 0` (v -1): the batch adds more images of the row's value of extreme
 * i than it takes away, or fewer.
 */
function netOf(alias: string, i: number, v: 1 | -1): Node {
  return {
    A_Expr: {
      kind: 'AEXPR_OP',
      name: [str(v === 1 ? '>' : '<')],
      lexpr: colRef(alias, `mvr_net_${i}`),
      rexpr: { A_Const: { ival: {} } },
    },
  };
}

/**
 * The batch with, for each extreme i over column nets[i], `mvr_net_<i>`: the sum of the signs of the images
 * that agree with the row on the placing columns and on that column, so the same group (same placing
 * columns, same dimension rows in the apply's snapshot) and value. Net 0: the group holds that value as
 * often after the batch as before, so it neither loses nor gains it (an UPDATE of another column: the old
 * and the new image alike in those columns; a row added and removed again). Only a value with a net below
 * 0 may have left the group's extreme (recomputed when it reaches it), only one above 0 is in it now.
 * Finer than the group (a value moved between two rows of one group counts as lost): never less safe.
 */
function netted(batch: Node, placing: readonly string[], nets: readonly string[]): Node {
  const col = (c: string): Node => colRef(BATCH_ALIAS, c);
  return {
    SelectStmt: {
      targetList: [
        { ResTarget: { val: { ColumnRef: { fields: [str(BATCH_ALIAS), { A_Star: {} }] } } } },
        ...nets.map((c, i) => ({
          ResTarget: {
            name: `mvr_net_${i}`,
            val: {
              FuncCall: {
                funcname: [str('sum')],
                args: [col('mvr_sign')],
                over: { partitionClause: [...placing, c].map(col), frameOptions: FRAME_DEFAULT },
                funcformat: 'COERCE_EXPLICIT_CALL',
              },
            },
          },
        })),
      ],
      fromClause: [batch],
      limitOption: 'LIMIT_OPTION_DEFAULT',
      op: 'SETOP_NONE',
    },
  };
}

/** PostgreSQL's default window frame (FRAMEOPTION_DEFAULTS): with no ORDER BY, the whole partition. */
const FRAME_DEFAULT = 1058;

/**
 * The fact's columns that decide a row's group and whether it counts at all: those the keys, the WHERE,
 * the join conditions and the GROUP BY read. Undefined when one of those reads the fact otherwise than
 * by a column (a whole-row reference, a join's USING list): then nothing is netted.
 */
function placingColumns(
  s: Node,
  targets: Node[],
  fact: string | undefined,
  aliases: ReadonlyMap<string, Source>,
): string[] | undefined {
  if (fact === undefined) return undefined;
  const keys = targets.filter((t) => !(t as { marker?: unknown }).marker).map((t) => nodeOf(t)![1]['val']);
  const out = new Set<string>();
  let whole = false;
  walk([keys, s['whereClause'], s['fromClause'], s['groupClause']], (type, f, node) => {
    // JOIN ... USING names its columns without a relation
    if (type === 'JoinExpr' && (f['usingClause'] || f['isNatural'])) whole = true;
    if (type !== 'ColumnRef') return;
    const ref = qualified(node) ?? bare(node, aliases);
    // a reference it cannot place (a whole row, an unqualified name beside several relations) nets nothing
    if (!ref || !aliases.has(ref[0])) whole = true;
    else if (ref[0] === fact) out.add(ref[1]);
    return false;
  });
  return whole ? undefined : [...out];
}

/** The fact's columns the keys and `arg` read, when each is a column of the fact (`alias`) itself. */
function probeColumnsOf(
  targets: Node[],
  arg: Node,
  alias: string,
  aliases: ReadonlyMap<string, Source>,
): { probeColumns: string[] } | Record<string, never> {
  const keys = targets.filter((t) => !(t as { marker?: unknown }).marker).map((t) => nodeOf(t)![1]['val']);
  const out: string[] = [];
  for (const v of [...keys, arg]) {
    const ref = qualified(v) ?? bare(v, aliases);
    if (!ref || ref[0] !== alias) return {};
    out.push(ref[1]);
  }
  return { probeColumns: out };
}

/**
 * DistinctPlan.probe: the fact's rows of the group and value of the outer PROBE_ALIAS row, under `s`'s
 * WHERE, counted. The keys' expressions and `arg` compared with `=`, the equality GROUP BY and DISTINCT
 * use for these types (a NULL key or value is never probed: the batch leaves them out).
 */
function probeSelect(s: Node, targets: Node[], arg: Node): Node {
  const keys = targets.filter((t) => !(t as { marker?: unknown }).marker).map((t) => nodeOf(t)![1]);
  const eq = (l: unknown, col: string): Node => ({
    A_Expr: { kind: 'AEXPR_OP', name: [str('=')], lexpr: l, rexpr: colRef(PROBE_ALIAS, col) },
  });
  const conditions = [
    ...(s['whereClause'] ? [s['whereClause']] : []),
    ...keys.map((k) => eq(k['val'], String(k['name']))),
    eq(arg, 'mvr_value'),
  ];
  return structuredClone({
    SelectStmt: {
      targetList: [{ ResTarget: { val: { FuncCall: COUNT_STAR } } }],
      fromClause: s['fromClause'],
      whereClause: { BoolExpr: { boolop: 'AND_EXPR', args: conditions } },
      limitOption: 'LIMIT_OPTION_DEFAULT',
      op: 'SETOP_NONE',
    },
  }) as Node;
}

/** An aggregate's argument without the parser's positions, to compare two of them. */
const argText = (args: unknown[]): string =>
  JSON.stringify(args, (k, v: unknown) => (k === 'location' ? undefined : v));

/**
 * Each avg(arg) column of the view with its sum(arg) column and a count of arg's rows: count(arg), or the
 * view's count(*) (avg and sum qualify only for NOT NULL columns); undefined when one lacks either.
 */
function averagesOf(targets: Node[], countStar: string | undefined): Average[] | undefined {
  type Marked = { ResTarget: Node; marker?: { fn: string; args: unknown[] } };
  const marked = (targets as Marked[]).filter((t) => t.marker);
  const find = (fn: string, args: unknown[]) =>
    marked.find((t) => t.marker!.fn === fn && argText(t.marker!.args) === argText(args));
  const out: Average[] = [];
  for (const t of marked) {
    if (t.marker!.fn !== 'avg') continue;
    const sum = find('sum', t.marker!.args);
    if (!sum) return undefined;
    const count = find('count', t.marker!.args);
    const countName = count ? String(count.ResTarget['name']) : countStar;
    if (countName === undefined) return undefined;
    out.push({ column: String(t.ResTarget['name']), sum: String(sum.ResTarget['name']), count: countName });
  }
  return out;
}

/** `0::bigint`, the distinct column's place in the delta. */
const ZERO: Node = {
  TypeCast: {
    arg: { A_Const: { ival: {} } },
    typeName: { names: [str('pg_catalog'), str('int8')], typemod: -1 },
  },
};
const COUNT_STAR: Node = { funcname: [str('count')], agg_star: true, funcformat: 'COERCE_EXPLICIT_CALL' };

/**
 * The multiset of a count(DISTINCT arg) view (DistinctPlan): `top`'s keys, arg and `n` per group and value,
 * its WHERE with NULL keys and values left out; with `net`, only where n is not 0.
 */
function multisetSelect(top: Node, targets: Node[], arg: Node, n: Node, net: boolean): Node {
  const s = structuredClone(nodeOf(top)![1]);
  const keys = targets.filter((t) => !(t as { marker?: unknown }).marker).map((t) => nodeOf(t)![1]);
  const notNull = (v: unknown): Node => ({ NullTest: { arg: v, nulltesttype: 'IS_NOT_NULL' } });
  const conditions = [
    ...(s['whereClause'] ? [s['whereClause']] : []),
    ...keys.map((k) => notNull(k['val'])),
    notNull(arg),
  ];
  return {
    SelectStmt: {
      ...s,
      targetList: [
        ...keys.map((k) => ({ ResTarget: { name: k['name'], val: k['val'] } })),
        { ResTarget: { name: 'mvr_value', val: arg } },
        { ResTarget: { name: 'mvr_n', val: n } },
      ],
      whereClause: { BoolExpr: { boolop: 'AND_EXPR', args: conditions } },
      groupClause: [...(s['groupClause'] as unknown[]), arg],
      havingClause: net
        ? { A_Expr: { kind: 'AEXPR_OP', name: [str('<>')], lexpr: n, rexpr: { A_Const: { ival: {} } } } }
        : undefined,
    },
  };
}
