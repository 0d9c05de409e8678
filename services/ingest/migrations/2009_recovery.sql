-- Recovery: reindex runs (progress of rebuilding a search leg from PostgreSQL) and the id of
-- the text index ingest writes to (so a text index lost together with its directory is
-- noticed: text-search would otherwise start a new, empty one silently).
CREATE TABLE ingest.reindex_runs (
    id          bigserial PRIMARY KEY,
    leg         text NOT NULL CHECK (leg IN ('vector', 'text')),
    tenant      text,
    mode        text NOT NULL CHECK (mode IN ('rebuild', 'in_place', 'repair')),
    state       text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'done', 'failed')),
    total       bigint NOT NULL DEFAULT 0,
    done        bigint NOT NULL DEFAULT 0,
    enqueued    bigint NOT NULL DEFAULT 0,
    error       text,
    index_id    text,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
-- One run per leg at a time.
CREATE UNIQUE INDEX reindex_runs_one_running ON ingest.reindex_runs (leg) WHERE state = 'running';

CREATE TABLE ingest.text_index (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    index_id   text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
