-- Documents, their chunks and the indexing outbox. Owned by the ingest service.
CREATE SCHEMA IF NOT EXISTS ingest;

CREATE TABLE ingest.documents (
    id               uuid PRIMARY KEY,
    tenant           text NOT NULL,
    external_id      text NOT NULL,
    title            text NOT NULL,
    mime_type        text NOT NULL,
    metadata         jsonb NOT NULL DEFAULT '{}'::jsonb,
    content_sha256   text NOT NULL,
    -- Incremented on every content change; each leg records the version it holds.
    version          bigint NOT NULL DEFAULT 1,
    vector_version   bigint NOT NULL DEFAULT 0,
    text_version     bigint NOT NULL DEFAULT 0,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'indexing', 'ready', 'partial', 'failed', 'deleting')),
    chunk_count      integer NOT NULL,
    deleted          boolean NOT NULL DEFAULT false,
    last_error       text,
    vector_synced_at timestamptz,
    text_synced_at   timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant, external_id)
);

CREATE TABLE ingest.chunks (
    document_id uuid NOT NULL REFERENCES ingest.documents (id) ON DELETE CASCADE,
    ordinal     integer NOT NULL,
    body        text NOT NULL,
    token_count integer NOT NULL,
    PRIMARY KEY (document_id, ordinal)
);

-- The transactional outbox: one job per document change and leg.
CREATE TABLE ingest.jobs (
    id           bigserial PRIMARY KEY,
    document_id  uuid NOT NULL,
    tenant       text NOT NULL,
    leg          text NOT NULL CHECK (leg IN ('vector', 'text')),
    op           text NOT NULL CHECK (op IN ('upsert', 'delete')),
    doc_version  bigint NOT NULL,
    state        text NOT NULL DEFAULT 'pending'
                 CHECK (state IN ('pending', 'running', 'done', 'dead')),
    attempts     integer NOT NULL DEFAULT 0,
    run_after    timestamptz NOT NULL DEFAULT now(),
    locked_until timestamptz,
    last_error   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX jobs_claimable ON ingest.jobs (run_after, id) WHERE state IN ('pending', 'running');
CREATE INDEX jobs_document ON ingest.jobs (document_id, leg);
