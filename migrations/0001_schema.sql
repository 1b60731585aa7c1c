-- mvrefresh schema, version 1: the state tables. The refresh protocol they carry is described next to
-- the procedure that runs it (routines/refresh_view.sql); every function, procedure and view lives in
-- routines/, one file each.
-- compatibility: first version

-- the schema itself is created by migrate (src/db/migrate.ts) only when it is absent: a DDL role that was
-- given the schema (mvrefresh grants) has no CREATE on the database, which CREATE SCHEMA IF NOT EXISTS
-- demands even when the schema exists

CREATE TABLE mvrefresh.view_state (
    id                     integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    view_schema            name NOT NULL,
    view_name              name NOT NULL,
    -- the oldest unreflected write covered by the cycle in progress
    cycle_since            timestamptz,
    started_gen            bigint NOT NULL DEFAULT 0,
    done_gen               bigint NOT NULL DEFAULT 0,
    cycle_started_at       timestamptz,
    -- writers still running when cycle wait_gen, which refreshed, gave up waiting for them
    wait_xids              xid8[],
    wait_gen               bigint,
    -- per-view settings (NULL: the daemon's defaults)
    debounce_ms            integer CHECK (debounce_ms >= 0),
    max_wait_ms            integer CHECK (max_wait_ms >= 0),
    refresh_interval_ms    integer CHECK (refresh_interval_ms > 0),
    allow_blocking_refresh boolean NOT NULL DEFAULT false,
    -- 0 for a view that reads no watched materialized view, else 1 + the deepest dependency
    depth                  integer NOT NULL DEFAULT 0,
    sources                text[] NOT NULL DEFAULT '{}',
    -- every relation the view reads whose writers can mark it (tables, partitions, upstream views)
    source_relids          oid[] NOT NULL DEFAULT '{}',
    warnings               text[] NOT NULL DEFAULT '{}',
    last_refreshed_at      timestamptz,
    last_duration_ms       double precision,
    last_outcome           text,
    last_error             text,
    last_sqlstate          text,
    last_error_at          timestamptz,
    consecutive_failures   integer NOT NULL DEFAULT 0,
    next_attempt_at        timestamptz,
    created_at             timestamptz NOT NULL DEFAULT now(),
    UNIQUE (view_schema, view_name)
) WITH (fillfactor = 50);

COMMENT ON TABLE mvrefresh.view_state IS 'One row per materialized view watched by mvrefresh.';

-- The sweep reads only views that need work: its cost does not grow with the number of clean views.
CREATE INDEX view_state_unfinished ON mvrefresh.view_state (id) WHERE started_gen > done_gen;
CREATE INDEX view_state_periodic ON mvrefresh.view_state (id) WHERE refresh_interval_ms IS NOT NULL;

-- The dirty marks. No foreign key: a writer's insert must not lock the view's state row.
CREATE TABLE mvrefresh.marks (
    view_id   integer NOT NULL,
    marked_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX marks_view_id ON mvrefresh.marks (view_id);

-- view_id reads the watched materialized view depends_on: refresh depends_on first.
CREATE TABLE mvrefresh.view_deps (
    view_id    integer NOT NULL REFERENCES mvrefresh.view_state (id) ON DELETE CASCADE,
    depends_on integer NOT NULL REFERENCES mvrefresh.view_state (id) ON DELETE RESTRICT,
    PRIMARY KEY (view_id, depends_on)
);
CREATE INDEX view_deps_depends_on ON mvrefresh.view_deps (depends_on);
