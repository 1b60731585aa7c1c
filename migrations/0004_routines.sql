-- Version 4: routines (functions, procedures, views of this schema) are applied from routines/, one file
-- each, by `mvrefresh migrate` whenever a file's content differs from what it last applied. This table
-- records what was applied. A migration that drops a routine deletes its row here, so that the routine is
-- created again from its file in the same run.
-- compatibility: keeps older daemons working
CREATE TABLE mvrefresh.routines (
    name       text PRIMARY KEY,
    sha256     text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
