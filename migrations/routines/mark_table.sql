-- The trigger, one per watched table (named mvrefresh_mark), whatever the number of views reading the
-- table. It runs in every writing statement of the application, so it does as little as it can, and only
-- once the transaction has written something (it has an xid). At READ COMMITTED, one index probe for a mark
-- of the table; only when there is none, insert one and notify ('t' || the table's oid). A later statement
-- of the same transaction finds the transaction's own mark (or the one it skipped for) with its probe.
-- Writers at REPEATABLE READ or SERIALIZABLE cannot trust what their snapshot says about marks: they add one
-- per transaction and table, remembered in a transaction-local setting.
--
-- Why a writer that skipped is still reflected in every view reading the table: from its first write on,
-- it holds a write lock on the table until it ends. A refresh cycle of a view V reading the table turns
-- the table's marks into marks of every view reading it (routines/refresh_view.sql), in its first
-- transaction (tx1); a writer whose snapshot saw a table mark either saw it before tx1 committed, and then
-- is running at tx1's commit, holds a lock on one of V's sources, and is waited for; or saw a mark added
-- later, which a later cycle consumes in the same way. Views other than V keep the view marks tx1 gave them,
-- and their own cycles wait for the writers that hold locks on their sources.
--
-- Why READ COMMITTED writers keep no per-transaction memo: a transaction-local setting costs more than the
-- probe it saves (set_config() stacks the value; before PostgreSQL 16 every commit that changed a setting
-- walks all settings), and most transactions write a table in one statement (docs/benchmarks.md).
-- The memo of the other levels is bound to the transaction's own id, so a value set before the transaction
-- wrote anything (when it had no id) cannot make the trigger skip.
-- No column list in the trigger's definition: the application's migrations may alter or drop any column.
-- SECURITY DEFINER so that writers need no privileges on this schema; without a SET clause (it would cost
-- a GUC nest level per call and undo set_config(..., true)), so every function and operator is
-- schema-qualified against search_path tricks.
CREATE OR REPLACE FUNCTION mvrefresh.mark_table() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
AS $$
DECLARE
    xid text;
    memo text;
    ignored text;
BEGIN
    IF pg_catalog.pg_current_xact_id_if_assigned() IS NULL THEN
        RETURN NULL;
    END IF;
    IF pg_catalog.current_setting('transaction_isolation') OPERATOR(pg_catalog.=) 'read committed' THEN
        -- PERFORM ... LIMIT 1 runs a Limit over the index scan; IF EXISTS (...) adds a Result and a subplan
        PERFORM FROM mvrefresh.table_marks WHERE relid OPERATOR(pg_catalog.=) TG_RELID LIMIT 1;
        IF FOUND THEN
            RETURN NULL;
        END IF;
    ELSE
        xid := pg_catalog.pg_current_xact_id()::pg_catalog.text;
        memo := 'mvrefresh.t' OPERATOR(pg_catalog.||) TG_RELID::pg_catalog.text;
        IF pg_catalog.current_setting(memo, true) OPERATOR(pg_catalog.=) xid THEN
            RETURN NULL;
        END IF;
        ignored := pg_catalog.set_config(memo, xid, true);
    END IF;
    INSERT INTO mvrefresh.table_marks (relid) VALUES (TG_RELID);
    PERFORM pg_catalog.pg_notify({{CHANNEL}}, 't' OPERATOR(pg_catalog.||) TG_RELID::pg_catalog.text);
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION mvrefresh.mark_table() FROM PUBLIC;
