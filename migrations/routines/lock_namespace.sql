-- The advisory lock namespace ({{LOCK_NAMESPACE}}, 'mvrf'), as the routines of schema versions up to 12 read
-- it. No routine calls it any more (they name {{LOCK_NAMESPACE}}, src/db/protocol.ts): it is kept for the
-- refresh cycles of older daemons that are running while `migrate` replaces their routines, whose plans
-- still name it. Drop it in a later migration.
CREATE OR REPLACE FUNCTION mvrefresh.lock_namespace() RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN {{LOCK_NAMESPACE}};
