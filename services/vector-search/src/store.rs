//! SQL for the `vectors` schema. Vectors travel in pgvector's binary form (the `pgvector`
//! crate's sqlx types: a length and the raw floats), not as `[1,2,3]` text that PostgreSQL
//! would parse per query; every value is a bind parameter.

use braid_proto::v1::{Chunk, ChunkHit};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use braid_core::config::DatabaseConfig;

use crate::config::SearchConfig;
use crate::error::VectorError;

#[derive(Clone)]
pub struct Store {
    pool: PgPool,
}

/// A search against the store.
pub struct Query<'a> {
    pub tenant: &'a str,
    pub embedding: &'a [f32],
    pub top_k: u32,
    /// JSON object that every hit's metadata must contain (`@>`).
    pub filter: serde_json::Value,
    /// Only vectors of this model; empty = any.
    pub model: &'a str,
}

/// `hnsw.iterative_scan` for every search: filtered searches keep scanning until enough rows
/// pass; the caller restores exact order.
pub const ITERATIVE_SCAN: &str = "relaxed_order";

impl Store {
    pub async fn connect(db: &DatabaseConfig, search: &SearchConfig) -> Result<Self, VectorError> {
        // The HNSW search settings are session settings of every pooled connection (startup
        // options), so a search is one statement: no transaction, no extra round trips.
        let options: PgConnectOptions = db.url.parse()?;
        let options = options.options([
            ("hnsw.ef_search", search.ef_search.to_string()),
            ("hnsw.iterative_scan", ITERATIVE_SCAN.to_string()),
        ]);
        let pool = PgPoolOptions::new()
            .max_connections(db.max_connections)
            .acquire_timeout(db.acquire_timeout())
            .connect_lazy_with(options);
        Ok(Self { pool })
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        // Version numbers 1000-1999 belong to this service; other services' migrations in
        // the same database are left alone.
        let mut migrator = sqlx::migrate!("./migrations");
        migrator.set_ignore_missing(true);
        migrator.run(&self.pool).await?;
        Ok(())
    }

    /// Dimensions of the `embedding` column.
    pub async fn column_dimensions(&self) -> Result<usize, VectorError> {
        let typmod: i32 = sqlx::query_scalar(
            "SELECT atttypmod FROM pg_attribute \
             WHERE attrelid = 'vectors.chunks'::regclass AND attname = 'embedding'",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(typmod.max(0) as usize)
    }

    /// The HNSW settings a search runs with: (`hnsw.ef_search`, `hnsw.iterative_scan`).
    pub async fn search_settings(&self) -> Result<(String, String), VectorError> {
        // Loading the extension first makes PostgreSQL validate the startup values.
        Ok(sqlx::query_as(
            "SELECT current_setting('hnsw.ef_search'), current_setting('hnsw.iterative_scan') \
             FROM (SELECT '[1]'::vector) AS loaded",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    pub async fn ping(&self) -> Result<(), VectorError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Replaces all chunks of one document in one transaction: its vectors of every model, or
    /// with `keep_other_models` (re-embedding) only those of `model`.
    pub async fn replace_document(
        &self,
        tenant: &str,
        document_id: &str,
        model: &str,
        keep_other_models: bool,
        chunks: &[Chunk],
        embeddings: &[Vec<f32>],
    ) -> Result<u32, VectorError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "DELETE FROM vectors.chunks WHERE tenant = $1 AND document_id = $2::uuid              AND (NOT $3 OR model = $4)",
        )
        .bind(tenant)
        .bind(document_id)
        .bind(keep_other_models)
        .bind(model)
        .execute(&mut *tx)
        .await?;
        if !chunks.is_empty() {
            let ids: Vec<&str> = chunks.iter().map(|c| c.chunk_id.as_str()).collect();
            let external: Vec<&str> = chunks.iter().map(|c| c.external_id.as_str()).collect();
            let titles: Vec<&str> = chunks.iter().map(|c| c.title.as_str()).collect();
            let ordinals: Vec<i32> = chunks.iter().map(|c| c.ordinal as i32).collect();
            let bodies: Vec<&str> = chunks.iter().map(|c| c.text.as_str()).collect();
            let metadata: Vec<String> = chunks
                .iter()
                .map(|c| serde_json::to_string(&c.metadata).unwrap_or_else(|_| "{}".into()))
                .collect();
            let vectors: Vec<pgvector::Vector> = embeddings
                .iter()
                .map(|v| pgvector::Vector::from(v.clone()))
                .collect();
            sqlx::query(
                "INSERT INTO vectors.chunks \
                   (chunk_id, tenant, document_id, external_id, title, ordinal, body, metadata, model, embedding) \
                 SELECT u.chunk_id, $1, $2::uuid, u.external_id, u.title, u.ordinal, u.body, \
                        u.metadata::jsonb, $3, u.embedding \
                 FROM UNNEST($4::text[], $5::text[], $6::text[], $7::int4[], $8::text[], $9::text[], $10::vector[]) \
                   AS u(chunk_id, external_id, title, ordinal, body, metadata, embedding)",
            )
            .bind(tenant)
            .bind(document_id)
            .bind(model)
            .bind(&ids)
            .bind(&external)
            .bind(&titles)
            .bind(&ordinals)
            .bind(&bodies)
            .bind(&metadata)
            .bind(&vectors)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(chunks.len() as u32)
    }

    /// Deletes every vector not produced by `keep_model`.
    pub async fn purge_models(&self, keep_model: &str) -> Result<u64, VectorError> {
        let done = sqlx::query("DELETE FROM vectors.chunks WHERE model <> $1")
            .bind(keep_model)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    pub async fn delete_document(
        &self,
        tenant: &str,
        document_id: &str,
    ) -> Result<u32, VectorError> {
        let done =
            sqlx::query("DELETE FROM vectors.chunks WHERE tenant = $1 AND document_id = $2::uuid")
                .bind(tenant)
                .bind(document_id)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() as u32)
    }

    /// Nearest chunks by cosine distance. Tenant and metadata filters are part of the SQL, and
    /// pgvector's iterative index scan keeps returning candidates until enough pass them.
    pub async fn search(&self, q: Query<'_>) -> Result<Vec<ChunkHit>, VectorError> {
        let rows: Vec<(String, String, String, String, String, i32, f64)> = sqlx::query_as(
            "SELECT chunk_id, document_id::text, external_id, title, body, ordinal, \
                    1 - (embedding <=> $1) AS score \
             FROM vectors.chunks \
             WHERE tenant = $2 AND metadata @> $3::jsonb AND ($5 = '' OR model = $5) \
             ORDER BY embedding <=> $1 \
             LIMIT $4",
        )
        .bind(pgvector::Vector::from(q.embedding.to_vec()))
        .bind(q.tenant)
        .bind(q.filter.to_string())
        .bind(q.top_k as i64)
        .bind(q.model)
        // Plan per call: a custom plan sees the query vector and the tenant/filter values, so
        // the planner picks the HNSW scan (or an exact scan for a tiny tenant) knowingly.
        .persistent(false)
        .fetch_all(&self.pool)
        .await?;
        // relaxed_order may return slightly out-of-order rows; restore exact order.
        let mut hits: Vec<ChunkHit> = rows
            .into_iter()
            .map(
                |(chunk_id, document_id, external_id, title, text, ordinal, score)| ChunkHit {
                    chunk_id,
                    document_id,
                    external_id,
                    title,
                    text,
                    ordinal: ordinal as u32,
                    score: score as f32,
                    snippet: String::new(),
                },
            )
            .collect();
        hits.sort_by(|a, b| b.score.total_cmp(&a.score));
        Ok(hits)
    }
}
