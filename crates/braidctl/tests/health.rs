//! `braidctl health --service NAME --addr HOST:PORT`, the container and probe health check:
//! exit 0 only when that service's own `grpc.health.v1` status is SERVING.

use std::process::Command;

use braid_proto::service_names;
use tonic_health::ServingStatus;

/// Runs braidctl off the runtime's threads (it starts its own runtime).
async fn braidctl(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_braidctl"))
            .args(&args)
            .env_remove("BRAID_HEALTH_SERVICE")
            .env_remove("BRAID_HEALTH_ADDR")
            .output()
            .expect("braidctl runs")
    })
    .await
    .expect("join")
}

fn args(service: &str, addr: &str) -> Vec<String> {
    ["health", "--service", service, "--addr", addr]
        .into_iter()
        .map(String::from)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_service_exits_zero_only_when_that_service_is_serving() {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status(service_names::INGEST, ServingStatus::Serving)
        .await;
    reporter
        .set_service_status(service_names::GATEWAY, ServingStatus::NotServing)
        .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let out = braidctl(args("ingest", &addr)).await;
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("SERVING"));

    // Another service on the same server is NOT_SERVING: its own status decides.
    let out = braidctl(args("gateway", &addr)).await;
    assert!(!out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("NOT_SERVING"));

    // Unknown to this server (vector-search is not registered there).
    let out = braidctl(args("vector-search", &addr)).await;
    assert!(!out.status.success(), "{out:?}");

    // --quiet prints nothing; the exit code still tells.
    let mut quiet = args("ingest", &addr);
    quiet.push("--quiet".into());
    let out = braidctl(quiet).await;
    assert!(out.status.success() && out.stdout.is_empty(), "{out:?}");

    // Nothing listening.
    server.abort();
    let _ = server.await;
    let out = braidctl(args("ingest", &addr)).await;
    assert!(!out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("UNREACHABLE"));
}

#[test]
fn service_and_addr_come_from_the_environment_too() {
    // The image's HEALTHCHECK is a bare `braidctl health --quiet` with these two variables set;
    // port 1 has no listener, so the check must fail (instead of checking all five services).
    let out = Command::new(env!("CARGO_BIN_EXE_braidctl"))
        .args(["health"])
        .env("BRAID_HEALTH_SERVICE", "text-search")
        .env("BRAID_HEALTH_ADDR", "127.0.0.1:1")
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("braid.v1.TextSearchService") && stdout.contains("UNREACHABLE"),
        "{stdout}"
    );
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
}
