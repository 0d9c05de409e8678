//! The embedding service on the real model: dynamic batching under concurrency, limits and
//! load shedding, the embedding cache (real Redis, and Redis down), and the OpenAI-compatible
//! provider against a real HTTP server (another embedding service) with injected faults.

use std::time::{Duration, Instant};

use braid_core::auth::secret::KeySource;
use braid_embedding::{EmbeddingConfig, Fault, Oversize, ProviderKind};
use braid_tests::v1::embedding_service_client::EmbeddingServiceClient;
use braid_tests::v1::{EmbedRequest, InputType, ModelInfoRequest};
use braid_tests::{
    RedisServer, Service, ServiceChannel, eventually, http_get, metric_sum, service_channel,
    start_embedding,
};
use tonic::Code;

/// A client carrying the harness's service credential (internal auth is on).
async fn client(service: &Service) -> EmbeddingServiceClient<ServiceChannel> {
    EmbeddingServiceClient::new(service_channel(service))
}

async fn embed(
    client: &mut EmbeddingServiceClient<ServiceChannel>,
    texts: &[&str],
) -> Result<Vec<Vec<f32>>, tonic::Status> {
    let response = client
        .embed(EmbedRequest {
            texts: texts.iter().map(|t| t.to_string()).collect(),
            input_type: InputType::Document as i32,
        })
        .await?
        .into_inner();
    Ok(response.embeddings.into_iter().map(|v| v.values).collect())
}

/// The service promises L2-normalised vectors, so cosine is their dot product: both norms
/// are checked first (‖v‖ = 1 ± 1e-3), so a service that stopped normalising fails here
/// instead of passing as a bare dot product.
fn cosine(a: &[f32], b: &[f32]) -> f32 {
    for v in [a, b] {
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-3, "not L2-normalised: |v| = {norm}");
    }
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

async fn metrics(service: &Service) -> String {
    http_get(service.admin, "/metrics")
        .await
        .expect("metrics")
        .1
}

const TEXTS: [&str; 6] = [
    "Vitamin D deficiency is associated with bone fractures.",
    "The mitochondria is the powerhouse of the cell.",
    "Rust guarantees memory safety without a garbage collector.",
    "Reciprocal rank fusion merges rankings from several retrievers.",
    "Cats sleep for most of the day.",
    "PostgreSQL stores vectors with the pgvector extension.",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_callers_are_merged_into_shared_batches_each_getting_its_own_vectors()
-> anyhow::Result<()> {
    // One document model thread, forward passes of up to 12 texts (any length).
    let mut service = start_embedding(|c| {
        c.model.workers = 1;
        c.model.query_workers = 0;
        c.model.max_batch = 12;
        c.model.max_batch_tokens = 12 * 256;
        c.cache.l1_entries = 0;
    })
    .await?;
    let mut c = client(&service).await;
    let alone: Vec<Vec<f32>> = {
        let mut out = Vec::new();
        for t in TEXTS {
            out.push(embed(&mut c, &[t]).await?.remove(0));
        }
        out
    };
    let m = metrics(&service).await;
    let passes_before = metric_sum(&m, "braid_embedding_batch_size_count", &[]);
    let texts_before = metric_sum(&m, "braid_embedding_batch_size_sum", &[]);
    assert_eq!((passes_before, texts_before), (6.0, 6.0));

    // Keep the model thread busy: a request of 36 window-filling texts (3 passes of 12)...
    let (blockers, per_blocker) = (1, 36);
    let backlog: Vec<_> = (0..blockers)
        .map(|r| {
            let mut c = c.clone();
            let texts: Vec<String> = (0..per_blocker)
                .map(|i| format!("Blocker {r}-{i}. {}", TEXTS[i % TEXTS.len()].repeat(24)))
                .collect();
            tokio::spawn(async move {
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                embed(&mut c, &refs).await.map(|v| v.len())
            })
        })
        .collect();
    eventually(
        "the first blocker pass",
        Duration::from_secs(60),
        || async {
            let m = metrics(&service).await;
            (metric_sum(&m, "braid_embedding_batch_size_count", &[]) > passes_before).then_some(())
        },
    )
    .await?;
    // ...while 24 concurrent calls of 3 texts each (rotations of TEXTS) queue up behind them.
    let calls: Vec<_> = (0..24)
        .map(|i| {
            let mut c = c.clone();
            tokio::spawn(async move {
                let texts: Vec<&str> = (0..3).map(|j| TEXTS[(i + j) % TEXTS.len()]).collect();
                (i, embed(&mut c, &texts).await)
            })
        })
        .collect();
    eventually(
        "all 24 calls queued behind the blockers",
        Duration::from_secs(60),
        || async {
            let m = metrics(&service).await;
            (metric_sum(&m, "braid_embedding_queue_depth", &[]) >= 24.0).then_some(())
        },
    )
    .await?;
    for handle in backlog {
        assert_eq!(handle.await??, per_blocker);
    }
    let mut answers = Vec::new();
    for handle in calls {
        answers.push(handle.await?);
    }
    let m = metrics(&service).await;
    let passes = metric_sum(&m, "braid_embedding_batch_size_count", &[]) - passes_before;
    let texts = metric_sum(&m, "braid_embedding_batch_size_sum", &[]) - texts_before;
    assert_eq!(
        texts,
        (blockers * per_blocker + 24 * 3) as f64,
        "every text ran through the model once"
    );
    // The blocker takes 3 passes of 12 whatever happens. The 24 queued calls were taken four
    // at a time: 6 passes of 12 texts from 4 different callers. Run one call per pass, they
    // would have taken 24.
    assert_eq!(
        passes,
        3.0 + 6.0,
        "queued calls merged into shared forward passes"
    );
    assert_eq!(
        metric_sum(&m, "braid_embedding_batch_size_bucket", &["le=\"8\""])
            - metric_sum(&m, "braid_embedding_batch_size_bucket", &["le=\"1\""]),
        0.0,
        "no pass of 2 to 8 texts: every 3-text call shared its pass"
    );
    // Merged, yet every caller got its own vectors, in its own order.
    for (i, result) in answers {
        let vectors = result?;
        assert_eq!(vectors.len(), 3);
        for (j, v) in vectors.iter().enumerate() {
            let expected = &alone[(i + j) % TEXTS.len()];
            assert!(
                cosine(v, expected) > 0.9999,
                "call {i} text {j} got someone else's vector"
            );
        }
    }
    service.stop().await
}

/// A lone one-text request runs on the multi-threaded copy (`model.lone_pass_threads`) while the
/// other document thread idles, and its vector is the single-threaded model's; with the copy
/// off (`lone_pass_threads = 1`) nothing runs there.
#[tokio::test(flavor = "multi_thread")]
async fn a_lone_document_runs_on_every_core_with_the_same_vector() -> anyhow::Result<()> {
    let start = |lone_threads: usize| {
        start_embedding(move |c| {
            c.cache.l1_entries = 0;
            c.model.workers = 2;
            c.model.threads = 1;
            c.model.lone_pass_threads = lone_threads;
        })
    };
    let lone = |m: &str| metric_sum(m, "braid_embedding_batch_size_count", &["pool=\"lone\""]);
    let text = TEXTS[0];

    let mut wide = start(2).await?;
    let wide_client = client(&wide).await;
    // Eventually: right after start-up the other model thread may not be waiting yet.
    let wide_vector = eventually(
        "a lone pass on the multi-threaded copy",
        Duration::from_secs(20),
        || {
            let mut c = wide_client.clone();
            let service = &wide;
            async move {
                let before = lone(&metrics(service).await);
                let v = embed(&mut c, &[text]).await.ok()?.pop()?;
                (lone(&metrics(service).await) > before).then_some(v)
            }
        },
    )
    .await?;
    wide.stop().await?;

    let mut narrow = start(1).await?;
    let narrow_vector = embed(&mut client(&narrow).await, &[text]).await?.remove(0);
    let m = metrics(&narrow).await;
    assert_eq!(lone(&m), 0.0, "lone passes with the copy off");
    assert!(
        metric_sum(
            &m,
            "braid_embedding_batch_size_count",
            &["pool=\"document\""]
        ) >= 1.0
    );
    let similarity = cosine(&wide_vector, &narrow_vector);
    assert!(
        similarity > 0.9999,
        "lone pass vector differs: cosine {similarity}"
    );
    narrow.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_query_overtakes_a_document_backlog() -> anyhow::Result<()> {
    // Without query model threads the document thread runs the query between two passes;
    // with one, the query model runs it.
    for query_workers in [0, 1] {
        query_overtakes_backlog(query_workers).await?;
    }
    Ok(())
}

async fn query_overtakes_backlog(query_workers: usize) -> anyhow::Result<()> {
    // One document model thread, one text per forward pass: without the query lane a query
    // would wait for every document text queued before it.
    let mut service = start_embedding(|c| {
        c.model.workers = 1;
        c.model.query_workers = query_workers;
        c.model.max_batch = 1;
        c.cache.l1_entries = 0;
    })
    .await?;
    let c = client(&service).await;
    let (requests, per_request) = (3, 64);
    let backlog: Vec<_> = (0..requests)
        .map(|r| {
            let mut c = c.clone();
            let texts: Vec<String> = (0..per_request)
                .map(|i| format!("{} Document {r}-{i}.", TEXTS[i % TEXTS.len()].repeat(8)))
                .collect();
            tokio::spawn(async move {
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                embed(&mut c, &refs).await.map(|v| v.len())
            })
        })
        .collect();
    eventually(
        "the first document pass",
        Duration::from_secs(60),
        || async {
            let m = metrics(&service).await;
            (metric_sum(&m, "braid_embedding_batch_size_count", &[]) >= 1.0).then_some(())
        },
    )
    .await?;
    let mut q = c.clone();
    let answer = q
        .embed(EmbedRequest {
            texts: vec!["which vitamin protects bones".into()],
            input_type: InputType::Query as i32,
        })
        .await?
        .into_inner();
    assert_eq!(answer.embeddings.len(), 1);
    let m = metrics(&service).await;
    let done_before_query = metric_sum(&m, "braid_embedding_batch_size_sum", &[]);
    let backlog_texts = (requests * per_request) as f64;
    assert!(
        done_before_query < backlog_texts,
        "the query waited for the whole backlog ({done_before_query} of {backlog_texts} texts)"
    );
    assert!(
        backlog.iter().any(|h| !h.is_finished()),
        "document requests were still running when the query was answered"
    );
    let query_pool = metric_sum(&m, "braid_embedding_batch_size_count", &["pool=\"query\""]);
    assert_eq!(
        query_pool, query_workers as f64,
        "the query ran on the query model exactly when there is one"
    );
    for handle in backlog {
        assert_eq!(handle.await??, per_request, "every document text embedded");
    }
    // Idle document threads too: a query still goes to the query model when there is one.
    q.embed(EmbedRequest {
        texts: vec!["does smoking cause cancer".into()],
        input_type: InputType::Query as i32,
    })
    .await?;
    let m = metrics(&service).await;
    let query_pool = metric_sum(&m, "braid_embedding_batch_size_count", &["pool=\"query\""]);
    assert_eq!(query_pool, 2.0 * query_workers as f64);
    service.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn limits_reject_or_truncate_and_a_flood_is_shed() -> anyhow::Result<()> {
    // One text per forward pass and room for two waiting requests: a flood must overflow.
    let mut strict = start_embedding(|c| {
        c.limits.max_texts_per_request = 4;
        c.limits.max_text_bytes = 2_000;
        c.limits.queue_capacity = 2;
        c.model.max_batch = 1;
        c.cache.l1_entries = 0;
    })
    .await?;
    let mut c = client(&strict).await;
    let too_long = "word ".repeat(440); // 2,200 bytes
    let err = embed(&mut c, &["ok", &too_long]).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("texts[1]") && err.message().contains("at most 2000 bytes"),
        "{}",
        err.message()
    );
    let err = embed(&mut c, &["a", "b", "c", "d", "e"]).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("at most 4 per request"),
        "{}",
        err.message()
    );

    // A flood far beyond the queue (each text fills the 256-token window): some calls are
    // shed at once, none waits unboundedly, every accepted one is answered.
    let texts: Vec<String> = (0..60)
        .map(|i| format!("flood text number {i} {}", "token ".repeat(300)))
        .collect();
    let calls = texts.iter().map(|t| {
        let mut c = c.clone();
        async move { embed(&mut c, &[t.as_str()]).await }
    });
    let results = futures::future::join_all(calls).await;
    let shed = results
        .iter()
        .filter(|r| matches!(r, Err(s) if s.code() == Code::ResourceExhausted))
        .count();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert!(
        shed > 0,
        "a 60-request flood against a queue of 2 must shed some"
    );
    assert!(ok > 0, "requests within capacity are served");
    assert_eq!(shed + ok, 60, "only shedding or success: {results:?}");
    strict.stop().await?;

    let mut lenient = start_embedding(|c| {
        c.limits.max_text_bytes = 100;
        c.limits.oversize = Oversize::Truncate;
    })
    .await?;
    let mut c = client(&lenient).await;
    let long = "word ".repeat(40); // 200 bytes
    let response = c
        .embed(EmbedRequest {
            texts: vec!["short".into(), long.clone()],
            input_type: InputType::Query as i32,
        })
        .await?
        .into_inner();
    assert_eq!(response.truncated, vec![1]);
    let cut = embed(&mut c, &[&long[..100]]).await?.remove(0);
    assert!(cosine(&response.embeddings[1].values, &cut) > 0.9999);
    lenient.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_caches_across_instances_and_redis_down_still_embeds() -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let url = redis.url();
    let with_redis = |c: &mut EmbeddingConfig| {
        c.cache.l1_entries = 0;
        c.cache.redis_url = url.clone();
        c.cache.redis_timeout_ms = 500;
    };
    let mut first = start_embedding(with_redis).await?;
    let v1 = embed(&mut client(&first).await, &[TEXTS[0], TEXTS[1]]).await?;
    // The write to Redis happens off the request path.
    let mut second = start_embedding(with_redis).await?;
    let mut c2 = client(&second).await;
    eventually("vectors in Redis", Duration::from_secs(10), || {
        let mut c2 = c2.clone();
        let second = &second;
        async move {
            embed(&mut c2, &[TEXTS[0], TEXTS[1]]).await.ok()?;
            let m = metrics(second).await;
            (metric_sum(
                &m,
                "braid_embedding_cache_lookups_total",
                &["redis", "\"hit\""],
            ) >= 2.0)
                .then_some(())
        }
    })
    .await?;
    let v2 = embed(&mut c2, &[TEXTS[0], TEXTS[1]]).await?;
    assert_eq!(v1, v2, "the cached vectors are exactly the computed ones");
    let (_, health) = http_get(second.admin, "/healthz").await?;
    assert!(health.contains("cache_redis: up"), "{health}");

    // Redis gone: requests still succeed, the failures are counted and shown.
    drop(redis);
    let v3 = embed(&mut c2, &[TEXTS[2]]).await?;
    assert_eq!(v3[0].len(), 384);
    let m = metrics(&second).await;
    assert!(
        metric_sum(
            &m,
            "braid_embedding_cache_lookups_total",
            &["redis", "error"]
        ) >= 1.0
    );
    eventually(
        "health shows redis down",
        Duration::from_secs(10),
        || async {
            let (_, h) = http_get(second.admin, "/healthz").await.ok()?;
            h.contains("cache_redis: down").then_some(())
        },
    )
    .await?;
    first.stop().await?;
    second.stop().await?;

    // Never reachable at all (nothing listens): starts, serves, embeds.
    let mut orphan = start_embedding(|c| {
        c.cache.redis_url = "redis://127.0.0.1:1/0".into();
    })
    .await?;
    assert_eq!(
        embed(&mut client(&orphan).await, &[TEXTS[3]]).await?[0].len(),
        384
    );
    orphan.stop().await
}

async fn set_fault(server: &Service, fault: &Fault) -> anyhow::Result<()> {
    let status = reqwest::Client::new()
        .post(format!("http://{}/v1/faults", server.admin))
        .json(fault)
        .send()
        .await?
        .status();
    anyhow::ensure!(status.is_success(), "setting the fault: {status}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn openai_provider_retries_honours_retry_after_and_breaks_the_circuit() -> anyhow::Result<()>
{
    // The "remote API": an embedding service serving /v1/embeddings with the fault layer on.
    let key_dir = tempfile::tempdir()?;
    let key_file = key_dir.path().join("upstream.key");
    std::fs::write(&key_file, "upstream-key\n")?;
    let mut upstream = start_embedding(|c| {
        c.openai_server.api_key = KeySource::from_value("upstream-key");
        c.openai_server.fault_injection = true;
        c.cache.l1_entries = 0;
    })
    .await?;
    let base_url = format!("http://{}/v1", upstream.admin);
    let mut braid = start_embedding(|c| {
        c.provider.kind = ProviderKind::Openai;
        c.provider.openai.base_url = base_url.clone();
        c.provider.openai.model = "all-MiniLM-L6-v2".into();
        c.provider.openai.api_key_env = String::new();
        c.provider.openai.api_key_file = Some(key_file.clone());
        c.provider.openai.max_attempts = 3;
        c.provider.openai.min_backoff_ms = 20;
        c.provider.openai.max_backoff_ms = 3_000;
        c.provider.openai.timeout_ms = 1_000;
        c.provider.openai.breaker.failure_threshold = 4;
        c.provider.openai.breaker.open_ms = 1_500;
        c.provider.openai.breaker.success_threshold = 2;
        c.cache.l1_entries = 0;
    })
    .await?;
    let mut up = client(&upstream).await;
    let mut c = client(&braid).await;

    // Healthy: the remote vectors come back in order, equal to the upstream's own.
    let direct = embed(&mut up, &TEXTS[..3]).await?;
    let remote = embed(&mut c, &TEXTS[..3]).await?;
    for (a, b) in direct.iter().zip(&remote) {
        assert!(cosine(a, b) > 0.9999);
    }
    let info = c.model_info(ModelInfoRequest {}).await?.into_inner();
    assert_eq!(
        (info.provider.as_str(), info.breaker_state.as_str()),
        ("openai", "closed")
    );
    assert_eq!(info.dimensions, 384);

    // Two 429s with Retry-After: 1 s -> the call waits them out and succeeds.
    set_fault(
        &upstream,
        &Fault {
            status: 429,
            count: 2,
            retry_after_secs: Some(1.0),
            delay_ms: 0,
        },
    )
    .await?;
    let started = Instant::now();
    embed(&mut c, &[TEXTS[3]]).await?;
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "Retry-After was not honoured"
    );
    let m = metrics(&braid).await;
    assert_eq!(
        metric_sum(
            &m,
            "braid_embedding_provider_requests_total",
            &["throttled"]
        ),
        2.0
    );

    // A slow upstream: the first attempt is cut off by the 1 s timeout (counted as failed)
    // and the retry succeeds. Without the timeout the first attempt would simply succeed late.
    let failed = |m: &str| {
        metric_sum(
            m,
            "braid_embedding_provider_requests_total",
            &["\"failed\""],
        )
    };
    let failed_before = failed(&metrics(&braid).await);
    set_fault(
        &upstream,
        &Fault {
            status: 0,
            count: 1,
            retry_after_secs: None,
            delay_ms: 2_500,
        },
    )
    .await?;
    embed(&mut c, &[TEXTS[4]]).await?;
    assert_eq!(
        failed(&metrics(&braid).await) - failed_before,
        1.0,
        "the slow attempt timed out and was retried"
    );

    // Persistent 500s: retries exhaust (UNAVAILABLE), the breaker opens after 4 consecutive
    // failures, then calls fail fast without reaching the upstream.
    set_fault(
        &upstream,
        &Fault {
            status: 500,
            count: 1_000,
            retry_after_secs: None,
            delay_ms: 0,
        },
    )
    .await?;
    let err = embed(&mut c, &[TEXTS[5]]).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    let err = embed(&mut c, &[TEXTS[5]]).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    let info = c.model_info(ModelInfoRequest {}).await?.into_inner();
    assert_eq!(info.breaker_state, "open");
    let before = metric_sum(
        &metrics(&braid).await,
        "braid_embedding_provider_requests_total",
        &["failed"],
    );
    // An open breaker fails fast: the upstream is not called (the counters below).
    let err = embed(&mut c, &[TEXTS[5]]).await.unwrap_err();
    assert!(
        err.message().contains("circuit breaker"),
        "{}",
        err.message()
    );
    let m = metrics(&braid).await;
    assert_eq!(
        metric_sum(&m, "braid_embedding_provider_requests_total", &["failed"]),
        before
    );
    assert!(
        metric_sum(
            &m,
            "braid_embedding_provider_requests_total",
            &["breaker_open"]
        ) >= 1.0
    );
    assert_eq!(
        metric_sum(&m, "braid_embedding_provider_breaker_state", &[]),
        2.0
    );
    eventually(
        "health detail shows the open breaker",
        Duration::from_secs(5),
        || async {
            let (_, h) = http_get(braid.admin, "/healthz").await.ok()?;
            h.contains("provider_breaker: open").then_some(())
        },
    )
    .await?;

    // Upstream recovers; after open_ms the breaker lets trial calls through and closes.
    reqwest::Client::new()
        .delete(format!("http://{}/v1/faults", upstream.admin))
        .send()
        .await?
        .error_for_status()?;
    eventually("the breaker half-open", Duration::from_secs(10), || {
        let mut c = c.clone();
        async move {
            let info = c.model_info(ModelInfoRequest {}).await.ok()?.into_inner();
            (info.breaker_state == "half-open").then_some(())
        }
    })
    .await?;
    embed(&mut c, &[TEXTS[0]]).await?;
    embed(&mut c, &[TEXTS[1]]).await?;
    let info = c.model_info(ModelInfoRequest {}).await?.into_inner();
    assert_eq!(info.breaker_state, "closed");

    braid.stop().await?;
    upstream.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_openai_endpoint_speaks_the_openai_format() -> anyhow::Result<()> {
    let mut service = start_embedding(|c| {
        c.openai_server.api_key = KeySource::from_value("admin-key");
    })
    .await?;
    let http = reqwest::Client::new();
    let url = format!("http://{}/v1/embeddings", service.admin);
    // The endpoint needs the configured key.
    for auth in [None, Some("wrong-key")] {
        let mut request = http.post(&url).json(&serde_json::json!({ "input": "x" }));
        if let Some(key) = auth {
            request = request.bearer_auth(key);
        }
        assert_eq!(request.send().await?.status(), 401, "{auth:?}");
    }
    let body: serde_json::Value = http
        .post(&url)
        .bearer_auth("admin-key")
        .json(&serde_json::json!({ "input": "hello world", "model": "all-MiniLM-L6-v2" }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(body["object"], "list");
    assert_eq!(body["data"][0]["index"], 0);
    assert_eq!(
        body["data"][0]["embedding"].as_array().map(Vec::len),
        Some(384)
    );
    assert!(
        body["model"]
            .as_str()
            .unwrap()
            .starts_with("sentence-transformers/all-MiniLM-L6-v2@")
    );
    assert!(body["usage"]["prompt_tokens"].as_u64().unwrap() > 0);

    let grpc = embed(&mut client(&service).await, &["hello world"]).await?;
    let http_vec: Vec<f32> = serde_json::from_value(body["data"][0]["embedding"].clone())?;
    assert!(cosine(&grpc[0], &http_vec) > 0.9999);

    for (bad, needle) in [
        (serde_json::json!({ "input": [1, 2, 3] }), "input must be"),
        (
            serde_json::json!({ "input": "x", "encoding_format": "base64" }),
            "encoding_format",
        ),
        (
            serde_json::json!({ "input": "x", "dimensions": 1536 }),
            "dimensions",
        ),
        (serde_json::json!({ "input": [] }), "at least one text"),
    ] {
        let response = http
            .post(&url)
            .bearer_auth("admin-key")
            .json(&bad)
            .send()
            .await?;
        assert_eq!(response.status(), 400, "{bad}");
        let error: serde_json::Value = response.json().await?;
        let message = error["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{bad}: {message}");
    }
    // The fault layer is off unless configured.
    let status = http
        .post(format!("http://{}/v1/faults", service.admin))
        .json(&Fault::default())
        .send()
        .await?
        .status();
    assert!(status == 404 || status == 405, "{status}");
    service.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn query_and_document_prefixes_follow_the_model_convention() -> anyhow::Result<()> {
    let mut service = start_embedding(|c| {
        c.model.query_prefix = "query: ".into();
        c.model.document_prefix = "passage: ".into();
    })
    .await?;
    let mut c = client(&service).await;
    let as_query = c
        .embed(EmbedRequest {
            texts: vec!["vitamin d and bone health".into()],
            input_type: InputType::Query as i32,
        })
        .await?
        .into_inner()
        .embeddings
        .remove(0)
        .values;
    // Documents get the document prefix, so spelling the query prefix out by hand as a
    // "document" text gives "passage: query: ...", not the query vector...
    let spelled = embed(&mut c, &["query: vitamin d and bone health"]).await?;
    assert!(cosine(&as_query, &spelled[0]) < 0.9999);
    // ...while a service without prefixes embeds the spelled-out query text exactly so.
    let mut plain = start_embedding(|_| {}).await?;
    let reference = embed(
        &mut client(&plain).await,
        &["query: vitamin d and bone health"],
    )
    .await?;
    assert!(cosine(&as_query, &reference[0]) > 0.9999);
    let doc = embed(&mut c, &["vitamin d and bone health"]).await?;
    let doc_ref = embed(
        &mut client(&plain).await,
        &["passage: vitamin d and bone health"],
    )
    .await?;
    assert!(cosine(&doc[0], &doc_ref[0]) > 0.9999);
    plain.stop().await?;
    service.stop().await
}
