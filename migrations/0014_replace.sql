-- Version 14: `mvrefresh replace` (issue 26). A request to give a materialized view a new definition is a
-- row of replace_requests, written by request_replace() (a migration tool's entry point) or by the CLI, and
-- carried out by exactly one executor (the CLI that wrote it, or a daemon): the claim is a row lock taken
-- with SKIP LOCKED, then a session advisory lock (namespace {{REPLACE_LOCK_NAMESPACE}}, key = id) held
-- for the whole build and swap. A request in status 'running' whose advisory lock nobody holds was left by
-- an executor that died: the next claim drops its half-built version (temp_name) and starts it again.
-- New table only: daemons of earlier versions never read it.
-- compatibility: keeps older daemons working

CREATE TABLE mvrefresh.replace_requests (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    view_schema  name NOT NULL,
    view_name    name NOT NULL,
    -- the new query (a SELECT, VALUES or TABLE), without CREATE MATERIALIZED VIEW
    definition   text NOT NULL,
    status       text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'done', 'failed')),
    -- the step the executor is at (plan, create, populate, indexes, catchup, swap), for status and doctor
    step         text,
    -- the new version's name while it is being built beside the live view
    temp_name    name,
    attempts     integer NOT NULL DEFAULT 0,
    -- request_replace() admits only members of the view's owner role: the new query runs with the
    -- owner's privileges (REFRESH runs as the owner), so requesting it must not give anyone more
    requested_by name NOT NULL DEFAULT current_user,
    claimed_by   text,
    error        text,
    -- where the definition's unqualified names resolve: the requester's search_path
    search_path  text NOT NULL DEFAULT 'public',
    -- 'sql' (request_replace(): daemons carry it out) or 'cli' (the CLI that wrote it carries it out; if
    -- that process dies, the next executor only cleans up after it and marks it failed)
    origin       text NOT NULL DEFAULT 'sql' CHECK (origin IN ('sql', 'cli')),
    -- the longest a swap attempt waits for the view's lock; NULL: the executor's default
    lock_timeout_ms integer CHECK (lock_timeout_ms > 0),
    requested_at timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    finished_at  timestamptz
);

COMMENT ON TABLE mvrefresh.replace_requests IS
    'Requests to replace a materialized view''s definition (mvrefresh replace, request_replace()).';

-- one unfinished request per view: a second one would race the first one's swap
CREATE UNIQUE INDEX replace_requests_one_active ON mvrefresh.replace_requests (view_schema, view_name)
    WHERE status IN ('pending', 'running');
