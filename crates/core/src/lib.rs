//! Shared plumbing for every Braid service: typed configuration (`config`), telemetry
//! (JSON logs, OTLP traces with W3C context propagation, Prometheus metrics), the service host
//! that owns boot and graceful shutdown (`host`) over the gRPC server with reflection and an
//! admin HTTP port (`server`), the health status (`health`) and the status view (`status`), the
//! client channel builder (`client`), PostgreSQL pools with TLS and PgBouncer support (`db`),
//! Redis pools with TLS (`redis_pool`), TLS on gRPC with certificates re-read on change (`tls`), caller identity (`auth`: principal, roles, document access), and the tower layers both sides use (`resilience`).
//!
//! A service's `run` makes a [`host::Host`], registers its gRPC services, probe and background
//! work on it, then calls [`host::Host::serve`] with the already-bound [`server::Listeners`] and
//! a shutdown future.

#![forbid(unsafe_code)]

pub mod auth;
pub mod balance;
pub mod client;
pub mod config;
pub mod db;
pub mod entry;
pub mod filter;
pub mod health;
pub mod host;
pub mod metrics;
pub mod priority;
pub mod redis_pool;
pub mod reload;
pub mod resilience;
pub mod server;
pub mod shutdown;
pub mod status;
pub mod telemetry;
pub mod tls;
pub mod validate;
