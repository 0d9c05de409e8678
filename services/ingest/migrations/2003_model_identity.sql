-- Which model produced each document's vectors, and re-embedding jobs that replace only the
-- new model's vectors (the old model's stay searchable until the switch).
ALTER TABLE ingest.documents ADD COLUMN vector_model text;
ALTER TABLE ingest.jobs ADD COLUMN reembed boolean NOT NULL DEFAULT false;
