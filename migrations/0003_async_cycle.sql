-- Version 3: refresh_view reports wait_ms and cycle_ms, so it gained two OUT parameters. OUT parameters
-- are part of a procedure's signature: the 12-parameter procedure of versions 1 and 2 is dropped, and the
-- CALL prepared by daemons of those versions fails (42883) until they are replaced. The new body lives in
-- routines/refresh_view.sql.
-- compatibility: breaks older daemons
DROP PROCEDURE IF EXISTS mvrefresh.refresh_view(integer, boolean, integer, integer, integer, integer,
    OUT text, OUT double precision, OUT text, OUT text, OUT integer, OUT integer[]);
