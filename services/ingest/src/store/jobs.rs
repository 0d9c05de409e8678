//! What the workers run: claim a due job under a lease, renew it, read the payload, and
//! record the outcome (done, retried later, dead-lettered); re-embedding jobs.

use std::collections::HashMap;
use std::time::Duration;

use braid_proto::v1::DocumentAcl;
use uuid::Uuid;

use super::{DbResult, Leg, Metadata, Op, Store, bump_generation, refresh_status};

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

/// What becomes of a job that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Retried after the delay; the attempt counts.
    Retry(Duration),
    /// The leg is in an outage (`outage.rs`): retried after the delay, the attempt given back.
    Outage(Duration),
    /// Dead-lettered.
    Dead,
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

impl Store {
    /// Claims the next due job: pending and due, or running with an expired lease. A job
    /// waits while another job of the same document and leg holds a live lease. Tenants take
    /// turns: the job comes from the tenant whose jobs were claimed longest ago (never: first,
    /// the one with the oldest open job leading), oldest job first within it, so a tenant's
    /// bulk load delays another tenant's documents by about one job per busy tenant, not by its
    /// whole backlog.
    ///
    /// The tenants with open jobs are found by skipping through `jobs_open_by_tenant` (one
    /// index probe per tenant), each tenant's jobs are read from its oldest until one is
    /// claimable, and the running-job check probes `jobs_running`, so a claim costs about the
    /// number of tenants, not of open jobs: the query it replaces scanned and sorted every
    /// open job (17-31 ms per claim at 10,000 open jobs, 0.13-0.3 ms now). Jobs of the legs in
    /// `skip_legs` (paused in an outage, see `outage.rs`) are passed over.
    pub async fn claim_job(&self, lease: Duration, skip_legs: &[&str]) -> DbResult<Option<Job>> {
        let mut tx = self.db.begin().await?;
        let row: Option<ClaimedRow> = sqlx::query_as(
            "UPDATE ingest.jobs j SET state = 'running', attempts = j.attempts + 1, \
               locked_until = now() + $1 * interval '1 millisecond', updated_at = now() \
             WHERE j.id = ( \
               WITH RECURSIVE open_tenants(tenant) AS ( \
                 (SELECT o.tenant FROM ingest.jobs o WHERE o.state IN ('pending', 'running') \
                  ORDER BY o.tenant LIMIT 1) \
                 UNION ALL \
                 SELECT (SELECT o.tenant FROM ingest.jobs o \
                         WHERE o.state IN ('pending', 'running') AND o.tenant > p.tenant \
                         ORDER BY o.tenant LIMIT 1) \
                 FROM open_tenants p WHERE p.tenant IS NOT NULL), \
               turns AS ( \
                 SELECT o.tenant, t.last_claimed_at, \
                        (SELECT f.id FROM ingest.jobs f \
                         WHERE f.tenant = o.tenant AND f.state IN ('pending', 'running') \
                         ORDER BY f.id LIMIT 1) AS first_id \
                 FROM open_tenants o LEFT JOIN ingest.claim_turns t ON t.tenant = o.tenant \
                 WHERE o.tenant IS NOT NULL) \
               SELECT pick.id FROM turns \
               CROSS JOIN LATERAL ( \
                 SELECT c.id FROM ingest.jobs c \
                 WHERE c.tenant = turns.tenant AND c.state IN ('pending', 'running') \
                   AND c.leg <> ALL($2::text[]) \
                   AND ((c.state = 'pending' AND c.run_after <= now()) \
                        OR (c.state = 'running' AND c.locked_until < now())) \
                   AND NOT EXISTS ( \
                     SELECT 1 FROM ingest.jobs r \
                     WHERE r.document_id = c.document_id AND r.leg = c.leg AND r.id <> c.id \
                       AND r.state = 'running' AND r.locked_until >= now()) \
                 ORDER BY c.id \
                 FOR UPDATE OF c SKIP LOCKED LIMIT 1) pick \
               ORDER BY turns.last_claimed_at ASC NULLS FIRST, turns.first_id \
               LIMIT 1) \
             RETURNING j.id, j.document_id, j.tenant, j.leg, j.op, j.doc_version, j.attempts, j.reembed",
        )
        .bind(lease.as_millis() as i64)
        .bind(skip_legs)
        .fetch_optional(&mut tx)
        .await?;
        if let Some((_, _, tenant, ..)) = &row {
            // clock_timestamp, not now(): claims in one instant still take turns in order.
            sqlx::query(
                "INSERT INTO ingest.claim_turns (tenant, last_claimed_at) \
                 VALUES ($1, clock_timestamp()) \
                 ON CONFLICT (tenant) DO UPDATE SET last_claimed_at = EXCLUDED.last_claimed_at",
            )
            .bind(tenant)
            .execute(&mut tx)
            .await?;
        }
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
        .execute(&self.db)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The document as it is now, for an upsert job; None when it was deleted or a newer
    /// version superseded the job.
    pub async fn payload(&self, job: &Job) -> DbResult<Option<IndexPayload>> {
        let mut tx = self.db.begin().await?;
        let doc: Option<PayloadRow> = sqlx::query_as(
            "SELECT version, deleted, external_id, title, metadata, acl_clearance, acl_groups \
                 FROM ingest.documents WHERE id = $1",
        )
        .bind(job.document_id)
        .fetch_optional(&mut tx)
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
        .fetch_all(&mut tx)
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
            .execute(&self.db)
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
        .fetch_one(&self.db)
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
        .execute(&self.db)
        .await?;
        Ok(done.rows_affected())
    }

    /// Marks a job done; records the leg as synced at the job's version.
    pub async fn complete_job(&self, job: &Job, synced: bool) -> DbResult<()> {
        let mut tx = self.db.begin().await?;
        sqlx::query(
            "UPDATE ingest.jobs SET state = 'done', locked_until = NULL, last_error = NULL, updated_at = now() \
             WHERE id = $1",
        )
        .bind(job.id)
        .execute(&mut tx)
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
                .execute(&mut tx)
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
            .execute(&mut tx)
            .await?;
        }
        refresh_status(&mut tx, job.document_id).await?;
        tx.commit().await
    }

    /// Records a failed attempt: retried later (an outage's try given back), or dead-lettered.
    /// Only while the job is still this worker's (running, same attempt): a worker whose lease
    /// lapsed and whose job another worker took records nothing.
    pub async fn fail_job(&self, job: &Job, error: &str, then: AfterFailure) -> DbResult<()> {
        let mut tx = self.db.begin().await?;
        let (state, delay, given_back) = match then {
            AfterFailure::Retry(delay) => ("pending", delay, 0),
            AfterFailure::Outage(delay) => ("pending", delay, 1),
            AfterFailure::Dead => ("dead", Duration::ZERO, 0),
        };
        let recorded = sqlx::query(
            "UPDATE ingest.jobs SET state = $2, locked_until = NULL, last_error = $3, \
               run_after = CASE WHEN $2 = 'pending' \
                 THEN now() + $4 * interval '1 millisecond' ELSE run_after END, \
               attempts = $5 - $6, updated_at = now() \
             WHERE id = $1 AND state = 'running' AND attempts = $5",
        )
        .bind(job.id)
        .bind(state)
        .bind(error)
        .bind(delay.as_millis() as i64)
        .bind(job.attempts)
        .bind(given_back)
        .execute(&mut tx)
        .await?;
        if recorded.rows_affected() == 0 {
            tracing::warn!(
                job = job.id,
                "job failure not recorded: its lease lapsed and another worker holds it"
            );
            return tx.commit().await;
        }
        sqlx::query("UPDATE ingest.documents SET last_error = $2 WHERE id = $1")
            .bind(job.document_id)
            .bind(format!("{} leg: {error}", job.leg.as_str()))
            .execute(&mut tx)
            .await?;
        refresh_status(&mut tx, job.document_id).await?;
        tx.commit().await
    }
}
