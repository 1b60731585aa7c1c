-- Version 13: check_drift() says the kind of each change it reports (a column kinds, parallel to changes,
-- each one of src/db/protocol.ts's DRIFT_KINDS), so that the daemon's metrics and logs no longer read its
-- wording. A function's result columns are part of its type: the old one is dropped and created again from
-- routines/check_drift.sql in the same run.
-- Daemons of earlier versions keep working: they select check_drift()'s view_id, view, changes and
-- triggers_synced by name, which keep their meaning.
-- compatibility: keeps older daemons working
DROP FUNCTION IF EXISTS mvrefresh.check_drift(integer);
DELETE FROM mvrefresh.routines WHERE name = 'check_drift';
