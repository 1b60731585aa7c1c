-- Whether a table's capture triggers (src/incremental/capture.ts) mark it, so that it keeps no
-- mvrefresh_mark (routines/mark_table.sql: one trigger of ours per writing statement): mvrefresh_cap_ins,
-- _upd and _del run the table's generated capture functions, mvrefresh_cap_trunc runs capture_truncate(),
-- and each of the four runs the mark step (calls mvrefresh.mark_relid(); capture functions generated
-- before the fold did not, and their tables keep mvrefresh_mark until the capture is generated again).
-- Enabled or not: a disabled capture trigger is reported and enabled again by check_drift(), as a disabled
-- mvrefresh_mark is; a missing one is reported too, and brings mvrefresh_mark back (sync_table_triggers()),
-- which marks for the events whose capture trigger is gone.
CREATE OR REPLACE FUNCTION mvrefresh.capture_marks(p_relid oid) RETURNS boolean
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT count(*) = 4
      FROM (VALUES ({{CAPTURE_INS}}, format('cap_%s_ins', p_relid)),
                   ({{CAPTURE_UPD}}, format('cap_%s_upd', p_relid)),
                   ({{CAPTURE_DEL}}, format('cap_%s_del', p_relid)),
                   ({{CAPTURE_TRUNC}}, 'capture_truncate')) e(tgname, proname)
      JOIN pg_trigger tg ON tg.tgrelid = p_relid AND tg.tgname = e.tgname
      JOIN pg_proc p ON p.oid = tg.tgfoid AND p.proname = e.proname
                    AND p.pronamespace = 'mvrefresh'::regnamespace AND p.pronargs = 0
     WHERE strpos(p.prosrc, 'mvrefresh.mark_relid(TG_RELID)') > 0
$$;
