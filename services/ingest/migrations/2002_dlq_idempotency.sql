-- Dead-letter handling: an operator can discard a dead job (kept for the record).
ALTER TABLE ingest.jobs DROP CONSTRAINT jobs_state_check;
ALTER TABLE ingest.jobs ADD CONSTRAINT jobs_state_check
    CHECK (state IN ('pending', 'running', 'done', 'dead', 'discarded'));
CREATE INDEX jobs_state ON ingest.jobs (state, id) WHERE state IN ('dead', 'discarded');

-- Client idempotency keys: a retried Ingest call with the same key returns the first answer.
CREATE TABLE ingest.idempotency (
    tenant       text NOT NULL,
    key          text NOT NULL,
    request_hash text NOT NULL,
    response     bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, key)
);
CREATE INDEX idempotency_created ON ingest.idempotency (created_at);
