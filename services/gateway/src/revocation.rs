//! Token revocation without a restart. `RevokeTokens` appends a cut-off for a subject (in one
//! tenant, or in every tenant) to `auth.revocations` in the gateway's database
//! (`audit.database`) and puts it into this replica's list at once; every replica re-reads the
//! cut-offs in force every `revocation.poll_interval_ms` into the list the token verifier
//! checks (`braid_core::auth::revocation`). So a revoked token is refused by every replica
//! within one poll interval (plus the read's own time) of the call returning.
//!
//! While the database cannot be read, a replica keeps the last list it read (fail open: a
//! database outage does not lock every user out) and says so in its log, in
//! `braid_gateway_revocation_sync_errors_total` and in the age of
//! `braid_gateway_revocations_synced_at_seconds`.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use braid_core::auth::Principal;
use braid_core::auth::revocation::{Revocation, Revocations};
use braid_core::config::{DatabaseConfig, positive};
use braid_core::db::Db;
use braid_core::metrics::{Counter, Gauge, Metrics};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::error::GatewayError;

const APPLICATION_NAME: &str = "braid-gateway-revocation";
/// Longest `subject` a revocation names (the same bound as a token's `sub`).
pub const MAX_SUBJECT_BYTES: usize = 256;

/// `revocation.*` (the store is `audit.database`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RevocationConfig {
    /// How often every replica re-reads the cut-offs: the longest a revoked token may still
    /// be accepted by another replica.
    pub poll_interval_ms: u64,
}

impl Default for RevocationConfig {
    fn default() -> Self {
        Self {
            poll_interval_ms: 1_000,
        }
    }
}

impl RevocationConfig {
    pub fn validate(&self, errors: &mut Vec<String>) {
        positive(errors, "revocation.poll_interval_ms", self.poll_interval_ms);
    }
}

#[derive(Clone)]
struct Store {
    db: Db,
    config: DatabaseConfig,
}

impl Store {
    async fn migrate(&self) -> anyhow::Result<()> {
        // The gateway's migrations (3000-3999), shared with the audit trail.
        let mut migrator = sqlx::migrate!("./migrations");
        migrator.set_ignore_missing(true);
        braid_core::db::migrate(&self.config, APPLICATION_NAME, &migrator).await
    }

    async fn insert(
        &self,
        tenant: &str,
        subject: &str,
        cut_off: u64,
        by: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO auth.revocations (tenant, subject, cut_off, revoked_by) \
             VALUES ($1, $2, to_timestamp($3), $4)",
        )
        .bind(tenant)
        .bind(subject)
        .bind(cut_off as f64)
        .bind(by)
        .execute(&self.db)
        .await
        .map(|_| ())
    }

    /// The latest cut-off per (tenant, subject) among those of the last `horizon_secs`.
    async fn in_force(&self, horizon_secs: u64) -> Result<Vec<Revocation>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT tenant, subject, extract(epoch FROM max(cut_off))::bigint AS cut_off \
             FROM auth.revocations \
             WHERE cut_off > now() - make_interval(secs => $1) \
             GROUP BY tenant, subject",
        )
        .bind(horizon_secs as f64)
        .fetch_all(&self.db)
        .await?;
        rows.into_iter()
            .map(|row| {
                Ok(Revocation {
                    tenant: row.try_get("tenant")?,
                    subject: row.try_get("subject")?,
                    cut_off: row.try_get::<i64, _>("cut_off")?.max(0) as u64,
                })
            })
            .collect()
    }
}

struct SyncMetrics {
    in_force: Gauge,
    synced_at: Gauge,
    errors: Counter,
}

/// Stores revocations and keeps this replica's list current.
pub struct Revoker {
    store: Store,
    list: Arc<Revocations>,
    /// Held by a read-and-replace and by a revocation, so a read that started before a
    /// revocation was stored cannot replace the list without it.
    exclusive: Arc<Mutex<bool>>,
    poll: JoinHandle<()>,
}

impl Drop for Revoker {
    fn drop(&mut self) {
        self.poll.abort();
    }
}

fn now_secs_ceil() -> u64 {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    ms.div_ceil(1000)
}

impl Revoker {
    /// `None` without a database (`audit.database.url` empty): revocation is then off.
    /// `horizon_secs`: how far back a cut-off can still refuse an unexpired token (the
    /// maximum token lifetime plus the clock-skew leeway).
    pub fn start(
        database: &DatabaseConfig,
        config: &RevocationConfig,
        horizon_secs: u64,
        list: Arc<Revocations>,
        metrics: &Metrics,
    ) -> anyhow::Result<Option<Self>> {
        if database.url.is_empty() {
            return Ok(None);
        }
        let store = Store {
            db: braid_core::db::primary(database, APPLICATION_NAME)?,
            config: database.clone(),
        };
        let sync = SyncMetrics {
            in_force: metrics.gauge(
                "gateway_revocations",
                "token revocation cut-offs in force on this replica",
            ),
            synced_at: metrics.gauge(
                "gateway_revocations_synced_at_seconds",
                "when this replica last read the revocations (Unix time)",
            ),
            errors: metrics.counter(
                "gateway_revocation_sync_errors_total",
                "failed reads of the revocations (the last list read stays in force)",
            ),
        };
        // `true` once the schema is migrated.
        let exclusive = Arc::new(Mutex::new(false));
        let poll = tokio::spawn(poll(
            store.clone(),
            list.clone(),
            exclusive.clone(),
            Duration::from_millis(config.poll_interval_ms),
            horizon_secs,
            sync,
        ));
        Ok(Some(Self {
            store,
            list,
            exclusive,
            poll,
        }))
    }

    /// Refuses tokens of `subject` in `tenant` (empty: every tenant) issued before now; the
    /// cut-off (seconds since the Unix epoch, rounded up) is in force here at once and on
    /// every other replica within one poll interval.
    pub async fn revoke(
        &self,
        by: &Principal,
        tenant: &str,
        subject: &str,
    ) -> Result<u64, GatewayError> {
        check_subject(subject)?;
        if !tenant.is_empty() {
            braid_core::validate::tenant(tenant)?;
        }
        let mut migrated = self.exclusive.lock().await;
        if !*migrated {
            self.store.migrate().await.map_err(|e| {
                tracing::warn!(error = %e, "revocation schema migration failed");
                GatewayError::StoreUnavailable("the revocation store")
            })?;
            *migrated = true;
        }
        let cut_off = now_secs_ceil();
        self.store
            .insert(tenant, subject, cut_off, &by.subject)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "revocation not stored");
                GatewayError::StoreUnavailable("the revocation store")
            })?;
        self.list.add(Revocation {
            tenant: tenant.to_string(),
            subject: subject.to_string(),
            cut_off,
        });
        tracing::info!(
            target: "audit",
            revoked = subject,
            tenant,
            cut_off,
            by = %by.subject,
            "tokens revoked"
        );
        Ok(cut_off)
    }
}

fn check_subject(subject: &str) -> Result<(), GatewayError> {
    if subject.is_empty() || subject.len() > MAX_SUBJECT_BYTES {
        return Err(GatewayError::invalid(
            "subject",
            format!(
                "{} bytes, must be 1..={MAX_SUBJECT_BYTES} (the `sub` claim of the tokens to refuse)",
                subject.len()
            ),
        ));
    }
    if subject.chars().any(char::is_control) {
        return Err(GatewayError::invalid(
            "subject",
            "must not contain control characters",
        ));
    }
    Ok(())
}

async fn poll(
    store: Store,
    list: Arc<Revocations>,
    exclusive: Arc<Mutex<bool>>,
    every: Duration,
    horizon_secs: u64,
    metrics: SyncMetrics,
) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_error: Option<String> = None;
    loop {
        ticker.tick().await;
        let mut migrated = exclusive.lock().await;
        let read = async {
            if !*migrated {
                store.migrate().await.map_err(|e| format!("{e:#}"))?;
                *migrated = true;
            }
            store
                .in_force(horizon_secs)
                .await
                .map_err(|e| e.to_string())
        };
        match read.await {
            Ok(in_force) => {
                list.replace(in_force);
                drop(migrated);
                metrics.in_force.set(list.len() as f64);
                metrics.synced_at.set(
                    SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0.0, |d| d.as_secs_f64()),
                );
                if last_error.take().is_some() {
                    tracing::info!("revocations read again");
                }
            }
            Err(e) => {
                drop(migrated);
                metrics.errors.increment(1);
                if last_error.as_deref() != Some(e.as_str()) {
                    tracing::warn!(error = %e, "cannot read the revocations; the last list read stays in force");
                }
                last_error = Some(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_checked_naming_the_field_and_the_limit() {
        assert!(check_subject("alice").is_ok());
        for bad in [String::new(), "a\u{0}b".into(), "x".repeat(257)] {
            let e = check_subject(&bad).unwrap_err();
            assert!(e.to_string().starts_with("subject:"), "{e}");
        }
        let e = check_subject(&"x".repeat(257)).unwrap_err();
        assert!(e.to_string().contains("1..=256"), "{e}");
    }

    #[test]
    fn cut_offs_round_up_to_the_next_second() {
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let cut = now_secs_ceil();
        assert!(cut >= before && cut <= before + 1);
    }
}
