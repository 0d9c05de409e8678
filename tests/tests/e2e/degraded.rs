//! A search leg that fails never takes a search down: the gateway answers from the other leg,
//! flags the answer degraded and names the leg. Covered here: vector-search down, the
//! embedding service down (the vector leg cannot embed the query), a hung text leg and a hung
//! vector leg, each cut off at its production leg timeout, and an open circuit breaker that fails fast without calling the
//! leg at all. (The text leg refusing connections is in `pipeline.rs`.) Real services throughout.

use std::time::Duration;

use braid_core::config::BreakerSettings;
use braid_proto::tonic::Code;
use braid_tests::v1::{SearchMode, SearchRequest, SearchResponse};
use braid_tests::{
    HungServer, Stack, StackOptions, eventually, http_get, ingest_texts, metric_sum,
};

const TEXTS: [&str; 4] = [
    "Sourdough bread rises slowly because wild yeast ferments the dough overnight.",
    "Marathon runners taper their training in the weeks before a long race.",
    "Volcanic eruptions eject magma, ash and pumice into the atmosphere.",
    "The borrow checker rejects programs with dangling references at compile time.",
];

async fn search(
    stack: &Stack,
    query: &str,
    mode: SearchMode,
) -> Result<SearchResponse, tonic::Status> {
    stack
        .gateway_client()
        .await
        .expect("gateway client")
        .search(SearchRequest {
            query: query.into(),
            top_k: 4,
            mode: mode as i32,
            bypass_cache: true,
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner())
}

/// Degraded, one reason naming `leg`, and the other leg's hits only, best first `top`.
fn assert_degraded_to_other_leg(r: &SearchResponse, leg: &str, reason: &str, top: &str) {
    assert!(r.degraded, "{r:#?}");
    assert_eq!(r.degraded_reasons.len(), 1, "{:?}", r.degraded_reasons);
    assert!(
        r.degraded_reasons[0].starts_with(&format!("{leg} leg failed: {reason}")),
        "{:?}",
        r.degraded_reasons
    );
    assert_eq!(
        r.hits.first().map(|h| h.external_id.as_str()),
        Some(top),
        "{r:#?}"
    );
    let (text_only, vector_only) = (
        r.hits
            .iter()
            .all(|h| h.vector_score.is_none() && h.text_score.is_some()),
        r.hits
            .iter()
            .all(|h| h.text_score.is_none() && h.vector_score.is_some()),
    );
    match leg {
        "vector" => assert!(text_only, "{r:#?}"),
        _ => assert!(vector_only, "{r:#?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn vector_search_or_the_embedding_service_down_degrades_to_text_results() {
    let mut stack = Stack::start().await.unwrap();
    ingest_texts(&mut stack.gateway_client().await.unwrap(), &TEXTS).await;
    let healthy = search(&stack, "pumice magma", SearchMode::Hybrid)
        .await
        .unwrap();
    assert!(!healthy.degraded, "{:?}", healthy.degraded_reasons);

    // vector-search down: the query is embedded, the vector search is refused.
    stack.vector.stop().await.unwrap();
    let r = search(&stack, "pumice magma", SearchMode::Hybrid)
        .await
        .unwrap();
    assert_degraded_to_other_leg(&r, "vector", "unavailable", "doc-2");
    let err = search(&stack, "pumice magma", SearchMode::Vector)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");

    // vector-search back, the embedding service down: the vector leg cannot embed the query.
    stack.restart_vector().await.unwrap();
    eventually("the vector leg back", Duration::from_secs(30), || async {
        let r = search(&stack, "pumice magma", SearchMode::Hybrid)
            .await
            .ok()?;
        (!r.degraded).then_some(())
    })
    .await
    .unwrap();
    stack.embedding.stop().await.unwrap();
    let r = search(&stack, "borrow checker references", SearchMode::Hybrid)
        .await
        .unwrap();
    assert_degraded_to_other_leg(&r, "vector", "query embedding unavailable", "doc-3");
    stack.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hung_text_leg_is_cut_off_at_the_production_leg_timeout() {
    let mut options = StackOptions::default();
    // The hung leg's production deadline (the harness otherwise allows 20 s for slow debug
    // builds; the healthy vector leg keeps that allowance, so a loaded machine cannot fail it).
    let production = braid_gateway::GatewayConfig::default().search;
    options.gateway.search.text_timeout_ms = production.text_timeout_ms;
    let mut stack = Stack::start_with(options).await.unwrap();
    ingest_texts(&mut stack.gateway_client().await.unwrap(), &TEXTS).await;

    // text-search wedged: its port accepts connections, nothing answers.
    stack.text.stop().await.unwrap();
    let hung = HungServer::bind(stack.text.grpc).await.unwrap();
    let r = search(
        &stack,
        "how should I prepare for a long distance running race",
        SearchMode::Hybrid,
    )
    .await
    .unwrap();
    assert_degraded_to_other_leg(
        &r,
        "text",
        &format!("timed out after {} ms", production.text_timeout_ms),
        "doc-1",
    );
    assert!(hung.accepted() >= 1, "the gateway did reach the hung leg");
    stack.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hung_vector_leg_is_cut_off_at_the_production_leg_timeout() {
    let mut options = StackOptions::default();
    // The hung leg's production deadline; the healthy text leg keeps the harness's 20 s.
    let production = braid_gateway::GatewayConfig::default().search;
    options.gateway.search.vector_timeout_ms = production.vector_timeout_ms;
    let mut stack = Stack::start_with(options).await.unwrap();
    ingest_texts(&mut stack.gateway_client().await.unwrap(), &TEXTS).await;

    // vector-search wedged (the query is still embedded): its port accepts, nothing answers.
    stack.vector.stop().await.unwrap();
    let hung = HungServer::bind(stack.vector.grpc).await.unwrap();
    let r = search(
        &stack,
        "borrow checker dangling references",
        SearchMode::Hybrid,
    )
    .await
    .unwrap();
    assert_degraded_to_other_leg(
        &r,
        "vector",
        &format!("timed out after {} ms", production.vector_timeout_ms),
        "doc-3",
    );
    assert!(hung.accepted() >= 1, "the gateway did reach the hung leg");
    stack.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_open_breaker_fails_fast_without_calling_the_leg() {
    let mut options = StackOptions::default();
    options.gateway.breaker = BreakerSettings {
        failure_threshold: 3,
        // Open for the rest of the test.
        open_ms: 600_000,
        success_threshold: 1,
    };
    let mut stack = Stack::start_with(options).await.unwrap();
    ingest_texts(&mut stack.gateway_client().await.unwrap(), &TEXTS).await;

    // text-search refuses connections until the gateway's breaker for it opens.
    stack.text.stop().await.unwrap();
    eventually("the text breaker open", Duration::from_secs(60), || async {
        let r = search(&stack, "sourdough", SearchMode::Hybrid).await.ok()?;
        assert!(r.degraded);
        let (_, m) = http_get(stack.gateway.admin, "/metrics").await.ok()?;
        (metric_sum(&m, "braid_circuit_breaker_state", &["text-search"]) == 2.0).then_some(())
    })
    .await
    .unwrap();

    // text-search is back and healthy, but the open breaker keeps the gateway from calling it:
    // searches are answered at once from the vector leg, and text-search sees no search.
    stack.restart_text().await.unwrap();
    for _ in 0..5 {
        let r = search(&stack, "wild yeast bread dough", SearchMode::Hybrid)
            .await
            .unwrap();
        assert_degraded_to_other_leg(&r, "text", "unavailable", "doc-0");
    }
    let (_, m) = http_get(stack.text.admin, "/metrics").await.unwrap();
    assert_eq!(
        metric_sum(
            &m,
            "braid_grpc_requests_total",
            &["TextSearchService/Search\""]
        ),
        0.0,
        "the open breaker let a search through to text-search"
    );
    stack.shutdown().await.unwrap();
}
