-- Version 5: writers mark the tables they write, not every view reading them: one trigger per watched
-- table (mvrefresh_mark, routines/mark_table.sql) instead of one per view and table, and no column list
-- in its definition, so the application's migrations may alter or drop any column. A refresh cycle turns
-- the marks of its view's tables into marks of every view reading them (routines/refresh_view.sql).
--
-- The switch happens in migrate's one transaction: the per-view triggers go with their function here,
-- the new triggers are created by sync_table_triggers() after the routines are applied, and every watched
-- view is marked, so no committed write is left unmarked across the switch (writers wait for the commit).
-- Daemons of version 0.1 keep working: their CALL of refresh_view, due_views() and the status view keep
-- their signatures; they do not understand the new notifications ('t' || table oid) and find the views
-- that writers dirty at their sweep instead.
-- compatibility: keeps older daemons working
CREATE TABLE mvrefresh.table_marks (
    relid     oid NOT NULL,
    marked_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX table_marks_relid ON mvrefresh.table_marks (relid);

INSERT INTO mvrefresh.marks (view_id) SELECT id FROM mvrefresh.view_state;
DROP FUNCTION IF EXISTS mvrefresh.mark_dirty() CASCADE;
DROP FUNCTION IF EXISTS mvrefresh.sync_triggers(integer, regclass);
DELETE FROM mvrefresh.routines WHERE name IN ('mark_dirty', 'sync_triggers');
