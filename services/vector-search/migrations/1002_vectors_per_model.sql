-- One vector per (chunk, model): while a new model re-embeds the corpus, the old model's
-- vectors stay searchable; searches pick the model their query embedding came from.
ALTER TABLE vectors.chunks DROP CONSTRAINT chunks_pkey;
ALTER TABLE vectors.chunks ADD PRIMARY KEY (chunk_id, model);
CREATE INDEX chunks_model ON vectors.chunks (model);
