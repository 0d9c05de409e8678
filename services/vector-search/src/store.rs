//! SQL for the `vectors` schema. Every value is a bind parameter, and vectors travel in
//! binary, never as `[1,2,3]` text that PostgreSQL would parse per query:
//! - without a pooler, as pgvector's own binary `vector` (the `pgvector` crate's sqlx
//!   encoding). sqlx looks the extension type's OID up once per connection, with a named
//!   statement that it caches;
//! - behind a transaction-mode pooler (PgBouncer), which cannot keep a named statement, as a
//!   binary `real[]` cast to `vector` in SQL: built-in types only, so sqlx never looks a type
//!   up ([`Encoding`]).
//!
//! Writes go to the primary; searches to the pool [`ReadRoute`] names (the replica while it
//! is healthy, see `replica`). pgvector costs an HNSW scan with the `hnsw.ef_search` in force
//! when the statement is PLANNED (0.8: a larger candidate list makes an exact scan win on a
//! small table), so the settings must be in force before the search statement, not set by it:
//! - without a pooler, the service's own connections start with the configured
//!   `hnsw.ef_search` and `hnsw.iterative_scan` as session settings (`-c` options in the
//!   start-up packet), so a search at the default `ef_search` is ONE named, cached statement:
//!   one round trip. These connections also plan every execution of a prepared statement
//!   with its parameters (`plan_cache_mode = force_custom_plan`), so the planner sees the
//!   query vector and the tenant/filter values and picks the HNSW scan (or an exact scan for
//!   a tiny tenant) knowingly, as it did for the former unnamed statement;
//! - a search with an `ef_search` of its own, and every search behind a transaction-mode
//!   pooler (whose server connections are shared, so nothing may be set for the session),
//!   runs in a transaction of its own that sets both with `SET LOCAL` (`set_config(.., true)`)
//!   first: they never leak into another search on a pooled connection.

use braid_core::auth::{Access, chunks_acl};
use braid_core::filter::Filter;
use std::sync::Arc;

use braid_core::db::{DatabaseConfig, Db, Pooler};
use braid_proto::v1::{Chunk, ChunkHit};

use crate::config::SearchConfig;
use crate::error::VectorError;
use crate::filter::{Param, filter_sql, typed_metadata};
use crate::replica::{ReadRoute, Reason, Route};

const APPLICATION_NAME: &str = "braid-vector-search";

/// How vectors travel to PostgreSQL (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    /// pgvector's binary `vector` / `vector[]`.
    Pgvector,
    /// Binary `real[]`, cast to `vector` in SQL.
    RealArray,
}

impl Encoding {
    fn for_pooler(pooler: Pooler) -> Self {
        match pooler {
            Pooler::None => Encoding::Pgvector,
            Pooler::Transaction => Encoding::RealArray,
        }
    }

    /// The query vector, parameter `$1`, in SQL.
    fn query_vector(self) -> &'static str {
        match self {
            Encoding::Pgvector => "$1::vector",
            Encoding::RealArray => "$1::real[]::vector",
        }
    }
}

#[derive(Clone)]
pub struct Store {
    /// Writes, migrations and searches when the replica does not serve.
    primary: Db,
    replica: Option<Db>,
    route: Arc<ReadRoute>,
    config: DatabaseConfig,
    /// `hnsw.ef_search` of a search that does not ask for its own.
    ef_search: u32,
    encoding: Encoding,
    /// The connections hold `ef_search` and [`ITERATIVE_SCAN`] as session settings (no
    /// transaction-mode pooler).
    session_settings: bool,
}

/// A search against the store. No `Default`: every search states whose access it runs with,
/// so forgetting the caller's ACL does not compile.
pub struct Query<'a> {
    pub tenant: &'a str,
    pub embedding: &'a [f32],
    pub top_k: u32,
    /// Metadata conditions, part of the WHERE clause ([`crate::filter`]).
    pub filter: &'a Filter,
    /// Hits below this cosine similarity are left out.
    pub min_score: Option<f32>,
    /// Only vectors of this model; empty = any.
    pub model: &'a str,
    /// The caller's clearance and groups, applied in the WHERE clause.
    pub access: &'a Access,
    /// `hnsw.ef_search` for this query only (`SET LOCAL` in its transaction); `None` =
    /// `search.ef_search`.
    pub ef_search: Option<u32>,
}

/// The largest `hnsw.ef_search` pgvector accepts.
pub const MAX_EF_SEARCH: u32 = 1000;

/// `hnsw.iterative_scan` for every search: filtered searches keep scanning until enough rows
/// pass; the caller restores exact order.
pub const ITERATIVE_SCAN: &str = "relaxed_order";

impl Store {
    pub fn connect(
        db: &DatabaseConfig,
        search: &SearchConfig,
        metrics: &braid_core::metrics::Metrics,
    ) -> Result<Self, VectorError> {
        // Session settings of the service's own connections (left out behind a
        // transaction-mode pooler, see `braid_core::db::primary_with`).
        let ef_search = search.ef_search.to_string();
        let settings = [
            ("hnsw.ef_search", ef_search.as_str()),
            ("hnsw.iterative_scan", ITERATIVE_SCAN),
            ("plan_cache_mode", "force_custom_plan"),
        ];
        let replica = braid_core::db::replica_with(db, APPLICATION_NAME, &settings)?;
        let initial = if replica.is_some() {
            Route::Primary(Reason::Starting)
        } else {
            Route::Primary(Reason::NoReplica)
        };
        Ok(Self {
            primary: braid_core::db::primary_with(db, APPLICATION_NAME, &settings)?,
            replica,
            route: ReadRoute::new(initial, metrics)
                .map_err(|e| VectorError::invalid("metrics", e.to_string()))?,
            config: db.clone(),
            ef_search: search.ef_search,
            encoding: Encoding::for_pooler(db.pooler),
            session_settings: db.pooler == Pooler::None,
        })
    }

    /// Watches the replica in the background (see `replica`); None without one.
    pub fn spawn_replica_watch(&self) -> Option<tokio::task::JoinHandle<()>> {
        let replica = self.replica.clone()?;
        Some(tokio::spawn(crate::replica::watch(
            self.primary.clone(),
            replica,
            self.route.clone(),
            self.config.replica_check_interval(),
            self.config.max_replica_lag(),
            self.config.acquire_timeout(),
        )))
    }

    /// Pool usage for `braid_db_pool_*` (sampled on every `/metrics` scrape): the primary's.
    pub fn pool_sample(&self) -> braid_core::metrics::PoolSample {
        self.primary.pool_sample()
    }

    /// The replica's pool, when there is one (for the status view).
    pub fn replica_pool_sample(&self) -> Option<braid_core::metrics::PoolSample> {
        self.replica.as_ref().map(Db::pool_sample)
    }

    /// Where searches read now and why (for the status view).
    pub fn read_route(&self) -> String {
        self.route.describe()
    }

    /// `hnsw.ef_search` of a search that does not ask for its own.
    pub fn ef_search(&self) -> u32 {
        self.ef_search
    }

    /// The chunk count PostgreSQL's statistics estimate (no scan; -1 before the first
    /// ANALYZE) and the HNSW index's size in bytes, from the primary.
    pub async fn index_estimate(&self) -> Result<(i64, i64), VectorError> {
        Ok(sqlx::query_as(
            "SELECT c.reltuples::int8, \
                    COALESCE((SELECT sum(pg_relation_size(i.indexrelid))::int8 \
                              FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid \
                              JOIN pg_am am ON am.oid = ic.relam \
                              WHERE i.indrelid = c.oid AND am.amname = 'hnsw'), 0) \
             FROM pg_class c WHERE c.oid = 'vectors.chunks'::regclass",
        )
        .fetch_one(&self.primary)
        .await?)
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        // Version numbers 1000-1999 belong to this service; other services' migrations in
        // the same database are left alone.
        let mut migrator = sqlx::migrate!("./migrations");
        migrator.set_ignore_missing(true);
        braid_core::db::migrate(&self.config, APPLICATION_NAME, &migrator).await
    }

    /// Dimensions of the `embedding` column.
    pub async fn column_dimensions(&self) -> Result<usize, VectorError> {
        let typmod: i32 = sqlx::query_scalar(
            "SELECT atttypmod FROM pg_attribute \
             WHERE attrelid = 'vectors.chunks'::regclass AND attname = 'embedding'",
        )
        .fetch_one(&self.primary)
        .await?;
        Ok(typmod.max(0) as usize)
    }

    /// The HNSW settings a search at the default `ef_search` runs with, read back as it
    /// would run: (`hnsw.ef_search`, `hnsw.iterative_scan`). Fails when pgvector rejects them
    /// with `SET LOCAL`; a session setting it rejects is left at pgvector's default, which
    /// the caller sees here (loading `vector` first makes pgvector define the settings).
    pub async fn search_settings(&self) -> Result<(String, String), VectorError> {
        let query = sqlx::query_as(
            "SELECT current_setting('hnsw.ef_search'), current_setting('hnsw.iterative_scan') \
             FROM (SELECT '[1]'::vector) AS loaded",
        );
        let mut rows = self.fetch_all(&self.primary, self.ef_search, query).await?;
        rows.pop()
            .ok_or_else(|| VectorError::Database(sqlx::Error::RowNotFound))
    }

    /// Runs `query` with the HNSW settings of `ef_search`: as it is on a connection whose
    /// session holds them, else in a transaction of its own after `SET LOCAL`.
    async fn fetch_all<'q, O>(
        &self,
        db: &Db,
        ef_search: u32,
        query: sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    ) -> Result<Vec<O>, sqlx::Error>
    where
        O: Send + Unpin + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
    {
        if self.session_settings && ef_search == self.ef_search {
            return query.fetch_all(db).await;
        }
        let mut tx = db.begin().await?;
        set_local_hnsw(&mut tx, ef_search).await?;
        let rows = query.fetch_all(&mut tx).await?;
        tx.commit().await?;
        Ok(rows)
    }

    pub async fn ping(&self) -> Result<(), VectorError> {
        sqlx::query("SELECT 1").execute(&self.primary).await?;
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
        let acl = chunks_acl(chunks).map_err(|e| VectorError::invalid(e.field, e.message))?;
        let mut tx = self.primary.begin().await?;
        sqlx::query(
            "DELETE FROM vectors.chunks WHERE tenant = $1 AND document_id = $2::uuid              AND (NOT $3 OR model = $4)",
        )
        .bind(tenant)
        .bind(document_id)
        .bind(keep_other_models)
        .bind(model)
        .execute(&mut tx)
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
            let typed: Vec<String> = chunks.iter().map(|c| typed_metadata(&c.metadata)).collect();
            let dims = embeddings.first().map_or(0, Vec::len);
            if let Some(i) = embeddings.iter().position(|v| v.len() != dims) {
                return Err(VectorError::invalid(
                    format!("embeddings[{i}]"),
                    format!("{} dimensions, the others have {dims}", embeddings[i].len()),
                ));
            }
            let insert = sqlx::query(match self.encoding {
                Encoding::Pgvector => INSERT_VECTORS,
                Encoding::RealArray => INSERT_REAL_ARRAYS,
            })
            .bind(tenant)
            .bind(document_id)
            .bind(model)
            .bind(&ids)
            .bind(&external)
            .bind(&titles)
            .bind(&ordinals)
            .bind(&bodies)
            .bind(&metadata)
            .bind(acl.clearance as i32) // chunks_acl checked it fits
            .bind(&acl.groups)
            .bind(&typed);
            let insert = match self.encoding {
                Encoding::Pgvector => insert.bind(
                    embeddings
                        .iter()
                        .map(|v| pgvector::Vector::from(v.clone()))
                        .collect::<Vec<_>>(),
                ),
                // All vectors in one flat real[]: row n is elements (n-1)*d+1 ..= n*d.
                Encoding::RealArray => insert
                    .bind(embeddings.iter().flatten().copied().collect::<Vec<f32>>())
                    .bind(dims as i64),
            };
            insert.execute(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(chunks.len() as u32)
    }

    /// Deletes every vector not produced by `keep_model`.
    pub async fn purge_models(&self, keep_model: &str) -> Result<u64, VectorError> {
        let done = sqlx::query("DELETE FROM vectors.chunks WHERE model <> $1")
            .bind(keep_model)
            .execute(&self.primary)
            .await?;
        Ok(done.rows_affected())
    }

    /// Recovery: (tenant, document id, chunk id, hex SHA-256 of the text, model) of every
    /// vector held for the given (tenant, document id) pairs. The hash is computed in SQL,
    /// so the texts never leave the database.
    pub async fn list_chunks(
        &self,
        tenants: &[String],
        document_ids: &[String],
    ) -> Result<Vec<(String, String, String, String, String)>, VectorError> {
        let rows = sqlx::query_as(
            "SELECT c.tenant, c.document_id::text, c.chunk_id, \
                    encode(sha256(convert_to(c.body, 'UTF8')), 'hex'), c.model \
             FROM vectors.chunks c \
             JOIN unnest($1::text[], $2::uuid[]) AS k(tenant, document_id) \
               ON c.tenant = k.tenant AND c.document_id = k.document_id \
             ORDER BY c.tenant, c.document_id, c.chunk_id",
        )
        .bind(tenants)
        .bind(document_ids)
        .fetch_all(&self.primary)
        .await?;
        Ok(rows)
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
                .execute(&self.primary)
                .await?;
        Ok(done.rows_affected() as u32)
    }

    /// Nearest chunks by cosine distance. Tenant, metadata and access filters are part of the
    /// SQL, and pgvector's iterative index scan keeps returning candidates until enough pass
    /// them. Access: unrestricted, or clearance at most the caller's and no groups or a shared
    /// one ([`Access::admits`]).
    pub async fn search(&self, q: Query<'_>) -> Result<Vec<ChunkHit>, VectorError> {
        let filter = filter_sql(q.filter, 8);
        let vector = self.encoding.query_vector();
        let sql = format!(
            "SELECT chunk_id, document_id::text, external_id, title, body, ordinal, \
                    1 - (embedding <=> {vector}) AS score \
             FROM vectors.chunks \
             WHERE tenant = $2 AND ($4 = '' OR model = $4) \
               AND ($5 OR (acl_clearance <= $6::int8 \
                           AND (acl_groups = '{{}}' OR acl_groups && $7::text[]))){} \
             ORDER BY embedding <=> {vector} \
             LIMIT $3",
            filter.sql
        );
        let query = sqlx::query_as::<_, HitRow>(&sql);
        let query = match self.encoding {
            Encoding::Pgvector => query.bind(pgvector::Vector::from(q.embedding.to_vec())),
            Encoding::RealArray => query.bind(q.embedding),
        };
        let ef_search = q.ef_search.unwrap_or(self.ef_search).min(MAX_EF_SEARCH);
        let query = query
            .bind(q.tenant)
            .bind(q.top_k as i64)
            .bind(q.model)
            .bind(q.access.unrestricted)
            .bind(i64::from(q.access.clearance))
            .bind(
                q.access
                    .groups
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>(),
            );
        let query = filter.params.into_iter().fold(query, |query, p| match p {
            Param::Text(v) | Param::Json(v) => query.bind(v),
            Param::TextArray(v) => query.bind(v),
            Param::Float(v) => query.bind(v),
            Param::Int(v) => query.bind(v),
        });
        let rows = match self.route.get() {
            Route::Replica => {
                let replica = self.replica.as_ref().unwrap_or(&self.primary);
                match self.fetch_all(replica, ef_search, query).await {
                    Ok(rows) => rows,
                    // The replica went away under us: the primary answers this search, and
                    // the following ones until the background check finds the replica back.
                    Err(
                        e @ (sqlx::Error::Io(_)
                        | sqlx::Error::PoolTimedOut
                        | sqlx::Error::PoolClosed),
                    ) => {
                        self.route
                            .set(Route::Primary(Reason::ReplicaDown), &e.to_string());
                        return Box::pin(self.search(q)).await;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Route::Primary(_) => self.fetch_all(&self.primary, ef_search, query).await?,
        };
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
        // Rows come by distance: the threshold cuts the tail, as it would in the WHERE clause.
        if let Some(min) = q.min_score {
            hits.retain(|h| h.score >= min);
        }
        Ok(hits)
    }
}

/// `SET LOCAL` of both HNSW settings, in the caller's transaction. Loading `vector` first
/// makes pgvector define (and so validate) the settings.
async fn set_local_hnsw(tx: &mut braid_core::db::DbTx, ef_search: u32) -> Result<(), sqlx::Error> {
    sqlx::query(
        "SELECT set_config('hnsw.ef_search', $1, true), set_config('hnsw.iterative_scan', $2, true) \
         FROM (SELECT '[1]'::vector) AS loaded",
    )
    .bind(ef_search.to_string())
    .bind(ITERATIVE_SCAN)
    .execute(&mut *tx)
    .await
    .map(|_| ())
}

/// The chunks of one document, one row per element of the parallel arrays; the vectors as one
/// `vector[]` ($13).
const INSERT_VECTORS: &str = "INSERT INTO vectors.chunks \
      (chunk_id, tenant, document_id, external_id, title, ordinal, body, metadata, model, embedding, \
       acl_clearance, acl_groups, metadata_typed) \
    SELECT u.chunk_id, $1, $2::uuid, u.external_id, u.title, u.ordinal, u.body, \
           u.metadata::jsonb, $3, u.embedding, $10, $11::text[], u.typed::jsonb \
    FROM UNNEST($4::text[], $5::text[], $6::text[], $7::int4[], $8::text[], $9::text[], \
                $12::text[], $13::vector[]) \
      AS u(chunk_id, external_id, title, ordinal, body, metadata, typed, embedding)";

/// [`INSERT_VECTORS`] with the vectors as one flat `real[]` ($13) of rows of $14 elements:
/// row n is elements (n-1)*d+1 ..= n*d.
const INSERT_REAL_ARRAYS: &str = "INSERT INTO vectors.chunks \
      (chunk_id, tenant, document_id, external_id, title, ordinal, body, metadata, model, embedding, \
       acl_clearance, acl_groups, metadata_typed) \
    SELECT u.chunk_id, $1, $2::uuid, u.external_id, u.title, u.ordinal, u.body, \
           u.metadata::jsonb, $3, ($13::real[])[(u.n - 1) * $14 + 1 : u.n * $14]::vector, \
           $10, $11::text[], u.typed::jsonb \
    FROM UNNEST($4::text[], $5::text[], $6::text[], $7::int4[], $8::text[], $9::text[], \
                $12::text[]) WITH ORDINALITY \
      AS u(chunk_id, external_id, title, ordinal, body, metadata, typed, n)";

type HitRow = (String, String, String, String, String, i32, f64);

#[cfg(test)]
mod tests {
    use braid_proto::v1::DocumentAcl;

    use super::*;

    /// A store on a database of its own (`ScratchDatabase`), migrated; dropped by
    /// [`TestDb::drop`].
    struct TestDb(braid_core::db::ScratchDatabase);

    impl TestDb {
        async fn store() -> (Store, TestDb) {
            let scratch = braid_core::db::ScratchDatabase::create("braid_vs_test").await;
            // One connection: a test sees what the previous search left on it.
            let db = DatabaseConfig {
                max_connections: 1,
                ..scratch.config.clone()
            };
            // A small candidate list, so the HNSW path needs the iterative scan to fill top_k.
            let search = SearchConfig {
                ef_search: 10,
                ..SearchConfig::default()
            };
            let metrics = braid_core::metrics::Metrics::new("vector_search");
            let store = Store::connect(&db, &search, &metrics).unwrap();
            store.migrate().await.unwrap();
            (store, TestDb(scratch))
        }

        async fn drop(self, store: Store) {
            store.primary.close().await;
            self.0.drop().await;
        }
    }

    fn acl(clearance: u32, groups: &[&str]) -> Option<DocumentAcl> {
        Some(DocumentAcl {
            clearance,
            groups: groups.iter().map(|g| g.to_string()).collect(),
        })
    }

    fn access(clearance: u32, groups: &[&str]) -> Access {
        Access {
            tenant: None,
            clearance,
            groups: groups.iter().map(|g| g.to_string()).collect(),
            unrestricted: false,
        }
    }

    /// A 384-d unit-ish vector pointing mostly along axis 0, tilted towards axis 1 by `tilt`.
    fn vector(tilt: f32) -> Vec<f32> {
        let mut v = vec![0.0; 384];
        v[0] = 1.0;
        v[1] = tilt;
        v
    }

    async fn put(store: &Store, name: &str, a: Option<DocumentAcl>, tilt: f32) {
        let id = uuid::Uuid::new_v4().to_string();
        let chunk = Chunk {
            chunk_id: format!("{id}:0"),
            document_id: id.clone(),
            tenant: "t".into(),
            external_id: name.into(),
            text: format!("text of {name}"),
            acl: a,
            ..Default::default()
        };
        store
            .replace_document("t", &id, "m", false, &[chunk], &[vector(tilt)])
            .await
            .unwrap();
    }

    async fn names(store: &Store, access: &Access, top_k: u32) -> Vec<String> {
        let hits = store
            .search(Query {
                tenant: "t",
                embedding: &vector(0.0),
                top_k,
                filter: &Filter::default(),
                min_score: None,
                model: "",
                access,
                ef_search: None,
            })
            .await
            .unwrap();
        let mut names: Vec<String> = hits.into_iter().map(|h| h.external_id).collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn access_applies_clearance_and_groups_in_the_sql() {
        let (store, db) = TestDb::store().await;
        put(&store, "public", None, 0.1).await;
        put(&store, "c2", acl(2, &[]), 0.1).await;
        put(&store, "c3", acl(3, &[]), 0.1).await;
        put(&store, "physics", acl(0, &["physics"]), 0.1).await;
        put(
            &store,
            "physics-or-chem-c2",
            acl(2, &["physics", "chem"]),
            0.1,
        )
        .await;
        // Clearance below, at and above the documents' levels; no groups.
        assert_eq!(names(&store, &access(1, &[]), 10).await, ["public"]);
        assert_eq!(names(&store, &access(2, &[]), 10).await, ["c2", "public"]);
        assert_eq!(
            names(&store, &access(3, &[]), 10).await,
            ["c2", "c3", "public"]
        );
        // A shared group admits; another group does not; both rules must hold.
        assert_eq!(
            names(&store, &access(0, &["physics"]), 10).await,
            ["physics", "public"]
        );
        assert_eq!(
            names(&store, &access(5, &["biology"]), 10).await,
            ["c2", "c3", "public"]
        );
        assert_eq!(
            names(&store, &access(2, &["chem"]), 10).await,
            ["c2", "physics-or-chem-c2", "public"]
        );
        // Unrestricted sees everything; an unset AccessFilter is public documents only.
        assert_eq!(names(&store, &Access::unrestricted(), 10).await.len(), 5);
        assert_eq!(
            names(&store, &braid_core::auth::access_from_filter(None), 10).await,
            ["public"]
        );
        db.drop(store).await;
    }

    #[tokio::test]
    async fn top_k_is_filled_with_visible_chunks() {
        let (store, db) = TestDb::store().await;
        // 20 restricted documents nearer the query than the 5 public ones.
        for i in 0..20 {
            put(
                &store,
                &format!("secret{i:02}"),
                acl(3, &["astro"]),
                0.01 * i as f32,
            )
            .await;
        }
        for i in 0..5 {
            put(&store, &format!("public{i}"), None, 1.0 + i as f32).await;
        }
        assert_eq!(
            names(&store, &access(1, &["physics"]), 5).await,
            ["public0", "public1", "public2", "public3", "public4"]
        );
        let all = names(&store, &Access::unrestricted(), 5).await;
        assert!(
            all.iter().all(|n| n.starts_with("secret")),
            "the restricted documents do rank first for a caller who may see them: {all:?}"
        );
        db.drop(store).await;
    }

    /// Deterministic pseudo-random unit vectors (splitmix64), 384-d.
    fn random_vectors(seed: u64, n: usize) -> Vec<Vec<f32>> {
        let mut state = seed;
        let mut next = move || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        (0..n)
            .map(|_| {
                let v: Vec<f32> = (0..384).map(|_| next()).collect();
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.into_iter().map(|x| x / norm).collect()
            })
            .collect()
    }

    /// pgvector's text form of `v`: every f32 written so that it reads back as the same f32.
    fn vector_text(v: &[f32]) -> String {
        let items: Vec<String> = v.iter().map(|x| format!("{x:?}")).collect();
        format!("[{}]", items.join(","))
    }

    /// The binary encodings change nothing: a document's vectors written as `vector[]` and as
    /// `real[]` read back bit for bit, and a search with the query as pgvector's binary
    /// `vector` or as `real[]` returns the same chunks with the same scores (to the bit) as the
    /// same SQL with the query vector as text.
    #[tokio::test]
    async fn binary_vectors_store_and_search_exactly_as_text() {
        let (store, db) = TestDb::store().await;
        assert_eq!(store.encoding, Encoding::Pgvector);
        let real_arrays = Store {
            encoding: Encoding::RealArray,
            ..store.clone()
        };
        let vectors = random_vectors(7, 120);
        for (i, docs) in vectors.chunks(4).enumerate() {
            let writer = if i % 2 == 0 { &store } else { &real_arrays };
            let id = uuid::Uuid::new_v4().to_string();
            let chunks: Vec<Chunk> = (0..docs.len())
                .map(|n| Chunk {
                    chunk_id: format!("{id}:{n}"),
                    document_id: id.clone(),
                    tenant: "t".into(),
                    external_id: format!("d{i}"),
                    ordinal: n as u32,
                    text: format!("chunk {i}.{n}"),
                    ..Default::default()
                })
                .collect();
            writer
                .replace_document("t", &id, "m", false, &chunks, docs)
                .await
                .unwrap();
        }
        let stored: Vec<(String, Vec<f32>)> = sqlx::query_as(
            "SELECT body, embedding::real[] FROM vectors.chunks ORDER BY ordinal, body",
        )
        .fetch_all(&store.primary)
        .await
        .unwrap();
        assert_eq!(stored.len(), vectors.len());
        for (body, v) in &stored {
            let (i, n) = body["chunk ".len()..].split_once('.').unwrap();
            let want = &vectors[i.parse::<usize>().unwrap() * 4 + n.parse::<usize>().unwrap()];
            assert!(
                v.iter()
                    .map(|x| x.to_bits())
                    .eq(want.iter().map(|x| x.to_bits())),
                "{body} reads back other values"
            );
        }

        let access = Access::unrestricted();
        for query in random_vectors(11, 12) {
            let by_text: Vec<(String, f64)> = sqlx::query_as(
                "SELECT chunk_id, 1 - (embedding <=> $1::text::vector) FROM vectors.chunks \
                 WHERE tenant = 't' ORDER BY embedding <=> $1::text::vector, chunk_id LIMIT 10",
            )
            .bind(vector_text(&query))
            .fetch_all(&store.primary)
            .await
            .unwrap();
            for s in [&store, &real_arrays] {
                let hits = s
                    .search(Query {
                        tenant: "t",
                        embedding: &query,
                        top_k: 10,
                        filter: &Filter::default(),
                        min_score: None,
                        model: "",
                        access: &access,
                        ef_search: Some(200),
                    })
                    .await
                    .unwrap();
                let got: Vec<(String, u32)> = hits
                    .into_iter()
                    .map(|h| (h.chunk_id, h.score.to_bits()))
                    .collect();
                let want: Vec<(String, u32)> = by_text
                    .iter()
                    .map(|(id, score)| (id.clone(), (*score as f32).to_bits()))
                    .collect();
                assert_eq!(got, want, "{:?}", s.encoding);
            }
        }
        db.drop(store).await;
    }

    /// A search at the default `ef_search` runs on the session settings of the store's own
    /// connections; one with its own `ef_search` sets it for its transaction only, so the
    /// (single) pooled connection is back at the configured settings afterwards.
    #[tokio::test]
    async fn an_own_ef_search_holds_for_its_search_only() {
        let (store, db) = TestDb::store().await;
        let settings = || async {
            sqlx::query_as::<_, (String, String)>(
                "SELECT current_setting('hnsw.ef_search'), current_setting('hnsw.iterative_scan')",
            )
            .fetch_one(&store.primary)
            .await
            .unwrap()
        };
        let configured = ("10".to_string(), ITERATIVE_SCAN.to_string());
        assert_eq!(store.search_settings().await.unwrap(), configured);
        put(&store, "a", None, 0.1).await;
        let hits = store
            .search(Query {
                tenant: "t",
                embedding: &vector(0.0),
                top_k: 5,
                filter: &Filter::default(),
                min_score: None,
                model: "",
                access: &Access::unrestricted(),
                ef_search: Some(77),
            })
            .await
            .unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(settings().await, configured);
        db.drop(store).await;
    }

    #[tokio::test]
    async fn chunks_of_one_document_must_share_its_acl() {
        let (store, db) = TestDb::store().await;
        let id = uuid::Uuid::new_v4().to_string();
        let chunk = |ordinal: u32, a| Chunk {
            chunk_id: format!("{id}:{ordinal}"),
            document_id: id.clone(),
            tenant: "t".into(),
            ordinal,
            acl: a,
            ..Default::default()
        };
        let err = store
            .replace_document(
                "t",
                &id,
                "m",
                false,
                &[chunk(0, None), chunk(1, acl(1, &[]))],
                &[vector(0.0), vector(0.0)],
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("chunks[1].acl"), "{err}");
        db.drop(store).await;
    }
}
