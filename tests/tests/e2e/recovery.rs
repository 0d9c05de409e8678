//! Recovery drills on the real stack: a text index lost while the stack was stopped, or
//! deleted under a running one, is reported (text-search NOT_SERVING with the reason,
//! hybrid answers degraded, text-only searches refused — never an empty answer as if nothing
//! matched), and `Reindex` rebuilds it from PostgreSQL with the same results as before;
//! `Verify` finds planted drift in both legs and `--repair` fixes it; only admins may call
//! either.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use braid_core::auth::jwt::AuthConfig;
use braid_core::auth::secret::KeySource;
use braid_proto::service_names::TEXT_SEARCH;
use braid_tests::v1::gateway_client::GatewayClient;
use braid_tests::v1::{
    Chunk, DeleteDocumentChunksRequest, GetDocumentRequest, RebuildStatusRequest, ReindexLeg,
    ReindexRequest, ReindexStatusRequest, ReplaceDocumentRequest, SearchMode, SearchRequest,
    VerifyRequest, VerifyResponse,
};
use braid_tests::{Stack, StackOptions, eventually};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;

const PATIENCE: Duration = Duration::from_secs(90);

const CORPUS: &[&str] = &[
    "Mitochondria produce most of the chemical energy needed by the cell.",
    "Vaccines train the immune system to recognise a pathogen.",
    "Insulin regulates the level of glucose in the blood.",
    "Photosynthesis converts light energy into chemical energy in plants.",
    "Antibodies are proteins of the immune system that bind to antigens.",
    "The pancreas releases insulin when blood glucose rises.",
];

const QUERIES: &[&str] = &["energy", "immune system", "glucose insulin", "plants light"];

fn options() -> StackOptions {
    let mut options = StackOptions::default();
    options.ingest.recovery.text_index_check_ms = 200;
    options
}

fn search(query: &str, mode: SearchMode) -> SearchRequest {
    SearchRequest {
        query: query.into(),
        mode: mode as i32,
        top_k: 10,
        bypass_cache: true,
        ..Default::default()
    }
}

/// (chunk id, text score) of the text-only answers to the fixed queries.
async fn text_results(gw: &mut GatewayClient<Channel>) -> Vec<Vec<(String, f32)>> {
    let mut all: Vec<Vec<(String, f32)>> = Vec::new();
    for q in QUERIES {
        let r = gw
            .search(search(q, SearchMode::Text))
            .await
            .expect("text search")
            .into_inner();
        assert!(!r.degraded, "{q}: {:?}", r.degraded_reasons);
        all.push(
            r.hits
                .into_iter()
                .map(|h| (h.chunk_id, h.text_score.unwrap_or_default()))
                .collect(),
        );
    }
    assert!(all.iter().all(|hits| !hits.is_empty()), "{all:?}");
    all
}

/// Same chunks with the same scores in the same order; chunks with equal scores may swap (a
/// rebuilt index lays documents out differently, and ties follow the layout).
fn assert_same_results(before: &[Vec<(String, f32)>], after: &[Vec<(String, f32)>]) {
    let canonical = |v: &[(String, f32)]| {
        let mut v: Vec<(i64, String)> = v
            .iter()
            .map(|(id, score)| ((f64::from(*score) * 1e4).round() as i64, id.clone()))
            .collect();
        v.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        v
    };
    for (q, (b, a)) in QUERIES.iter().zip(before.iter().zip(after)) {
        assert_eq!(b.len(), a.len(), "{q}: as many hits");
        assert_eq!(canonical(b), canonical(a), "{q}: same chunks and scores");
        for (x, y) in b.iter().zip(a) {
            assert!((x.1 - y.1).abs() < 1e-4, "{q}: score {} vs {}", x.1, y.1);
        }
    }
}

async fn text_health(stack: &Stack) -> Option<ServingStatus> {
    stack.text.health(TEXT_SEARCH).await
}

/// While the text index is lost: NOT_SERVING with a reason, hybrid answers degraded with
/// the vector leg's hits, text-only searches refused with the reason.
async fn assert_lost_is_visible(stack: &Stack, gw: &mut GatewayClient<Channel>, reason: &str) {
    eventually("text-search reports NOT_SERVING", PATIENCE, || async {
        (text_health(stack).await == Some(ServingStatus::NotServing)).then_some(())
    })
    .await
    .unwrap();
    let status = stack
        .text_client()
        .rebuild_status(RebuildStatusRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(!status.serving);
    assert!(status.reason.contains(reason), "{}", status.reason);
    assert!(status.reason.contains("reindex"), "{}", status.reason);

    let hybrid = gw
        .search(search("immune system", SearchMode::Hybrid))
        .await
        .unwrap()
        .into_inner();
    assert!(hybrid.degraded, "hybrid must say the text leg is missing");
    assert!(
        hybrid.degraded_reasons.iter().any(|r| r.contains("text")),
        "{:?}",
        hybrid.degraded_reasons
    );
    assert!(!hybrid.hits.is_empty(), "the vector leg still answers");
    let err = gw
        .search(search("immune system", SearchMode::Text))
        .await
        .expect_err("a text-only search must not answer from a lost index");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
}

async fn reindex_text(gw: &mut GatewayClient<Channel>) {
    let run = gw
        .reindex(ReindexRequest {
            leg: ReindexLeg::Text as i32,
            wait: true,
            wait_timeout_ms: 100_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap();
    assert_eq!(run.state, "done", "{run:?}");
    assert_eq!(run.mode, "rebuild");
    assert_eq!(
        (run.done, run.total),
        (CORPUS.len() as u64, CORPUS.len() as u64)
    );
    assert!(!run.index_id.is_empty());
    let status = gw
        .reindex_status(ReindexStatusRequest { run_id: 0 })
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap();
    assert_eq!(status.run_id, run.run_id, "the latest run is this one");
}

async fn recorded_index(stack: &Stack) -> String {
    let db = stack.db().await.unwrap();
    eventually("ingest records the text index id", PATIENCE, || async {
        sqlx::query_scalar::<_, String>("SELECT index_id FROM ingest.text_index")
            .fetch_optional(&db)
            .await
            .ok()
            .flatten()
    })
    .await
    .unwrap()
}

fn clear_dir(dir: &std::path::Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path).unwrap();
        } else {
            std::fs::remove_file(&path).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn text_index_lost_on_a_stopped_stack_is_reported_then_rebuilt() {
    let mut stack = Stack::start_with(options()).await.unwrap();
    let mut gw = stack.gateway_client().await.unwrap();
    braid_tests::ingest_texts(&mut gw, CORPUS).await;
    let before = text_results(&mut gw).await;
    let first = recorded_index(&stack).await;

    // The whole index directory is lost while text-search is down: on start it can only
    // create a new empty index; ingest knows documents went into `first`.
    stack.text.stop().await.unwrap();
    clear_dir(&stack.text_config.index.dir);
    let config = stack.text_config.clone();
    stack
        .text
        .restart(|l, s| braid_text_search::run(config, l, s))
        .await
        .unwrap();
    assert_lost_is_visible(&stack, &mut gw, "lost").await;

    reindex_text(&mut gw).await;
    eventually("text-search SERVING again", PATIENCE, || async {
        (text_health(&stack).await == Some(ServingStatus::Serving)).then_some(())
    })
    .await
    .unwrap();
    assert_same_results(&before, &text_results(&mut gw).await);
    let hybrid = gw
        .search(search("immune system", SearchMode::Hybrid))
        .await
        .unwrap()
        .into_inner();
    assert!(!hybrid.degraded, "{:?}", hybrid.degraded_reasons);
    // Ingest now records the rebuilt index, and text-search keeps serving it.
    let db = stack.db().await.unwrap();
    eventually("ingest records the rebuilt index", PATIENCE, || async {
        let id: Option<String> = sqlx::query_scalar("SELECT index_id FROM ingest.text_index")
            .fetch_optional(&db)
            .await
            .ok()
            .flatten();
        id.filter(|id| id != &first)
    })
    .await
    .unwrap();
    assert_eq!(text_health(&stack).await, Some(ServingStatus::Serving));
    stack.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn text_index_deleted_under_a_running_stack_recovers_with_reindex() {
    let stack = Stack::start_with(options()).await.unwrap();
    let mut gw = stack.gateway_client().await.unwrap();
    braid_tests::ingest_texts(&mut gw, CORPUS).await;
    let before = text_results(&mut gw).await;
    recorded_index(&stack).await;

    clear_dir(&stack.text_config.index.dir);
    assert_lost_is_visible(&stack, &mut gw, "disappeared").await;

    reindex_text(&mut gw).await;
    eventually("text-search SERVING again", PATIENCE, || async {
        (text_health(&stack).await == Some(ServingStatus::Serving)).then_some(())
    })
    .await
    .unwrap();
    assert_same_results(&before, &text_results(&mut gw).await);
    stack.shutdown().await.unwrap();
}

fn drift_of(r: &VerifyResponse) -> Vec<(String, String, String)> {
    let mut d: Vec<_> = r
        .drift
        .iter()
        .map(|d| (d.external_id.clone(), d.leg.clone(), d.kind.clone()))
        .collect();
    d.sort();
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verify_finds_planted_drift_and_repair_fixes_it() {
    let stack = Stack::start_with(options()).await.unwrap();
    let mut gw = stack.gateway_client().await.unwrap();
    braid_tests::ingest_texts(&mut gw, &CORPUS[..3]).await;
    let clean = gw
        .verify(VerifyRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(clean.documents_checked, 3);
    assert!(clean.chunks_checked >= 3);
    assert!(clean.drift.is_empty(), "{:?}", clean.drift);

    let id = |external_id: &str| {
        let mut gw = gw.clone();
        let external_id = external_id.to_string();
        async move {
            gw.get_document(GetDocumentRequest {
                external_id,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .document_id
        }
    };
    let (d0, d1, d2) = (id("doc-0").await, id("doc-1").await, id("doc-2").await);
    // Text leg: doc-0's chunks deleted; doc-1's replaced by a chunk PostgreSQL does not have.
    stack
        .text_client()
        .delete_document(DeleteDocumentChunksRequest {
            tenant: "default".into(),
            document_id: d0.clone(),
        })
        .await
        .unwrap();
    stack
        .text_client()
        .replace_document(ReplaceDocumentRequest {
            tenant: "default".into(),
            document_id: d1.clone(),
            chunks: vec![Chunk {
                chunk_id: format!("{d1}:99"),
                document_id: d1.clone(),
                tenant: "default".into(),
                external_id: "doc-1".into(),
                text: "planted text".into(),
                ordinal: 99,
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    // Vector leg: doc-2's vectors deleted.
    stack
        .vector_client()
        .delete_document(DeleteDocumentChunksRequest {
            tenant: "default".into(),
            document_id: d2.clone(),
        })
        .await
        .unwrap();

    let found = gw
        .verify(VerifyRequest::default())
        .await
        .unwrap()
        .into_inner();
    let want = |e: &str, l: &str, k: &str| (e.to_string(), l.to_string(), k.to_string());
    assert_eq!(
        drift_of(&found),
        [
            want("doc-0", "text", "missing"),
            want("doc-1", "text", "extra"),
            want("doc-1", "text", "missing"),
            want("doc-2", "vector", "missing"),
        ]
    );
    assert_eq!(found.repaired, 0, "no repair without --repair");

    let repaired = gw
        .verify(VerifyRequest {
            repair: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(repaired.repaired, 3, "one job per drifted document and leg");
    eventually(
        "verify is clean after the repair jobs ran",
        PATIENCE,
        || {
            let mut gw = gw.clone();
            async move {
                let r = gw.verify(VerifyRequest::default()).await.ok()?.into_inner();
                (r.drift.is_empty() && r.documents_in_flight == 0 && r.documents_checked == 3)
                    .then_some(())
            }
        },
    )
    .await
    .unwrap();
    stack.shutdown().await.unwrap();
}

const HS_SECRET: &str = "test-user-secret-0123456789abcdefgh";

fn token(role: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "sub": format!("{role}-user"), "tenant": "acme", "role": role,
        "iss": "braid", "aud": "braid", "iat": now, "exp": now + 600,
    });
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(HS_SECRET.as_bytes()),
    )
    .unwrap()
}

fn with_token<T>(message: T, role: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", token(role)).parse().unwrap(),
    );
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_admins_may_reindex_or_verify() {
    let auth = AuthConfig {
        hs256: KeySource::from_value(HS_SECRET),
        ..Default::default()
    };
    let stack = Stack::start_with(StackOptions::with_jwt(auth))
        .await
        .unwrap();
    let mut gw = stack.gateway_client().await.unwrap();
    let reindex = || ReindexRequest {
        leg: ReindexLeg::Text as i32,
        ..Default::default()
    };
    for role in ["reader", "writer"] {
        let codes = [
            gw.reindex(with_token(reindex(), role))
                .await
                .err()
                .map(|s| s.code()),
            gw.reindex_status(with_token(ReindexStatusRequest::default(), role))
                .await
                .err()
                .map(|s| s.code()),
            gw.verify(with_token(VerifyRequest::default(), role))
                .await
                .err()
                .map(|s| s.code()),
        ];
        assert_eq!(codes, [Some(Code::PermissionDenied); 3], "{role}");
    }
    // A tenant admin may: verify of its own tenant, and an in-place text reindex of it.
    let verified = gw
        .verify(with_token(VerifyRequest::default(), "admin"))
        .await
        .unwrap()
        .into_inner();
    assert!(verified.drift.is_empty());
    let mut request = reindex();
    request.wait = true;
    let run = gw
        .reindex(with_token(request, "admin"))
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap();
    assert_eq!(
        (run.tenant.as_str(), run.mode.as_str()),
        ("acme", "in_place")
    );
    assert_eq!(run.state, "done", "{run:?}");
    stack.shutdown().await.unwrap();
}
