-- Calls refused before authentication are written as one record per peer, RPC and code per
-- window with their count; every other record stands for one call. A constant default: no
-- existing row is rewritten (the table stays append-only).
ALTER TABLE audit.records ADD COLUMN calls BIGINT NOT NULL DEFAULT 1;
