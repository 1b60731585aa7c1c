-- Why REFRESH ... CONCURRENTLY failed with 21000 ("new data ... contains duplicate rows without any null
-- columns", which names no row): the first p_limit key values that the view's query returns more than
-- once, grouped by the columns of a unique index that CONCURRENTLY could use, as text for the failure
-- record: ' (duplicated keys: (region)=(eu) 2 times, ...)'. The query is the view's own definition, so it
-- costs about what the failed refresh did, once per failure. Values are cut to 60 characters. Returns ''
-- when nothing is found or the query fails: the original error stays what is recorded.
CREATE OR REPLACE FUNCTION mvrefresh.duplicate_keys(p_view regclass, p_limit integer DEFAULT 5)
    RETURNS text
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cols text;
    found text;
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
    EXECUTE format('SELECT string_agg(format(''(%%s)=%%s %%s times'', %L, left(k::text, 60), n), '', '')
                      FROM (SELECT ROW(%s) AS k, count(*) AS n FROM (%s) q
                             GROUP BY %s HAVING count(*) > 1 LIMIT %s) d',
                   cols, cols, rtrim(pg_get_viewdef(p_view), '; ' || chr(10)), cols, p_limit)
       INTO found;
    RETURN COALESCE(' (duplicated keys: ' || found || ')', '');
EXCEPTION WHEN OTHERS THEN
    RETURN '';
END
$$;
