//! The one status view (`Status`) and the operator's breaker reset (`ResetBreaker`).
//!
//! `Status` reports this gateway process (through the host's status source, with the
//! gateway's own part from [`gateway_part`]: its breakers and query cache) and asks every
//! downstream its `braid.v1.ServiceStatus/Status` over the same channels searches use, all at
//! once, each within [`ASK_TIMEOUT`]. A downstream that does not answer is shown as
//! unreachable with the code it failed with: the view itself never fails because one
//! service is down. Breakers are per gateway process, so `ResetBreaker` closes this
//! replica's breaker only.

use std::time::Duration;

use braid_core::client::Channel;
use braid_core::metrics::Metrics;
use braid_core::status::{StatusSource, cache};
use braid_proto::v1::service_status_client::ServiceStatusClient;
use braid_proto::v1::{
    BreakerStatus, PoolStatus, ResetBreakerResponse, ServiceStatusReport, ServiceStatusRequest,
    StatusResponse,
};

use crate::clients::Downstream;
use crate::error::GatewayError;

/// How long the view waits for one downstream's report.
pub const ASK_TIMEOUT: Duration = Duration::from_secs(2);

pub struct StatusView {
    pub own: StatusSource,
    pub downstreams: Vec<Downstream>,
}

impl StatusView {
    /// Every service's report: the gateway first, then the downstreams in their fixed order.
    pub async fn collect(&self) -> StatusResponse {
        let asks = self
            .downstreams
            .iter()
            .map(|d| ask(d.name, d.status.clone()));
        let (own, others) = tokio::join!(self.own.report(), futures::future::join_all(asks));
        StatusResponse {
            services: std::iter::once(own).chain(others).collect(),
        }
    }

    /// Closes the breaker of `leg` ("vector", "text", "embedding", "ingest" or a full
    /// service name) on this gateway process.
    pub fn reset(&self, leg: &str) -> Result<ResetBreakerResponse, GatewayError> {
        let name = leg_name(leg).ok_or_else(|| {
            GatewayError::invalid(
                "leg",
                format!(
                    "unknown leg {leg:?}: one of vector, text, embedding, ingest \
                     (or vector-search, text-search)"
                ),
            )
        })?;
        let downstream = self
            .downstreams
            .iter()
            .find(|d| d.name == name)
            .ok_or_else(|| GatewayError::invalid("leg", format!("no breaker for {name}")))?;
        let previous = downstream.breaker.reset();
        Ok(ResetBreakerResponse {
            leg: name.into(),
            previous_state: previous.as_str().into(),
            state: downstream.breaker.state().as_str().into(),
        })
    }
}

/// The downstream a `leg` argument names.
fn leg_name(leg: &str) -> Option<&'static str> {
    match leg.trim().to_ascii_lowercase().as_str() {
        "vector" | "vector-search" => Some("vector-search"),
        "text" | "text-search" => Some("text-search"),
        "embedding" => Some("embedding"),
        "ingest" => Some("ingest"),
        _ => None,
    }
}

/// One downstream's report, or an unreachable entry saying why not.
async fn ask(name: &'static str, mut client: ServiceStatusClient<Channel>) -> ServiceStatusReport {
    let answer = tokio::time::timeout(ASK_TIMEOUT, client.status(ServiceStatusRequest {})).await;
    let reason = match answer {
        Ok(Ok(report)) => return report.into_inner(),
        Ok(Err(status)) => format!("unreachable: {:?}: {}", status.code(), status.message()),
        Err(_) => format!(
            "unreachable: DeadlineExceeded: no answer within {} ms",
            ASK_TIMEOUT.as_millis()
        ),
    };
    ServiceStatusReport {
        service: name.into(),
        reason,
        ..Default::default()
    }
}

/// The gateway's own part of its report: a breaker per downstream, the query cache and the
/// Redis `pools` in use (query cache, page snapshots, shared rate limits).
pub fn gateway_part(
    downstreams: &[Downstream],
    metrics: &Metrics,
    pools: impl IntoIterator<Item = PoolStatus>,
) -> ServiceStatusReport {
    let breakers = downstreams
        .iter()
        .map(|d| BreakerStatus {
            leg: d.name.into(),
            state: d.breaker.state().as_str().into(),
            retry_in_ms: d
                .breaker
                .retry_in()
                .map_or(0, |t| t.as_millis().try_into().unwrap_or(u64::MAX)),
        })
        .collect();
    let requests = |result| {
        metrics
            .value("braid_query_cache_requests_total", &[("result", result)])
            .unwrap_or(0.0)
    };
    // Only when the cache is on (its counters exist).
    let caches = metrics
        .value("braid_query_cache_requests_total", &[])
        .map(|_| {
            cache(
                "query-cache",
                requests("hit") + requests("redis_hit"),
                requests("miss"),
            )
        })
        .into_iter()
        .collect();
    ServiceStatusReport {
        breakers,
        caches,
        pools: pools.into_iter().collect(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legs_go_by_short_and_full_names_and_nothing_else() {
        assert_eq!(leg_name("text"), Some("text-search"));
        assert_eq!(leg_name("Vector-Search"), Some("vector-search"));
        assert_eq!(leg_name("embedding"), Some("embedding"));
        assert_eq!(leg_name("ingest"), Some("ingest"));
        assert_eq!(leg_name("gateway"), None);
        assert_eq!(leg_name(""), None);
    }
}
