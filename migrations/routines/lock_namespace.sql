-- Advisory lock keys: (namespace, view id) for a view's refresh, (namespace, 0) for migrations,
-- (namespace, -1) for watch / unwatch. The namespace ({{LOCK_NAMESPACE}}, 'mvrf') is shared with the
-- daemon's TypeScript (src/db/protocol.ts), which takes the migration lock before this function exists.
CREATE OR REPLACE FUNCTION mvrefresh.lock_namespace() RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN {{LOCK_NAMESPACE}};
