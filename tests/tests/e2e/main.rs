//! The end-to-end tests: one test binary (each file of this directory is a module), so the
//! whole stack is linked once instead of once per file. Every test starts its own stack (all
//! five services in-process through their real `run`, ephemeral ports, a fresh PostgreSQL
//! database, a temporary Tantivy index, the real model) on the harness in `tests/src`.
//!
//! Run one module: `cargo test -p braid-tests --test e2e cache::`; one test:
//! `cargo test -p braid-tests --test e2e cache::<name> -- --exact`.
//!
//! Outside this binary: `tests/otlp.rs` (it installs the process-global tracing subscriber)
//! and `tests/opensearch/` (feature `elasticsearch`, an OpenSearch node).
//!
//! A new feature's tests: a file here plus its `mod` line below.

mod acl;
mod acl_gateway;
mod adaptive;
mod audit;
mod auth;
mod backup;
mod balancing;
mod cache;
mod degraded;
mod embedding;
mod fusion_scores;
mod hostile;
mod ingest_resilience;
mod leases;
mod limits;
mod migration_rollback;
mod multilingual;
mod observability;
mod overload;
mod pg_restart;
mod pg_topology;
mod pipeline;
mod query_int8;
mod recovery;
mod reembed;
mod restarts;
mod search_controls;
mod search_quality;
mod security;
mod stable_pages;
mod status;
mod tenant_scores;
mod tls;
mod walls;
mod why_not;
