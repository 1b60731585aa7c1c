import pg from 'pg';

/**
 * Invariant A of routines/apply_view.sql, checked while writers and applies run: an incremental view's
 * table equals its definition evaluated in its applied snapshot (incremental.applied_snapshot).
 *
 * PostgreSQL cannot evaluate a query in an old snapshot, so A is checked where that snapshot is the current
 * one: in the transaction that stores it. A row trigger on mvrefresh.incremental (UPDATE OF
 * applied_snapshot: an apply, or the population at watch time) compares, in that transaction and so in
 * that snapshot, the table with the definition (EXCEPT ALL both ways), and a count(DISTINCT) view's multiset
 * (mvrefresh.distinct_<view id>) with its own (the statement that rebuilds it), and records the outcome and a digest
 * of the table in public.model_applies, which commits or rolls back with the apply. It also records as a
 * problem an applied snapshot that is not the transaction's own (A would then be about another snapshot),
 * and one that does not contain the previous applied snapshot (E: each write consumed once). Between
 * applies only an apply changes the table (the guard) and the snapshot, so A holds at any later moment iff
 * the table's digest still equals the one recorded for its current applied snapshot: checkApplied()
 * compares them in one statement, so in one snapshot (an apply's table, snapshot and record commit
 * together).
 */
export const APPLIED_INVARIANT_SQL = `
CREATE TABLE public.model_applies (
    id bigserial PRIMARY KEY,
    view_id integer NOT NULL,
    snap text NOT NULL,
    kind text,
    digest text,
    problem text
);
CREATE FUNCTION public.model_check_apply() RETURNS trigger
    LANGUAGE plpgsql
AS $$
DECLARE
    v mvrefresh.view_state;
    rel text;
    extra text;
    missing text;
    problem text;
    digest text;
    multiset text;
BEGIN
    SELECT * INTO v FROM mvrefresh.view_state s WHERE s.id = NEW.view_id;
    -- while building, the table stands beside the view (src/incremental/convert.ts, step B); the
    -- registration (step A) sets a snapshot before that table exists: nothing to compare yet
    rel := pg_catalog.format('%I.%I', v.view_schema,
                             CASE WHEN NEW.state = 'active' THEN v.view_name
                                  ELSE v.view_name || '__mvr_inc_' || NEW.view_id END);
    IF pg_catalog.to_regclass(rel) IS NULL THEN
        RETURN NULL;
    END IF;
    IF pg_catalog.current_setting('transaction_isolation') <> 'repeatable read' THEN
        problem := 'applied snapshot stored at ' || pg_catalog.current_setting('transaction_isolation');
    ELSIF pg_catalog.pg_current_snapshot()::text <> NEW.applied_snapshot::text THEN
        problem := pg_catalog.format('applied snapshot %s is not the transaction''s snapshot %s',
                                     NEW.applied_snapshot, pg_catalog.pg_current_snapshot());
    ELSIF OLD.state = 'active' AND NEW.state = 'active' AND OLD.applied_snapshot IS NOT NULL AND (
            pg_catalog.pg_snapshot_xmax(NEW.applied_snapshot) < pg_catalog.pg_snapshot_xmax(OLD.applied_snapshot)
            OR EXISTS (SELECT FROM pg_catalog.pg_snapshot_xip(NEW.applied_snapshot) x
                        WHERE x < pg_catalog.pg_snapshot_xmax(OLD.applied_snapshot)
                          AND pg_catalog.pg_visible_in_snapshot(x, OLD.applied_snapshot))) THEN
        problem := pg_catalog.format('applied snapshot %s does not contain the previous one %s (E)',
                                     NEW.applied_snapshot, OLD.applied_snapshot);
    END IF;
    EXECUTE pg_catalog.format(
        'SELECT pg_catalog.string_agg(t::text, '' '' ORDER BY t::text) FROM (SELECT * FROM %s EXCEPT ALL SELECT * FROM (%s) q) t',
        rel, NEW.definition) INTO extra;
    EXECUTE pg_catalog.format(
        'SELECT pg_catalog.string_agg(t::text, '' '' ORDER BY t::text) FROM (SELECT * FROM (%s) q EXCEPT ALL SELECT * FROM %s) t',
        NEW.definition, rel) INTO missing;
    IF extra IS NOT NULL OR missing IS NOT NULL THEN
        problem := pg_catalog.concat_ws('; ', problem, pg_catalog.format(
            'A: the table differs from its definition in the applied snapshot %s (last_apply_kind %s): rows the definition does not give: %s; rows missing: %s',
            NEW.applied_snapshot, NEW.last_apply_kind, pg_catalog.left(extra, 400), pg_catalog.left(missing, 400)));
    END IF;
    -- the multiset's definition: the SELECT of the statement that rebuilds it (analyze.ts, DistinctStatements)
    multiset := pg_catalog.regexp_replace(NEW.statements #>> '{delta,distinct,full}',
                                          '^INSERT INTO pg_temp\\.mvrefresh_dfull \\([^)]*\\) ', '');
    IF multiset IS NOT NULL THEN
        EXECUTE pg_catalog.format(
            'SELECT pg_catalog.string_agg(t::text, '' '' ORDER BY t::text) FROM ((TABLE %s EXCEPT ALL %s) UNION ALL (%s EXCEPT ALL TABLE %s)) t',
            NEW.statements #>> '{delta,distinct,table}', multiset, multiset, NEW.statements #>> '{delta,distinct,table}')
            INTO extra;
        IF extra IS NOT NULL THEN
            problem := pg_catalog.concat_ws('; ', problem, pg_catalog.format(
                'A: the multiset differs from its definition in the applied snapshot %s (last_apply_kind %s): %s',
                NEW.applied_snapshot, NEW.last_apply_kind, pg_catalog.left(extra, 400)));
        END IF;
    END IF;
    EXECUTE pg_catalog.format(
        'SELECT pg_catalog.md5(COALESCE(pg_catalog.string_agg(t::text, E''\\n'' ORDER BY t::text), '''')) FROM %s t', rel)
        INTO digest;
    INSERT INTO public.model_applies (view_id, snap, kind, digest, problem)
    VALUES (NEW.view_id, NEW.applied_snapshot::text,
            CASE WHEN NEW.state = 'active' THEN NEW.last_apply_kind ELSE 'populated' END, digest, problem);
    RETURN NULL;
END
$$;
CREATE TRIGGER model_check_apply AFTER UPDATE OF applied_snapshot ON mvrefresh.incremental
    FOR EACH ROW WHEN (NEW.applied_snapshot IS NOT NULL) EXECUTE FUNCTION public.model_check_apply();
`;

/** Problems the trigger recorded after `afterId`, and the highest id seen. */
export async function appliedProblems(
  client: pg.ClientBase,
  afterId: number,
): Promise<{ lastId: number; problems: string[] }> {
  const { rows } = await client.query<{
    id: string;
    view: string | null;
    kind: string | null;
    problem: string | null;
  }>(
    `SELECT a.id, v.view_name AS view, a.kind, a.problem FROM public.model_applies a
       LEFT JOIN mvrefresh.view_state v ON v.id = a.view_id WHERE a.id > $1 ORDER BY a.id`,
    [afterId],
  );
  return {
    lastId: rows.reduce((m, r) => Math.max(m, Number(r.id)), afterId),
    problems: rows
      .filter((r) => r.problem !== null)
      .map((r) => `${r.view ?? '?'} (${r.kind ?? '?'}): ${r.problem}`),
  };
}

/**
 * Each active incremental view of `views` (unqualified names in public) whose table is not the one its
 * applied snapshot's check recorded (changed since, or a snapshot no check saw), with the reason.
 */
export async function appliedDrift(client: pg.ClientBase, views: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  for (const view of views) {
    const t = pg.escapeIdentifier(view);
    const { rows } = await client.query<{ snap: string; digest: string; recorded: string | null }>(
      `SELECT i.applied_snapshot::text AS snap,
              (SELECT md5(COALESCE(string_agg(t::text, E'\\n' ORDER BY t::text), '')) FROM public.${t} t) AS digest,
              (SELECT a.digest FROM public.model_applies a WHERE a.view_id = i.view_id AND a.snap = i.applied_snapshot::text
                ORDER BY a.id DESC LIMIT 1) AS recorded
         FROM mvrefresh.incremental i JOIN mvrefresh.view_state s ON s.id = i.view_id
        WHERE s.view_schema = 'public' AND s.view_name = $1 AND i.state = 'active'`,
      [view],
    );
    const row = rows[0];
    if (!row) continue;
    if (row.recorded === null)
      out.push(`${view}: applied snapshot ${row.snap} was stored without a check of its table`);
    else if (row.recorded !== row.digest)
      out.push(
        `${view}: the table changed since the apply that stored ${row.snap}, without a new applied snapshot`,
      );
  }
  return out;
}
