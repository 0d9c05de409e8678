//! A service's `grpc.health.v1` status: SERVING / NOT_SERVING under the service's own name
//! and under "" (the whole server), driven by a periodic probe of its hard dependencies,
//! latched to NOT_SERVING once the drain starts, plus the `key: value` details `/healthz`
//! shows next to it.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// The health status of one service, as reported by `grpc.health.v1`, both under the
/// service's own name and under "" (the whole server).
#[derive(Clone)]
pub struct Health {
    reporter: HealthReporter,
    service: &'static str,
    serving: Arc<AtomicBool>,
    draining: Arc<AtomicBool>,
    /// Extra lines for `/healthz` (e.g. a provider's breaker state); never gate serving.
    details: Arc<std::sync::Mutex<std::collections::BTreeMap<&'static str, String>>>,
    /// Extra lines computed when `/healthz` is asked (e.g. which keys sign).
    live: Arc<std::sync::Mutex<std::collections::BTreeMap<&'static str, LiveDetail>>>,
    /// Why the last dependency check failed (`None` once one succeeds).
    reason: Arc<std::sync::Mutex<Option<String>>>,
}

type LiveDetail = Arc<dyn Fn() -> String + Send + Sync>;

/// A new health reporter (NOT_SERVING until the first successful probe) and its gRPC service.
pub(crate) fn health(
    service: &'static str,
) -> (
    Health,
    tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
) {
    let (reporter, server) = tonic_health::server::health_reporter();
    let health = Health {
        reporter,
        service,
        serving: Arc::new(AtomicBool::new(false)),
        draining: Arc::new(AtomicBool::new(false)),
        details: Default::default(),
        live: Default::default(),
        reason: Default::default(),
    };
    (health, server)
}

impl Health {
    /// Sets SERVING / NOT_SERVING; ignored once draining started.
    pub async fn set_serving(&self, serving: bool) {
        if self.draining.load(Ordering::SeqCst) {
            return;
        }
        self.apply(serving).await;
    }

    /// The service name it reports under.
    pub fn service(&self) -> &'static str {
        self.service
    }

    pub fn is_serving(&self) -> bool {
        self.serving.load(Ordering::SeqCst)
    }

    /// Sets a `key: value` line shown by the admin `/healthz` endpoint.
    pub fn set_detail(&self, key: &'static str, value: impl Into<String>) {
        self.details
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, value.into());
    }

    /// Sets a `key: value` line of `/healthz` whose value `value` computes when asked.
    pub fn set_live_detail(
        &self,
        key: &'static str,
        value: impl Fn() -> String + Send + Sync + 'static,
    ) {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, Arc::new(value));
    }

    /// Why the service is not serving: "draining" once the drain started, else the last
    /// failed dependency check, or "starting" before the first check; `None` when serving.
    pub fn reason(&self) -> Option<String> {
        if self.draining.load(Ordering::SeqCst) {
            return Some("draining (shutting down)".into());
        }
        if self.is_serving() {
            return None;
        }
        let reason = self
            .reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Some(reason.unwrap_or_else(|| "starting (no dependency check passed yet)".into()))
    }

    pub(crate) fn set_reason(&self, reason: Option<String>) {
        *self.reason.lock().unwrap_or_else(|p| p.into_inner()) = reason;
    }

    /// `/healthz` body: the status, then one `key: value` line per detail, sorted by key.
    pub fn report(&self) -> String {
        let mut out = String::from(if self.is_serving() {
            "SERVING\n"
        } else {
            "NOT_SERVING\n"
        });
        for (k, v) in self.details() {
            out.push_str(&format!("{k}: {v}\n"));
        }
        out
    }

    /// The `key: value` detail lines of `/healthz`, sorted by key (live ones computed now).
    pub fn details(&self) -> Vec<(&'static str, String)> {
        let mut lines: std::collections::BTreeMap<&'static str, String> = self
            .details
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let live: Vec<(&'static str, LiveDetail)> = self
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, f)| (*k, f.clone()))
            .collect();
        for (k, f) in live {
            lines.insert(k, f());
        }
        lines.into_iter().collect()
    }

    async fn apply(&self, serving: bool) {
        let was = self.serving.swap(serving, Ordering::SeqCst);
        let status = if serving {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        self.reporter.set_service_status("", status).await;
        self.reporter.set_service_status(self.service, status).await;
        if was != serving {
            tracing::info!(service = self.service, serving, "health status changed");
        }
    }

    /// Latches NOT_SERVING: probes no longer change it (the server is going away).
    pub(crate) async fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.apply(false).await;
    }
}

/// Probes the service's hard dependencies every `interval` and reports the result as the
/// health status. Abort the handle when the service stops.
pub(crate) fn spawn_probe<F, Fut>(health: Health, interval: Duration, check: F) -> JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_error: Option<String> = None;
        loop {
            ticker.tick().await;
            match check().await {
                Ok(()) => {
                    last_error = None;
                    health.set_reason(None);
                    health.set_serving(true).await;
                }
                Err(e) => {
                    if last_error.as_deref() != Some(e.as_str()) {
                        tracing::warn!(service = health.service, error = %e, "dependency check failed");
                    }
                    health.set_reason(Some(e.clone()));
                    last_error = Some(e);
                    health.set_serving(false).await;
                }
            }
        }
    })
}
