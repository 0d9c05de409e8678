//! SQL for the `ingest` schema: documents, chunks and the job outbox.
//!
//! A document change (insert, update, delete) and the jobs that propagate it to both search
//! legs are written in one transaction, so no change is lost when a leg is down. Workers claim
//! jobs with `FOR UPDATE SKIP LOCKED` and a lease; a job whose worker died becomes claimable
//! again when its lease expires. Jobs of one (document, leg) never run concurrently, so legs
//! receive a document's versions in order.

use std::collections::HashMap;
use std::time::Duration;

use braid_proto::v1::DocumentAcl;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use braid_core::config::DatabaseConfig;

pub type DbResult<T> = Result<T, sqlx::Error>;

/// Metadata as stored (a JSON object of strings).
type Metadata = sqlx::types::Json<HashMap<String, String>>;

/// A validated, extracted and chunked document ready to be stored.
#[derive(Debug)]
pub struct NewDocument {
    pub tenant: String,
    pub external_id: String,
    pub title: String,
    pub mime_type: &'static str,
    pub metadata: HashMap<String, String>,
    /// Validated and normalised (see `acl::validate`); part of `content_sha256`.
    pub acl: DocumentAcl,
    pub content_sha256: String,
    pub chunks: Vec<(String, i32)>,
}

pub struct Upserted {
    pub document_id: Uuid,
    pub status: String,
    pub unchanged: bool,
    pub chunk_count: i32,
}

/// A document row as returned to callers.
#[derive(Debug, sqlx::FromRow)]
pub struct DocumentRow {
    pub id: Uuid,
    pub tenant: String,
    pub external_id: String,
    pub title: String,
    pub mime_type: String,
    pub metadata: Metadata,
    pub status: String,
    pub chunk_count: i32,
    pub content_sha256: String,
    pub version: i64,
    pub last_error: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub vector_synced_ms: Option<i64>,
    pub text_synced_ms: Option<i64>,
    pub acl_clearance: i32,
    pub acl_groups: Vec<String>,
}

impl DocumentRow {
    pub fn acl(&self) -> DocumentAcl {
        DocumentAcl {
            clearance: self.acl_clearance.max(0) as u32,
            groups: self.acl_groups.clone(),
        }
    }
}

const DOCUMENT_COLUMNS: &str = "id, tenant, external_id, title, mime_type, metadata, status, chunk_count, \
    content_sha256, version, last_error, acl_clearance, acl_groups, \
    (extract(epoch FROM created_at) * 1000)::bigint AS created_ms, \
    (extract(epoch FROM updated_at) * 1000)::bigint AS updated_ms, \
    (extract(epoch FROM vector_synced_at) * 1000)::bigint AS vector_synced_ms, \
    (extract(epoch FROM text_synced_at) * 1000)::bigint AS text_synced_ms";

/// The two search legs a document is indexed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leg {
    Vector,
    Text,
}

impl Leg {
    pub const BOTH: [Leg; 2] = [Leg::Vector, Leg::Text];

    pub fn as_str(self) -> &'static str {
        match self {
            Leg::Vector => "vector",
            Leg::Text => "text",
        }
    }

    fn parse(s: &str) -> Leg {
        if s == "vector" {
            Leg::Vector
        } else {
            Leg::Text
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Upsert,
    Delete,
}

/// A claimed job.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: i64,
    pub document_id: Uuid,
    pub tenant: String,
    pub leg: Leg,
    pub op: Op,
    pub doc_version: i64,
    pub attempts: i32,
    /// Re-embedding with a new model: keep other models' vectors in the leg.
    pub reembed: bool,
}

/// id, document_id, tenant, leg, op, doc_version, attempts, reembed.
type ClaimedRow = (i64, Uuid, String, String, String, i64, i32, bool);

/// version, deleted, external_id, title, metadata, acl_clearance, acl_groups.
type PayloadRow = (i64, bool, String, String, Metadata, i32, Vec<String>);

/// What a worker pushes to a leg for one document.
pub struct IndexPayload {
    pub external_id: String,
    pub title: String,
    pub metadata: HashMap<String, String>,
    pub acl: DocumentAcl,
    pub chunks: Vec<(i32, String)>,
}

#[derive(Clone)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    pub fn connect(db: &DatabaseConfig) -> DbResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(db.max_connections)
            .acquire_timeout(db.acquire_timeout())
            .connect_lazy(&db.url)?;
        Ok(Self { pool })
    }

    /// Pool usage for `braid_db_pool_*` (sampled on every `/metrics` scrape).
    /// The pool, for the recovery module's queries (`recovery::store`).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn pool_sample(&self) -> braid_core::metrics::PoolSample {
        let idle = u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX);
        braid_core::metrics::PoolSample {
            in_use: self.pool.size().saturating_sub(idle),
            idle,
            max: self.pool.options().get_max_connections(),
        }
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        // Version numbers 2000-2999 belong to this service; other services' migrations in
        // the same database are left alone.
        let mut migrator = sqlx::migrate!("./migrations");
        migrator.set_ignore_missing(true);
        migrator.run(&self.pool).await?;
        Ok(())
    }

    pub async fn ping(&self) -> DbResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
    }

    /// Inserts or updates a document, replaces its chunks and enqueues one upsert job per leg,
    /// in one transaction. Unchanged content (same hash) is a no-op.
    pub async fn upsert_document(&self, doc: &NewDocument) -> DbResult<Upserted> {
        let mut tx = self.pool.begin().await?;
        let existing: Option<(Uuid, String, bool, String, i32)> = sqlx::query_as(
            "SELECT id, content_sha256, deleted, status, chunk_count FROM ingest.documents \
             WHERE tenant = $1 AND external_id = $2 FOR UPDATE",
        )
        .bind(&doc.tenant)
        .bind(&doc.external_id)
        .fetch_optional(&mut *tx)
        .await?;
        let metadata = sqlx::types::Json(&doc.metadata);
        let chunk_count = doc.chunks.len() as i32;
        // Validated against `limits.max_acl_clearance`, which is at most i32::MAX.
        let acl_clearance = i32::try_from(doc.acl.clearance).unwrap_or(i32::MAX);
        let (id, version) = match existing {
            Some((id, sha, deleted, status, count)) if sha == doc.content_sha256 && !deleted => {
                tx.commit().await?;
                return Ok(Upserted {
                    document_id: id,
                    status,
                    unchanged: true,
                    chunk_count: count,
                });
            }
            Some((id, ..)) => {
                let version: i64 = sqlx::query_scalar(
                    "UPDATE ingest.documents SET title = $2, mime_type = $3, metadata = $4, \
                       content_sha256 = $5, chunk_count = $6, acl_clearance = $7, acl_groups = $8, \
                       version = version + 1, deleted = false, \
                       status = 'pending', last_error = NULL, updated_at = now() \
                     WHERE id = $1 RETURNING version",
                )
                .bind(id)
                .bind(&doc.title)
                .bind(doc.mime_type)
                .bind(metadata)
                .bind(&doc.content_sha256)
                .bind(chunk_count)
                .bind(acl_clearance)
                .bind(&doc.acl.groups)
                .fetch_one(&mut *tx)
                .await?;
                sqlx::query("DELETE FROM ingest.chunks WHERE document_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                // Older versions' pending jobs are superseded by the new ones.
                supersede_pending(&mut tx, id).await?;
                (id, version)
            }
            None => {
                let id = Uuid::new_v4();
                sqlx::query(
                    "INSERT INTO ingest.documents \
                       (id, tenant, external_id, title, mime_type, metadata, content_sha256, chunk_count, \
                        acl_clearance, acl_groups) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(id)
                .bind(&doc.tenant)
                .bind(&doc.external_id)
                .bind(&doc.title)
                .bind(doc.mime_type)
                .bind(metadata)
                .bind(&doc.content_sha256)
                .bind(chunk_count)
                .bind(acl_clearance)
                .bind(&doc.acl.groups)
                .execute(&mut *tx)
                .await?;
                (id, 1)
            }
        };
        let ordinals: Vec<i32> = (0..chunk_count).collect();
        let bodies: Vec<&str> = doc.chunks.iter().map(|(t, _)| t.as_str()).collect();
        let tokens: Vec<i32> = doc.chunks.iter().map(|(_, n)| *n).collect();
        sqlx::query(
            "INSERT INTO ingest.chunks (document_id, ordinal, body, token_count) \
             SELECT $1, u.ordinal, u.body, u.tokens FROM UNNEST($2::int4[], $3::text[], $4::int4[]) \
               AS u(ordinal, body, tokens)",
        )
        .bind(id)
        .bind(&ordinals)
        .bind(&bodies)
        .bind(&tokens)
        .execute(&mut *tx)
        .await?;
        enqueue(&mut tx, id, &doc.tenant, Op::Upsert, version).await?;
        tx.commit().await?;
        Ok(Upserted {
            document_id: id,
            status: "pending".into(),
            unchanged: false,
            chunk_count,
        })
    }

    /// The document `id` of `tenant` (another tenant's document is absent).
    pub async fn get_document(&self, tenant: &str, id: Uuid) -> DbResult<Option<DocumentRow>> {
        sqlx::query_as(&format!(
            "SELECT {DOCUMENT_COLUMNS} FROM ingest.documents WHERE id = $1 AND tenant = $2"
        ))
        .bind(id)
        .bind(tenant)
        .fetch_optional(&self.pool)
        .await
    }

    pub async fn find_document(&self, tenant: &str, external_id: &str) -> DbResult<Option<Uuid>> {
        sqlx::query_scalar("SELECT id FROM ingest.documents WHERE tenant = $1 AND external_id = $2")
            .bind(tenant)
            .bind(external_id)
            .fetch_optional(&self.pool)
            .await
    }

    /// Marks a document deleted and enqueues delete jobs for both legs. The row disappears
    /// once both legs confirmed. Returns false when there is no such live document.
    pub async fn delete_document(&self, tenant: &str, id: Uuid) -> DbResult<bool> {
        let mut tx = self.pool.begin().await?;
        let version: Option<i64> = sqlx::query_scalar(
            "UPDATE ingest.documents SET deleted = true, status = 'deleting', version = version + 1, \
               updated_at = now() \
             WHERE id = $1 AND tenant = $2 AND NOT deleted RETURNING version",
        )
        .bind(id)
        .bind(tenant)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(version) = version else {
            return Ok(false);
        };
        supersede_pending(&mut tx, id).await?;
        enqueue(&mut tx, id, tenant, Op::Delete, version).await?;
        bump_generation(&mut tx, tenant).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Current status of each id (missing ids: deleted and gone).
    pub async fn statuses(&self, ids: &[Uuid]) -> DbResult<HashMap<Uuid, String>> {
        let rows: Vec<(Uuid, String)> =
            sqlx::query_as("SELECT id, status FROM ingest.documents WHERE id = ANY($1)")
                .bind(ids)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().collect())
    }

    /// External id and chunk count of those of `ids` that belong to `tenant`.
    pub async fn tenant_documents(
        &self,
        tenant: &str,
        ids: &[Uuid],
    ) -> DbResult<HashMap<Uuid, (String, i32)>> {
        let rows: Vec<(Uuid, String, i32)> = sqlx::query_as(
            "SELECT id, external_id, chunk_count FROM ingest.documents WHERE tenant = $1 AND id = ANY($2)",
        )
        .bind(tenant)
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(id, e, c)| (id, (e, c))).collect())
    }

    /// Claims the next due job: pending and due, or running with an expired lease. A job
    /// waits while another job of the same document and leg holds a live lease.
    pub async fn claim_job(&self, lease: Duration) -> DbResult<Option<Job>> {
        let mut tx = self.pool.begin().await?;
        let row: Option<ClaimedRow> = sqlx::query_as(
            "UPDATE ingest.jobs j SET state = 'running', attempts = j.attempts + 1, \
               locked_until = now() + $1 * interval '1 millisecond', updated_at = now() \
             WHERE j.id = ( \
               SELECT c.id FROM ingest.jobs c \
               WHERE ((c.state = 'pending' AND c.run_after <= now()) \
                      OR (c.state = 'running' AND c.locked_until < now())) \
                 AND NOT EXISTS ( \
                   SELECT 1 FROM ingest.jobs r \
                   WHERE r.document_id = c.document_id AND r.leg = c.leg AND r.id <> c.id \
                     AND r.state = 'running' AND r.locked_until >= now()) \
               ORDER BY c.id \
               FOR UPDATE SKIP LOCKED LIMIT 1) \
             RETURNING j.id, j.document_id, j.tenant, j.leg, j.op, j.doc_version, j.attempts, j.reembed",
        )
        .bind(lease.as_millis() as i64)
        .fetch_optional(&mut *tx)
        .await?;
        let job = row.map(
            |(id, document_id, tenant, leg, op, doc_version, attempts, reembed)| Job {
                id,
                document_id,
                tenant,
                leg: Leg::parse(&leg),
                op: if op == "delete" {
                    Op::Delete
                } else {
                    Op::Upsert
                },
                doc_version,
                attempts,
                reembed,
            },
        );
        if let Some(job) = &job {
            refresh_status(&mut tx, job.document_id).await?;
        }
        tx.commit().await?;
        Ok(job)
    }

    /// Extends a running job's lease; false when the job is no longer ours to finish.
    pub async fn renew_lease(&self, job: &Job, lease: Duration) -> DbResult<bool> {
        let done = sqlx::query(
            "UPDATE ingest.jobs SET locked_until = now() + $2 * interval '1 millisecond' \
             WHERE id = $1 AND state = 'running' AND attempts = $3",
        )
        .bind(job.id)
        .bind(lease.as_millis() as i64)
        .bind(job.attempts)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The document as it is now, for an upsert job; None when it was deleted or a newer
    /// version superseded the job.
    pub async fn payload(&self, job: &Job) -> DbResult<Option<IndexPayload>> {
        let mut tx = self.pool.begin().await?;
        let doc: Option<PayloadRow> = sqlx::query_as(
            "SELECT version, deleted, external_id, title, metadata, acl_clearance, acl_groups \
                 FROM ingest.documents WHERE id = $1",
        )
        .bind(job.document_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((version, deleted, external_id, title, metadata, acl_clearance, acl_groups)) = doc
        else {
            return Ok(None);
        };
        if deleted || version != job.doc_version {
            return Ok(None);
        }
        let chunks: Vec<(i32, String)> = sqlx::query_as(
            "SELECT ordinal, body FROM ingest.chunks WHERE document_id = $1 ORDER BY ordinal",
        )
        .bind(job.document_id)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(IndexPayload {
            external_id,
            title,
            metadata: metadata.0,
            acl: DocumentAcl {
                clearance: acl_clearance.max(0) as u32,
                groups: acl_groups,
            },
            chunks,
        }))
    }

    /// Records the model whose vectors the vector leg now holds for this version.
    pub async fn set_vector_model(&self, job: &Job, model: &str) -> DbResult<()> {
        sqlx::query("UPDATE ingest.documents SET vector_model = $3 WHERE id = $1 AND version = $2")
            .bind(job.document_id)
            .bind(job.doc_version)
            .bind(model)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Documents (of `tenant`, or all) indexed in the vector leg by another model than
    /// `model`, and not already waiting for a vector job.
    pub async fn reembed_candidates(&self, tenant: Option<&str>, model: &str) -> DbResult<i64> {
        sqlx::query_scalar(
            "SELECT count(*) FROM ingest.documents d \
             WHERE NOT d.deleted AND ($1::text IS NULL OR d.tenant = $1) \
               AND d.vector_model IS DISTINCT FROM $2",
        )
        .bind(tenant)
        .bind(model)
        .fetch_one(&self.pool)
        .await
    }

    /// Enqueues a re-embedding vector job for every document whose vectors are from another
    /// model and that has no vector job pending or running. Returns how many were enqueued.
    pub async fn enqueue_reembed(&self, tenant: Option<&str>, model: &str) -> DbResult<u64> {
        let done = sqlx::query(
            "INSERT INTO ingest.jobs (document_id, tenant, leg, op, doc_version, reembed) \
             SELECT d.id, d.tenant, 'vector', 'upsert', d.version, true \
             FROM ingest.documents d \
             WHERE NOT d.deleted AND ($1::text IS NULL OR d.tenant = $1) \
               AND d.vector_model IS DISTINCT FROM $2 \
               AND NOT EXISTS (SELECT 1 FROM ingest.jobs j WHERE j.document_id = d.id \
                               AND j.leg = 'vector' AND j.state IN ('pending', 'running'))",
        )
        .bind(tenant)
        .bind(model)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Marks a job done; records the leg as synced at the job's version.
    pub async fn complete_job(&self, job: &Job, synced: bool) -> DbResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE ingest.jobs SET state = 'done', locked_until = NULL, last_error = NULL, updated_at = now() \
             WHERE id = $1",
        )
        .bind(job.id)
        .execute(&mut *tx)
        .await?;
        if synced {
            let sql = match job.leg {
                Leg::Vector => {
                    "UPDATE ingest.documents SET vector_version = $2, vector_synced_at = now() \
                     WHERE id = $1 AND version = $2"
                }
                Leg::Text => {
                    "UPDATE ingest.documents SET text_version = $2, text_synced_at = now() \
                     WHERE id = $1 AND version = $2"
                }
            };
            let changed = sqlx::query(sql)
                .bind(job.document_id)
                .bind(job.doc_version)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            // A leg now serves this version (or no longer serves a deleted document): what
            // the tenant's searches return changed, and so does its index generation, in the
            // same transaction as the status change below (READY, gone).
            if changed > 0 || job.op == Op::Delete {
                bump_generation(&mut tx, &job.tenant).await?;
            }
        }
        if job.op == Op::Delete {
            // Gone from both legs: drop the row (chunks cascade).
            sqlx::query(
                "DELETE FROM ingest.documents d WHERE d.id = $1 AND d.deleted AND NOT EXISTS ( \
                   SELECT 1 FROM ingest.jobs j WHERE j.document_id = d.id AND j.op = 'delete' \
                     AND j.doc_version = d.version AND j.state <> 'done')",
            )
            .bind(job.document_id)
            .execute(&mut *tx)
            .await?;
        }
        refresh_status(&mut tx, job.document_id).await?;
        tx.commit().await
    }

    /// Records a failed attempt: retried after `retry_in`, or dead-lettered when `None`.
    pub async fn fail_job(
        &self,
        job: &Job,
        error: &str,
        retry_in: Option<Duration>,
    ) -> DbResult<()> {
        let mut tx = self.pool.begin().await?;
        match retry_in {
            Some(delay) => {
                sqlx::query(
                    "UPDATE ingest.jobs SET state = 'pending', locked_until = NULL, last_error = $2, \
                       run_after = now() + $3 * interval '1 millisecond', updated_at = now() WHERE id = $1",
                )
                .bind(job.id)
                .bind(error)
                .bind(delay.as_millis() as i64)
                .execute(&mut *tx)
                .await?;
            }
            None => {
                sqlx::query(
                    "UPDATE ingest.jobs SET state = 'dead', locked_until = NULL, last_error = $2, \
                       updated_at = now() WHERE id = $1",
                )
                .bind(job.id)
                .bind(error)
                .execute(&mut *tx)
                .await?;
            }
        }
        sqlx::query("UPDATE ingest.documents SET last_error = $2 WHERE id = $1")
            .bind(job.document_id)
            .bind(format!("{} leg: {error}", job.leg.as_str()))
            .execute(&mut *tx)
            .await?;
        refresh_status(&mut tx, job.document_id).await?;
        tx.commit().await
    }
}

/// A job row for the admin API.
#[derive(sqlx::FromRow)]
pub struct JobRow {
    pub id: i64,
    pub document_id: Uuid,
    pub tenant: String,
    pub external_id: String,
    pub leg: String,
    pub op: String,
    pub state: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub run_after_ms: i64,
}

/// Which jobs an admin operation applies to.
pub struct JobSelection<'a> {
    pub ids: &'a [i64],
    pub all_dead: bool,
    pub tenant: Option<&'a str>,
}

#[derive(Debug, Default)]
pub struct Stats {
    pub by_status: HashMap<String, i64>,
    pub chunks: i64,
    pub queue_depth: i64,
    pub oldest_pending_seconds: f64,
    pub dead: i64,
    pub last_sync_ms: Option<i64>,
}

impl Store {
    /// Jobs in `states` (and `leg`, `tenant` when given) with id > `after`, oldest first.
    pub async fn list_jobs(
        &self,
        tenant: Option<&str>,
        states: &[&str],
        leg: Option<&str>,
        after: i64,
        limit: i64,
    ) -> DbResult<Vec<JobRow>> {
        sqlx::query_as(
            "SELECT j.id, j.document_id, j.tenant, coalesce(d.external_id, '') AS external_id, \
                    j.leg, j.op, j.state, j.attempts, j.last_error, \
                    (extract(epoch FROM j.created_at) * 1000)::bigint AS created_ms, \
                    (extract(epoch FROM j.updated_at) * 1000)::bigint AS updated_ms, \
                    (extract(epoch FROM j.run_after) * 1000)::bigint AS run_after_ms \
             FROM ingest.jobs j LEFT JOIN ingest.documents d ON d.id = j.document_id \
             WHERE ($1::text IS NULL OR j.tenant = $1) AND j.state = ANY($2) \
               AND ($3::text IS NULL OR j.leg = $3) AND j.id > $4 \
             ORDER BY j.id LIMIT $5",
        )
        .bind(tenant)
        .bind(states)
        .bind(leg)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }

    /// Puts dead (or, by id, discarded) jobs back in the queue with a fresh attempt budget.
    pub async fn retry_jobs(&self, sel: &JobSelection<'_>) -> DbResult<u32> {
        self.update_jobs(
            sel,
            "UPDATE ingest.jobs SET state = 'pending', attempts = 0, run_after = now(), \
               locked_until = NULL, updated_at = now() \
             WHERE ((id = ANY($1) AND state IN ('dead', 'discarded')) OR ($2 AND state = 'dead')) \
               AND ($3::text IS NULL OR tenant = $3) \
             RETURNING document_id",
        )
        .await
    }

    /// Gives up on dead jobs; they stay visible as discarded.
    pub async fn discard_jobs(&self, sel: &JobSelection<'_>) -> DbResult<u32> {
        self.update_jobs(
            sel,
            "UPDATE ingest.jobs SET state = 'discarded', updated_at = now() \
             WHERE state = 'dead' AND (id = ANY($1) OR $2) AND ($3::text IS NULL OR tenant = $3) \
             RETURNING document_id",
        )
        .await
    }

    async fn update_jobs(&self, sel: &JobSelection<'_>, sql: &str) -> DbResult<u32> {
        let mut tx = self.pool.begin().await?;
        let documents: Vec<Uuid> = sqlx::query_scalar(sql)
            .bind(sel.ids)
            .bind(sel.all_dead)
            .bind(sel.tenant)
            .fetch_all(&mut *tx)
            .await?;
        let mut unique = documents.clone();
        unique.sort();
        unique.dedup();
        for id in unique {
            refresh_status(&mut tx, id).await?;
        }
        tx.commit().await?;
        Ok(documents.len() as u32)
    }

    pub async fn stats(&self, tenant: Option<&str>) -> DbResult<Stats> {
        let mut stats = Stats::default();
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT status, count(*), coalesce(sum(chunk_count), 0)::bigint FROM ingest.documents \
             WHERE ($1::text IS NULL OR tenant = $1) GROUP BY status",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        for (status, count, chunks) in rows {
            if status != "deleting" {
                stats.chunks += chunks;
            }
            stats.by_status.insert(status, count);
        }
        let (queue, dead, oldest): (i64, i64, Option<f64>) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE state IN ('pending', 'running')), \
                    count(*) FILTER (WHERE state = 'dead'), \
                    extract(epoch FROM now() - min(created_at) FILTER (WHERE state = 'pending'))::float8 \
             FROM ingest.jobs WHERE state IN ('pending', 'running', 'dead') \
               AND ($1::text IS NULL OR tenant = $1)",
        )
        .bind(tenant)
        .fetch_one(&self.pool)
        .await?;
        stats.queue_depth = queue;
        stats.dead = dead;
        stats.oldest_pending_seconds = oldest.unwrap_or(0.0).max(0.0);
        stats.last_sync_ms = sqlx::query_scalar(
            "SELECT (extract(epoch FROM greatest(max(vector_synced_at), max(text_synced_at))) * 1000)::bigint \
             FROM ingest.documents WHERE ($1::text IS NULL OR tenant = $1)",
        )
        .bind(tenant)
        .fetch_one(&self.pool)
        .await?;
        Ok(stats)
    }

    /// The stored answer for an idempotency key: (request fingerprint, encoded response).
    pub async fn idempotent_response(
        &self,
        tenant: &str,
        key: &str,
    ) -> DbResult<Option<(String, Vec<u8>)>> {
        sqlx::query_as(
            "SELECT request_hash, response FROM ingest.idempotency \
             WHERE tenant = $1 AND key = $2 AND created_at > now() - interval '24 hours'",
        )
        .bind(tenant)
        .bind(key)
        .fetch_optional(&self.pool)
        .await
    }

    pub async fn remember_response(
        &self,
        tenant: &str,
        key: &str,
        fingerprint: &str,
        response: &[u8],
    ) -> DbResult<()> {
        sqlx::query(
            "INSERT INTO ingest.idempotency (tenant, key, request_hash, response) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (tenant, key) DO UPDATE SET request_hash = EXCLUDED.request_hash, \
               response = EXCLUDED.response, created_at = now() \
             WHERE ingest.idempotency.created_at <= now() - interval '24 hours'",
        )
        .bind(tenant)
        .bind(key)
        .bind(fingerprint)
        .bind(response)
        .execute(&self.pool)
        .await
        .map(|_| ())
    }

    /// The tenant's index generation (0 before its first indexed change).
    pub async fn index_generation(&self, tenant: &str) -> DbResult<i64> {
        let generation: Option<i64> =
            sqlx::query_scalar("SELECT generation FROM ingest.index_generations WHERE tenant = $1")
                .bind(tenant)
                .fetch_optional(&self.pool)
                .await?;
        Ok(generation.unwrap_or(0))
    }

    /// Housekeeping: expired idempotency keys, and finished jobs older than `keep_done`.
    pub async fn purge(&self, keep_done: Duration) -> DbResult<()> {
        sqlx::query(
            "DELETE FROM ingest.idempotency WHERE created_at <= now() - interval '24 hours'",
        )
        .execute(&self.pool)
        .await?;
        sqlx::query("DELETE FROM ingest.jobs WHERE state = 'done' AND updated_at < now() - $1 * interval '1 millisecond'")
            .bind(keep_done.as_millis() as i64)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// Moves the tenant's index generation forward (see migration 2005).
async fn bump_generation(tx: &mut Transaction<'_, Postgres>, tenant: &str) -> DbResult<()> {
    sqlx::query(
        "INSERT INTO ingest.index_generations (tenant, generation) VALUES ($1, 1) \
         ON CONFLICT (tenant) DO UPDATE SET generation = ingest.index_generations.generation + 1",
    )
    .bind(tenant)
    .execute(&mut **tx)
    .await
    .map(|_| ())
}

/// A newer change of the document makes its pending jobs pointless.
async fn supersede_pending(tx: &mut Transaction<'_, Postgres>, id: Uuid) -> DbResult<()> {
    sqlx::query(
        "UPDATE ingest.jobs SET state = 'done', last_error = 'superseded', updated_at = now() \
         WHERE document_id = $1 AND state = 'pending'",
    )
    .bind(id)
    .execute(&mut **tx)
    .await
    .map(|_| ())
}

async fn enqueue(
    tx: &mut Transaction<'_, Postgres>,
    id: Uuid,
    tenant: &str,
    op: Op,
    version: i64,
) -> DbResult<()> {
    let op = match op {
        Op::Upsert => "upsert",
        Op::Delete => "delete",
    };
    for leg in Leg::BOTH {
        sqlx::query(
            "INSERT INTO ingest.jobs (document_id, tenant, leg, op, doc_version) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(tenant)
        .bind(leg.as_str())
        .bind(op)
        .bind(version)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Derives a document's status from its leg versions and the jobs of its current version.
async fn refresh_status(tx: &mut Transaction<'_, Postgres>, id: Uuid) -> DbResult<()> {
    sqlx::query(
        "UPDATE ingest.documents d SET status = CASE \
           WHEN d.deleted THEN 'deleting' \
           WHEN d.vector_version = d.version AND d.text_version = d.version THEN 'ready' \
           WHEN EXISTS (SELECT 1 FROM ingest.jobs j WHERE j.document_id = d.id \
                          AND j.doc_version = d.version AND j.state IN ('dead', 'discarded')) THEN \
             CASE WHEN d.vector_version = d.version OR d.text_version = d.version \
                  THEN 'partial' ELSE 'failed' END \
           WHEN d.vector_version = d.version OR d.text_version = d.version \
             OR EXISTS (SELECT 1 FROM ingest.jobs j WHERE j.document_id = d.id \
                          AND j.doc_version = d.version AND j.state = 'running') THEN 'indexing' \
           ELSE 'pending' END \
         WHERE d.id = $1",
    )
    .bind(id)
    .execute(&mut **tx)
    .await
    .map(|_| ())
}
