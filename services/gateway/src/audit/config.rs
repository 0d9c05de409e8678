//! `[audit]`: the audit trail of every search, ingest, delete and admin call.

use braid_core::config::{DatabaseConfig, positive};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Audit is on when this is true and `database.url` is set.
    pub enabled: bool,
    /// Where `audit.records` lives (its own pool; may be the services' database). An empty
    /// URL turns audit off.
    pub database: DatabaseConfig,
    /// How a search's query text is stored.
    pub query_text: QueryText,
    /// What happens to a call whose record cannot be queued.
    pub on_failure: OnFailure,
    /// Records older than this are purged.
    pub retention_days: u32,
    /// How often records past `retention_days` are deleted.
    pub purge_interval_ms: u64,
    /// Records waiting to be written; past it, `on_failure` decides.
    pub queue_capacity: usize,
    /// Records per INSERT.
    pub batch_size: usize,
    /// Longest a record waits for others to share its INSERT (0: written at once).
    pub flush_interval_ms: u64,
    /// Calls refused before authentication are written as one record per peer, RPC and
    /// code per window of this length, with their count (`calls`).
    pub anonymous_window_ms: u64,
    /// Peers counted per window; past it, further peers share one record (peer `other`).
    pub max_anonymous_peers: usize,
}

/// How the search query text is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QueryText {
    Plain,
    /// Hex SHA-256 of the query.
    Hash,
    /// Not stored.
    Redact,
}

/// What happens to a call whose record cannot be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// The call fails with UNAVAILABLE.
    FailClosed,
    /// The record is dropped and counted (`braid_gateway_audit_dropped_total`).
    BestEffort,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            database: DatabaseConfig {
                url: String::new(),
                max_connections: 4,
                ..DatabaseConfig::default()
            },
            query_text: QueryText::Hash,
            on_failure: OnFailure::BestEffort,
            retention_days: 90,
            purge_interval_ms: 3_600_000,
            queue_capacity: 10_000,
            batch_size: 256,
            flush_interval_ms: 500,
            anonymous_window_ms: 60_000,
            max_anonymous_peers: 10_000,
        }
    }
}

impl AuditConfig {
    pub fn active(&self) -> bool {
        self.enabled && !self.database.url.is_empty()
    }

    pub fn validate(&self, errors: &mut Vec<String>) {
        if !self.database.url.is_empty() {
            let mut db = Vec::new();
            self.database.validate(&mut db);
            self.database.reject_replica("database", &mut db);
            errors.extend(db.into_iter().map(|e| format!("audit.{e}")));
        }
        positive(errors, "audit.retention_days", self.retention_days as u64);
        positive(errors, "audit.purge_interval_ms", self.purge_interval_ms);
        positive(errors, "audit.queue_capacity", self.queue_capacity as u64);
        positive(errors, "audit.batch_size", self.batch_size as u64);
        positive(
            errors,
            "audit.anonymous_window_ms",
            self.anonymous_window_ms,
        );
        positive(
            errors,
            "audit.max_anonymous_peers",
            self.max_anonymous_peers as u64,
        );
    }
}
