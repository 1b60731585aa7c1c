-- Version 13: check_drift() says the kind of each change it reports (a column kinds, parallel to changes,
-- each one of src/db/protocol.ts's DRIFT_KINDS), so that the daemon's metrics and logs no longer read its
-- wording. A function's result columns are part of its type: the old one is dropped and created again from
-- routines/check_drift.sql in the same run. lock_namespace() goes: the routines name the lock namespace as
-- a constant ({{LOCK_NAMESPACE}}), as the daemon does.
-- Daemons of earlier versions keep working: they select check_drift()'s view_id, view, changes and
-- triggers_synced by name, which keep their meaning, and never call lock_namespace() (only routines did,
-- and this run replaces them all).
-- compatibility: keeps older daemons working
DROP FUNCTION IF EXISTS mvrefresh.check_drift(integer);
DROP FUNCTION IF EXISTS mvrefresh.lock_namespace();
DELETE FROM mvrefresh.routines WHERE name IN ('check_drift', 'lock_namespace');
