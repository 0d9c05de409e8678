//! SQL for the `ingest` schema: documents, chunks and the job outbox.
//!
//! A document change (insert, update, delete) and the jobs that propagate it to both search
//! legs are written in one transaction, so no change is lost when a leg is down. Workers claim
//! jobs with `FOR UPDATE SKIP LOCKED` and a lease; a job whose worker died becomes claimable
//! again when its lease expires. Jobs of one (document, leg) never run concurrently, so legs
//! receive a document's versions in order.

//!
//! `documents` holds document and idempotency SQL, `jobs` what the workers run (claim, lease,
//! payload, complete, fail), `admin` the operator queries (job lists, retries, stats, purge);
//! the transaction helpers they share are here.

mod admin;
mod documents;
mod jobs;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use uuid::Uuid;

use braid_core::db::{DatabaseConfig, Db, DbTx};

pub use admin::{JobRow, JobSelection};
pub use documents::{DocumentRef, DocumentRow, NewDocument, Upsert};
pub use jobs::{AfterFailure, IndexPayload, Job};

pub type DbResult<T> = Result<T, sqlx::Error>;

/// Metadata as stored (a JSON object of strings).
type Metadata = sqlx::types::Json<HashMap<String, String>>;

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

/// Which documents of a tenant a query may act on: every one (admins, services, auth off),
/// or those a caller's clearance and groups admit — the rule of
/// `braid_core::auth::Access::admits`, evaluated inside the query ([`Visibility::SQL`]) so a
/// hidden document and a missing one run the same statement and get the same answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visibility {
    pub all: bool,
    pub clearance: i64,
    pub groups: Vec<String>,
}

impl Visibility {
    /// The predicate on `ingest.documents` columns, with the visibility bound as `$V1`
    /// (all), `$V2` (clearance) and `$V3` (groups); see [`Visibility::sql`].
    const SQL: &'static str = "($V1::boolean OR (acl_clearance <= $V2::bigint \
        AND (cardinality(acl_groups) = 0 OR acl_groups && $V3::text[])))";

    /// The predicate with its parameters numbered from `first`.
    fn sql(first: usize) -> String {
        Self::SQL
            .replace("$V1", &format!("${first}"))
            .replace("$V2", &format!("${}", first + 1))
            .replace("$V3", &format!("${}", first + 2))
    }

    fn bind<'q, O>(
        &'q self,
        query: sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
        query.bind(self.all).bind(self.clearance).bind(&self.groups)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Upsert,
    Delete,
}

#[derive(Clone)]
pub struct Store {
    db: Db,
    config: DatabaseConfig,
}

impl Store {
    pub fn connect(config: &DatabaseConfig) -> DbResult<Self> {
        Ok(Self {
            db: braid_core::db::primary(config, "braid-ingest")?,
            config: config.clone(),
        })
    }

    /// The database, for the recovery module's queries (`recovery::store`).
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Pool usage for `braid_db_pool_*` (sampled on every `/metrics` scrape).
    pub fn pool_sample(&self) -> braid_core::metrics::PoolSample {
        self.db.pool_sample()
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        // Version numbers 2000-2999 belong to this service; other services' migrations in
        // the same database are left alone.
        let mut migrator = sqlx::migrate!("./migrations");
        migrator.set_ignore_missing(true);
        braid_core::db::migrate(&self.config, "braid-ingest", &migrator).await
    }

    pub async fn ping(&self) -> DbResult<()> {
        sqlx::query("SELECT 1").execute(&self.db).await.map(|_| ())
    }
}

/// Moves the tenant's index generation forward (see migration 2005).
async fn bump_generation(tx: &mut DbTx, tenant: &str) -> DbResult<()> {
    sqlx::query(
        "INSERT INTO ingest.index_generations (tenant, generation) VALUES ($1, 1) \
         ON CONFLICT (tenant) DO UPDATE SET generation = ingest.index_generations.generation + 1",
    )
    .bind(tenant)
    .execute(&mut *tx)
    .await
    .map(|_| ())
}

/// A newer change of the document makes its pending jobs pointless.
async fn supersede_pending(tx: &mut DbTx, id: Uuid) -> DbResult<()> {
    sqlx::query(
        "UPDATE ingest.jobs SET state = 'done', last_error = 'superseded', updated_at = now() \
         WHERE document_id = $1 AND state = 'pending'",
    )
    .bind(id)
    .execute(&mut *tx)
    .await
    .map(|_| ())
}

async fn enqueue(tx: &mut DbTx, id: Uuid, tenant: &str, op: Op, version: i64) -> DbResult<()> {
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
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// Derives a document's status from its leg versions and the jobs of its current version.
async fn refresh_status(tx: &mut DbTx, id: Uuid) -> DbResult<()> {
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
    .execute(&mut *tx)
    .await
    .map(|_| ())
}
