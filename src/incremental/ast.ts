/**
 * PostgreSQL's own parser (libpg-query) and a deparser, for the one thing the analyzer generates from a
 * view's definition: the query that lists the keys a batch of changes may affect (analyze.ts). The node
 * tree is PostgreSQL's raw parse tree as JSON: `{ NodeType: { field: value } }`.
 */
import lpq from 'libpg-query';
import { deparse as deparseAst } from 'pgsql-deparser';

export type Node = Record<string, unknown>;

/** The statement list of one parsed text. */
export interface ParseResult {
  version: number;
  stmts: { stmt: Node }[];
}

export async function parse(sql: string): Promise<ParseResult> {
  return (await lpq.parse(sql)) as ParseResult;
}

export async function deparse(tree: ParseResult | Node): Promise<string> {
  return deparseAst(tree as never);
}

/** The node's type and fields, when `value` is a node. */
export function nodeOf(value: unknown): [string, Node] | undefined {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return undefined;
  const keys = Object.keys(value);
  if (keys.length !== 1) return undefined;
  const type = keys[0]!;
  if (!/^[A-Z]/.test(type)) return undefined;
  const fields = (value as Node)[type];
  return fields !== null && typeof fields === 'object' && !Array.isArray(fields)
    ? [type, fields as Node]
    : undefined;
}

/** Every node under `value` (itself included), depth first; `visit` returning false skips its children. */
export function walk(
  value: unknown,
  visit: (type: string, fields: Node, node: Node) => boolean | void,
): void {
  if (Array.isArray(value)) {
    for (const v of value) walk(v, visit);
    return;
  }
  if (value === null || typeof value !== 'object') return;
  const n = nodeOf(value);
  if (n && visit(n[0], n[1], value as Node) === false) return;
  for (const v of Object.values(n ? n[1] : (value as Node))) walk(v, visit);
}

/** The string values of a name list (`[{String: {sval}}]`). */
export function names(list: unknown): string[] {
  if (!Array.isArray(list)) return [];
  return list.map((item) => {
    const n = nodeOf(item);
    return n && n[0] === 'String' ? String(n[1]['sval'] ?? '') : '*';
  });
}

export const str = (sval: string): Node => ({ String: { sval } });

/** A relation reference as the parser builds it. */
export function rangeVar(schema: string, name: string, alias: string): Node {
  return {
    RangeVar: {
      schemaname: schema,
      relname: name,
      inh: true,
      relpersistence: 'p',
      alias: { aliasname: alias },
    },
  };
}

/** `(query) AS alias` in a FROM list. */
export function rangeSubselect(query: Node, alias: string): Node {
  return { RangeSubselect: { subquery: query, alias: { aliasname: alias } } };
}

/** `SELECT <columns> FROM <rel>` as a SelectStmt node. */
export function selectColumns(columns: readonly string[], from: Node): Node {
  return {
    SelectStmt: {
      targetList: columns.map((c) => ({ ResTarget: { val: { ColumnRef: { fields: [str(c)] } } } })),
      fromClause: [from],
      limitOption: 'LIMIT_OPTION_DEFAULT',
      op: 'SETOP_NONE',
    },
  };
}

/** `a UNION ALL b` of two SelectStmt nodes. */
export function unionAll(a: Node, b: Node): Node {
  return {
    SelectStmt: {
      op: 'SETOP_UNION',
      all: true,
      larg: (a as { SelectStmt: Node }).SelectStmt,
      rarg: (b as { SelectStmt: Node }).SelectStmt,
      limitOption: 'LIMIT_OPTION_DEFAULT',
    },
  };
}
