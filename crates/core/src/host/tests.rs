//! The host's shutdown order, against a real server on ephemeral ports.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::transport::Endpoint;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use super::*;

const SERVICE: &str = "braid.test.Svc";

/// A host on ephemeral ports, stopped by the returned sender.
async fn start(
    host: Host,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    JoinHandle<anyhow::Result<()>>,
) {
    let listeners = Listeners::ephemeral().await.unwrap();
    let addr = listeners.grpc_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(host.serve(Guard::Public, listeners, async move {
        let _ = stopped.await;
    }));
    (addr, stop, server)
}

#[tokio::test]
async fn health_turns_not_serving_before_the_listener_closes_and_in_flight_calls_see_it() {
    let config = ServerConfig {
        // Long enough that a drain held open by the watch below never ends by itself.
        shutdown_grace_ms: 60_000,
        ..ServerConfig::default()
    };
    let host = Host::new(SERVICE, "t", &config);
    let health = host.health().clone();
    health.set_serving(true).await;
    let (addr, stop, server) = start(host).await;

    // An in-flight call that lasts through the drain: a health watch.
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut watch = HealthClient::new(channel)
        .watch(HealthCheckRequest {
            service: SERVICE.into(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(first.status, ServingStatus::Serving as i32);

    let _ = stop.send(());
    // The first moment a new connection is refused, health already says NOT_SERVING (a
    // balancer that sees the port close never saw SERVING from a server going away).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the listener still accepts 10 s after shutdown"
        );
        tokio::task::yield_now().await;
    }
    assert!(
        !health.is_serving(),
        "the listener closed while health still reported SERVING"
    );
    // The call in flight is drained, not cut, and learns the server is going away.
    let next = tokio::time::timeout(Duration::from_secs(10), watch.message())
        .await
        .expect("the watch gets the drain's status")
        .unwrap()
        .unwrap();
    assert_eq!(next.status, ServingStatus::NotServing as i32);
    // The last in-flight call ends: the drain is over well before the grace period.
    drop(watch);
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the server returns once nothing is in flight")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn after_the_server_tasks_are_aborted_workers_finish_then_last_steps_run() {
    let config = ServerConfig {
        shutdown_grace_ms: 10_000,
        ..ServerConfig::default()
    };
    let mut host = Host::new(SERVICE, "t", &config);
    let log = Arc::new(Mutex::new(Vec::<&'static str>::new()));
    // A task that would run forever: aborted.
    let (task_dropped, task_gone) = tokio::sync::oneshot::channel::<()>();
    host.task(tokio::spawn(async move {
        let _guard = task_dropped;
        std::future::pending::<()>().await
    }));
    // A worker that finishes its job in hand once told to stop.
    let mut stopping = host.stopping();
    let worker_log = log.clone();
    host.workers([tokio::spawn(async move {
        stopping.wait().await;
        worker_log.lock().unwrap().push("worker finished");
    })]);
    let step_log = log.clone();
    host.last_step(move |grace| async move {
        assert_eq!(grace, Duration::from_secs(10));
        step_log.lock().unwrap().push("last step");
    });
    let (_, stop, server) = start(host).await;
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    // The sender inside the aborted task was dropped with it.
    assert!(task_gone.await.is_err());
    assert_eq!(*log.lock().unwrap(), ["worker finished", "last step"]);
}
