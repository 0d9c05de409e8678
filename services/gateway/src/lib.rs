//! The gateway: Braid's public gRPC API. `search` fans a query out to the vector and text legs
//! concurrently and `fusion` merges their rankings (by default a linear combination of
//! z-score-normalised scores; reciprocal rank fusion and distribution-based score fusion on
//! request), every fused score in [0, 1]; a failed or slow leg degrades the answer instead
//! of failing it. Document operations are proxied to the
//! ingest service through the shared `clients`.

#![forbid(unsafe_code)]

mod audit;
mod auth;
mod cache;
mod clients;
mod config;
mod error;
mod explain;
pub mod fusion;
mod limits;
mod paging;
mod revocation;
mod search;
mod service;
mod status;

/// The narrowest entry points the `cargo fuzz` targets (`fuzz/`) need; not an API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::paging::{Fingerprint, PageTokens, Position};
}

use std::future::Future;
use std::sync::Arc;

use braid_core::auth::internal::InternalAuth;
use braid_core::host::Host;
use braid_core::server::{Guard, Listeners};
use braid_proto::service_names;
use braid_proto::v1::gateway_server::GatewayServer;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;

pub use config::{
    AdaptiveConfig, AuditConfig, Budget, ClassBudget, CostConfig, GatewayConfig, LimitsConfig,
    LongCallLimits, OnFailure, QueryCacheConfig, QueryText, RequestLimits, SearchConfig,
    StreamLimits,
};
pub use error::GatewayError;
pub use error::RETRY_AFTER;

/// Runs the gateway on `listeners` until `shutdown` resolves.
pub async fn run(
    config: GatewayConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    run_with_resolver(config, listeners, braid_core::balance::system(), shutdown).await
}

/// [`run`], with downstream names resolved by `resolver` (tests map a name to replicas).
pub async fn run_with_resolver(
    config: GatewayConfig,
    listeners: Listeners,
    resolver: Arc<dyn braid_core::balance::Resolve>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let mut host = Host::new(service_names::GATEWAY, "gateway", &config.server);
    let metrics = host.metrics().clone();
    let internal =
        InternalAuth::from_config(&config.internal_auth, "gateway").map_err(anyhow::Error::msg)?;
    let revocations = Arc::new(braid_core::auth::revocation::Revocations::new());
    let authenticator = auth::Authenticator::from_config(&config.auth, revocations.clone()).await?;
    // Revocation needs verified tokens and a database; without either, RevokeTokens says so.
    let revoker = match config.auth.mode {
        braid_core::auth::jwt::AuthMode::Jwt => revocation::Revoker::start(
            &config.audit.database,
            &config.revocation,
            config.auth.max_token_ttl_secs + config.auth.leeway_secs,
            revocations.clone(),
            &metrics,
        )?
        .map(Arc::new),
        braid_core::auth::jwt::AuthMode::Disabled => None,
    };
    // /healthz shows which keys sign and verify (key ids only) and the revocations in force,
    // so an operator rotating keys sees when every replica has taken the new ring.
    {
        let (internal, users) = (internal.clone(), authenticator.clone());
        let health = host.health();
        health.set_live_detail("internal_auth.key", move || {
            internal.describe().unwrap_or_else(|| "disabled".into())
        });
        health.set_live_detail("auth.hs256", move || {
            users.describe_keys().unwrap_or_else(|| "none".into())
        });
        health.set_live_detail("revocations", move || {
            format!("{} cut-offs in force", revocations.len())
        });
    }
    let connector = braid_core::client::Connector::new(
        internal.token_source(),
        config.breaker.to_config(),
        &metrics,
        resolver,
    );
    let clients = clients::Clients::new(&config, &connector)?;
    // (up, breaker state) per downstream, in the order of `clients.downstreams`.
    let gauges: Arc<Vec<_>> = Arc::new(
        clients
            .downstreams
            .iter()
            .map(|d| {
                let label = [("downstream", d.name)];
                (
                    metrics.gauge_with(
                        "downstream_up",
                        "1 when the downstream service reports SERVING",
                        &label,
                    ),
                    metrics.gauge_with(
                        "circuit_breaker_state",
                        "0 closed, 1 half-open, 2 open",
                        &label,
                    ),
                )
            })
            .collect(),
    );

    // The gateway serves while at least one search leg can answer: text-search alone, or
    // embedding + vector-search together. Anything less is NOT_SERVING.
    {
        let downstreams = clients.downstreams.clone();
        host.probe(move || {
            let downstreams = downstreams.clone();
            let gauges = gauges.clone();
            async move {
                let checks = downstreams.iter().map(|d| {
                    let mut client = d.health.clone();
                    async move {
                        let request = HealthCheckRequest {
                            service: d.service.to_string(),
                        };
                        let serving = matches!(
                            tokio::time::timeout(std::time::Duration::from_secs(2), client.check(request)).await,
                            Ok(Ok(r)) if r.get_ref().status == ServingStatus::Serving as i32
                        );
                        (d.name, serving)
                    }
                });
                let results = futures::future::join_all(checks).await;
                for ((d, (up, breaker_state)), (_, serving)) in
                    downstreams.iter().zip(gauges.iter()).zip(&results)
                {
                    breaker_state.set(d.breaker.state().as_gauge() as f64);
                    up.set(f64::from(u8::from(*serving)));
                }
                let is_up = |name: &str| results.iter().any(|(n, s)| *n == name && *s);
                if is_up("text-search") || (is_up("embedding") && is_up("vector-search")) {
                    Ok(())
                } else {
                    let down: Vec<&str> = results
                        .iter()
                        .filter(|(_, s)| !s)
                        .map(|(n, _)| *n)
                        .collect();
                    Err(format!(
                        "no search leg available (down: {})",
                        down.join(", ")
                    ))
                }
            }
        });
    }
    let status_view = Arc::new(status::StatusView {
        own: host.status().clone(),
        downstreams: clients.downstreams.clone(),
    });
    // Page tokens are signed with a key derived from the internal service key ring (the
    // signing key; any key of the ring verifies), so every replica accepts every other's
    // tokens, across a key rotation too; without one, a random key per process.
    let page_keys = internal.keys();
    let searcher = Arc::new(search::Searcher {
        clients,
        limits: search::LegLimits::new(&config.search),
        config: config.search.clone(),
        metrics: search::SearchMetrics::new(&metrics)?,
        cache: cache::QueryCache::new(&config.query_cache, &metrics)?,
        pages: match page_keys {
            Some(ring) => paging::PageTokens::from_ring(ring),
            None => paging::PageTokens::new(None),
        },
        types: search::TypeSource::new(&config.search, &metrics),
        snapshots: paging::Snapshots::new(&config.search, &config.query_cache, &metrics)?,
    });
    let audit = audit::AuditTrail::start(&config.audit, &metrics)?;
    let limits = Arc::new(limits::Limits::new(&config.limits, &metrics)?);
    // The status view: this process through the host (plus its breakers, query cache and Redis
    // pools), the downstreams over their channels.
    {
        let (downstreams, metrics) = (searcher.clients.downstreams.clone(), metrics.clone());
        let (searcher, limits) = (searcher.clone(), limits.clone());
        host.status_hook(move || {
            let pools = [
                searcher
                    .cache
                    .as_ref()
                    .and_then(cache::QueryCache::redis_pool),
                searcher.snapshots.redis_pool(),
                limits.redis_pool(),
            ];
            let part = status::gateway_part(&downstreams, &metrics, pools.into_iter().flatten());
            async move { part }
        });
    }
    let api = GatewayServer::new(service::GatewayApi {
        searcher,
        limits: limits.clone(),
        audit: audit.as_ref().map(|a| a.store.clone()),
        revoker,
        status: status_view,
    })
    .max_decoding_message_size(config.server.max_message_bytes)
    .max_encoding_message_size(config.server.max_message_bytes);
    // Outermost on the Gateway service: every call is audited, refused ones included; inside
    // it, the per-peer budget and authentication, which puts the caller's principal into the
    // request (or refuses the call).
    let audited = audit::layer::Audited::new(
        authenticator.wrap(api, limits),
        audit.as_ref().map(|a| a.auditor.clone()),
    );
    host.add_service(audited);
    if let Some(audit) = audit {
        // Audit records still queued are written within the grace period.
        host.last_step(move |grace| audit.finish(grace));
    }
    host.serve(Guard::Public, listeners, shutdown).await
}
