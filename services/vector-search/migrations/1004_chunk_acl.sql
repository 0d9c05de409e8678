-- Each chunk carries its document's ACL; searches admit only chunks the caller may see,
-- inside the WHERE clause (pgvector's iterative scan keeps top_k filled). Existing rows are
-- public (clearance 0, no groups) until their document is re-indexed.
ALTER TABLE vectors.chunks
    ADD COLUMN acl_clearance integer NOT NULL DEFAULT 0,
    ADD COLUMN acl_groups    text[]  NOT NULL DEFAULT '{}';
