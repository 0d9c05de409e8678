//! The gateway's query result cache on the real stack: hits and misses, bypass, no stale
//! answer after an update or a delete (index generation), single flight, Redis mode with
//! Redis going away mid-test, degraded answers never stored, and readers of different
//! clearance never sharing an entry.

use std::time::Duration;

use braid_proto::tonic::Code;
use braid_tests::v1::{
    DeleteDocumentRequest, DocumentInput, DocumentStatus, FusionParams, GetDocumentRequest,
    SearchMode, SearchRequest, SearchResponse,
};
use braid_tests::{
    DocumentInputExt, Ingest, RedisServer, Stack, StackOptions, Users, acl, as_user, eventually,
    http_get, metric_sum, titled,
};

fn request(query: &str) -> SearchRequest {
    SearchRequest {
        query: query.into(),
        top_k: 5,
        mode: SearchMode::Hybrid as i32,
        ..Default::default()
    }
}

async fn search(stack: &Stack, request: SearchRequest) -> SearchResponse {
    let mut gw = stack.gateway_client().await.unwrap();
    let r = gw.search(request).await.unwrap().into_inner();
    assert!(!r.degraded, "{:?}", r.degraded_reasons);
    r
}

async fn gateway_metric(stack: &Stack, name: &str, filters: &[&str]) -> f64 {
    let (_, body) = http_get(stack.gateway.admin, "/metrics").await.unwrap();
    metric_sum(&body, name, filters)
}

fn corpus() -> Vec<DocumentInput> {
    vec![
        titled(
            "lighthouse",
            "The lighthouse keeper trims the lamp wick every evening at dusk. Version one.",
        ),
        titled(
            "orchard",
            "Apple trees in the orchard are pruned in late winter before the buds open.",
        ),
        titled(
            "glacier",
            "A glacier carves a valley as ice slowly flows downhill under its own weight.",
        ),
    ]
}

const QUERY: &str = "lighthouse keeper lamp";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hit_miss_bypass_and_no_stale_answer_after_update_or_delete() {
    let stack = Stack::start().await.unwrap();
    let mut gw = stack.gateway_client().await.unwrap();
    Ingest::new(corpus()).ready(&mut gw).await;

    let first = search(&stack, request(QUERY)).await;
    assert!(!first.cached);
    assert_eq!(first.hits[0].external_id, "lighthouse");
    assert!(first.hits[0].text.contains("Version one"), "{first:#?}");
    // The same query, spelt with other whitespace: answered from the cache.
    let second = search(&stack, request("  lighthouse   keeper lamp ")).await;
    assert!(second.cached);
    assert_eq!(second.hits, first.hits);
    assert_eq!(
        gateway_metric(
            &stack,
            "braid_query_cache_requests_total",
            &["result=\"hit\""]
        )
        .await,
        1.0
    );
    // Other parameters are other entries.
    let text_only = search(
        &stack,
        SearchRequest {
            mode: SearchMode::Text as i32,
            ..request(QUERY)
        },
    )
    .await;
    assert!(!text_only.cached);
    // Bypass neither reads nor fills the cache.
    let bypassed = search(
        &stack,
        SearchRequest {
            bypass_cache: true,
            ..request(QUERY)
        },
    )
    .await;
    assert!(!bypassed.cached);
    assert_eq!(
        gateway_metric(
            &stack,
            "braid_query_cache_requests_total",
            &["result=\"bypass\""]
        )
        .await,
        1.0
    );

    // Update the document and wait for READY: the next answer is v2, never the cached v1.
    Ingest::new(vec![titled(
        "lighthouse",
        "The lighthouse keeper trims the lamp wick every evening at dusk. Version two.",
    )])
    .ready(&mut gw)
    .await;
    let updated = search(&stack, request(QUERY)).await;
    assert!(!updated.cached, "READY bumps the index generation");
    assert_eq!(updated.hits[0].external_id, "lighthouse");
    assert!(updated.hits[0].text.contains("Version two"), "{updated:#?}");
    assert!(updated.hits.iter().all(|h| !h.text.contains("Version one")));
    assert!(search(&stack, request(QUERY)).await.cached);

    // Delete it and wait until both legs confirmed: the cached answer holding it is gone.
    gw.delete_document(DeleteDocumentRequest {
        tenant: String::new(),
        document_id: String::new(),
        external_id: "lighthouse".into(),
    })
    .await
    .unwrap();
    eventually(
        "the document is gone from both legs",
        Duration::from_secs(60),
        || {
            let mut gw = gw.clone();
            async move {
                let r = gw
                    .get_document(GetDocumentRequest {
                        tenant: String::new(),
                        document_id: String::new(),
                        external_id: "lighthouse".into(),
                    })
                    .await;
                matches!(r, Err(s) if s.code() == Code::NotFound).then_some(())
            }
        },
    )
    .await
    .unwrap();
    let after_delete = search(&stack, request(QUERY)).await;
    assert!(!after_delete.cached);
    assert!(
        after_delete
            .hits
            .iter()
            .all(|h| h.external_id != "lighthouse"),
        "{after_delete:#?}"
    );

    stack.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_identical_misses_run_the_legs_once() {
    let stack = Stack::start().await.unwrap();
    Ingest::new(corpus())
        .ready(&mut stack.gateway_client().await.unwrap())
        .await;
    let legs = |leg: &'static str| {
        let stack = &stack;
        async move {
            let filter = format!("leg=\"{leg}\"");
            gateway_metric(
                stack,
                "braid_search_leg_duration_seconds_count",
                &[filter.as_str()],
            )
            .await
        }
    };
    let (text_before, vector_before) = (legs("text").await, legs("vector").await);

    let searches = (0..16).map(|_| {
        let endpoint = stack.gateway.endpoint();
        tokio::spawn(async move {
            let mut gw = braid_tests::v1::gateway_client::GatewayClient::connect(endpoint)
                .await
                .unwrap();
            gw.search(request("how do glaciers shape valleys"))
                .await
                .unwrap()
                .into_inner()
        })
    });
    let answers = futures::future::join_all(searches).await;
    let answers: Vec<SearchResponse> = answers.into_iter().map(|a| a.unwrap()).collect();
    assert!(answers.iter().all(|a| !a.degraded));
    assert!(answers.iter().all(|a| a.hits == answers[0].hits));
    assert_eq!(answers[0].hits[0].external_id, "glacier");
    assert_eq!(answers.iter().filter(|a| !a.cached).count(), 1);
    assert_eq!(legs("text").await - text_before, 1.0, "one text leg call");
    assert_eq!(
        legs("vector").await - vector_before,
        1.0,
        "one vector leg call"
    );

    stack.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_mode_shares_answers_and_survives_redis_going_away() {
    let redis = RedisServer::start().await.unwrap();
    let mut options = StackOptions::default();
    options.gateway.query_cache.redis_url = redis.url();
    // Generous: a debug build on a shared machine; a dead Redis refuses at once anyway.
    options.gateway.query_cache.redis_timeout_ms = 5_000;
    let mut stack = Stack::start_with(options).await.unwrap();
    Ingest::new(corpus())
        .ready(&mut stack.gateway_client().await.unwrap())
        .await;

    assert!(!search(&stack, request(QUERY)).await.cached);
    // A fresh gateway (empty in-process cache) finds the answer in Redis.
    stack.restart_gateway().await.unwrap();
    let shared = search(&stack, request(QUERY)).await;
    assert!(shared.cached);
    assert_eq!(shared.hits[0].external_id, "lighthouse");
    assert_eq!(
        gateway_metric(
            &stack,
            "braid_query_cache_requests_total",
            &["result=\"redis_hit\""]
        )
        .await,
        1.0
    );

    // Redis goes away: searches still answer, uncached at first, then from process memory.
    drop(redis);
    let query = "apple trees pruning";
    let fresh = search(&stack, request(query)).await;
    assert!(!fresh.cached);
    assert_eq!(fresh.hits[0].external_id, "orchard");
    assert!(search(&stack, request(query)).await.cached);
    assert!(
        gateway_metric(
            &stack,
            "braid_query_cache_redis_total",
            &["result=\"error\""]
        )
        .await
            >= 1.0
    );

    stack.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deep_text_hits_on_the_page_get_text_and_snippets() {
    // The text leg sends text and snippets only for its first `top_k` documents. A page hit
    // that the vector leg pulls up from deep in the text ranking gets them from one
    // FetchChunks call. Three bakery notes repeat the query word (text ranks 1-3); the sky
    // sentence says it once in a longer text (text rank 4) but is what the query means
    // (vector rank 1). The text weight is tiny, so the fused page of one is the sky sentence.
    let stack = Stack::start().await.unwrap();
    let sky = "Among many quiet things in the night sky over the hills one faint nebula hides.";
    Ingest::new(vec![
        titled("bakery-1", "Nebula bakery: nebula bread and nebula buns."),
        titled("bakery-2", "Nebula bakery: nebula cakes and nebula tarts."),
        titled("bakery-3", "Nebula bakery: nebula coffee and nebula rolls."),
        titled("sky", sky),
    ])
    .ready(&mut stack.gateway_client().await.unwrap())
    .await;
    let fetches_before = text_fetches(&stack).await;
    let r = search(
        &stack,
        SearchRequest {
            query: "nebula glowing in outer space".into(),
            top_k: 1,
            mode: SearchMode::Hybrid as i32,
            bypass_cache: true,
            fusion: Some(FusionParams {
                text_weight: Some(0.01),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await;
    assert!(!r.degraded, "{r:#?}");
    let hit = &r.hits[0];
    assert_eq!(hit.external_id, "sky", "{r:#?}");
    assert!(hit.text_rank.unwrap_or(0) > 1, "a deep text hit: {hit:?}");
    assert_eq!(hit.text, sky);
    assert!(hit.snippet.contains("<b>"), "{hit:?}");
    assert_eq!(
        text_fetches(&stack).await - fetches_before,
        1.0,
        "the deep hit's text came from one FetchChunks call"
    );
    stack.shutdown().await.unwrap();
}

async fn text_fetches(stack: &Stack) -> f64 {
    let (_, body) = http_get(stack.text.admin, "/metrics").await.unwrap();
    metric_sum(&body, "braid_grpc_requests_total", &["FetchChunks"])
}

/// A degraded answer is never stored: asked twice while the text leg is down, the search is
/// computed both times (degraded, not cached); once the leg is back the answer is hybrid.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn degraded_answers_are_never_cached() {
    let mut stack = Stack::start().await.unwrap();
    let mut gw = stack.gateway_client().await.unwrap();
    Ingest::new(corpus()).ready(&mut gw).await;
    stack.text.stop().await.unwrap();
    for attempt in 0..2 {
        let r = gw.search(request(QUERY)).await.unwrap().into_inner();
        assert!(r.degraded, "attempt {attempt}: {r:?}");
        assert!(
            !r.cached,
            "attempt {attempt}: a degraded answer came from the cache"
        );
    }
    assert_eq!(
        gateway_metric(
            &stack,
            "braid_query_cache_requests_total",
            &["result=\"uncacheable\""]
        )
        .await,
        2.0
    );
    stack.restart_text().await.unwrap();
    let healed = eventually("a hybrid answer", Duration::from_secs(60), || async {
        let r = stack
            .gateway_client()
            .await
            .ok()?
            .search(request(QUERY))
            .await
            .ok()?
            .into_inner();
        (!r.degraded).then_some(r)
    })
    .await
    .unwrap();
    assert!(!healed.cached);
    assert_eq!(healed.hits[0].external_id, "lighthouse");
    stack.shutdown().await.unwrap();
}

/// The same search by a clearance-0 reader and a clearance-5 reader: each gets its own
/// entry (the clearance-5 document is in one answer only), and each then hits its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readers_of_different_clearance_never_share_a_cached_answer() {
    let users = Users::new("cache-test-secret-0123456789abcdef-01234");
    let stack = Stack::start_with(users.stack_options()).await.unwrap();
    let mut gw = stack.gateway_client().await.unwrap();
    let admin = users.token("ada", "acme", "admin");
    let low = users.token_with_acl("lou", "acme", "reader", 0, &[]);
    let high = users.token_with_acl("hal", "acme", "reader", 5, &[]);
    let secret = titled(
        "keeper-log",
        "The lighthouse keeper's log: the lamp failed twice this winter. Restricted.",
    )
    .acl(acl(5, &[]));
    let mut documents = corpus();
    documents.push(secret);
    let results = Ingest::new(documents)
        .as_user(&admin)
        .results(&mut gw)
        .await;
    assert!(
        results
            .iter()
            .all(|r| r.status == DocumentStatus::Ready as i32),
        "{results:?}"
    );
    let mut ask = async |token: &str| {
        let r = gw
            .search(as_user(request(QUERY), token))
            .await
            .unwrap()
            .into_inner();
        assert!(!r.degraded, "{:?}", r.degraded_reasons);
        let sees_secret = r.hits.iter().any(|h| h.external_id == "keeper-log");
        (r.cached, sees_secret)
    };
    // (cached, sees the clearance-5 document)
    assert_eq!(ask(&low).await, (false, false), "low, first");
    assert_eq!(
        ask(&high).await,
        (false, true),
        "high, first: not low's entry"
    );
    assert_eq!(ask(&high).await, (true, true), "high, again");
    assert_eq!(
        ask(&low).await,
        (true, false),
        "low, again: not high's entry"
    );
    stack.shutdown().await.unwrap();
}
