/**
 * Watch-time advice for an incremental view recomputed by key (no delta plan): every change a batch holds
 * makes the apply recompute its key from the definition. When the plan of recomputing one key reads a
 * large source whole (a sequential scan), each apply costs a scan of that table per batch, more than a
 * REFRESH saves; the user is told which table and which key columns an index should start with. The plan
 * is made as the apply makes it (random_page_cost as in apply_view.sql) for a key the view holds. Advice
 * only: a failure to plan (privileges, an empty view) gives none.
 */
import type pg from 'pg';
import { APPLY_RANDOM_PAGE_COST } from '../db/protocol.js';
import { qi, qname } from '../replace/plan.js';
import { incrementalSql } from './sql.js';
import type { Source } from './types.js';

/** A source this large read whole for one key is worth an index; smaller ones are cheap to scan. */
export const SCAN_HINT_MIN_ROWS = 10_000;

interface PlanNode {
  'Node Type'?: string;
  'Relation Name'?: string;
  Schema?: string;
  Plans?: PlanNode[];
}

function seqScans(node: PlanNode, out: { schema: string; name: string }[]): void {
  if (node['Node Type'] === 'Seq Scan' && node['Relation Name'] && node.Schema)
    out.push({ schema: node.Schema, name: node['Relation Name'] });
  for (const child of node.Plans ?? []) seqScans(child, out);
}

export async function recomputeHints(
  client: pg.ClientBase,
  view: { schema: string; name: string; definition: string; key: string[]; sources: Source[] },
): Promise<string[]> {
  const key = view.key.map(qi);
  await client.query('BEGIN');
  try {
    await client.query(incrementalSql.setSearchPath);
    await client.query(incrementalSql.applyPlanning, [APPLY_RANDOM_PAGE_COST]);
    // as text, bound back as text: the key's type needs no conversion through JavaScript values
    const sample = await client.query({
      text: incrementalSql.sampleKey(qname(view.schema, view.name), key),
      rowMode: 'array',
      types: { getTypeParser: () => (v: string) => v },
    });
    const values = sample.rows[0] as unknown[] | undefined;
    if (!values) return [];
    const { rows } = await client.query<{ 'QUERY PLAN': { Plan: PlanNode }[] }>(
      incrementalSql.explainRecompute(view.definition, key),
      values,
    );
    const scanned: { schema: string; name: string }[] = [];
    for (const p of rows[0]?.['QUERY PLAN'] ?? []) seqScans(p.Plan, scanned);
    const read = view.sources.filter((s) => scanned.some((x) => x.schema === s.schema && x.name === s.name));
    if (read.length === 0) return [];
    const { rows: sizes } = await client.query<{ oid: string; n: number }>(incrementalSql.tableRows, [
      read.map((s) => s.oid),
    ]);
    return read
      .map((s) => ({ s, n: sizes.find((r) => r.oid === s.oid)?.n ?? 0 }))
      .filter(({ n }) => n >= SCAN_HINT_MIN_ROWS)
      .map(
        ({ s, n }) =>
          `recomputing a key of ${view.schema}.${view.name} reads all of ${s.schema}.${s.name} (about ${Math.round(n).toLocaleString('en')} rows), ` +
          `so every apply scans it: an index on ${s.schema}.${s.name} starting with the column(s) the key (${view.key.join(', ')}) comes from lets it read only the changed keys' rows`,
      );
  } catch {
    return [];
  } finally {
    await client.query('ROLLBACK').catch(() => undefined);
  }
}
