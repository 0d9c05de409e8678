//! The one service host: what every Braid service does the same way from boot to exit.
//!
//! A service's `run` makes a [`Host`], builds its own state with the host's [`Metrics`] and
//! [`Health`], registers what is its own (its gRPC services, a dependency probe, background
//! tasks, workers, admin routes, last steps) and hands over to [`Host::serve`], which:
//!
//! 1. serves gRPC (its services, `grpc.health.v1`, reflection v1 and v1alpha, the shared tower
//!    stack, TLS when configured, connection recycling) and the admin port (`/metrics`,
//!    `/healthz`, `/livez` and the service's own admin routes);
//! 2. when `shutdown` resolves: health NOT_SERVING, then the listener stops accepting, then
//!    in-flight requests get `server.shutdown_grace_ms` to finish;
//! 3. then aborts the background tasks (probes, watches, housekeeping), tells the workers to
//!    stop and waits for them up to the grace period (aborting the late ones), and runs the
//!    service's last steps (e.g. writing the audit records still queued), in that order.
//!
//! A host dropped without serving (a start-up error after tasks were spawned) aborts its
//! tasks and workers, so a failed start leaves nothing running.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::task::JoinHandle;
use tonic::service::Routes;

use crate::config::ServerConfig;
use crate::health::{Health, spawn_probe};
use crate::metrics::Metrics;
use crate::server::{Guard, Listeners};
use crate::shutdown::{StopHandle, Stopping, stop_channel};
use crate::status::{StatusFuture, StatusSource};

/// A last step run after the server stopped, given the grace period.
type LastStep = Box<dyn FnOnce(Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// One service's server, its background work and its shutdown order (see the module docs).
pub struct Host {
    config: ServerConfig,
    metrics: Metrics,
    health: Health,
    routes: Routes,
    admin: axum::Router,
    /// Aborted when the server has stopped.
    tasks: Vec<JoinHandle<()>>,
    /// Told to stop when the server has stopped, then awaited within the grace period.
    workers: Vec<JoinHandle<()>>,
    stop: StopHandle,
    stopping: Stopping,
    last_steps: Vec<LastStep>,
    status: StatusSource,
}

impl Host {
    /// A host for the gRPC service `service` (its health name, e.g. `braid.v1.Gateway`),
    /// whose metrics are named `braid_<metrics_prefix>_*`. Health is NOT_SERVING until the
    /// service says otherwise (usually through [`Host::probe`]).
    pub fn new(service: &'static str, metrics_prefix: &'static str, config: &ServerConfig) -> Self {
        let (health, health_service) = crate::health::health(service);
        let (stop, stopping) = stop_channel();
        let metrics = Metrics::new(metrics_prefix);
        Self {
            config: config.clone(),
            status: StatusSource::new(health.clone(), metrics.clone()),
            metrics,
            health,
            routes: Routes::new(health_service),
            admin: axum::Router::new(),
            tasks: Vec::new(),
            workers: Vec::new(),
            stop,
            stopping,
            last_steps: Vec::new(),
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn health(&self) -> &Health {
        &self.health
    }

    /// This process's status view (the gateway reports its own part through it).
    pub fn status(&self) -> &StatusSource {
        &self.status
    }

    /// The service's own part of its status report (breakers, caches, queues, indexes; the
    /// host fills health, version, uptime, database pools and the `/healthz` details).
    /// Internal services serve the report as `braid.v1.ServiceStatus/Status`.
    pub fn status_hook<F, Fut>(&mut self, hook: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = braid_proto::v1::ServiceStatusReport> + Send + 'static,
    {
        self.status
            .set_hook(std::sync::Arc::new(move || -> StatusFuture {
                Box::pin(hook())
            }));
    }

    /// Serves `service` on the gRPC port next to health and reflection.
    pub fn add_service<S>(&mut self, service: S)
    where
        S: tower::Service<http::Request<tonic::body::Body>, Error = std::convert::Infallible>
            + tonic::server::NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        let routes = std::mem::take(&mut self.routes);
        self.routes = routes.add_service(service);
    }

    /// Serves `routes` on the admin port next to `/metrics`, `/healthz` and `/livez`.
    pub fn add_admin_routes(&mut self, routes: axum::Router) {
        let admin = std::mem::take(&mut self.admin);
        self.admin = admin.merge(routes);
    }

    /// Checks the service's hard dependencies every `server.health_probe_interval_ms` and
    /// reports SERVING while `check` succeeds (until the drain starts).
    pub fn probe<F, Fut>(&mut self, check: F)
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), String>> + Send,
    {
        let probe = spawn_probe(
            self.health.clone(),
            self.config.health_probe_interval(),
            check,
        );
        self.tasks.push(probe);
    }

    /// A background task that holds no work worth finishing: aborted once the server stopped.
    pub fn task(&mut self, task: JoinHandle<()>) {
        self.tasks.push(task);
    }

    /// What workers watch to learn that shutdown started (after the server stopped).
    pub fn stopping(&self) -> Stopping {
        self.stopping.clone()
    }

    /// Workers that finish the work in hand once [`Host::stopping`] says so; the host waits
    /// for them up to the grace period, then aborts them.
    pub fn workers(&mut self, workers: impl IntoIterator<Item = JoinHandle<()>>) {
        self.workers.extend(workers);
    }

    /// A last step after the workers, given the grace period (which it should respect).
    pub fn last_step<F, Fut>(&mut self, step: F)
    where
        F: FnOnce(Duration) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.last_steps
            .push(Box::new(move |grace| Box::pin(step(grace))));
    }

    /// Serves on `listeners` behind `guard` until `shutdown` resolves, then shuts down in
    /// the order of the module docs. The server's result is returned after every step ran.
    pub async fn serve<F>(
        mut self,
        guard: Guard,
        listeners: Listeners,
        shutdown: F,
    ) -> anyhow::Result<()>
    where
        F: Future<Output = ()> + Send,
    {
        // Internal services answer the gateway's status calls (behind the internal key, like
        // every route of theirs); the gateway reports its own part in process.
        if matches!(guard, Guard::Internal(_)) {
            let service = self.status.service();
            self.add_service(service);
        }
        let result = crate::server::serve(
            &self.config,
            self.metrics.clone(),
            self.health.clone(),
            guard.over(std::mem::take(&mut self.routes)),
            std::mem::take(&mut self.admin),
            listeners,
            shutdown,
        )
        .await;
        self.tasks.drain(..).for_each(|t| t.abort());
        let grace = self.config.shutdown_grace();
        self.stop.stop();
        let workers: Vec<_> = self.workers.drain(..).collect();
        let aborts: Vec<_> = workers.iter().map(|w| w.abort_handle()).collect();
        if tokio::time::timeout(grace, futures::future::join_all(workers))
            .await
            .is_err()
        {
            tracing::warn!(
                service = self.health.service(),
                "workers did not stop within the grace period; aborted"
            );
            aborts.iter().for_each(|a| a.abort());
        }
        for step in self.last_steps.drain(..) {
            step(grace).await;
        }
        result
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.tasks.iter().for_each(|t| t.abort());
        self.workers.iter().for_each(|w| w.abort());
    }
}

#[cfg(test)]
mod tests;
