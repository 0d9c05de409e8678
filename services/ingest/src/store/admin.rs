//! Operator queries: job lists, retrying and discarding dead jobs, statistics and the
//! housekeeping purge.

use std::collections::HashMap;
use std::time::Duration;

use uuid::Uuid;

use super::{DbResult, Store, refresh_status};

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
        .fetch_all(&self.db)
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
        let mut tx = self.db.begin().await?;
        let documents: Vec<Uuid> = sqlx::query_scalar(sql)
            .bind(sel.ids)
            .bind(sel.all_dead)
            .bind(sel.tenant)
            .fetch_all(&mut tx)
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
        .fetch_all(&self.db)
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
        .fetch_one(&self.db)
        .await?;
        stats.queue_depth = queue;
        stats.dead = dead;
        stats.oldest_pending_seconds = oldest.unwrap_or(0.0).max(0.0);
        stats.last_sync_ms = sqlx::query_scalar(
            "SELECT (extract(epoch FROM greatest(max(vector_synced_at), max(text_synced_at))) * 1000)::bigint \
             FROM ingest.documents WHERE ($1::text IS NULL OR tenant = $1)",
        )
        .bind(tenant)
        .fetch_one(&self.db)
        .await?;
        Ok(stats)
    }

    /// Housekeeping: expired idempotency keys, and finished jobs older than `keep_done`.
    pub async fn purge(&self, keep_done: Duration) -> DbResult<()> {
        sqlx::query(
            "DELETE FROM ingest.idempotency WHERE created_at <= now() - interval '24 hours'",
        )
        .execute(&self.db)
        .await?;
        sqlx::query("DELETE FROM ingest.jobs WHERE state = 'done' AND updated_at < now() - $1 * interval '1 millisecond'")
            .bind(keep_done.as_millis() as i64)
            .execute(&self.db)
            .await?;
        Ok(())
    }
}
