//! `audit.records` in PostgreSQL: schema migrations (versions 3000-3999), batched inserts,
//! the retention purge and keyset-paginated reads for `ListAudit`.

use sqlx::{QueryBuilder, Row};

use super::record::Record;
use braid_core::db::{DatabaseConfig, Db};

const APPLICATION_NAME: &str = "braid-gateway-audit";

#[derive(Clone)]
pub struct AuditStore {
    db: Db,
    config: DatabaseConfig,
}

/// Filters of one `ListAudit` page, newest first.
#[derive(Debug, Default)]
pub struct AuditQuery {
    pub since_ms: Option<i64>,
    pub subject: Option<String>,
    pub tenant: Option<String>,
    pub rpc: Option<String>,
    /// Only records with a smaller id (the previous page's last).
    pub before_id: Option<i64>,
    pub limit: i64,
}

/// A stored record and its id (the pagination key).
pub struct StoredRecord {
    pub id: i64,
    pub record: Record,
}

impl AuditStore {
    /// A lazily connecting pool: an unreachable database does not stop the gateway.
    /// Through a transaction-mode pooler too (`pooler = "transaction"`, see `braid_core::db`).
    pub fn connect(db: &DatabaseConfig) -> Result<Self, sqlx::Error> {
        Ok(Self {
            db: braid_core::db::primary(db, APPLICATION_NAME)?,
            config: db.clone(),
        })
    }

    /// Over a direct connection (`migrate_url`, else `url`).
    pub async fn migrate(&self) -> anyhow::Result<()> {
        // Version numbers 3000-3999 belong to the gateway; other services' migrations in the
        // same database are left alone.
        let mut migrator = sqlx::migrate!("./migrations");
        migrator.set_ignore_missing(true);
        braid_core::db::migrate(&self.config, APPLICATION_NAME, &migrator).await
    }

    pub async fn insert(&self, records: &[Record]) -> Result<(), sqlx::Error> {
        let mut q = QueryBuilder::new(
            "INSERT INTO audit.records (at, subject, tenant, role, client_addr, rpc, code, \
             latency_ms, result_count, document_ids, trace_id, query, calls) ",
        );
        q.push_values(records, |mut b, r| {
            b.push("to_timestamp(")
                .push_bind_unseparated(r.at_ms as f64 / 1000.0)
                .push_unseparated(")")
                .push_bind(&r.subject)
                .push_bind(&r.tenant)
                .push_bind(&r.role)
                .push_bind(&r.client_addr)
                .push_bind(r.rpc)
                .push_bind(&r.code)
                .push_bind(r.latency_ms)
                .push_bind(r.result_count as i64)
                .push_bind(&r.document_ids)
                .push_bind(&r.trace_id)
                .push_bind(&r.query)
                .push_bind(i64::try_from(r.calls).unwrap_or(i64::MAX));
        });
        q.build().execute(&self.db).await.map(|_| ())
    }

    #[cfg(test)]
    pub fn db(&self) -> &Db {
        &self.db
    }

    #[cfg(test)]
    pub async fn close(&self) {
        self.db.close().await;
    }

    /// Deletes records older than `days`; returns how many.
    pub async fn purge(&self, days: u32) -> Result<u64, sqlx::Error> {
        let done =
            sqlx::query("DELETE FROM audit.records WHERE at < now() - make_interval(days => $1)")
                .bind(days as i32)
                .execute(&self.db)
                .await?;
        Ok(done.rows_affected())
    }

    pub async fn list(&self, query: &AuditQuery) -> Result<Vec<StoredRecord>, sqlx::Error> {
        let mut q = QueryBuilder::new(
            "SELECT id, (extract(epoch FROM at) * 1000)::bigint AS at_ms, subject, tenant, role, \
             client_addr, rpc, code, latency_ms, result_count, document_ids, trace_id, query, calls \
             FROM audit.records WHERE true",
        );
        if let Some(since) = query.since_ms {
            q.push(" AND at >= to_timestamp(")
                .push_bind(since as f64 / 1000.0)
                .push(")");
        }
        if let Some(subject) = &query.subject {
            q.push(" AND subject = ").push_bind(subject);
        }
        if let Some(tenant) = &query.tenant {
            q.push(" AND tenant = ").push_bind(tenant);
        }
        if let Some(rpc) = &query.rpc {
            q.push(" AND rpc = ").push_bind(rpc);
        }
        if let Some(before) = query.before_id {
            q.push(" AND id < ").push_bind(before);
        }
        q.push(" ORDER BY id DESC LIMIT ").push_bind(query.limit);
        let rows = q.build().fetch_all(&self.db).await?;
        rows.into_iter()
            .map(|row| {
                let rpc: String = row.try_get("rpc")?;
                Ok(StoredRecord {
                    id: row.try_get("id")?,
                    record: Record {
                        at_ms: row.try_get("at_ms")?,
                        subject: row.try_get("subject")?,
                        tenant: row.try_get("tenant")?,
                        role: row.try_get("role")?,
                        client_addr: row.try_get("client_addr")?,
                        rpc: super::layer::rpc_name(&rpc),
                        code: row.try_get("code")?,
                        latency_ms: row.try_get("latency_ms")?,
                        result_count: row.try_get::<i64, _>("result_count")?.max(0) as u64,
                        document_ids: row.try_get("document_ids")?,
                        trace_id: row.try_get("trace_id")?,
                        query: row.try_get("query")?,
                        calls: row.try_get::<i64, _>("calls")?.max(0) as u64,
                    },
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    /// Every service's migrations share one `_sqlx_migrations` table per database: two files
    /// with one version would make the second never run (a merge once gave the gateway two
    /// 3002s, and audit records stopped being stored). The gateway owns 3000-3999.
    #[test]
    fn migration_versions_are_unique_and_the_gateways() {
        let migrator = sqlx::migrate!("./migrations");
        let versions: Vec<i64> = migrator.iter().map(|m| m.version).collect();
        let mut unique = versions.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(
            unique.len(),
            versions.len(),
            "repeated versions: {versions:?}"
        );
        assert!(
            versions.iter().all(|v| (3000..4000).contains(v)),
            "versions outside 3000-3999: {versions:?}"
        );
    }
}
