-- Who may see a document within its tenant (clearance 0 and no groups = everyone). The ACL is
-- part of the content hash, so changing it re-indexes the document through the outbox.
ALTER TABLE ingest.documents
    ADD COLUMN acl_clearance integer NOT NULL DEFAULT 0,
    ADD COLUMN acl_groups    text[]  NOT NULL DEFAULT '{}';
