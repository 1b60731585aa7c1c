import pg from 'pg';

/**
 * The write-side protocol's invariants, checked while writers and cycles run (the model check and the
 * gated interleavings), not only once everything has quiesced: a repair path (the drift check's write
 * counters) can make a lost write converge before an end-state comparison, and a write lost for a while
 * is a broken guarantee all the same.
 *
 * Coverage: every committed write is covered. A watched view whose rows differ from its query is dirty by
 * the protocol's own definition (mvrefresh.status.dirty: view marks, table marks of its sources, an
 * unfinished cycle, an incremental view's committed log rows its applied snapshot does not show), or a
 * view it reads is. Evaluated in one statement, so in one snapshot: a cycle's
 * refresh and its done_gen commit together, and so do a writer's rows and its mark.
 *
 * Remembered marks: a writer session that would skip its next write to a table (a memo it holds, honest or
 * forged) while the table has no mark leaves that write uncovered. Probed by behaviour, whatever the
 * memo's format: in a REPEATABLE READ transaction that is rolled back, the session statement-triggers the
 * table with a write of no rows (`DELETE ... WHERE false`, which changes no statistics) after taking an
 * xid, then looks for a mark of the table in the same snapshot. A memo the trigger honours (step 1 of
 * routines/mark_table.sql comes before the isolation level matters) adds no mark; at REPEATABLE READ a
 * trigger that does not honour it adds one. A mark deleted before the snapshot was deleted by a clear that
 * changed what a memo must match (a later clear cannot delete what the snapshot shows), so no correct
 * protocol fails this probe; a clear that deletes a mark without that fails it.
 */
export interface CheckedView {
  /** Unqualified name, in the public schema. */
  name: string;
  /** The view's defining query, in terms of base tables (for a view on views: their queries). */
  query: string;
  /** Watched views this one reads (transitively): their dirtiness covers it too. */
  reads?: string[];
}

export interface ViewCheck {
  view: string;
  /** The view is watched now (unwatched views are not judged). */
  watched: boolean;
  differs: boolean;
  /** Dirty, or a view it reads is. */
  covered: boolean;
}

/** Each view's state in one snapshot: watched, equal to its query or not, covered by dirtiness. */
export async function checkViews(client: pg.ClientBase, views: readonly CheckedView[]): Promise<ViewCheck[]> {
  const cols = views.map((v, i) => {
    const t = pg.escapeIdentifier(v.name);
    const p = `$${i + 1}::text[]`;
    return `ARRAY[
      EXISTS (SELECT FROM mvrefresh.status s WHERE s.view_schema = 'public' AND s.view_name = (${p})[1]),
      EXISTS ((TABLE ${t}) EXCEPT ALL (${v.query})) OR EXISTS ((${v.query}) EXCEPT ALL (TABLE ${t})),
      EXISTS (SELECT FROM mvrefresh.status s WHERE s.view_schema = 'public' AND s.dirty AND s.view_name = ANY (${p}))
    ] AS c${i}`;
  });
  const { rows } = await client.query<Record<string, boolean[]>>(
    `SELECT ${cols.join(',\n')}`,
    views.map((v) => [v.name, ...(v.reads ?? [])]),
  );
  const row = rows[0]!;
  return views.map((v, i) => {
    const [watched, differs, covered] = row[`c${i}`]!;
    return { view: v.name, watched: watched!, differs: differs!, covered: covered! };
  });
}

/** Watched views that differ from their query while nothing marks them dirty. */
export function uncovered(checks: readonly ViewCheck[], ignore: ReadonlySet<string> = new Set()): string[] {
  return checks.filter((c) => c.watched && c.differs && !c.covered && !ignore.has(c.view)).map((c) => c.view);
}

/**
 * The tables (of `tables`, unqualified names) whose next write by this session would be skipped although
 * no mark of the table exists. Only sources of a watched view with an enabled mvrefresh_mark are probed (a
 * write to a table no view reads is nobody's loss; a table that only incremental views read has no mark
 * step, its views being due from its log, which the coverage invariant judges) (a memo's
 * setting cannot be listed: placeholder settings are left out of pg_settings, and its name is the
 * trigger's business). Must be called on an idle session (no open transaction); through a transaction
 * pooler it probes the server session the transaction lands on.
 */
export async function skipsWithoutMark(client: pg.ClientBase, tables: readonly string[]): Promise<string[]> {
  if (tables.length === 0) return [];
  // one round trip (a simple query of several statements): the probe runs after every action of the model.
  // The tables are locked before the snapshot is taken (LOCK takes none): a trigger that the drift check
  // drops (DROP TRIGGER waits for the lock) cannot vanish between the snapshot that still lists it and the
  // DELETE that would fire it, which would read as a skip
  const names = tables.map((t) => pg.escapeLiteral(t)).join(', ');
  let results: pg.QueryResult<{ bare: string[] }>[];
  try {
    results = (await client.query(
      `BEGIN ISOLATION LEVEL REPEATABLE READ;
     LOCK TABLE ${tables.map((t) => pg.escapeIdentifier(t)).join(', ')} IN ROW EXCLUSIVE MODE;
     SELECT pg_current_xact_id();
     ${tables.map((t) => `DELETE FROM ${pg.escapeIdentifier(t)} WHERE false;`).join('\n')}
     SELECT coalesce(array_agg(t.name ORDER BY t.name), '{}') AS bare
       FROM unnest(ARRAY[${names}]::text[]) AS t(name)
       JOIN pg_class c ON c.oid = to_regclass(pg_catalog.quote_ident(t.name))
      WHERE EXISTS (SELECT FROM pg_trigger tg WHERE tg.tgrelid = c.oid
                      AND tg.tgname = 'mvrefresh_mark' AND tg.tgenabled <> 'D')
        AND EXISTS (SELECT FROM mvrefresh.view_state v WHERE c.oid = ANY (v.source_relids))
        AND NOT EXISTS (SELECT FROM mvrefresh.table_marks m WHERE m.relid = c.oid);
     ROLLBACK`,
    )) as unknown as pg.QueryResult<{ bare: string[] }>[];
  } catch (err) {
    // a failed statement leaves the transaction open and aborted
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
  return results.at(-2)!.rows[0]!.bare;
}
