//! Replicas of one service on distinct loopback addresses sharing one port, like the pods
//! behind a headless Kubernetes Service (127.0.0.2, 127.0.0.3, ... are all loopback on
//! Linux), and a search load that counts what went wrong.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use braid_core::server::Listeners;
use braid_proto::v1::SearchRequest;
use braid_proto::v1::gateway_client::GatewayClient;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::{Service, eventually, http_get, metric_sum};

/// The `i`th replica address: 127.0.0.(2 + i).
pub fn loopback(i: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, 2 + i])
}

/// Listeners for `n` replicas: gRPC on 127.0.0.2:P, 127.0.0.3:P, ... for one port P (tried
/// again with another port when P is taken on one of the addresses), admin on 127.0.0.1:0.
pub async fn replica_listeners(n: u8) -> anyhow::Result<Vec<Listeners>> {
    'attempt: for _ in 0..20 {
        let first = TcpListener::bind(SocketAddr::new(loopback(0), 0)).await?;
        let port = first.local_addr()?.port();
        let mut grpc = vec![first];
        for i in 1..n {
            match TcpListener::bind(SocketAddr::new(loopback(i), port)).await {
                Ok(l) => grpc.push(l),
                Err(_) => continue 'attempt,
            }
        }
        let mut all = Vec::new();
        for grpc in grpc {
            all.push(Listeners {
                grpc,
                admin: TcpListener::bind("127.0.0.1:0").await?,
            });
        }
        return Ok(all);
    }
    anyhow::bail!("no port free on {n} loopback addresses")
}

/// Sum of the samples of `metric` matching `filters` on `service`'s `/metrics`.
pub async fn scrape(service: &Service, metric: &str, filters: &[&str]) -> anyhow::Result<f64> {
    let (status, body) = http_get(service.admin, "/metrics").await?;
    anyhow::ensure!(
        status.contains("200"),
        "{}: /metrics: {status}",
        service.name
    );
    Ok(metric_sum(&body, metric, filters))
}

/// Requests for gRPC `method` each of `replicas` has served so far.
pub async fn served(replicas: &[&Service], method: &str) -> anyhow::Result<Vec<f64>> {
    let mut counts = Vec::new();
    for r in replicas {
        counts.push(scrape(r, "braid_grpc_requests_total", &[method]).await?);
    }
    Ok(counts)
}

/// Hybrid searches sent back to back by `workers` callers, each with a query of its own
/// (the caches never answer); an error or a degraded answer is a failure.
pub struct SearchLoad {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl SearchLoad {
    pub async fn start(
        gateway: &Service,
        workers: usize,
        queries: &[&str],
    ) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let queries: Arc<Vec<String>> = Arc::new(queries.iter().map(|q| q.to_string()).collect());
        let mut tasks = Vec::new();
        for worker in 0..workers {
            let mut client = GatewayClient::connect(gateway.endpoint())
                .await
                .context("gateway client")?;
            let (stop, done, failures, queries) = (
                stop.clone(),
                done.clone(),
                failures.clone(),
                queries.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut i = 0usize;
                while !stop.load(Ordering::SeqCst) {
                    let query = format!(
                        "{} (worker {worker}, search {i})",
                        queries[i % queries.len()]
                    );
                    i += 1;
                    let outcome = client
                        .search(SearchRequest {
                            query,
                            top_k: 4,
                            bypass_cache: true,
                            ..Default::default()
                        })
                        .await;
                    let failure = match outcome {
                        Ok(r) if r.get_ref().degraded => {
                            Some(format!("degraded: {:?}", r.get_ref().degraded_reasons))
                        }
                        Ok(_) => None,
                        Err(status) => Some(format!("{:?}: {}", status.code(), status.message())),
                    };
                    if let Some(f) = failure {
                        failures.lock().unwrap_or_else(|p| p.into_inner()).push(f);
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                }
            }));
        }
        Ok(Self {
            stop,
            done,
            failures,
            tasks,
        })
    }

    /// Searches completed so far.
    pub fn completed(&self) -> u64 {
        self.done.load(Ordering::SeqCst)
    }

    /// What failed so far.
    pub fn failures(&self) -> Vec<String> {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Fails with the count and the first few failures, if any (`phase` names the moment).
    pub fn assert_no_failure(&self, phase: &str) {
        let failures = self.failures();
        assert!(
            failures.is_empty(),
            "{phase}: {} of {} searches failed, first: {:?}",
            failures.len(),
            self.completed(),
            &failures[..failures.len().min(3)]
        );
    }

    /// Waits until `more` searches have completed after this call.
    pub async fn run_for(&self, more: u64) -> anyhow::Result<()> {
        let target = self.completed() + more;
        eventually(
            &format!("{more} more searches"),
            Duration::from_secs(300),
            || async { (self.completed() >= target).then_some(()) },
        )
        .await
    }

    /// Stops the callers.
    pub async fn finish(mut self) -> Self {
        self.stop.store(true, Ordering::SeqCst);
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
        self
    }
}
