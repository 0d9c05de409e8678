//! Balancing against real tonic servers (`grpc.health.v1`) on distinct loopback addresses
//! (127.0.0.2, 127.0.0.3, ... are all loopback on Linux) sharing one port, behind one name.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use super::*;
use crate::auth::internal::ServiceToken;
use crate::client::Connector;
use crate::resilience::BreakerConfig;

/// Header marking the calls a test counts (the balancer's own health probes carry none).
const COUNTED: &str = "x-counted";

/// A health server on one address, counting the calls marked [`COUNTED`].
struct Replica {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    /// How long each counted call takes.
    delay: Duration,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Replica {
    async fn start(addr: SocketAddr) -> std::io::Result<Self> {
        Self::on(
            TcpListener::bind(addr).await?,
            Arc::new(AtomicUsize::new(0)),
            Duration::ZERO,
        )
    }

    fn on(listener: TcpListener, hits: Arc<AtomicUsize>, delay: Duration) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let (_, health) = tonic_health::server::health_reporter();
        let counter = hits.clone();
        let count = tower::layer::layer_fn(move |inner| Counting {
            inner,
            hits: counter.clone(),
            delay,
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .layer(count)
                .add_service(health)
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener),
                    async move {
                        let _ = stopped.await;
                    },
                )
                .await;
        });
        Ok(Self {
            addr,
            hits,
            delay,
            stop: Some(stop),
            task: Some(task),
        })
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Graceful shutdown; the address then refuses connections.
    async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Serves again on the same address, keeping the count.
    async fn restart(&mut self) -> std::io::Result<()> {
        *self = Self::on(
            TcpListener::bind(self.addr).await?,
            self.hits.clone(),
            self.delay,
        )?;
        Ok(())
    }
}

#[derive(Clone)]
struct Counting<S> {
    inner: S,
    hits: Arc<AtomicUsize>,
    delay: Duration,
}

impl<S, B> Service<http::Request<B>> for Counting<S>
where
    S: Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let delay = if request.headers().contains_key(COUNTED) {
            self.hits.fetch_add(1, Ordering::SeqCst);
            self.delay
        } else {
            Duration::ZERO
        };
        let response = self.inner.call(request);
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            response.await
        })
    }
}

/// `n` replicas on 127.0.0.2, 127.0.0.3, ... all on one port (like the pods of a headless
/// Service); a port taken on one of the addresses is tried again with another.
async fn replicas(n: u8) -> Vec<Replica> {
    'attempt: for _ in 0..20 {
        let first = Replica::start("127.0.0.2:0".parse().unwrap())
            .await
            .unwrap();
        let port = first.addr.port();
        let mut all = vec![first];
        for i in 1..n {
            match Replica::start(SocketAddr::new(ip(i), port)).await {
                Ok(r) => all.push(r),
                Err(_) => continue 'attempt,
            }
        }
        return all;
    }
    panic!("no port free on {n} loopback addresses");
}

/// The `i`th replica's address: 127.0.0.(2 + i).
fn ip(i: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, 2 + i])
}

fn config(port: u16) -> ClientConfig {
    ClientConfig {
        resolve_interval_ms: 50,
        probe_backoff_ms: 10,
        probe_backoff_max_ms: 100,
        ..ClientConfig::new(format!("http://svc.test:{port}"), 5_000)
    }
}

async fn check<S>(client: &mut HealthClient<S>) -> Result<(), tonic::Status>
where
    S: tonic::client::GrpcService<Body>,
    S::Error: Into<BoxError>,
    S::ResponseBody: tonic::codegen::Body<Data = bytes::Bytes> + Send + 'static,
    <S::ResponseBody as tonic::codegen::Body>::Error: Into<BoxError> + Send,
{
    let mut request = tonic::Request::new(HealthCheckRequest::default());
    request
        .metadata_mut()
        .insert(COUNTED, tonic::metadata::MetadataValue::from_static("1"));
    client.check(request).await.map(|_| ())
}

/// Polls `condition` every 10 ms for at most 10 s.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn spreads_calls_evenly_over_every_address_of_a_name() {
    let replicas = replicas(3).await;
    let resolver = FixedResolver::new();
    resolver.set("svc.test", replicas.iter().map(|r| r.addr.ip()));
    let port = replicas[0].addr.port();
    let balanced =
        Balanced::new("svc", &config(port), Arc::new(resolver), &Metrics::new("t")).unwrap();
    let mut client = HealthClient::new(balanced.clone());
    for _ in 0..300 {
        check(&mut client).await.unwrap();
    }
    // Concurrent callers too.
    let calls = (0..300).map(|_| {
        let mut client = client.clone();
        async move { check(&mut client).await }
    });
    for result in futures::future::join_all(calls).await {
        result.unwrap();
    }
    let hits: Vec<usize> = replicas.iter().map(Replica::hits).collect();
    assert_eq!(hits.iter().sum::<usize>(), 600);
    for h in &hits {
        assert!((180..=220).contains(h), "uneven spread: {hits:?}");
    }
}

#[tokio::test]
async fn a_replica_with_a_backlog_is_passed_over() {
    let mut replicas = replicas(3).await;
    // The first replica answers in 50 ms, the others at once.
    replicas[0].stop().await;
    replicas[0].delay = Duration::from_millis(50);
    replicas[0].restart().await.unwrap();
    let resolver = FixedResolver::new();
    resolver.set("svc.test", replicas.iter().map(|r| r.addr.ip()));
    let balanced = Balanced::new(
        "svc",
        &config(replicas[0].addr.port()),
        Arc::new(resolver),
        &Metrics::new("t"),
    )
    .unwrap();
    // Six callers sharing 600 calls, back to back: all six stay busy until the calls run out
    // (with 100 calls each, the last callers left alone would find no backlog to pass over,
    // and the slow replica's share would measure how the run ends, not the rule).
    let left = Arc::new(std::sync::atomic::AtomicUsize::new(600));
    let callers = (0..6).map(|_| {
        let mut client = HealthClient::new(balanced.clone());
        let left = left.clone();
        async move {
            while left
                .fetch_update(
                    std::sync::atomic::Ordering::SeqCst,
                    std::sync::atomic::Ordering::SeqCst,
                    |n| n.checked_sub(1),
                )
                .is_ok()
            {
                check(&mut client).await.unwrap();
            }
        }
    });
    futures::future::join_all(callers).await;
    let hits: Vec<usize> = replicas.iter().map(Replica::hits).collect();
    assert_eq!(hits.iter().sum::<usize>(), 600);
    // Round robin alone would give it 200.
    assert!(
        hits[0] < 100,
        "the slow replica got its full share: {hits:?}"
    );
}

#[tokio::test]
async fn a_dead_replica_costs_no_call_and_is_probed_back() {
    let mut replicas = replicas(2).await;
    let resolver = FixedResolver::new();
    resolver.set("svc.test", replicas.iter().map(|r| r.addr.ip()));
    let metrics = Metrics::new("t");
    let connector = Connector::new(
        ServiceToken::none(),
        BreakerConfig::default(),
        &metrics,
        Arc::new(resolver),
    );
    let (channel, _) = connector
        .channel("svc", &config(replicas[0].addr.port()))
        .unwrap();
    let mut client = HealthClient::new(channel);
    for _ in 0..20 {
        check(&mut client).await.unwrap();
    }
    assert_eq!((replicas[0].hits(), replicas[1].hits()), (10, 10));

    // Killed under load: the retry above the balancer resends to the live replica.
    replicas[0].stop().await;
    for _ in 0..100 {
        check(&mut client).await.expect("no call fails");
    }
    assert_eq!(replicas[0].hits(), 10);
    assert_eq!(replicas[1].hits(), 110);
    let text = metrics.render();
    assert!(
        text.contains(r#"braid_client_endpoints{service="t",downstream="svc",state="down"} 1"#),
        "{text}"
    );

    // Back on the same address: the probe returns it to the rotation.
    replicas[0].restart().await.unwrap();
    let mut calls = 0;
    while replicas[0].hits() == 10 {
        check(&mut client).await.unwrap();
        calls += 1;
        assert!(calls < 10_000, "the restarted replica never got a call");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let text = metrics.render();
    assert!(
        text.contains(r#"braid_client_endpoints{service="t",downstream="svc",state="ready"} 2"#),
        "{text}"
    );
}

#[tokio::test]
async fn follows_the_names_addresses_as_they_change() {
    let replicas = replicas(3).await;
    let resolver = FixedResolver::new();
    resolver.set("svc.test", [replicas[0].addr.ip()]);
    let metrics = Metrics::new("t");
    let balanced = Balanced::new(
        "svc",
        &config(replicas[0].addr.port()),
        Arc::new(resolver.clone()),
        &metrics,
    )
    .unwrap();
    let mut client = HealthClient::new(balanced.clone());
    check(&mut client).await.unwrap();

    // Scaled out: the new replicas get calls once the name is resolved again.
    resolver.set("svc.test", replicas.iter().map(|r| r.addr.ip()));
    eventually("three endpoints", || balanced.pool.states().len() == 3).await;
    for _ in 0..30 {
        check(&mut client).await.unwrap();
    }
    assert!(
        replicas.iter().all(|r| r.hits() >= 10),
        "every replica serves"
    );

    // Scaled in: a replica no longer resolved gets nothing more.
    resolver.set("svc.test", [replicas[1].addr.ip(), replicas[2].addr.ip()]);
    eventually("two endpoints", || balanced.pool.states().len() == 2).await;
    let before = replicas[0].hits();
    for _ in 0..20 {
        check(&mut client).await.unwrap();
    }
    assert_eq!(replicas[0].hits(), before);

    // A failed resolution keeps the last known addresses.
    resolver.remove("svc.test");
    let errors = r#"braid_client_resolve_errors_total{service="t",downstream="svc"} 2"#;
    eventually("two failed resolutions", || {
        metrics.render().contains(errors)
    })
    .await;
    assert_eq!(balanced.pool.states().len(), 2);
    check(&mut client).await.unwrap();
}

#[tokio::test]
async fn a_name_without_addresses_fails_calls_with_unavailable() {
    let balanced = Balanced::new(
        "svc",
        &config(1),
        Arc::new(FixedResolver::new()),
        &Metrics::new("t"),
    )
    .unwrap();
    let status = check(&mut HealthClient::new(balanced)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains("svc.test"), "{status:?}");
}

#[tokio::test]
async fn a_lone_replica_that_restarts_is_used_at_once() {
    let mut replicas = replicas(1).await;
    let config = ClientConfig {
        // The probe would take a minute: only the fallback to down endpoints can explain a
        // prompt success.
        probe_backoff_ms: 60_000,
        probe_backoff_max_ms: 60_000,
        endpoint: format!("http://{}", replicas[0].addr),
        ..config(0)
    };
    let balanced = Balanced::new(
        "svc",
        &config,
        Arc::new(FixedResolver::new()),
        &Metrics::new("t"),
    )
    .unwrap();
    let mut client = HealthClient::new(balanced.clone());
    check(&mut client).await.unwrap();
    replicas[0].stop().await;
    assert!(check(&mut client).await.is_err());
    assert!(!balanced.pool.states()[0].1, "down after the failure");
    replicas[0].restart().await.unwrap();
    check(&mut client).await.unwrap();
    assert!(balanced.pool.states()[0].1, "ready after a success");
}
