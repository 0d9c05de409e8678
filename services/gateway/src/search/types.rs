//! A tenant's metadata types, for checking filters: declared once, in the ingest service's
//! config (which enforces them on documents), and learnt from it with
//! `IngestService.MetadataTypes`. Each tenant's types are kept for
//! `search.metadata_types_refresh_ms` (so a changed declaration reaches every gateway replica
//! within that time, without a gateway restart); concurrent searches of a tenant whose types
//! are not held wait for one fetch.
//!
//! When the types cannot be learnt (ingest down or slow), the search goes on with its filter
//! unchecked: the legs still apply it exactly (a number or date range matches only values
//! that read as such), so a correct filter still gets its answer; only the early
//! `INVALID_ARGUMENT` for a filter that cannot fit the types is lost. Counted in
//! `braid_metadata_types_lookups_total{result="unavailable"}`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use braid_core::filter::TenantTypes;
use braid_core::metrics::{Counter, Family, Gauge};
use braid_proto::tonic::Request;
use braid_proto::v1::MetadataTypesRequest;

use super::Searcher;
use super::legs::describe;
use super::validate::Validated;
use crate::config::SearchConfig;
use crate::error::GatewayError;

/// Most tenants whose types are held at once (least recently used go first).
const MAX_TENANTS: u64 = 10_000;

/// The `result` label values of `metadata_types_lookups_total`.
const RESULTS: &[&str] = &["hit", "fetched", "unavailable"];

pub struct TypeSource {
    held: moka::future::Cache<String, Arc<TenantTypes>>,
    timeout: Duration,
    lookups: Family<Counter>,
    tenants: Gauge,
}

impl TypeSource {
    pub fn new(config: &SearchConfig, metrics: &braid_core::metrics::Metrics) -> Self {
        Self {
            held: moka::future::Cache::builder()
                .max_capacity(MAX_TENANTS)
                .time_to_live(Duration::from_millis(config.metadata_types_refresh_ms))
                .build(),
            timeout: Duration::from_millis(config.metadata_types_timeout_ms),
            lookups: metrics.counter_family(
                "metadata_types_lookups_total",
                "filtered searches by where the tenant's metadata types came from: hit (held), \
                 fetched (from the ingest service), unavailable (filter not checked)",
                &[("result", RESULTS)],
            ),
            tenants: metrics.gauge(
                "metadata_types_tenants",
                "tenants whose metadata types the gateway holds",
            ),
        }
    }

    /// The tenant's types: held, or from `fetch` (one fetch for concurrent callers). `None`
    /// when `fetch` fails; a failure is not held, the next search tries again.
    async fn get<F>(&self, tenant: &str, fetch: F) -> Option<Arc<TenantTypes>>
    where
        F: Future<Output = Result<TenantTypes, String>>,
    {
        let mut fetched = false;
        let init = async {
            fetched = true;
            fetch.await.map(Arc::new)
        };
        let outcome = self.held.try_get_with(tenant.to_string(), init).await;
        self.tenants.set(self.held.entry_count() as f64);
        let result = match &outcome {
            Ok(_) if fetched => "fetched",
            Ok(_) => "hit",
            Err(reason) => {
                tracing::warn!(%tenant, %reason, "metadata types unavailable; filter not checked");
                "unavailable"
            }
        };
        self.lookups.get(&[result]).increment(1);
        outcome.ok()
    }
}

impl Searcher {
    /// Rejects a filter that cannot fit the tenant's declared types (a range on a key of
    /// another type, an `eq`/`in` value that is not of the key's type). Searches without a
    /// filter never ask.
    pub(super) async fn check_filter_types(&self, v: &Validated) -> Result<(), GatewayError> {
        if v.filter.is_empty() {
            return Ok(());
        }
        if let Some(types) = self.types.get(&v.tenant, self.fetch_types(&v.tenant)).await {
            v.filter.check_types(&types)?;
        }
        Ok(())
    }

    async fn fetch_types(&self, tenant: &str) -> Result<TenantTypes, String> {
        let timeout = self.types.timeout;
        let mut request = Request::new(MetadataTypesRequest {
            tenant: tenant.to_string(),
        });
        request.set_timeout(timeout);
        let mut ingest = self.clients.ingest.clone();
        match tokio::time::timeout(timeout, ingest.metadata_types(request)).await {
            Ok(Ok(response)) => TenantTypes::from_proto(response.get_ref()),
            Ok(Err(status)) => Err(describe(&status)),
            Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use braid_core::filter::{MetaType, MetadataTypes};

    use super::*;

    fn source(refresh_ms: u64) -> (TypeSource, braid_core::metrics::Metrics) {
        let metrics = braid_core::metrics::Metrics::new("gateway");
        let config = SearchConfig {
            metadata_types_refresh_ms: refresh_ms,
            ..SearchConfig::default()
        };
        (TypeSource::new(&config, &metrics), metrics)
    }

    fn declared(tenant: &str) -> TenantTypes {
        MetadataTypes {
            default: BTreeMap::from([("year".into(), MetaType::Number)]),
            tenants: BTreeMap::new(),
        }
        .for_tenant(tenant)
    }

    fn lookups(metrics: &braid_core::metrics::Metrics, result: &str) -> f64 {
        metrics
            .value("braid_metadata_types_lookups_total", &[("result", result)])
            .unwrap_or(0.0)
    }

    #[tokio::test]
    async fn types_are_fetched_once_held_and_failures_are_not_held() {
        let (types, metrics) = source(60_000);
        let calls = AtomicUsize::new(0);
        // Counts the fetches that run (a future that is not awaited does not count).
        let fetch = |answer: Result<TenantTypes, String>| {
            let calls = &calls;
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                answer
            }
        };
        // Concurrent first lookups of one tenant share one fetch: the second arrives while
        // the first's fetch is still waiting for its answer.
        let (release, answer) = tokio::sync::oneshot::channel::<()>();
        let slow = async {
            let _ = answer.await;
            fetch(Ok(declared("t"))).await
        };
        let (a, b, ()) = tokio::join!(
            types.get("t", slow),
            types.get("t", fetch(Err("a second fetch".into()))),
            async {
                tokio::task::yield_now().await;
                let _ = release.send(());
            },
        );
        assert_eq!(a.unwrap().type_of("year"), MetaType::Number);
        assert_eq!(b.unwrap().type_of("year"), MetaType::Number);
        let held = types.get("t", fetch(Err("ingest down".into()))).await;
        assert_eq!(held.unwrap().type_of("year"), MetaType::Number, "held");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(lookups(&metrics, "fetched"), 1.0);
        assert_eq!(lookups(&metrics, "hit"), 2.0);

        // Another tenant while ingest is down: unknown, and asked again next time.
        assert!(types.get("u", fetch(Err("down".into()))).await.is_none());
        assert_eq!(lookups(&metrics, "unavailable"), 1.0);
        let later = types.get("u", fetch(Ok(declared("u")))).await;
        assert_eq!(later.unwrap().type_of("lang"), MetaType::String);
        assert_eq!(lookups(&metrics, "fetched"), 2.0);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }
}
