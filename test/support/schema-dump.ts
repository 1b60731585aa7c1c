import type pg from 'pg';

/**
 * A deterministic text dump of the mvrefresh schema, from the catalogs, identical on every supported
 * server version: tables with columns and constraints, indexes, views' columns, routines by signature,
 * the hash of every routine file as applied (so a changed body shows in review), the hash of each PL/pgSQL
 * and SQL body as the server stores it (SQL-standard bodies and views are deparsed differently across
 * versions: the file hashes cover them), the routines revoked from PUBLIC, and triggers on the schema's
 * tables (none).
 */
export async function dumpSchema(client: pg.ClientBase): Promise<string> {
  const sections: [string, string][] = [
    [
      'columns',
      `SELECT c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
              || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
              || CASE WHEN a.attidentity <> '' THEN ' identity' ELSE '' END
              || COALESCE(' default ' || pg_get_expr(d.adbin, d.adrelid), '') AS line
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
         LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE c.relnamespace = 'mvrefresh'::regnamespace AND c.relkind IN ('r', 'v') AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY c.relname, a.attnum`,
    ],
    [
      'constraints',
      `SELECT c.relname || ' ' || con.conname || ' ' || pg_get_constraintdef(con.oid) AS line
         FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid
        WHERE c.relnamespace = 'mvrefresh'::regnamespace AND con.contype <> 'n' ORDER BY 1`,
    ],
    [
      'indexes',
      `SELECT pg_get_indexdef(i.indexrelid) AS line FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
        WHERE c.relnamespace = 'mvrefresh'::regnamespace ORDER BY 1`,
    ],
    [
      'table options',
      `SELECT relname || ' ' || array_to_string(reloptions, ',') AS line FROM pg_class
        WHERE relnamespace = 'mvrefresh'::regnamespace AND reloptions IS NOT NULL ORDER BY 1`,
    ],
    [
      'routines',
      `SELECT CASE p.prokind WHEN 'p' THEN 'procedure ' ELSE 'function ' END
              || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')'
              || CASE WHEN p.prokind = 'f' THEN ' returns ' || pg_get_function_result(p.oid) ELSE '' END
              || ' language ' || l.lanname || CASE WHEN p.prosecdef THEN ' security definer' ELSE '' END AS line
         FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
        WHERE p.pronamespace = 'mvrefresh'::regnamespace ORDER BY 1`,
    ],
    [
      'routine files applied (name, sha256)',
      `SELECT name || ' ' || sha256 AS line FROM mvrefresh.routines ORDER BY name`,
    ],
    [
      'routine bodies (md5 of the stored source)',
      `SELECT p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ') ' || md5(p.prosrc) AS line
         FROM pg_proc p WHERE p.pronamespace = 'mvrefresh'::regnamespace AND p.prosrc <> '' ORDER BY 1`,
    ],
    [
      'routines not executable by public',
      `SELECT p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')' AS line FROM pg_proc p
        WHERE p.pronamespace = 'mvrefresh'::regnamespace AND NOT has_function_privilege('public', p.oid, 'EXECUTE')
        ORDER BY 1`,
    ],
    [
      'triggers',
      `SELECT c.relname || ' ' || t.tgname AS line FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
        WHERE c.relnamespace = 'mvrefresh'::regnamespace AND NOT t.tgisinternal ORDER BY 1`,
    ],
  ];
  const out: string[] = [];
  for (const [title, query] of sections) {
    out.push(`-- ${title}`);
    for (const row of (await client.query<{ line: string }>(query)).rows) out.push(row.line);
  }
  return `${out.join('\n')}\n`;
}
