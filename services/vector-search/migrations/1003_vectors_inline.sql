-- Keep each vector inline in its row (1.5 KB for 384 dimensions) instead of out of line in
-- TOAST: a search then reads a result's vector from the heap page it already has (and a
-- sequential scan reads each vector once, not through the TOAST index). When a row is too
-- big for a page, PostgreSQL compresses or moves the chunk text instead.
-- Applies to rows written from now on; rows already stored keep their layout until rewritten.
ALTER TABLE vectors.chunks ALTER COLUMN embedding SET STORAGE PLAIN;
