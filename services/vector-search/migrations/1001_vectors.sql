-- Chunk vectors for the dense search leg. Owned by the vector-search service.
CREATE EXTENSION IF NOT EXISTS vector;
CREATE SCHEMA IF NOT EXISTS vectors;

CREATE TABLE vectors.chunks (
    chunk_id    text PRIMARY KEY,
    tenant      text NOT NULL,
    document_id uuid NOT NULL,
    external_id text NOT NULL,
    title       text NOT NULL,
    ordinal     integer NOT NULL,
    body        text NOT NULL,
    metadata    jsonb NOT NULL DEFAULT '{}'::jsonb,
    model       text NOT NULL,
    embedding   vector(384) NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX chunks_tenant_document ON vectors.chunks (tenant, document_id);
CREATE INDEX chunks_metadata ON vectors.chunks USING gin (metadata jsonb_path_ops);
CREATE INDEX chunks_embedding_hnsw ON vectors.chunks
    USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64);
