//! The Elasticsearch wire contract, from the client's side: a small HTTP server started in
//! the test answers with canned responses in the documented shapes (bulk items with 429 and
//! 400 errors, 503s, a red cluster health), and the tests check what the backend sends back
//! and how it maps each answer: only retryable bulk items are sent again, a permanent item
//! error fails that document without deleting its old entries, whole-request 503s are
//! retried, red health is NOT_SERVING. It stands in for nothing but the answers: the
//! requests' bodies are pinned by the golden tests, and the live contract suite
//! (`tests/contract.rs`) runs everything against a real cluster.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use serde_json::{Value, json};

use super::EsIndex;
use crate::config::{ElasticsearchConfig, SearchConfig};
use crate::error::TextError;
use crate::index::TextIndex;

#[derive(Default)]
struct Wire {
    answers: Mutex<VecDeque<(u16, Value)>>,
    /// (method, path?query, body) of every request received.
    seen: Mutex<Vec<(String, String, String)>>,
}

async fn answer(
    State(wire): State<Arc<Wire>>,
    method: Method,
    uri: Uri,
    body: String,
) -> (StatusCode, String) {
    wire.seen
        .lock()
        .unwrap()
        .push((method.to_string(), uri.to_string(), body));
    let (status, body) = wire
        .answers
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or((599, json!({ "error": "no canned answer left" })));
    (StatusCode::from_u16(status).unwrap(), body.to_string())
}

/// A server answering `answers` in order, and a backend pointed at it.
async fn serve(answers: Vec<(u16, Value)>) -> (Arc<Wire>, EsIndex) {
    let wire = Arc::new(Wire {
        answers: Mutex::new(answers.into()),
        seen: Mutex::default(),
    });
    let app = axum::Router::new()
        .fallback(answer)
        .with_state(wire.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let config = ElasticsearchConfig {
        urls: vec![url],
        retries: 2,
        retry_backoff_ms: 1,
        ..ElasticsearchConfig::default()
    };
    (
        wire,
        EsIndex::new(&config, &SearchConfig::default()).unwrap(),
    )
}

/// What the backend asks before its first write: template, alias, rebuild alias.
fn setup_answers() -> Vec<(u16, Value)> {
    vec![
        (200, json!({ "acknowledged": true })),
        (
            200,
            json!({ "braid-text-0123456789abcdef0123456789abcdef": { "mappings": {} } }),
        ),
        (
            404,
            json!({ "error": "alias [braid-text-rebuild] missing", "status": 404 }),
        ),
    ]
}

fn chunk(ordinal: u32) -> braid_proto::v1::Chunk {
    braid_proto::v1::Chunk {
        chunk_id: format!("d:{ordinal}"),
        document_id: "d".into(),
        tenant: "t".into(),
        text: format!("chunk {ordinal}"),
        ordinal,
        ..Default::default()
    }
}

fn bulk_item(status: u16, error: Option<(&str, &str)>) -> Value {
    let mut item = json!({ "_index": "braid-text-x", "_id": "x", "status": status });
    if let Some((kind, reason)) = error {
        item["error"] = json!({ "type": kind, "reason": reason });
    }
    json!({ "index": item })
}

#[tokio::test]
async fn only_retryable_bulk_items_are_sent_again() {
    let mut answers = setup_answers();
    answers.extend([
        // Chunk 0 written, chunk 1 rejected by a full write queue, the document entry written.
        (
            200,
            json!({ "took": 1, "errors": true, "items": [
                bulk_item(201, None),
                bulk_item(429, Some(("es_rejected_execution_exception", "queue full"))),
                bulk_item(201, None),
            ] }),
        ),
        (
            200,
            json!({ "took": 1, "errors": false, "items": [bulk_item(201, None)] }),
        ),
        (200, json!({ "deleted": 1, "failures": [] })),
    ]);
    let (wire, es) = serve(answers).await;
    let n = es
        .replace_document("t", "d", vec![chunk(0), chunk(1)])
        .await
        .unwrap();
    assert_eq!(n, 2);
    let seen = wire.seen.lock().unwrap().clone();
    let bulks: Vec<&(String, String, String)> = seen
        .iter()
        .filter(|(_, p, _)| p.contains("/_bulk"))
        .collect();
    assert_eq!(bulks.len(), 2, "{seen:?}");
    assert_eq!(
        bulks[0].2.lines().count(),
        6,
        "3 entries: action + source each"
    );
    let retry: Vec<&str> = bulks[1].2.lines().collect();
    assert_eq!(retry.len(), 2, "only the rejected entry again: {retry:?}");
    assert!(retry[1].contains("\"chunk_id\":\"d:1\""), "{retry:?}");
    assert!(bulks[0].1.contains("refresh=wait_for"), "{}", bulks[0].1);
    let last = seen.last().unwrap();
    assert!(
        last.1.contains("/_delete_by_query"),
        "stale entries removed last: {last:?}"
    );
}

#[tokio::test]
async fn a_permanent_item_error_fails_the_document_and_keeps_its_old_entries() {
    let mut answers = setup_answers();
    answers.push((
        200,
        json!({ "took": 1, "errors": true, "items": [
            bulk_item(400, Some(("document_parsing_exception", "failed to parse field [ordinal]"))),
            bulk_item(201, None),
        ] }),
    ));
    let (wire, es) = serve(answers).await;
    let err = es
        .replace_document("t", "d", vec![chunk(0)])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TextError::Index(d) if d.contains("t/d") && d.contains("document_parsing_exception")),
        "{err:?}"
    );
    let status = braid_proto::tonic::Status::from(err);
    assert_eq!(status.code(), braid_proto::tonic::Code::Internal);
    assert!(
        !status.message().contains("parse"),
        "details stay in the logs"
    );
    let seen = wire.seen.lock().unwrap().clone();
    assert!(
        !seen.iter().any(|(_, p, _)| p.contains("_delete_by_query")),
        "a failed write must not delete the old entries: {seen:?}"
    );
    assert_eq!(
        seen.iter().filter(|(_, p, _)| p.contains("/_bulk")).count(),
        1,
        "a permanent error is not retried"
    );
}

#[tokio::test]
async fn overloaded_answers_are_retried_then_unavailable() {
    // A search asks for the template and the alias only (no rebuild alias).
    let mut answers = setup_answers();
    answers.truncate(2);
    answers.extend([
        (
            503,
            json!({ "error": { "type": "unavailable" }, "status": 503 }),
        ),
        (
            429,
            json!({ "error": { "type": "es_rejected_execution_exception" }, "status": 429 }),
        ),
        (200, json!({ "hits": { "hits": [] } })),
    ]);
    let (wire, es) = serve(answers).await;
    let q = crate::index::TextQuery {
        tenant: "t".into(),
        query: "comet".into(),
        top_k: 5,
        filter: Default::default(),
        min_score: None,
        access: braid_core::auth::Access::unrestricted(),
        detail: 0,
        chunk_level: false,
    };
    // Template and alias lookups, then the search answered 503, 429, 200.
    let hits = es.search(q.clone()).await.unwrap();
    assert!(hits.is_empty());
    assert_eq!(wire.seen.lock().unwrap().len(), 2 + 3);

    // Out of retries: UNAVAILABLE, with no detail for the client.
    wire.answers
        .lock()
        .unwrap()
        .extend([(503, json!({})), (502, json!({})), (504, json!({}))]);
    let err = es.search(q).await.unwrap_err();
    assert!(matches!(err, TextError::Unavailable(_)), "{err:?}");
    let status = braid_proto::tonic::Status::from(err);
    assert_eq!(status.code(), braid_proto::tonic::Code::Unavailable);
    assert!(!status.message().contains("127.0.0.1"), "{status:?}");
}

#[tokio::test]
async fn red_cluster_health_is_not_serving() {
    let mut answers = vec![
        (200, json!({ "acknowledged": true })),
        // No alias yet: the first index is created behind it.
        (
            404,
            json!({ "error": { "type": "index_not_found_exception" }, "status": 404 }),
        ),
        (
            200,
            json!({ "acknowledged": true, "index": "braid-text-x" }),
        ),
    ];
    answers.extend([
        (200, json!({ "status": "green", "unassigned_shards": 0 })),
        (
            408,
            json!({ "status": "red", "timed_out": true, "unassigned_shards": 1 }),
        ),
    ]);
    let (wire, es) = serve(answers).await;
    es.check().await.unwrap();
    let err = es.check().await.unwrap_err();
    assert!(
        matches!(&err, TextError::NotServing(r) if r.contains("red")),
        "{err:?}"
    );
    let seen = wire.seen.lock().unwrap().clone();
    assert_eq!(seen[0].0, "PUT");
    assert!(seen[0].1.starts_with("/_index_template/braid-text"));
    assert!(
        seen[2].0 == "PUT" && seen[2].1.starts_with("/braid-text-"),
        "{seen:?}"
    );
    assert!(
        seen[3].1.starts_with("/_cluster/health/braid-text"),
        "{seen:?}"
    );
}
