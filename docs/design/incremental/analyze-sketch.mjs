// Sketch of the watch-time analyzer, validated on the views of incremental.md: reads the view's rewrite rule
// (pg_rewrite.ev_action, the analyzed Query tree PostgreSQL itself stores) and the catalog, and prints each
// view's class or the clause that forces a full refresh. Usage: node analyze-sketch.mjs <database url>
import pg from 'pg';
import process from 'node:process';
import console from 'node:console';

// pg_node_tree text -> JS: {NODE :field value ...} objects, ( ) lists, <> null, "strings", atoms
function parseNodeTree(text) {
  const toks = text.match(/"(?:[^"\\]|\\.)*"|[{}()]|<>|[^\s{}()]+/g) ?? [];
  let i = 0;
  const value = () => {
    const t = toks[i++];
    if (t === '{') {
      const node = { _type: toks[i++] };
      while (toks[i] !== '}') {
        const key = toks[i++].slice(1);
        node[key] = toks[i] === '}' || toks[i]?.startsWith(':') ? null : value();
        if (key === 'constvalue' && node[key] !== null && toks[i] === '[') while (toks[i++] !== ']');
      }
      i++;
      return node;
    }
    if (t === '(') {
      const list = [];
      while (toks[i] !== ')') list.push(value());
      i++;
      return list;
    }
    if (t === '<>') return null;
    if (t.startsWith('"')) return t.slice(1, -1).replace(/\\(.)/g, '$1');
    if (/^\d+$/.test(t) && toks[i] === '[') {
      while (toks[i++] !== ']');
      return Number(t);
    } // Datum
    return t;
  };
  return value();
}

function* walk(n) {
  if (Array.isArray(n)) for (const x of n) yield* walk(x);
  else if (n && typeof n === 'object') {
    yield n;
    for (const [k, v] of Object.entries(n)) if (k !== '_type') yield* walk(v);
  }
}

const DELTA_AGGS = new Set(['count', 'sum', 'avg']);
const FLOAT_TYPES = new Set(['real', 'double precision']);

async function classify(client, relid, depth = 0) {
  const { rows } = await client.query(
    `SELECT ev_action FROM pg_rewrite WHERE ev_class = $1 AND rulename = '_RETURN'`,
    [relid],
  );
  const q = parseNodeTree(rows[0].ev_action)[0];
  const full = [];
  const notes = [];
  if (q.hasWindowFuncs === 'true') full.push('window function');
  if (q.limitCount || q.limitOffset) full.push('LIMIT/OFFSET');
  if (q.hasRecursive === 'true') full.push('WITH RECURSIVE');
  if (q.hasTargetSRFs === 'true') full.push('set-returning function in the select list');
  if (q.setOperations) full.push('UNION/INTERSECT/EXCEPT');
  if (q.hasSubLinks === 'true') full.push('subquery expression (EXISTS/IN/scalar subquery)');
  if (q.hasDistinctOn === 'true') full.push('DISTINCT ON');
  const rels = [];
  for (const rte of q.rtable.slice(0)) {
    if (
      (rte.rtekind === '0' && rte.inFromCl === 'true') ||
      (rte.rtekind === '0' &&
        rte.requiredPerms !== '0' &&
        rte.eref.aliasname !== 'old' &&
        rte.eref.aliasname !== 'new')
    ) {
      rels.push(rte);
      if (rte.tablesample) full.push('TABLESAMPLE');
    }
    if (rte.rtekind === '2' && rte.jointype === '2') full.push('FULL JOIN');
    if (rte.rtekind === '5') full.push('function in FROM');
    if (rte.rtekind === '1') notes.push('subquery in FROM');
  }
  const relids = rels.map((r) => r.relid);
  if (new Set(relids).size !== relids.length) full.push('the same table twice (self-join)');
  for (const r of rels) {
    if (r.relkind === 'v') {
      const inner = await classify(client, r.relid, depth + 1);
      if (inner.full.length) full.push(...inner.full.map((f) => `${f} in plain view ${inner.name}`));
      else notes.push(`reads plain view ${inner.name} (inlined: ${inner.cls})`);
    } else if (r.relkind === 'm') full.push('reads a materialized view (REFRESH fires no trigger)');
    else if (r.relkind === 'f') full.push('reads a foreign table');
  }
  // every function the query calls, with its volatility
  const fnOids = new Set();
  for (const n of walk(q)) {
    if (n._type === 'FUNCEXPR') fnOids.add(n.funcid);
    if (n._type === 'OPEXPR' || n._type === 'DISTINCTEXPR' || n._type === 'NULLIFEXPR')
      fnOids.add(n.opfuncid);
    if (n._type === 'SCALARARRAYOPEXPR') fnOids.add(n.opfuncid);
  }
  if (fnOids.size) {
    const { rows: fns } = await client.query(
      `SELECT p.oid::regprocedure::text AS name, provolatile FROM pg_proc p WHERE oid = ANY($1::oid[])`,
      [[...fnOids]],
    );
    for (const f of fns) if (f.provolatile === 'v') full.push(`volatile function ${f.name}`);
    for (const f of fns)
      if (f.provolatile === 's')
        notes.push(`stable function ${f.name} (clock/settings: also refresh by interval)`);
  }
  let cls;
  const aggs = [...walk(q.targetList)].filter((n) => n._type === 'AGGREF');
  if (q.hasAggs === 'true' || (q.groupClause && q.groupClause.length)) {
    const { rows: an } = await client.query(
      `SELECT a.oid, p.proname, format_type(p.prorettype, NULL) AS rettype FROM pg_proc p JOIN unnest($1::oid[]) a(oid) ON a.oid = p.oid`,
      [aggs.map((a) => a.aggfnoid)],
    );
    const byOid = new Map(an.map((r) => [String(r.oid), r]));
    const kinds = aggs.map((a) => {
      const p = byOid.get(a.aggfnoid);
      if (a.aggdistinct) return `${p.proname}(DISTINCT):recompute`;
      if (a.aggfilter) return `${p.proname}(FILTER):delta`;
      if (DELTA_AGGS.has(p.proname))
        return FLOAT_TYPES.has(p.rettype) ? `${p.proname}(float):recompute` : `${p.proname}:delta`;
      if (p.proname === 'min' || p.proname === 'max')
        return `${p.proname}:insert-delta, recompute group on delete`;
      return `${p.proname}:recompute`;
    });
    const allDelta = kinds.every((k) => k.endsWith(':delta'));
    cls =
      `group-by [${kinds.join(', ')}]` +
      (q.havingQual
        ? ' + HAVING: recompute affected groups'
        : allDelta
          ? ': delta'
          : ': recompute affected groups');
  } else if (q.distinctClause && q.distinctClause.length) cls = 'DISTINCT: recompute by all columns';
  else {
    const outer = q.rtable.filter((r) => r.rtekind === '2' && (r.jointype === '1' || r.jointype === '3'));
    cls = outer.length
      ? 'select-project-join with outer join: row key from the preserved side'
      : "select-project-join: row key from the sources' primary keys";
  }
  const { rows: nm } = await client.query(`SELECT $1::oid::regclass::text AS name`, [relid]);
  return { name: nm[0].name, cls, full, notes };
}

const client = new pg.Client(process.argv[2]);
await client.connect();
const { rows } = await client.query(
  `SELECT oid FROM pg_class WHERE relkind = 'm' AND relnamespace = 'public'::regnamespace ORDER BY relname`,
);
for (const { oid } of rows) {
  const r = await classify(client, oid);
  console.log(
    `${r.name.padEnd(14)} ${r.full.length ? 'FULL REFRESH: ' + r.full.join('; ') : 'INCREMENTAL: ' + r.cls}${r.notes.length ? '  [' + r.notes.join('; ') + ']' : ''}`,
  );
}
await client.end();
