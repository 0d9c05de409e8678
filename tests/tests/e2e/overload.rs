//! Overload without collapse, on the real stack: past the gateway's concurrency limit requests
//! wait in the admission queue and are answered (hybrid, nothing degraded, breakers closed);
//! with a tiny queue the excess is shed at once with RESOURCE_EXHAUSTED.

use std::time::Duration;

use braid_proto::tonic::{Code, Request};
use braid_tests::v1::gateway_client::GatewayClient;
use braid_tests::v1::{SearchMode, SearchRequest};
use braid_tests::{Stack, StackOptions, http_get, metric_sum};
use tonic::transport::Channel;

const TOPICS: [&str; 6] = [
    "Mitochondria produce most of the chemical energy needed by the cell.",
    "Vaccines train the immune system to recognise a pathogen.",
    "Insulin regulates the level of glucose in the blood.",
    "Neurons transmit signals across synapses with neurotransmitters.",
    "Antibiotic resistance spreads through horizontal gene transfer.",
    "Photosynthesis converts light energy into chemical energy in plants.",
];

async fn ingest_corpus(gw: &mut GatewayClient<Channel>) {
    braid_tests::ingest_texts(gw, &TOPICS).await;
}

fn search(i: usize, timeout: Duration) -> Request<SearchRequest> {
    let words = [
        "energy",
        "immune",
        "glucose",
        "signals",
        "resistance",
        "light",
    ];
    let mut r = Request::new(SearchRequest {
        query: format!("{} {i}", words[i % words.len()]),
        mode: SearchMode::Hybrid as i32,
        top_k: 3,
        ..Default::default()
    });
    r.set_timeout(timeout);
    r
}

/// Sends `n` hybrid searches at once; the outcome of each.
async fn flood(
    gw: &GatewayClient<Channel>,
    n: usize,
    timeout: Duration,
) -> Vec<Result<braid_tests::v1::SearchResponse, tonic::Status>> {
    let calls = (0..n).map(|i| {
        let mut gw = gw.clone();
        async move { gw.search(search(i, timeout)).await.map(|r| r.into_inner()) }
    });
    futures::future::join_all(calls).await
}

async fn gateway_metrics(stack: &Stack) -> String {
    let (status, body) = http_get(stack.gateway.admin, "/metrics")
        .await
        .expect("metrics");
    assert!(status.contains("200"), "{status}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_past_the_concurrency_limit_is_queued_and_answered_hybrid() {
    let mut options = StackOptions::default();
    // 150 requests at once against 4 slots and 2 calls per leg: most of them queue.
    options.gateway.server.concurrency_limit = 4;
    options.gateway.server.queue_limit = 1_000;
    options.gateway.search.leg_concurrency = 2;
    let stack = Stack::start_with(options).await.expect("stack");
    let mut gw = stack.gateway_client().await.expect("client");
    ingest_corpus(&mut gw).await;

    let outcomes = flood(&gw, 150, Duration::from_secs(120)).await;
    let mut errors = Vec::new();
    let mut degraded = Vec::new();
    for outcome in &outcomes {
        match outcome {
            Ok(r) if r.degraded => degraded.push(r.degraded_reasons.clone()),
            Ok(r) => assert!(!r.hits.is_empty(), "every answer finds something"),
            Err(s) => errors.push((s.code(), s.message().to_string())),
        }
    }
    assert!(errors.is_empty(), "{} errors: {errors:?}", errors.len());
    assert!(
        degraded.is_empty(),
        "{} degraded: {degraded:?}",
        degraded.len()
    );

    let m = gateway_metrics(&stack).await;
    assert_eq!(metric_sum(&m, "braid_admission_shed_total", &[]), 0.0);
    assert!(metric_sum(&m, "braid_grpc_requests_total", &["Search", "code=\"Ok\""]) >= 150.0);
    // No breaker opened on the system's own queueing: every downstream is closed (0).
    assert_eq!(
        metric_sum(&m, "braid_circuit_breaker_state", &[]),
        0.0,
        "{m}"
    );
    // And the next answer is still hybrid.
    let after = gw
        .clone()
        .search(search(0, Duration::from_secs(60)))
        .await
        .expect("search after the flood")
        .into_inner();
    assert!(!after.degraded, "{:?}", after.degraded_reasons);
    assert!(
        after
            .hits
            .iter()
            .any(|h| h.vector_rank.is_some() && h.text_rank.is_some()),
        "fused from both legs: {:?}",
        after.hits
    );
    stack.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_a_tiny_queue_the_excess_is_shed_at_once() {
    let mut options = StackOptions::default();
    options.gateway.server.concurrency_limit = 1;
    options.gateway.server.queue_limit = 1;
    let stack = Stack::start_with(options).await.expect("stack");
    let mut gw = stack.gateway_client().await.expect("client");
    ingest_corpus(&mut gw).await;

    let outcomes = flood(&gw, 40, Duration::from_secs(120)).await;
    let answered = outcomes.iter().filter(|o| o.is_ok()).count();
    let shed: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert!(
        answered >= 2,
        "the running and the queued request are answered"
    );
    assert!(!shed.is_empty(), "40 requests at once cannot fit 1 + 1");
    for s in &shed {
        assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
        assert!(s.message().contains("queued"), "{}", s.message());
    }
    let m = gateway_metrics(&stack).await;
    // Shed because the queue was full, at once, not after waiting for their deadline.
    assert_eq!(
        metric_sum(&m, "braid_admission_shed_total", &["reason=\"queue_full\""]),
        shed.len() as f64
    );
    assert_eq!(
        metric_sum(&m, "braid_admission_shed_total", &["reason=\"deadline\""]),
        0.0
    );
    stack.shutdown().await.expect("shutdown");
}
