//! The endpoints of one downstream: one lazily connecting tonic channel per resolved address,
//! each with its requests in flight and its state (ready or down).
//!
//! - **Pick**: round robin over the ready endpoints, except that an endpoint with a backlog
//!   (at least [`BACKLOG`] more requests in flight than the next one in the rotation) is
//!   passed over for that next one: two choices, but a difference of a few requests is not a
//!   backlog. At low concurrency this is round robin, an even share per replica even while
//!   their latencies wobble (least-in-flight at every difference follows each wobble of a
//!   busy node's scheduler; random two choices spread even a sequential caller binomially);
//!   a hung replica, or one slower than the others by a multiple, builds a backlog and is
//!   passed over. The rotation starts at a random place so that many callers do not all begin
//!   on one replica.
//! - **Down**: a transport error (refused, reset, connection lost) takes the endpoint out of
//!   the rotation at once, asks for a re-resolution and starts a probe: `grpc.health.v1` Check
//!   on that endpoint with exponential backoff until it answers SERVING. A deadline is not a
//!   transport error (the request may just be slow) and leaves the endpoint in.
//! - **All down**: the pick falls back to the down endpoints (a lone replica that restarted is
//!   used again on the next call, as a single channel would be), and a success there brings
//!   the endpoint back at once.
//! - **Resolution**: names are resolved every `resolve_interval` and after an endpoint goes
//!   down; new addresses join ready (a headless Service lists only ready pods), vanished ones
//!   leave (requests in flight on them finish). A name that fails to resolve, or resolves to
//!   nothing, keeps its last known addresses: a stale address fails fast and goes down, while
//!   an empty set would fail every call.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use super::resolve::Resolve;
use super::target::{Host, Target};
use crate::metrics::{Counter, Gauge, Metrics};

/// Requests in flight beyond the next endpoint's that make an endpoint's backlog.
pub(crate) const BACKLOG: usize = 4;

/// How a downstream's endpoints are found, dialled and watched.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// For `https://` targets: the downstream's TLS (trust, client certificate, names).
    pub tls: Option<Arc<crate::tls::ClientTls>>,
    pub connect_timeout: Duration,
    /// Per-call deadline unless the caller sets a tighter one (`grpc-timeout`).
    pub timeout: Duration,
    pub resolve_interval: Duration,
    pub probe_backoff: Duration,
    pub probe_backoff_max: Duration,
}

/// One resolved address.
pub(crate) struct Slot {
    pub addr: SocketAddr,
    /// Index of the [`Target`] it was resolved from.
    target: usize,
    pub channel: Channel,
    in_flight: AtomicUsize,
    ready: AtomicBool,
    probing: AtomicBool,
    /// No longer resolved: its probe stops.
    removed: AtomicBool,
}

impl Slot {
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Counts a request in flight until the guard drops.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(self.clone())
    }
}

pub(crate) struct InFlight(Arc<Slot>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Gauges and counters of one downstream; the label values are the downstream's name and
/// the endpoint state, both closed sets (never an address: replicas come and go).
struct PoolMetrics {
    ready: Gauge,
    down: Gauge,
    requests: Counter,
    ejections: Counter,
    resolve_errors: Counter,
}

impl PoolMetrics {
    fn new(metrics: &Metrics, name: &'static str) -> Self {
        let endpoints = |state| {
            metrics.gauge_with(
                "client_endpoints",
                "endpoints of a downstream by state (ready: in the rotation; down: failed, being probed)",
                &[("downstream", name), ("state", state)],
            )
        };
        let label = [("downstream", name)];
        Self {
            ready: endpoints("ready"),
            down: endpoints("down"),
            requests: metrics.counter_with(
                "client_requests_total",
                "calls sent to a downstream (every attempt, on whichever endpoint)",
                &label,
            ),
            ejections: metrics.counter_with(
                "client_endpoint_ejections_total",
                "endpoints of a downstream taken out of the rotation after a transport error",
                &label,
            ),
            resolve_errors: metrics.counter_with(
                "client_resolve_errors_total",
                "failed resolutions of a downstream's name (the last known addresses are kept)",
                &label,
            ),
        }
    }
}

pub(crate) struct Pool {
    pub name: &'static str,
    settings: Settings,
    targets: Vec<Target>,
    resolver: Arc<dyn Resolve>,
    /// Sorted by address.
    slots: RwLock<Vec<Arc<Slot>>>,
    cursor: AtomicUsize,
    /// True once the first resolution has been tried.
    resolved: watch::Sender<bool>,
    /// Asks the resolution task for an early round.
    reresolve: Arc<Notify>,
    /// Why the last resolution failed, for the error of a call that finds no endpoint.
    last_error: Mutex<Option<String>>,
    metrics: PoolMetrics,
}

impl Pool {
    /// The pool of `targets`; starts its resolution task when a target is a name.
    pub fn start(
        name: &'static str,
        settings: Settings,
        targets: Vec<Target>,
        resolver: Arc<dyn Resolve>,
        metrics: &Metrics,
    ) -> Arc<Self> {
        let names = targets.iter().any(|t| matches!(t.host, Host::Name(_)));
        let pool = Arc::new(Self {
            name,
            settings,
            targets,
            resolver,
            slots: RwLock::new(Vec::new()),
            cursor: AtomicUsize::new(rand::random::<u32>() as usize),
            resolved: watch::Sender::new(!names),
            reresolve: Arc::new(Notify::new()),
            last_error: Mutex::new(None),
            metrics: PoolMetrics::new(metrics, name),
        });
        // Addresses are known now; names are resolved by the task (calls wait for its first
        // round).
        let literal: Vec<(usize, SocketAddr)> = pool
            .targets
            .iter()
            .enumerate()
            .filter_map(|(i, t)| match t.host {
                Host::Ip(ip) => Some((i, SocketAddr::new(ip, t.port))),
                Host::Name(_) => None,
            })
            .collect();
        pool.apply(literal, &[]);
        if names {
            tokio::spawn(resolve_loop(
                Arc::downgrade(&pool),
                pool.reresolve.clone(),
                pool.settings.resolve_interval,
            ));
        }
        pool
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<Slot>>> {
        self.slots.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until the first resolution has been tried.
    pub async fn wait_resolved(&self) {
        let mut rx = self.resolved.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }

    /// The endpoint for the next call, `None` when there is none at all.
    pub fn pick(&self) -> Option<Arc<Slot>> {
        let slots = self.read();
        let ready = slots.iter().filter(|s| s.is_ready()).count();
        // All down: try them anyway (see the module docs).
        let candidates: Vec<&Arc<Slot>> = slots
            .iter()
            .filter(|s| ready == 0 || s.is_ready())
            .collect();
        let n = candidates.len();
        if n == 0 {
            return None;
        }
        let i = self.cursor.fetch_add(1, Ordering::Relaxed) % n;
        let (a, b) = (candidates[i], candidates[(i + 1) % n]);
        Some(
            if a.in_flight() >= b.in_flight() + BACKLOG {
                b
            } else {
                a
            }
            .clone(),
        )
    }

    /// Why no endpoint is available.
    pub fn no_endpoint(&self) -> tonic::Status {
        let why = self
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(|| "no address resolved".into());
        tonic::Status::unavailable(format!("{}: no endpoint ({why})", self.name))
    }

    pub fn count_request(&self) {
        self.metrics.requests.increment(1);
    }

    /// `slot` failed at the transport level: out of the rotation, probed until it answers.
    pub fn eject(self: &Arc<Self>, slot: &Arc<Slot>, error: &str) {
        if slot.ready.swap(false, Ordering::SeqCst) {
            tracing::warn!(downstream = self.name, endpoint = %slot.addr, error, "endpoint down");
            self.metrics.ejections.increment(1);
            self.publish();
            self.reresolve.notify_one();
        }
        if !slot.probing.swap(true, Ordering::SeqCst) {
            tokio::spawn(probe(Arc::downgrade(self), slot.clone()));
        }
    }

    /// `slot` answered: back in the rotation if it was out.
    pub fn restore(&self, slot: &Slot) {
        if !slot.ready.swap(true, Ordering::SeqCst) {
            tracing::info!(downstream = self.name, endpoint = %slot.addr, "endpoint ready");
            self.publish();
        }
    }

    fn publish(&self) {
        let slots = self.read();
        let ready = slots.iter().filter(|s| s.is_ready()).count();
        self.metrics.ready.set(ready as f64);
        self.metrics.down.set((slots.len() - ready) as f64);
    }

    /// Resolves every name once and applies the answer.
    async fn refresh(&self) {
        let mut resolved = Vec::new();
        let mut failed = Vec::new();
        let mut errors = Vec::new();
        for (i, target) in self.targets.iter().enumerate() {
            match &target.host {
                Host::Ip(ip) => resolved.push((i, SocketAddr::new(*ip, target.port))),
                Host::Name(host) => {
                    let answer = tokio::time::timeout(
                        self.settings.connect_timeout,
                        self.resolver.resolve(host, target.port),
                    )
                    .await;
                    match answer {
                        Ok(Ok(addrs)) if !addrs.is_empty() => {
                            resolved.extend(addrs.into_iter().map(|a| (i, a)));
                        }
                        outcome => {
                            let why = match outcome {
                                Ok(Ok(_)) => "resolved to no address".to_string(),
                                Ok(Err(e)) => e.to_string(),
                                Err(_) => "resolution timed out".to_string(),
                            };
                            errors.push(format!("{host}: {why}"));
                            failed.push(i);
                        }
                    }
                }
            }
        }
        if !errors.is_empty() {
            self.metrics.resolve_errors.increment(1);
            tracing::warn!(downstream = self.name, errors = %errors.join("; "), "resolution failed; keeping the last known endpoints");
        }
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) =
            (!errors.is_empty()).then(|| errors.join("; "));
        self.apply(resolved, &failed);
        self.resolved.send_replace(true);
    }

    /// Makes the slots those of `resolved`, keeping the current slots of the `failed` targets.
    fn apply(&self, resolved: Vec<(usize, SocketAddr)>, failed: &[usize]) {
        let mut slots = self.slots.write().unwrap_or_else(|p| p.into_inner());
        let mut current: BTreeMap<SocketAddr, Arc<Slot>> =
            slots.drain(..).map(|s| (s.addr, s)).collect();
        let mut next: BTreeMap<SocketAddr, Arc<Slot>> = BTreeMap::new();
        for (addr, slot) in &current {
            if failed.contains(&slot.target) {
                next.insert(*addr, slot.clone());
            }
        }
        for (target, addr) in resolved {
            if next.contains_key(&addr) {
                continue;
            }
            let slot = match current.remove(&addr) {
                Some(slot) => slot,
                None => match self.slot(target, addr) {
                    Some(slot) => {
                        tracing::info!(downstream = self.name, endpoint = %addr, "endpoint added");
                        Arc::new(slot)
                    }
                    None => continue,
                },
            };
            next.insert(addr, slot);
        }
        for (addr, slot) in current {
            if !next.contains_key(&addr) {
                tracing::info!(downstream = self.name, endpoint = %addr, "endpoint removed");
                slot.removed.store(true, Ordering::SeqCst);
            }
        }
        *slots = next.into_values().collect();
        drop(slots);
        self.publish();
    }

    fn slot(&self, target: usize, addr: SocketAddr) -> Option<Slot> {
        let t = &self.targets[target];
        let endpoint = match Endpoint::from_shared(format!("{}://{addr}", t.scheme)) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(downstream = self.name, endpoint = %addr, error = %e, "address skipped");
                return None;
            }
        };
        let endpoint = endpoint
            .origin(t.origin.clone())
            .connect_timeout(self.settings.connect_timeout)
            .timeout(self.settings.timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        let channel = match (&self.settings.tls, t.scheme.as_str()) {
            // The address is dialled; the target's host name (or `tls.server_name`) is what
            // the server's certificate must prove.
            (Some(tls), "https") => match tls.server_name(&t.host.to_string()) {
                Ok(name) => endpoint
                    .connect_with_connector_lazy(crate::tls::TlsConnector::new(tls.clone(), name)),
                Err(e) => {
                    tracing::warn!(downstream = self.name, endpoint = %addr, error = %e, "address skipped");
                    return None;
                }
            },
            _ => endpoint.connect_lazy(),
        };
        Some(Slot {
            addr,
            target,
            channel,
            in_flight: AtomicUsize::new(0),
            ready: AtomicBool::new(true),
            probing: AtomicBool::new(false),
            removed: AtomicBool::new(false),
        })
    }

    #[cfg(test)]
    pub fn states(&self) -> Vec<(SocketAddr, bool)> {
        self.read().iter().map(|s| (s.addr, s.is_ready())).collect()
    }
}

/// Re-resolves every `interval`, and early when asked (an endpoint went down), at most once
/// a second; ends when the pool is dropped.
async fn resolve_loop(pool: Weak<Pool>, wake: Arc<Notify>, interval: Duration) {
    let floor = interval.min(Duration::from_secs(1));
    loop {
        let Some(strong) = pool.upgrade() else { return };
        strong.refresh().await;
        drop(strong);
        tokio::time::sleep(floor).await;
        tokio::select! {
            _ = tokio::time::sleep(interval - floor) => {}
            _ = wake.notified() => {}
        }
    }
}

/// Checks a down endpoint's health with exponential backoff until it answers SERVING, it is
/// no longer resolved, or a call found it working first.
async fn probe(pool: Weak<Pool>, slot: Arc<Slot>) {
    let Some(settings) = pool.upgrade().map(|p| p.settings.clone()) else {
        slot.probing.store(false, Ordering::SeqCst);
        return;
    };
    let mut backoff = settings.probe_backoff;
    loop {
        tokio::time::sleep(backoff).await;
        if slot.removed.load(Ordering::SeqCst) || slot.is_ready() {
            slot.probing.store(false, Ordering::SeqCst);
            // A failure between the check and the store started no probe of its own.
            if slot.removed.load(Ordering::SeqCst)
                || slot.is_ready()
                || slot.probing.swap(true, Ordering::SeqCst)
            {
                return;
            }
            continue;
        }
        let mut client = HealthClient::new(slot.channel.clone());
        let check = client.check(HealthCheckRequest {
            service: String::new(),
        });
        let serving = matches!(
            tokio::time::timeout(settings.connect_timeout, check).await,
            Ok(Ok(r)) if r.get_ref().status == ServingStatus::Serving as i32
        );
        if serving {
            // Cleared before the slot is ready again, so that a failure right after starts
            // a new probe.
            slot.probing.store(false, Ordering::SeqCst);
            match pool.upgrade() {
                Some(pool) => pool.restore(&slot),
                None => return,
            }
            return;
        }
        backoff = (backoff * 2).min(settings.probe_backoff_max);
    }
}
