//! SQL of the recovery features: reindex runs, the recorded text index id, and paging
//! through documents and their chunks in a stable order.

use std::collections::HashMap;

use braid_core::db::Db;
use braid_proto::v1::DocumentAcl;
use uuid::Uuid;

use crate::store::{DbResult, IndexPayload, Leg};

/// What a reindex run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A new text index, built from PostgreSQL and switched atomically.
    Rebuild,
    /// One tenant's documents re-written into the serving text index.
    InPlace,
    /// Vector jobs for documents whose vectors are missing or stale.
    Repair,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Rebuild => "rebuild",
            Mode::InPlace => "in_place",
            Mode::Repair => "repair",
        }
    }
}

#[derive(Debug, sqlx::FromRow)]
pub struct RunRow {
    pub id: i64,
    pub leg: String,
    pub tenant: Option<String>,
    pub mode: String,
    pub state: String,
    pub total: i64,
    pub done: i64,
    pub enqueued: i64,
    pub error: Option<String>,
    pub index_id: Option<String>,
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
}

const RUN_COLUMNS: &str = "id, leg, tenant, mode, state, total, done, enqueued, error, index_id, \
    (extract(epoch FROM started_at) * 1000)::bigint AS started_ms, \
    (extract(epoch FROM finished_at) * 1000)::bigint AS finished_ms";

/// A live document as the legs index it, plus what verify needs.
pub struct DocumentPage {
    pub id: Uuid,
    pub tenant: String,
    pub version: i64,
    pub vector_model: Option<String>,
    /// Indexing jobs pending or running, or not yet indexed: not drift, just not done.
    pub in_flight: bool,
    pub payload: IndexPayload,
}

type PageRow = (
    Uuid,
    String,
    i64,
    Option<String>,
    bool,
    String,
    String,
    sqlx::types::Json<HashMap<String, String>>,
    i32,
    Vec<String>,
);

/// Outcome of starting a run.
pub enum Started {
    Run(i64),
    /// Another run of the leg is under way.
    Busy(i64),
}

#[derive(Clone)]
pub struct RecoveryStore {
    db: Db,
}

impl RecoveryStore {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Runs left `running` by a process that died can never finish: mark them failed.
    pub async fn fail_interrupted(&self) -> DbResult<u64> {
        let done = sqlx::query(
            "UPDATE ingest.reindex_runs SET state = 'failed', finished_at = now(), \
             error = 'interrupted (the ingest service restarted); run the reindex again' \
             WHERE state = 'running'",
        )
        .execute(&self.db)
        .await?;
        Ok(done.rows_affected())
    }

    pub async fn start_run(
        &self,
        leg: Leg,
        tenant: Option<&str>,
        mode: Mode,
        total: i64,
    ) -> DbResult<Started> {
        let inserted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO ingest.reindex_runs (leg, tenant, mode, total) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (leg) WHERE state = 'running' DO NOTHING RETURNING id",
        )
        .bind(leg.as_str())
        .bind(tenant)
        .bind(mode.as_str())
        .bind(total)
        .fetch_optional(&self.db)
        .await?;
        if let Some(id) = inserted {
            return Ok(Started::Run(id));
        }
        let running: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM ingest.reindex_runs WHERE leg = $1 AND state = 'running'",
        )
        .bind(leg.as_str())
        .fetch_optional(&self.db)
        .await?;
        Ok(Started::Busy(running.unwrap_or(0)))
    }

    pub async fn progress(&self, run: i64, done: i64, enqueued: i64) -> DbResult<()> {
        sqlx::query("UPDATE ingest.reindex_runs SET done = $2, enqueued = $3 WHERE id = $1")
            .bind(run)
            .bind(done)
            .bind(enqueued)
            .execute(&self.db)
            .await
            .map(|_| ())
    }

    pub async fn finish_run(
        &self,
        run: i64,
        error: Option<&str>,
        index_id: Option<&str>,
    ) -> DbResult<()> {
        sqlx::query(
            "UPDATE ingest.reindex_runs SET state = CASE WHEN $2::text IS NULL THEN 'done' \
             ELSE 'failed' END, error = $2, index_id = $3, finished_at = now() WHERE id = $1",
        )
        .bind(run)
        .bind(error)
        .bind(index_id)
        .execute(&self.db)
        .await
        .map(|_| ())
    }

    /// Run `id`, or the latest run (of `tenant`'s runs, when given) for id 0.
    pub async fn run(&self, id: i64, tenant: Option<&str>) -> DbResult<Option<RunRow>> {
        sqlx::query_as(&format!(
            "SELECT {RUN_COLUMNS} FROM ingest.reindex_runs \
             WHERE ($1 = 0 OR id = $1) AND ($2::text IS NULL OR tenant = $2) \
             ORDER BY id DESC LIMIT 1"
        ))
        .bind(id)
        .bind(tenant)
        .fetch_optional(&self.db)
        .await
    }

    /// Every run under way, oldest first (for the status view).
    pub async fn running_runs(&self) -> DbResult<Vec<RunRow>> {
        sqlx::query_as(&format!(
            "SELECT {RUN_COLUMNS} FROM ingest.reindex_runs WHERE state = 'running' ORDER BY id"
        ))
        .fetch_all(&self.db)
        .await
    }

    pub async fn recorded_text_index(&self) -> DbResult<Option<String>> {
        sqlx::query_scalar("SELECT index_id FROM ingest.text_index")
            .fetch_optional(&self.db)
            .await
    }

    pub async fn record_text_index(&self, index_id: &str) -> DbResult<()> {
        sqlx::query(
            "INSERT INTO ingest.text_index (index_id) VALUES ($1) ON CONFLICT (singleton) \
             DO UPDATE SET index_id = EXCLUDED.index_id, updated_at = now()",
        )
        .bind(index_id)
        .execute(&self.db)
        .await
        .map(|_| ())
    }

    pub async fn count_documents(&self, tenant: Option<&str>) -> DbResult<i64> {
        sqlx::query_scalar(
            "SELECT count(*) FROM ingest.documents WHERE NOT deleted \
             AND ($1::text IS NULL OR tenant = $1)",
        )
        .bind(tenant)
        .fetch_one(&self.db)
        .await
    }

    /// The next `limit` live documents (of `tenant`, or all) after `after`, in (tenant, id)
    /// order, with their chunks.
    pub async fn documents_page(
        &self,
        tenant: Option<&str>,
        after: Option<&(String, Uuid)>,
        limit: usize,
    ) -> DbResult<Vec<DocumentPage>> {
        let (after_tenant, after_id) = match after {
            Some((t, id)) => (Some(t.as_str()), Some(*id)),
            None => (None, None),
        };
        let rows: Vec<PageRow> = sqlx::query_as(
            "SELECT d.id, d.tenant, d.version, d.vector_model, \
                    (d.status IN ('pending', 'indexing') OR EXISTS (SELECT 1 FROM ingest.jobs j \
                      WHERE j.document_id = d.id AND j.state IN ('pending', 'running'))), \
                    d.external_id, d.title, d.metadata, d.acl_clearance, d.acl_groups \
             FROM ingest.documents d \
             WHERE NOT d.deleted AND ($1::text IS NULL OR d.tenant = $1) \
               AND ($2::text IS NULL OR (d.tenant, d.id) > ($2, $3)) \
             ORDER BY d.tenant, d.id LIMIT $4",
        )
        .bind(tenant)
        .bind(after_tenant)
        .bind(after_id)
        .bind(limit as i64)
        .fetch_all(&self.db)
        .await?;
        let ids: Vec<Uuid> = rows.iter().map(|r| r.0).collect();
        let chunk_rows: Vec<(Uuid, i32, String)> = sqlx::query_as(
            "SELECT document_id, ordinal, body FROM ingest.chunks \
             WHERE document_id = ANY($1) ORDER BY document_id, ordinal",
        )
        .bind(&ids)
        .fetch_all(&self.db)
        .await?;
        let mut chunks: HashMap<Uuid, Vec<(i32, String)>> = HashMap::new();
        for (id, ordinal, body) in chunk_rows {
            chunks.entry(id).or_default().push((ordinal, body));
        }
        Ok(rows
            .into_iter()
            .map(
                |(
                    id,
                    tenant,
                    version,
                    vector_model,
                    in_flight,
                    external_id,
                    title,
                    metadata,
                    clearance,
                    groups,
                )| {
                    DocumentPage {
                        id,
                        tenant,
                        version,
                        vector_model,
                        in_flight,
                        payload: IndexPayload {
                            external_id,
                            title,
                            metadata: metadata.0,
                            acl: DocumentAcl {
                                clearance: clearance.max(0) as u32,
                                groups,
                            },
                            chunks: chunks.remove(&id).unwrap_or_default(),
                        },
                    }
                },
            )
            .collect())
    }

    /// Enqueues an upsert job of `leg` for the document unless one is pending or running.
    /// Returns whether a job was enqueued.
    pub async fn enqueue_repair(&self, doc: &DocumentPage, leg: Leg) -> DbResult<bool> {
        let done = sqlx::query(
            "INSERT INTO ingest.jobs (document_id, tenant, leg, op, doc_version) \
             SELECT $1, $2, $3, 'upsert', $4 \
             WHERE NOT EXISTS (SELECT 1 FROM ingest.jobs j WHERE j.document_id = $1 \
                               AND j.leg = $3 AND j.state IN ('pending', 'running'))",
        )
        .bind(doc.id)
        .bind(&doc.tenant)
        .bind(leg.as_str())
        .bind(doc.version)
        .execute(&self.db)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
