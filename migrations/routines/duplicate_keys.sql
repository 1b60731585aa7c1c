-- Why REFRESH ... CONCURRENTLY failed with 21000 ("new data ... contains duplicate rows without any null
-- columns", which names no row): the columns of the unique index that CONCURRENTLY could use, how many
-- distinct key values the view's query returns more than once, and the most times one is returned, as text
-- for the failure record: ' (duplicated keys on (region): 2 key values repeated, up to 3 times)'. Never a
-- value: the failure record is shown to whoever reads mvrefresh.status or the daemon's unauthenticated
-- /views, who may not read the view; the operator finds the values with the GROUP BY the text names. The
-- query is the view's own definition, so it costs about what the failed refresh did, once per failure.
-- p_limit is kept for the signature and unused. Returns '' when nothing is found or the query fails: the
-- original error stays what is recorded.
CREATE OR REPLACE FUNCTION mvrefresh.duplicate_keys(p_view regclass, p_limit integer DEFAULT 5)
    RETURNS text
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cols text;
    repeated bigint;
    most bigint;
BEGIN
    SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY k.ord) INTO cols
      FROM (SELECT i.indkey FROM pg_index i
             WHERE i.indrelid = p_view AND i.indisunique AND i.indisvalid
               AND i.indpred IS NULL AND i.indexprs IS NULL
             ORDER BY i.indexrelid LIMIT 1) ix
     CROSS JOIN LATERAL unnest(ix.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
      JOIN pg_attribute a ON a.attrelid = p_view AND a.attnum = k.attnum;
    IF cols IS NULL THEN
        RETURN '';
    END IF;
    -- pg_get_viewdef() qualifies every name that the pinned search_path does not show
    EXECUTE format('SELECT count(*), max(n)
                      FROM (SELECT count(*) AS n FROM (%s) q GROUP BY %s HAVING count(*) > 1) d',
                   rtrim(pg_get_viewdef(p_view), '; ' || chr(10)), cols)
       INTO repeated, most;
    IF repeated IS NULL OR repeated = 0 THEN
        RETURN '';
    END IF;
    RETURN format(' (duplicated keys on (%s): %s key %s repeated, up to %s times; GROUP BY %s HAVING count(*) > 1 on the view''s query lists them)',
                  cols, repeated, CASE WHEN repeated = 1 THEN 'value' ELSE 'values' END, most, cols);
EXCEPTION WHEN OTHERS THEN
    RETURN '';
END
$$;
