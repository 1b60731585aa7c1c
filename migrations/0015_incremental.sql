-- Version 15: incremental views (issue 27; docs/design/incremental.md). An incremental view is a regular
-- table under the materialized view's name, kept equal to its definition by applying only what changed:
-- a capture trigger per source table and event writes the changed rows' read columns into the table's log
-- (schema mvrefresh_log), and refresh_view() applies, for such a view, the logged changes instead of a
-- REFRESH (routines/apply_view.sql holds the protocol argument).
-- New tables and a schema only: daemons of earlier versions never see an incremental view unless one is
-- made, and refresh_view() (re-applied with this version, same signature) does the apply for them.
-- compatibility: keeps older daemons working

CREATE TABLE mvrefresh.incremental (
    view_id          integer PRIMARY KEY REFERENCES mvrefresh.view_state (id) ON DELETE CASCADE,
    -- 'building' from the capture triggers' creation until the swap, then 'active'
    state            text NOT NULL DEFAULT 'building' CHECK (state IN ('building', 'active')),
    -- the materialized view's query, names schema-qualified (pg_get_viewdef under search_path pg_catalog)
    definition       text NOT NULL,
    -- the output columns of the unique index that identifies a row of the view
    key_columns      name[] NOT NULL,
    -- the tables whose logs the view reads, and per table (oid as text) the columns it reads:
    -- [{"name", "type"}]; a table's log records the union over the incremental views reading it
    sources          oid[] NOT NULL,
    source_columns   jsonb NOT NULL,
    -- the generated statements of the apply (src/incremental/analyze.ts, Statements): keysTable, keys
    -- (per source oid), delete, insert, insertFull, fullKeys
    statements       jsonb NOT NULL,
    -- the table equals the definition in this snapshot (invariant A of apply_view.sql)
    applied_snapshot pg_snapshot,
    -- the next apply recomputes the whole view (a TRUNCATE, a write that fired no trigger, verify)
    needs_full       boolean NOT NULL DEFAULT false,
    full_reason      text,
    -- an exponentially weighted mean of an apply's milliseconds per key, and the last full recompute's
    est_key_ms       double precision,
    last_full_ms     double precision,
    last_apply_kind  text,
    last_apply_keys  integer,
    last_apply_ms    double precision,
    last_apply_at    timestamptz,
    last_verify_at   timestamptz,
    verify_mismatches bigint NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE mvrefresh.incremental IS
    'Incremental views (mvrefresh watch --incremental): the table under the view''s name and how to apply changes.';

-- Why a watched view is not incremental (the clause that needs a full refresh), for status and /views.
ALTER TABLE mvrefresh.view_state ADD COLUMN mode_reason text;

-- The key that lets an apply write into an incremental view (routines/refuse_write.sql): only mvrefresh's
-- roles can read it, so no writer can compute the token of its own transaction.
CREATE TABLE mvrefresh.apply_secret (secret text NOT NULL);
INSERT INTO mvrefresh.apply_secret (secret)
SELECT pg_catalog.gen_random_uuid()::pg_catalog.text OPERATOR(pg_catalog.||) pg_catalog.gen_random_uuid()::pg_catalog.text;

-- The logs live here too, one table per source (log_<oid>), readable only by mvrefresh's roles. The apply
-- copies a batch into temporary tables that it grants to the view's owner for the transaction.
