-- Version 10: routines that take a view's name from the user resolve it in the caller's search_path
-- while their own SET search_path = pg_catalog, pg_temp holds for everything else (routines/resolve_view.sql):
-- watch(), unwatch(), set_paused(), resolve_view() and find_watched() gain a last parameter p_search_path
-- whose default, current_setting('search_path'), the caller evaluates.
-- The DDL event triggers no longer run a function of schema mvrefresh: its owner (the DDL role) could
-- replace it with code that every role running DDL, superusers included, would execute. Dropping
-- mvrefresh.ddl_changed() drops the event triggers that execute it; `mvrefresh install-ddl-watch` (or
-- migrate run by a role that may create event triggers) installs them again, executing a function of a
-- schema the installer owns (src/db/ddl-watch.sql). Until then daemons find drift by their periodic
-- check, as they do where no event trigger was ever installed.
-- Daemons of earlier versions keep working: they call these functions with the earlier argument lists,
-- which the new defaults complete, and never call install_ddl_watch().
-- compatibility: keeps older daemons working
DROP FUNCTION IF EXISTS mvrefresh.watch(text, integer, integer, integer, boolean, boolean, integer,
                                        double precision);
DROP FUNCTION IF EXISTS mvrefresh.unwatch(text);
DROP FUNCTION IF EXISTS mvrefresh.set_paused(text, boolean);
DROP FUNCTION IF EXISTS mvrefresh.resolve_view(text);
DROP FUNCTION IF EXISTS mvrefresh.find_watched(text);
DROP FUNCTION IF EXISTS mvrefresh.install_ddl_watch();
DROP FUNCTION IF EXISTS mvrefresh.ddl_changed() CASCADE;
DELETE FROM mvrefresh.routines
 WHERE name IN ('watch', 'unwatch', 'set_paused', 'resolve_view', 'find_watched', 'install_ddl_watch',
                'ddl_changed');
