//! Fair limits per caller, end to end on the real stack: rate budgets that trip with a
//! `retry-after` and recover, shared through Redis with a local fallback; the per-caller cap
//! on long calls that leaves searches alone; IngestStream's idle timeout and size budget; and
//! the caps on request list fields.

use std::time::Duration;

use braid_gateway::Budget;
use braid_proto::tonic::{Code, Status};
use braid_tests::v1::gateway_client::GatewayClient;
use braid_tests::v1::{
    DocumentInput, DocumentResult, IngestStreamRequest, SearchRequest, StatsRequest,
    WaitIndexedRequest,
};
use braid_tests::{
    DocumentInputExt, Ingest, RedisServer, Stack, StackOptions, Users, as_user, doc, eventually,
    http_get, metric_sum,
};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

const PATIENCE: Duration = Duration::from_secs(60);

/// A small document whose title and content are made from its id (specific to this file:
/// the limits count documents, not what they say).
fn small(id: &str) -> DocumentInput {
    doc(id, format!("limits test document {id} about rate budgets")).title(format!("Document {id}"))
}

fn stream_msg(id: &str) -> IngestStreamRequest {
    IngestStreamRequest {
        tenant: String::new(),
        document: Some(small(id)),
    }
}

async fn search(gw: &mut GatewayClient<Channel>) -> Result<(), Status> {
    gw.search(SearchRequest {
        query: "rate budgets".into(),
        ..Default::default()
    })
    .await
    .map(|_| ())
}

async fn gateway_metrics(stack: &Stack) -> String {
    http_get(stack.gateway.admin, "/metrics").await.unwrap().1
}

fn retry_after(status: &Status) -> u64 {
    status
        .metadata()
        .get(braid_gateway::RETRY_AFTER)
        .expect("retry-after trailer")
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn rate_limit_trips_with_retry_after_and_recovers() {
    let mut options = StackOptions::default();
    options.gateway.limits.search.per_subject = Budget::new(1.0, 2);
    let stack = Stack::start_with(options).await.unwrap();
    let mut gw = stack.gateway_client().await.unwrap();

    search(&mut gw).await.unwrap();
    search(&mut gw).await.unwrap();
    let refused = search(&mut gw).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("search budget per subject"),
        "{}",
        refused.message()
    );
    assert_eq!(retry_after(&refused), 1);
    // Other classes keep their own budgets.
    gw.stats(StatsRequest::default()).await.unwrap();
    let text = gateway_metrics(&stack).await;
    assert!(
        metric_sum(
            &text,
            "braid_gateway_rate_limited_total",
            &["class=\"search\"", "scope=\"subject\""]
        ) >= 1.0
    );

    // The budget refills: the caller gets through again without any intervention.
    eventually("search budget refilled", PATIENCE, || {
        let mut gw = gw.clone();
        async move { search(&mut gw).await.ok() }
    })
    .await
    .unwrap();
    stack.shutdown().await.unwrap();
}

#[tokio::test]
async fn redis_shares_budgets_between_gateways_and_falls_back_locally() {
    let redis = RedisServer::start().await.unwrap();
    let mut options = StackOptions::default();
    // Two calls, then one a minute: no refill during the test.
    options.gateway.limits.search.per_subject = Budget::new(1.0 / 60.0, 2);
    options.gateway.limits.redis_url = redis.url();
    options.gateway.limits.redis_timeout_ms = 1_000;
    let mut stack = Stack::start_with(options).await.unwrap();
    let mut gw = stack.gateway_client().await.unwrap();
    search(&mut gw).await.unwrap();
    search(&mut gw).await.unwrap();
    let refused = search(&mut gw).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(retry_after(&refused) > 1, "{refused:?}");

    // A new gateway process (a fresh local limiter) sees the budget Redis holds.
    stack.restart_gateway().await.unwrap();
    let mut gw = stack.gateway_client().await.unwrap();
    let refused = search(&mut gw).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert_eq!(
        metric_sum(
            &gateway_metrics(&stack).await,
            "braid_gateway_rate_limit_local_fallback_total",
            &[]
        ),
        0.0
    );

    // Redis gone: the local limiter decides, searches are still answered, and it is counted.
    drop(redis);
    search(&mut gw).await.unwrap();
    assert!(
        metric_sum(
            &gateway_metrics(&stack).await,
            "braid_gateway_rate_limit_local_fallback_total",
            &[]
        ) >= 2.0
    );
    stack.shutdown().await.unwrap();
}

/// The search budget is keyed by subject, in process memory and in Redis alike: alice using
/// hers up leaves bob's whole (same tenant, same gateway), and alice stays refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_search_budget_is_kept_per_subject_locally_and_in_redis() {
    let redis = RedisServer::start().await.unwrap();
    for shared in [false, true] {
        let users = Users::new("limits-test-secret-0123456789abcdef-0123");
        let mut options = users.stack_options();
        // Two calls, then one a minute: no refill during the test.
        options.gateway.limits.search.per_subject = Budget::new(1.0 / 60.0, 2);
        if shared {
            options.gateway.limits.redis_url = redis.url();
            options.gateway.limits.redis_timeout_ms = 5_000;
        }
        let stack = Stack::start_with(options).await.unwrap();
        let gw = stack.gateway_client().await.unwrap();
        let search_as = |sub: &str| {
            let (mut gw, token) = (gw.clone(), users.token(sub, "acme", "reader"));
            async move {
                gw.search(as_user(
                    SearchRequest {
                        query: "rate budgets".into(),
                        ..Default::default()
                    },
                    &token,
                ))
                .await
                .map(|_| ())
            }
        };
        search_as("alice").await.unwrap();
        search_as("alice").await.unwrap();
        let refused = search_as("alice").await.unwrap_err();
        assert_eq!(
            refused.code(),
            Code::ResourceExhausted,
            "redis {shared}: {refused:?}"
        );
        assert!(refused.message().contains("per subject"), "{refused:?}");
        search_as("bob")
            .await
            .unwrap_or_else(|e| panic!("redis {shared}: bob refused: {e:?}"));
        search_as("bob")
            .await
            .unwrap_or_else(|e| panic!("redis {shared}: bob refused: {e:?}"));
        assert_eq!(
            search_as("alice").await.unwrap_err().code(),
            Code::ResourceExhausted
        );
        assert_eq!(
            metric_sum(
                &gateway_metrics(&stack).await,
                "braid_gateway_rate_limit_local_fallback_total",
                &[]
            ),
            0.0,
            "redis {shared}: the limiter fell back to process memory"
        );
        stack.shutdown().await.unwrap();
    }
}

/// Opens an IngestStream, sends one document and keeps the stream open.
async fn open_stream(
    gw: &mut GatewayClient<Channel>,
    id: &str,
) -> Result<
    (
        mpsc::Sender<IngestStreamRequest>,
        tonic::Streaming<DocumentResult>,
    ),
    Status,
> {
    let (tx, rx) = mpsc::channel(4);
    tx.send(stream_msg(id)).await.unwrap();
    let results = gw
        .ingest_stream(ReceiverStream::new(rx))
        .await?
        .into_inner();
    Ok((tx, results))
}

#[tokio::test]
async fn long_call_cap_refuses_at_once_and_leaves_searches_alone() {
    let mut options = StackOptions::default();
    options.gateway.limits.long_calls.per_subject = 2;
    let stack = Stack::start_with(options).await.unwrap();
    let mut gw = stack.gateway_client().await.unwrap();

    let (tx1, mut results1) = open_stream(&mut gw, "held-1").await.unwrap();
    let (_tx2, mut results2) = open_stream(&mut gw, "held-2").await.unwrap();
    // Both streams are live: their first document's result came back.
    assert_eq!(results1.next().await.unwrap().unwrap().error, "");
    assert_eq!(results2.next().await.unwrap().unwrap().error, "");

    let refused = open_stream(&mut gw, "third").await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("limits.long_calls.per_subject"));
    let refused = gw
        .wait_indexed(WaitIndexedRequest {
            document_ids: vec![uuid::Uuid::new_v4().to_string()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");

    // Searches still get through while the caller holds its long calls.
    for _ in 0..5 {
        search(&mut gw).await.unwrap();
    }

    // Ending one stream frees its slot.
    drop(tx1);
    while results1.next().await.is_some() {}
    eventually("long-call slot freed", PATIENCE, || {
        let mut gw = gw.clone();
        async move { open_stream(&mut gw, "after").await.ok().map(|_| ()) }
    })
    .await
    .unwrap();
    stack.shutdown().await.unwrap();
}

#[tokio::test]
async fn ingest_stream_idle_timeout_and_budget_end_the_stream_with_the_limit() {
    let mut options = StackOptions::default();
    options.gateway.limits.stream.idle_timeout_ms = 1_000;
    options.gateway.limits.stream.max_documents = 2;
    let stack = Stack::start_with(options).await.unwrap();
    let mut gw = stack.gateway_client().await.unwrap();

    // Idle: one document, then silence with the stream left open.
    let (_tx, results) = open_stream(&mut gw, "idle-1").await.unwrap();
    let items: Vec<_> = results.collect().await;
    assert_eq!(items.len(), 2, "{items:?}");
    assert_eq!(items[0].as_ref().unwrap().error, "");
    let cut = items[1].as_ref().unwrap_err();
    assert_eq!(cut.code(), Code::DeadlineExceeded, "{cut:?}");
    assert!(cut.message().contains("limits.stream.idle_timeout_ms"));

    // Budget: three documents where two fit; the two are ingested, then the stream ends.
    let outbound = tokio_stream::iter(["b-1", "b-2", "b-3"].map(stream_msg));
    let items: Vec<_> = gw
        .ingest_stream(outbound)
        .await
        .unwrap()
        .into_inner()
        .collect()
        .await;
    assert_eq!(items.len(), 3, "{items:?}");
    assert!(
        items[..2]
            .iter()
            .all(|r| r.as_ref().unwrap().error.is_empty())
    );
    let cut = items[2].as_ref().unwrap_err();
    assert_eq!(cut.code(), Code::ResourceExhausted, "{cut:?}");
    assert!(cut.message().contains("limits.stream.max_documents"));
    stack.shutdown().await.unwrap();
}

#[tokio::test]
async fn list_fields_over_their_cap_are_invalid_arguments() {
    let mut options = StackOptions::default();
    options.gateway.limits.requests.max_documents_per_ingest = 2;
    options.gateway.limits.requests.max_wait_ids = 3;
    let stack = Stack::start_with(options).await.unwrap();
    let mut gw = stack.gateway_client().await.unwrap();

    let refused = Ingest::new(vec![small("a"), small("b"), small("c")])
        .no_wait()
        .send(&mut gw)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(refused.message(), "documents: 3 documents, at most 2");

    let refused = gw
        .wait_indexed(WaitIndexedRequest {
            document_ids: vec![uuid::Uuid::new_v4().to_string(); 4],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(refused.message(), "document_ids: 4 ids, at most 3");

    // A list inside one document costs that document only, with ingest's matching limit.
    let mut many = small("meta");
    for i in 0..33 {
        many.metadata.insert(format!("k{i}"), "v".into());
    }
    let results = Ingest::new(vec![small("ok"), many])
        .no_wait()
        .results(&mut gw)
        .await;
    assert_eq!(results[0].error, "");
    assert!(
        results[1].error.contains("metadata") && results[1].error.contains("at most 32"),
        "{}",
        results[1].error
    );
    stack.shutdown().await.unwrap();
}
