-- The trigger. It runs in every writing statement of the application, so it does as little as it can:
-- once per transaction and view (remembered in a transaction-local setting, undone with a rolled-back
-- savepoint), and only once the transaction has written something (it has an xid). At READ COMMITTED, one
-- index probe for a mark; only when there is none, insert one and notify. Writers at REPEATABLE READ or
-- SERIALIZABLE cannot trust what their snapshot says about marks: they add one.
-- Skipping later statements is safe: from its first write on, the transaction holds a write lock on a
-- table the view reads until it ends, so the refresh cycle that consumes the mark it saw waits for it (or
-- keeps the view due until it ends). SECURITY DEFINER so that writers need no privileges on this schema;
-- without a SET clause (it would cost a GUC nest level per call and undo set_config(..., true)), so every
-- function and operator is schema-qualified against search_path tricks.
CREATE OR REPLACE FUNCTION mvrefresh.mark_dirty() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
AS $$
DECLARE
    seen text := 'mvrefresh.v' OPERATOR(pg_catalog.||) TG_ARGV[0];
    ignored text;
BEGIN
    IF pg_catalog.current_setting(seen, true) OPERATOR(pg_catalog.=) '1'
       OR pg_catalog.pg_current_xact_id_if_assigned() IS NULL THEN
        RETURN NULL;
    END IF;
    ignored := pg_catalog.set_config(seen, '1', true);
    IF pg_catalog.current_setting('transaction_isolation') OPERATOR(pg_catalog.=) 'read committed'
       AND EXISTS (SELECT FROM mvrefresh.marks
                    WHERE view_id OPERATOR(pg_catalog.=) TG_ARGV[0]::pg_catalog.int4) THEN
        RETURN NULL;
    END IF;
    INSERT INTO mvrefresh.marks (view_id) VALUES (TG_ARGV[0]::pg_catalog.int4);
    PERFORM pg_catalog.pg_notify({{CHANNEL}}, TG_ARGV[0]);
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION mvrefresh.mark_dirty() FROM PUBLIC;
