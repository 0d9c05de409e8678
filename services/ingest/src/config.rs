use std::path::PathBuf;

use braid_core::auth::internal::InternalAuthConfig;
use braid_core::config::{
    BreakerSettings, ClientConfig, DatabaseConfig, ServerConfig, TelemetryConfig, Validate,
    positive,
};
use braid_core::filter::MetadataTypes;
use serde::{Deserialize, Serialize};

/// Configuration of the ingest service (`BRAID_INGEST__*`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    pub server: ServerConfig,
    pub telemetry: TelemetryConfig,
    pub database: DatabaseConfig,
    pub embedding: ClientConfig,
    pub vector_search: ClientConfig,
    pub text_search: ClientConfig,
    /// Circuit breaker applied to each downstream client.
    pub breaker: BreakerSettings,
    pub chunking: ChunkingConfig,
    pub limits: LimitsConfig,
    pub worker: WorkerConfig,
    /// PII removed from text before it is chunked and indexed.
    pub redaction: crate::redact::RedactionConfig,
    /// Service credentials: required from callers, sent to downstream services.
    pub internal_auth: InternalAuthConfig,
    /// Rebuilding and checking the search legs.
    pub recovery: RecoveryConfig,
    /// Declared metadata types, the one place they are declared: a document whose value does
    /// not fit its key's type is rejected, and the gateway checks typed filters against them
    /// (`IngestService.MetadataTypes`).
    pub metadata_types: MetadataTypes,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecoveryConfig {
    /// How often ingest checks that text-search still holds the index it wrote to.
    pub text_index_check_ms: u64,
    /// Documents read from PostgreSQL and sent to a leg per step of a reindex or verify.
    pub batch_documents: usize,
    /// Attempts per reindex step before the run fails (exponential backoff from 200 ms).
    pub step_attempts: u32,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        Self {
            text_index_check_ms: 5_000,
            batch_documents: 100,
            step_attempts: 5,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChunkingConfig {
    /// Tokens per chunk (the embedding model reads at most 256).
    pub max_tokens: usize,
    /// Tokens repeated from the end of one chunk at the start of the next.
    pub overlap_tokens: usize,
    /// `tokenizer.json` of the embedding model; when unset, a BERT-style word/punctuation
    /// pre-tokeniser counts tokens instead.
    pub tokenizer_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Documents in one Ingest request.
    pub max_documents_per_request: usize,
    /// Bytes of one document's content.
    pub max_document_bytes: usize,
    /// Bytes of one document's title.
    pub max_title_bytes: usize,
    /// Bytes of one document's `external_id`.
    pub max_external_id_bytes: usize,
    /// Metadata entries of one document.
    pub max_metadata_entries: usize,
    /// Highest clearance a document's ACL may require.
    pub max_acl_clearance: u32,
    /// Groups per document ACL.
    pub max_acl_groups: usize,
    /// Bytes per ACL group name.
    pub max_acl_group_bytes: usize,
    /// A document that would be cut into more chunks is rejected before any embedding work.
    pub max_chunks_per_document: usize,
    /// Bytes of text in one chunk (a chunk is `chunking.max_tokens` tokens; a "token" with no
    /// break in it, such as a pasted base64 blob, could otherwise be megabytes).
    pub max_chunk_bytes: usize,
    /// How long a wait for indexing (`wait_until_indexed`, WaitIndexed) lasts when the
    /// request gives no `wait_timeout_ms`.
    pub default_wait_ms: u64,
    /// Longest `wait_timeout_ms` a request may give.
    pub max_wait_ms: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// Concurrent job workers in this process.
    pub concurrency: usize,
    /// How often idle workers look for due jobs (they are also woken by new ingests).
    pub poll_interval_ms: u64,
    /// A claimed job is re-claimable by another worker after this long (crash recovery).
    pub lease_ms: u64,
    /// Attempts before a job is dead-lettered.
    pub max_attempts: u32,
    /// Retry delay ceiling for attempt n is min(backoff_max, backoff_base * multiplier^(n-1)),
    /// with full jitter. Defaults spread 5 attempts over about a day.
    pub backoff_base_ms: u64,
    /// Growth of the retry delay per attempt (see `backoff_base_ms`).
    pub backoff_multiplier: f64,
    /// Ceiling of the retry delay (see `backoff_base_ms`).
    pub backoff_max_ms: u64,
    /// A leg that is not serving (`UNAVAILABLE`, or shedding load with `RESOURCE_EXHAUSTED`)
    /// is in an outage, no failure of the document: for this long after the leg's first such
    /// failure, a job that meets it is due again when the leg's pause ends (see
    /// `outage_retry_max_ms`), and only the job whose failure began the outage is charged its
    /// attempt; workers claim none of the leg's jobs during a pause. A longer outage is charged
    /// like any failure. 0: every failure is charged.
    pub outage_grace_ms: u64,
    /// Longest pause between tries of a leg in an outage (from 1 s, doubling per failed try).
    pub outage_retry_max_ms: u64,
    /// Chunks per embedding call.
    pub embed_batch: usize,
    /// Finished jobs are deleted after this long.
    pub keep_done_ms: u64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            server: ServerConfig::with_ports(50052, 9102),
            telemetry: TelemetryConfig::default(),
            database: DatabaseConfig::default(),
            embedding: ClientConfig::new("http://127.0.0.1:50053", 120_000),
            vector_search: ClientConfig::new("http://127.0.0.1:50054", 30_000),
            text_search: ClientConfig::new("http://127.0.0.1:50055", 30_000),
            breaker: BreakerSettings::default(),
            chunking: ChunkingConfig::default(),
            limits: LimitsConfig::default(),
            worker: WorkerConfig::default(),
            redaction: crate::redact::RedactionConfig::default(),
            internal_auth: InternalAuthConfig::default(),
            recovery: RecoveryConfig::default(),
            metadata_types: MetadataTypes::default(),
        }
    }
}

impl Default for ChunkingConfig {
    fn default() -> Self {
        Self {
            max_tokens: 200,
            overlap_tokens: 40,
            tokenizer_file: None,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_documents_per_request: 256,
            max_document_bytes: 4 * 1024 * 1024,
            max_title_bytes: 1024,
            max_external_id_bytes: 512,
            max_metadata_entries: 32,
            max_acl_clearance: 1000,
            max_acl_groups: 32,
            max_acl_group_bytes: 128,
            max_chunks_per_document: 5_000,
            max_chunk_bytes: 16 * 1024,
            // Waits must end within the server's request timeout (30 s by default).
            default_wait_ms: 20_000,
            max_wait_ms: 25_000,
        }
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: 4,
            poll_interval_ms: 500,
            lease_ms: 120_000,
            max_attempts: 5,
            // Retry ceilings 40 min, 2 h, 6 h, 16 h: five attempts span about a day.
            backoff_base_ms: 40 * 60 * 1000,
            backoff_multiplier: 3.0,
            backoff_max_ms: 16 * 60 * 60 * 1000,
            // Restarts and rollouts last seconds to minutes: their documents are indexed
            // within 15 s of the leg's return instead of waiting for the retry schedule.
            outage_grace_ms: 15 * 60 * 1000,
            outage_retry_max_ms: 15_000,
            embed_batch: 64,
            keep_done_ms: 7 * 24 * 60 * 60 * 1000,
        }
    }
}

impl Validate for IngestConfig {
    fn validate(&self, errors: &mut Vec<String>) {
        self.server.validate(errors);
        self.telemetry.validate(errors);
        self.internal_auth.validate(errors);
        self.metadata_types.validate("metadata_types", errors);
        self.database.validate(errors);
        self.database.reject_replica("database", errors);
        self.embedding.validate("embedding", errors);
        self.vector_search.validate("vector_search", errors);
        self.text_search.validate("text_search", errors);
        self.breaker.validate(errors);
        let c = &self.chunking;
        positive(errors, "chunking.max_tokens", c.max_tokens as u64);
        if c.overlap_tokens * 2 > c.max_tokens {
            errors.push(format!(
                "chunking.overlap_tokens ({}) must be at most half of chunking.max_tokens ({})",
                c.overlap_tokens, c.max_tokens
            ));
        }
        let l = &self.limits;
        positive(
            errors,
            "limits.max_documents_per_request",
            l.max_documents_per_request as u64,
        );
        positive(
            errors,
            "limits.max_document_bytes",
            l.max_document_bytes as u64,
        );
        // Both search legs store the clearance as a PostgreSQL `integer`.
        if l.max_acl_clearance > i32::MAX as u32 {
            errors.push(format!(
                "limits.max_acl_clearance ({}) must be at most {}",
                l.max_acl_clearance,
                i32::MAX
            ));
        }
        positive(
            errors,
            "limits.max_chunks_per_document",
            l.max_chunks_per_document as u64,
        );
        positive(errors, "limits.max_chunk_bytes", l.max_chunk_bytes as u64);
        self.redaction.validate(errors);
        let r = &self.recovery;
        positive(
            errors,
            "recovery.text_index_check_ms",
            r.text_index_check_ms,
        );
        if !(1..=500).contains(&r.batch_documents) {
            errors.push(format!(
                "recovery.batch_documents is {}, must be 1..=500",
                r.batch_documents
            ));
        }
        positive(errors, "recovery.step_attempts", u64::from(r.step_attempts));
        if l.default_wait_ms > l.max_wait_ms {
            errors.push("limits.default_wait_ms must not exceed limits.max_wait_ms".into());
        }
        if l.max_wait_ms >= self.server.request_timeout_ms {
            errors.push(format!(
                "limits.max_wait_ms ({}) must be below server.request_timeout_ms ({}): a wait ends inside the request's deadline",
                l.max_wait_ms, self.server.request_timeout_ms
            ));
        }
        let w = &self.worker;
        positive(errors, "worker.concurrency", w.concurrency as u64);
        positive(errors, "worker.poll_interval_ms", w.poll_interval_ms);
        positive(errors, "worker.lease_ms", w.lease_ms);
        positive(errors, "worker.max_attempts", w.max_attempts as u64);
        positive(errors, "worker.embed_batch", w.embed_batch as u64);
        if !(w.backoff_multiplier.is_finite() && w.backoff_multiplier >= 1.0) {
            errors.push("worker.backoff_multiplier must be at least 1.0".into());
        }
        if w.backoff_base_ms > w.backoff_max_ms {
            errors.push("worker.backoff_base_ms must not exceed worker.backoff_max_ms".into());
        }
        if w.outage_retry_max_ms < 1_000 {
            errors.push(format!(
                "worker.outage_retry_max_ms ({}) must be at least 1000 (the first pause of an outage)",
                w.outage_retry_max_ms
            ));
        }
    }
}

impl braid_core::entry::ServiceConfig for IngestConfig {
    fn server(&self) -> &ServerConfig {
        &self.server
    }
    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn defaults_are_valid() {
        // Service credentials are on by default; only the key must be given.
        let env = HashMap::from([(
            "BRAID_INGEST__INTERNAL_AUTH__KEY__VALUE".to_string(),
            "k".repeat(32),
        )]);
        let cfg: IngestConfig = braid_core::config::load("ingest", None, &env).unwrap();
        assert_eq!(cfg.server.grpc_addr.port(), 50052);
        assert_eq!(cfg.worker.max_attempts, 5);
    }

    #[test]
    fn reports_every_problem() {
        let env = HashMap::from([
            (
                "BRAID_INGEST__INTERNAL_AUTH__KEY__VALUE".to_string(),
                "k".repeat(32),
            ),
            (
                "BRAID_INGEST__CHUNKING__OVERLAP_TOKENS".to_string(),
                "150".to_string(),
            ),
            (
                "BRAID_INGEST__WORKER__CONCURRENCY".to_string(),
                "0".to_string(),
            ),
            (
                "BRAID_INGEST__EMBEDDING__ENDPOINT".to_string(),
                "localhost:1".to_string(),
            ),
        ]);
        let err = braid_core::config::load::<IngestConfig>("ingest", None, &env).unwrap_err();
        assert_eq!(err.errors.len(), 3, "{err}");
    }
}
