-- Nobody but mvrefresh changes an incremental view's rows. The table carries a BEFORE INSERT OR UPDATE OR
-- DELETE OR TRUNCATE statement trigger (mvrefresh_guard, ENABLE ALWAYS) running refuse_write(), which lets
-- a statement through only in a transaction that called begin_apply() for that table: the apply's. The
-- pass is a token, the SHA-256 of the table, the transaction's id and a secret only mvrefresh's roles read
-- (mvrefresh.apply_secret), kept in a transaction-local setting. A writer can set the setting, but cannot
-- compute the token of its own transaction; a token seen inside mvrefresh's transaction is worth nothing in
-- any other. A role check would not do: the apply writes as the view's owner, usually the application's
-- own role, whose mistaken INSERT must fail too.
CREATE OR REPLACE FUNCTION mvrefresh.apply_token(p_rel oid) RETURNS text
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT sha256(('a' || p_rel::text || ':' || pg_current_xact_id()::text || ':' || s.secret)::bytea)::text
      FROM mvrefresh.apply_secret s
$$;
REVOKE ALL ON FUNCTION mvrefresh.apply_token(oid) FROM PUBLIC;

-- The apply's pass for p_rel in this transaction (is_local; the SET clause restores only search_path).
CREATE OR REPLACE FUNCTION mvrefresh.begin_apply(p_rel oid) RETURNS void
    LANGUAGE sql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.set_config('mvrefresh.apply', mvrefresh.apply_token(p_rel), true)
$$;
REVOKE ALL ON FUNCTION mvrefresh.begin_apply(oid) FROM PUBLIC;

CREATE OR REPLACE FUNCTION mvrefresh.refuse_write() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF current_setting('mvrefresh.apply', true) = mvrefresh.apply_token(TG_RELID) THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION '% is an incremental view kept by mvrefresh: only mvrefresh changes its rows', TG_RELID::regclass
        USING ERRCODE = 'wrong_object_type',
              HINT = format('Change its source tables instead; "mvrefresh unwatch %s" turns it back into a materialized view.',
                            TG_RELID::regclass);
END
$$;
REVOKE ALL ON FUNCTION mvrefresh.refuse_write() FROM PUBLIC;
