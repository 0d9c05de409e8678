//! The one status view and the breaker reset (`Gateway.Status`, `Gateway.ResetBreaker`), and
//! the search metrics by mode and result count, on a real stack with JWT auth and the audit
//! trail on.

use std::time::Duration;

use braid_core::config::BreakerSettings;
use braid_tests::users::{Users, as_user};
use braid_tests::v1::gateway_client::GatewayClient;
use braid_tests::v1::{
    ResetBreakerRequest, SearchMode, SearchRequest, ServiceStatusReport, StatusRequest,
    StatusResponse,
};
use braid_tests::{
    DocumentInputExt, Ingest, RedisServer, Stack, doc, eventually, http_get, metric_sum,
};
use tonic::Code;
use tonic::transport::Channel;

const SECRET: &str = "status-test-user-key-0123456789abcdef";
const SERVICES: [&str; 5] = [
    "gateway",
    "ingest",
    "embedding",
    "vector-search",
    "text-search",
];

async fn status(gw: &mut GatewayClient<Channel>, token: &str) -> StatusResponse {
    gw.status(as_user(StatusRequest {}, token))
        .await
        .expect("Status as an admin")
        .into_inner()
}

fn service<'a>(r: &'a StatusResponse, name: &str) -> &'a ServiceStatusReport {
    r.services
        .iter()
        .find(|s| s.service == name)
        .unwrap_or_else(|| panic!("{name} missing from {r:?}"))
}

fn breaker(r: &StatusResponse, leg: &str) -> (String, u64) {
    let b = service(r, "gateway")
        .breakers
        .iter()
        .find(|b| b.leg == leg)
        .unwrap_or_else(|| panic!("no {leg} breaker in {r:?}"));
    (b.state.clone(), b.retry_in_ms)
}

async fn search(gw: &mut GatewayClient<Channel>, token: &str, q: &str, mode: SearchMode) -> Code {
    let request = SearchRequest {
        query: q.into(),
        top_k: 5,
        mode: mode as i32,
        bypass_cache: true,
        ..Default::default()
    };
    match gw.search(as_user(request, token)).await {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_shows_every_service_and_an_operator_resets_an_open_breaker() {
    let users = Users::new(SECRET);
    let mut options = users.stack_options();
    // Redis behind the query cache, the page snapshots and the rate limits: their pools show.
    let redis = RedisServer::start().await.unwrap();
    options.gateway.query_cache.redis_url = redis.url();
    options.gateway.query_cache.redis_timeout_ms = 5_000;
    options.gateway.limits.redis_url = redis.url();
    options.gateway.limits.redis_timeout_ms = 5_000;
    options.gateway.breaker = BreakerSettings {
        failure_threshold: 3,
        // Open for the rest of the test unless reset.
        open_ms: 600_000,
        success_threshold: 1,
    };
    let mut stack = Stack::start_with(options).await.unwrap();
    let mut gw = stack.gateway_client().await.unwrap();
    // An admin of every tenant: Status and ResetBreaker concern the whole service.
    let mut ada = braid_tests::users::claims("ada", "", "admin");
    ada["braid_cross_tenant"] = true.into();
    let admin = users.sign(&ada);
    let tenant_admin = users.token("tim", "acme", "admin");
    let reader = users.token("rita", "acme", "reader");

    // Not for readers.
    let err = gw
        .status(as_user(StatusRequest {}, &reader))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    let err = gw
        .reset_breaker(as_user(ResetBreakerRequest { leg: "text".into() }, &reader))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    // Nor for an admin of one tenant: another tenant's traffic shares the breakers.
    let err = gw
        .status(as_user(StatusRequest {}, &tenant_admin))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("every tenant"), "{err:?}");
    let err = gw
        .reset_breaker(as_user(
            ResetBreakerRequest { leg: "text".into() },
            &tenant_admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");

    // Every service serving, with its version, uptime and its own parts.
    let r = status(&mut gw, &admin).await;
    let names: Vec<&str> = r.services.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(names, SERVICES);
    for s in &r.services {
        assert!(s.reachable && s.serving, "{s:?}");
        assert_eq!(s.reason, "", "{s:?}");
        assert!(
            s.version.starts_with(env!("CARGO_PKG_VERSION")),
            "{}: version {:?}",
            s.service,
            s.version
        );
        assert!(s.uptime_seconds < 3600, "{s:?}");
    }
    assert_eq!(breaker(&r, "text-search"), ("closed".into(), 0));
    assert_eq!(service(&r, "gateway").breakers.len(), 4, "{r:?}");
    for name in ["ingest", "vector-search"] {
        let pool = &service(&r, name).pools;
        assert!(
            pool.iter().any(|p| p.name == "database" && p.max > 0),
            "{name}: {pool:?}"
        );
    }
    let queues: Vec<&str> = service(&r, "ingest")
        .queues
        .iter()
        .map(|q| q.name.as_str())
        .collect();
    assert_eq!(queues, ["outbox", "dead-letter"]);
    let text = &service(&r, "text-search").indexes;
    assert!(
        text.iter()
            .any(|i| i.name == "text" && !i.generation.is_empty() && i.fault.is_empty()),
        "{text:?}"
    );
    assert!(
        service(&r, "embedding")
            .caches
            .iter()
            .any(|c| c.name == "embedding-cache:l1"),
        "{r:?}"
    );

    // Search metrics carry the mode and the result-count bucket.
    let writer = users.token("wanda", "acme", "writer");
    Ingest::new(vec![
        doc(
            "doc-0",
            "Sourdough rises because wild yeast ferments the dough.",
        )
        .title("doc 0"),
    ])
    .as_user(&writer)
    .send(&mut gw)
    .await
    .unwrap();
    assert_eq!(
        search(&mut gw, &reader, "sourdough yeast", SearchMode::Text).await,
        Code::Ok
    );
    assert_eq!(
        search(&mut gw, &reader, "zzzqqq", SearchMode::Text).await,
        Code::Ok
    );
    assert_eq!(
        search(&mut gw, &reader, "sourdough yeast", SearchMode::Hybrid).await,
        Code::Ok
    );
    // After a write and searches: the indexes as ingest and vector-search see them, and the
    // gateway's Redis pools (the rate limiter has talked to Redis on every call).
    let r = status(&mut gw, &admin).await;
    let ingest_indexes = &service(&r, "ingest").indexes;
    assert!(
        ingest_indexes
            .iter()
            .any(|i| i.name == "generation:acme" && i.generation.parse::<u64>().unwrap_or(0) >= 1),
        "{ingest_indexes:?}"
    );
    assert!(
        ingest_indexes
            .iter()
            .any(|i| i.name == "text (recorded)" && i.fault.is_empty()),
        "{ingest_indexes:?}"
    );
    let vector = service(&r, "vector-search");
    assert!(
        vector
            .indexes
            .iter()
            .any(|i| i.name == "vector" && i.fault.is_empty() && i.detail.contains("ef_search")),
        "{vector:?}"
    );
    assert!(
        vector
            .details
            .iter()
            .any(|d| d.key == "reads" && d.value == "primary: no_replica"),
        "{vector:?}"
    );
    let pools = &service(&r, "gateway").pools;
    for name in [
        "redis:query-cache",
        "redis:page-snapshots",
        "redis:rate-limits",
    ] {
        assert!(
            pools.iter().any(|p| p.name == name && p.max > 0),
            "{name}: {pools:?}"
        );
    }
    assert!(
        pools
            .iter()
            .any(|p| p.name == "redis:rate-limits" && p.idle + p.in_use >= 1),
        "{pools:?}"
    );

    let (_, m) = http_get(stack.gateway.admin, "/metrics").await.unwrap();
    let searches = |filters: &[&str]| metric_sum(&m, "braid_search_requests_total", filters);
    assert_eq!(searches(&["mode=\"text\"", "results=\"1-9\""]), 1.0, "{m}");
    assert_eq!(searches(&["mode=\"text\"", "results=\"0\""]), 1.0, "{m}");
    assert_eq!(
        searches(&["mode=\"hybrid\"", "results=\"1-9\""]),
        1.0,
        "{m}"
    );
    assert_eq!(searches(&["mode=\"vector\""]), 0.0, "{m}");

    // text-search down: it is shown unreachable, the others still answer.
    stack.text.stop().await.unwrap();
    let r = status(&mut gw, &admin).await;
    let text = service(&r, "text-search");
    assert!(
        !text.reachable && text.reason.starts_with("unreachable: "),
        "{text:?}"
    );
    for name in ["gateway", "ingest", "embedding", "vector-search"] {
        let s = service(&r, name);
        assert!(s.reachable && s.serving, "{s:?}");
    }

    // Searches against the stopped leg open the gateway's text breaker.
    eventually("the text breaker open", Duration::from_secs(60), || {
        let (mut gw, reader, admin) = (gw.clone(), reader.clone(), admin.clone());
        async move {
            search(&mut gw, &reader, "sourdough", SearchMode::Hybrid).await;
            let r = status(&mut gw, &admin).await;
            (breaker(&r, "text-search").0 == "open").then_some(())
        }
    })
    .await
    .unwrap();
    // Back and healthy, but the breaker stays open (600 s) until an operator resets it.
    stack.restart_text().await.unwrap();
    let r = status(&mut gw, &admin).await;
    let (state, retry_in_ms) = breaker(&r, "text-search");
    assert_eq!(state, "open");
    assert!(retry_in_ms > 500_000, "{retry_in_ms}");

    let err = gw
        .reset_breaker(as_user(ResetBreakerRequest { leg: "nope".into() }, &admin))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("leg:"), "{err:?}");
    let reset = gw
        .reset_breaker(as_user(ResetBreakerRequest { leg: "text".into() }, &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            reset.leg.as_str(),
            reset.previous_state.as_str(),
            reset.state.as_str()
        ),
        ("text-search", "open", "closed")
    );
    let r = status(&mut gw, &admin).await;
    assert_eq!(breaker(&r, "text-search").0, "closed", "{r:?}");
    // The gateway's channel to the restarted text-search may need a reconnect first.
    eventually(
        "text-search answering again",
        Duration::from_secs(30),
        || {
            let (mut gw, reader, admin) = (gw.clone(), reader.clone(), admin.clone());
            async move {
                let code = search(&mut gw, &reader, "sourdough yeast", SearchMode::Text).await;
                let r = status(&mut gw, &admin).await;
                let text = service(&r, "text-search");
                (code == Code::Ok && text.reachable && text.serving).then_some(())
            }
        },
    )
    .await
    .unwrap();

    // The reset is in the audit trail: who, which leg, the outcome.
    let db = stack.db().await.unwrap();
    eventually(
        "the reset in the audit trail",
        Duration::from_secs(30),
        || {
            let db = db.clone();
            async move {
                sqlx::query_as::<_, (String,)>(
                    "SELECT subject FROM audit.records WHERE rpc = 'ResetBreaker' \
                 AND query = 'text' AND code = 'Ok'",
                )
                .fetch_optional(&db)
                .await
                .ok()
                .flatten()
                .filter(|(who,)| who == "ada")
            }
        },
    )
    .await
    .unwrap();
    stack.shutdown().await.unwrap();
}
