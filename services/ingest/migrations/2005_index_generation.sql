-- Per-tenant index generation: bumped in the same transaction as every change of what the
-- tenant's searches return (a leg synced a document version, a document was deleted). The
-- gateway's query cache keys on it, so a cached answer never outlives the index it came from.
CREATE TABLE ingest.index_generations (
    tenant text PRIMARY KEY,
    generation bigint NOT NULL DEFAULT 0
);
