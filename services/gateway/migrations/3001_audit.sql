-- The gateway's audit trail: one row per audited call, append-only (rows are never updated;
-- only the retention purge deletes, and only rows older than the retention period).
CREATE SCHEMA IF NOT EXISTS audit;

CREATE TABLE audit.records (
    id           BIGSERIAL PRIMARY KEY,
    at           TIMESTAMPTZ NOT NULL,
    subject      TEXT NOT NULL,
    tenant       TEXT NOT NULL,
    role         TEXT NOT NULL,
    client_addr  TEXT NOT NULL,
    rpc          TEXT NOT NULL,
    code         TEXT NOT NULL,
    latency_ms   DOUBLE PRECISION NOT NULL,
    result_count BIGINT NOT NULL,
    document_ids TEXT[] NOT NULL,
    trace_id     TEXT NOT NULL,
    query        TEXT NOT NULL
);

CREATE INDEX records_at ON audit.records (at, id);
CREATE INDEX records_subject_at ON audit.records (subject, at, id);

CREATE FUNCTION audit.refuse_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit.records is append-only';
END;
$$;

CREATE TRIGGER records_append_only BEFORE UPDATE ON audit.records
    FOR EACH ROW EXECUTE FUNCTION audit.refuse_update();
