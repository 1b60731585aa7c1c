-- Installs or brings in line the triggers of one watched view. Returns the tables that carry them.
CREATE OR REPLACE FUNCTION mvrefresh.sync_triggers(p_view_id integer, p_view regclass)
    RETURNS text[]
    LANGUAGE plpgsql
AS $$
DECLARE
    src record;
    existing record;
    tg_name name := 'mvrefresh_' || p_view_id;
    wanted_attrs int2[];
    have_attrs int2[];
    tables text[] := '{}';
BEGIN
    -- drop triggers on tables the view no longer reads
    FOR existing IN
        SELECT t.tgrelid FROM pg_trigger t
         WHERE t.tgname = tg_name AND t.tgfoid = 'mvrefresh.mark_dirty()'::regprocedure
           AND t.tgrelid NOT IN (SELECT s.relid FROM mvrefresh.view_sources(p_view) s
                                  WHERE s.relkind IN ('r', 'p'))
    LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', tg_name, existing.tgrelid::regclass);
    END LOOP;

    FOR src IN SELECT * FROM mvrefresh.view_sources(p_view) s WHERE s.relkind IN ('r', 'p') LOOP
        tables := tables || src.relid::regclass::text;
        SELECT array_agg(a.attnum ORDER BY a.attnum) INTO wanted_attrs
          FROM pg_attribute a WHERE a.attrelid = src.relid AND a.attname = ANY (src.columns);
        -- a BEFORE UPDATE row trigger can change columns the UPDATE does not name, which a column-specific
        -- trigger does not see: no narrowing on a table that has one, or whose partitions or children have
        -- one (one added later is taken into account when watch runs again)
        IF EXISTS (WITH RECURSIVE tree(rel) AS (
                       SELECT src.relid
                       UNION
                       SELECT i.inhrelid FROM tree JOIN pg_inherits i ON i.inhparent = tree.rel)
                   SELECT FROM pg_trigger t JOIN tree ON t.tgrelid = tree.rel
                    WHERE t.tgtype::integer & 19 = 19) THEN -- ROW (1) | BEFORE (2) | UPDATE (16)
            wanted_attrs := NULL;
        END IF;
        SELECT array_agg(k ORDER BY k) INTO have_attrs
          FROM pg_trigger t, unnest(t.tgattr::int2[]) k
         WHERE t.tgrelid = src.relid AND t.tgname = tg_name;
        IF EXISTS (SELECT FROM pg_trigger t WHERE t.tgrelid = src.relid AND t.tgname = tg_name
                     AND t.tgfoid = 'mvrefresh.mark_dirty()'::regprocedure AND t.tgtype = 60
                     AND t.tgargs = convert_to(p_view_id::text, 'SQL_ASCII') || '\x00'::bytea)
           AND have_attrs IS NOT DISTINCT FROM wanted_attrs THEN
            CONTINUE;
        END IF;
        EXECUTE format(
            'CREATE OR REPLACE TRIGGER %I AFTER INSERT OR UPDATE%s OR DELETE OR TRUNCATE ON %s '
            'FOR EACH STATEMENT EXECUTE FUNCTION mvrefresh.mark_dirty(%L)',
            tg_name,
            CASE WHEN wanted_attrs IS NULL THEN ''
                 ELSE ' OF ' || (SELECT string_agg(quote_ident(c), ', ' ORDER BY c) FROM unnest(src.columns) c) END,
            src.relid::regclass, p_view_id::text);
    END LOOP;
    RETURN tables;
END
$$;
