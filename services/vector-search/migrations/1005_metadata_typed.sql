-- Typed readings of each chunk's metadata for range filters: {"n": {key: number},
-- "d": {key: milliseconds since the epoch}} for the values that read as numbers or RFC 3339
-- dates (written by the service, see `filter.rs`). Rows stored before this migration have
-- none until their document is re-indexed, so range filters do not match them yet.
ALTER TABLE vectors.chunks ADD COLUMN metadata_typed jsonb NOT NULL DEFAULT '{}'::jsonb;
