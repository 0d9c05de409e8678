//! The Elasticsearch wire contract, from the client's side: a small HTTP server started in
//! the test answers with canned responses in the documented shapes (bulk items with 429 and
//! 400 errors, 503s, a red cluster health), and the tests check what the backend sends back
//! and how it maps each answer: plain JSON media types (what OpenSearch and Elasticsearch
//! 8/9 both accept), only retryable bulk items sent again, deletes only after every new entry
//! is written, a permanent item error failing that document without touching its old
//! entries, whole-request 503s retried, red health NOT_SERVING. It stands in for nothing but
//! the answers: the requests' bodies are pinned by the golden tests, and the live contract
//! suite (`tests/contract.rs`) runs everything against a real engine.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::{Value, json};

use super::EsIndex;
use super::mapping::FORMAT;
use crate::config::{ElasticsearchConfig, Layout, SearchConfig};
use crate::error::TextError;
use crate::index::TextIndex;

#[derive(Default)]
struct Wire {
    answers: Mutex<VecDeque<(u16, Value)>>,
    /// (method, path?query, body) of every request received.
    seen: Mutex<Vec<(String, String, String)>>,
    /// (Content-Type, Accept) of every request received.
    media: Mutex<Vec<(String, String)>>,
}

async fn answer(
    State(wire): State<Arc<Wire>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, String) {
    let header = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    wire.media
        .lock()
        .unwrap()
        .push((header("content-type"), header("accept")));
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
        media: Mutex::default(),
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
        // The canned answers are the shared layout's (the per-tenant one adds index
        // creation, covered by the golden and contract tests).
        layout: Layout::Shared,
        ..ElasticsearchConfig::default()
    };
    (
        wire,
        EsIndex::new(&config, &SearchConfig::default()).unwrap(),
    )
}

const SERVING: &str = "braid-text-0123456789abcdef0123456789abcdef";

/// What the backend asks before its first operation: template, alias.
fn setup_answers() -> Vec<(u16, Value)> {
    vec![
        (200, json!({ "acknowledged": true })),
        (200, json!({ SERVING: { "mappings": {} } })),
    ]
}

/// The realtime lookup of a document's entry: in the serving index listing `chunk_ids` (or
/// absent), and no rebuild alias.
fn lookup_answer(chunk_ids: Option<&[&str]>) -> (u16, Value) {
    let serving = match chunk_ids {
        Some(ids) => json!({ "_index": SERVING, "_id": "x", "found": true, "_source": {
            "kind": "document", "write_id": "w0", "chunk_ids": ids, "stale_ids": [] } }),
        None => json!({ "_index": SERVING, "_id": "x", "found": false }),
    };
    let rebuild = json!({ "_index": "braid-text-rebuild", "_id": "x", "error": {
        "type": "index_not_found_exception", "reason": "no such index [braid-text-rebuild]" } });
    (200, json!({ "docs": [serving, rebuild] }))
}

fn refresh_answer() -> (u16, Value) {
    (
        200,
        json!({ "_shards": { "total": 1, "successful": 1, "failed": 0 } }),
    )
}

/// Tenant `t`'s top 5 for "comet", unrestricted, document level.
fn comet_query() -> crate::index::TextQuery {
    crate::index::TextQuery {
        tenant: "t".into(),
        query: "comet".into(),
        top_k: 5,
        filter: Default::default(),
        min_score: None,
        access: braid_core::auth::Access::unrestricted(),
        detail: 0,
        chunk_level: false,
    }
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

fn bulk_item(op: &str, status: u16, error: Option<(&str, &str)>) -> Value {
    let mut item = json!({ "_index": SERVING, "_id": "x", "status": status });
    if let Some((kind, reason)) = error {
        item["error"] = json!({ "type": kind, "reason": reason });
    }
    json!({ op: item })
}

fn bulks(wire: &Wire) -> Vec<(String, String, String)> {
    let seen = wire.seen.lock().unwrap();
    seen.iter()
        .filter(|(_, p, _)| p.starts_with("/_bulk"))
        .cloned()
        .collect()
}

#[tokio::test]
async fn only_retryable_bulk_items_are_sent_again_then_one_refresh() {
    let mut answers = setup_answers();
    answers.extend([
        lookup_answer(None),
        // Chunk 0 written, chunk 1 rejected by a full write queue, the document entry written.
        (
            200,
            json!({ "took": 1, "errors": true, "items": [
                bulk_item("index", 201, None),
                bulk_item("index", 429, Some(("es_rejected_execution_exception", "queue full"))),
                bulk_item("index", 201, None),
            ] }),
        ),
        (
            200,
            json!({ "took": 1, "errors": false, "items": [bulk_item("index", 201, None)] }),
        ),
        refresh_answer(),
    ]);
    let (wire, es) = serve(answers).await;
    let n = es
        .replace_document("t", "d", vec![chunk(0), chunk(1)])
        .await
        .unwrap();
    assert_eq!(n, 2);
    let bulks = bulks(&wire);
    assert_eq!(bulks.len(), 2, "{bulks:?}");
    assert_eq!(
        bulks[0].2.lines().count(),
        6,
        "3 entries: action + source each"
    );
    let retry: Vec<&str> = bulks[1].2.lines().collect();
    assert_eq!(retry.len(), 2, "only the rejected entry again: {retry:?}");
    assert!(retry[1].contains("\"chunk_id\":\"d:1\""), "{retry:?}");
    assert_eq!(
        bulks[0].1, "/_bulk?require_alias=true",
        "no refresh per write"
    );
    let seen = wire.seen.lock().unwrap().clone();
    assert_eq!(seen[2].1, "/_mget", "{seen:?}");
    let last = seen.last().unwrap();
    assert_eq!(
        (last.0.as_str(), last.1.as_str()),
        ("POST", "/braid-text/_refresh"),
        "visible on return: {seen:?}"
    );
    // Plain JSON both ways (OpenSearch answers 406 to Elasticsearch's compatible-with
    // media types); bulk bodies as NDJSON.
    let media = wire.media.lock().unwrap().clone();
    for ((_, path, _), (content_type, accept)) in seen.iter().zip(&media) {
        assert_eq!(accept, "application/json", "{path}");
        let want = if path.starts_with("/_bulk") {
            "application/x-ndjson"
        } else {
            "application/json"
        };
        assert_eq!(content_type, want, "{path}");
    }
}

#[tokio::test]
async fn stale_chunks_are_deleted_only_after_the_new_entries_are_written() {
    let mut answers = setup_answers();
    answers.extend([
        lookup_answer(Some(&["d:0", "d:1", "d:2"])),
        (
            200,
            json!({ "took": 1, "errors": false, "items": [
                bulk_item("index", 200, None), bulk_item("index", 200, None),
            ] }),
        ),
        (
            200,
            json!({ "took": 1, "errors": false, "items": [
                bulk_item("delete", 200, None), bulk_item("delete", 404, None),
            ] }),
        ),
        refresh_answer(),
    ]);
    let (wire, es) = serve(answers).await;
    es.replace_document("t", "d", vec![chunk(0)]).await.unwrap();
    let bulks = bulks(&wire);
    assert_eq!(bulks.len(), 2, "{bulks:?}");
    assert!(!bulks[0].2.contains("\"delete\""), "{}", bulks[0].2);
    let deletes: Vec<&str> = bulks[1].2.lines().collect();
    assert_eq!(deletes.len(), 2, "{deletes:?}");
    assert!(
        deletes[0].contains("d:1") && deletes[1].contains("d:2"),
        "{deletes:?}"
    );
}

#[tokio::test]
async fn a_permanent_item_error_fails_the_document_and_keeps_its_old_entries() {
    let mut answers = setup_answers();
    answers.extend([
        lookup_answer(Some(&["d:0", "d:1"])),
        (
            200,
            json!({ "took": 1, "errors": true, "items": [
                bulk_item("index", 400, Some(("document_parsing_exception", "failed to parse field [ordinal]"))),
                bulk_item("index", 201, None),
            ] }),
        ),
    ]);
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
    let bulks = bulks(&wire);
    assert_eq!(
        bulks.len(),
        1,
        "a permanent error is not retried, nothing is deleted: {bulks:?}"
    );
    let seen = wire.seen.lock().unwrap().clone();
    assert!(
        !seen.iter().any(|(_, p, _)| p.contains("_refresh")),
        "{seen:?}"
    );
}

#[tokio::test]
async fn overloaded_answers_are_retried_then_unavailable() {
    // A search asks for the template and the alias first.
    let mut answers = setup_answers();
    answers.extend([
        (
            503,
            json!({ "error": { "type": "unavailable" }, "status": 503 }),
        ),
        (
            429,
            json!({ "error": { "type": "es_rejected_execution_exception" }, "status": 429 }),
        ),
        // The search's first request, the tenant's languages: none, so nothing to search.
        (
            200,
            json!({ "aggregations": { "lang": { "buckets": [] } } }),
        ),
    ]);
    let (wire, es) = serve(answers).await;
    let q = comet_query();
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
            200,
            json!({ "braid-text-x": { "mappings": { "_meta": { "braid_format": FORMAT } } } }),
        ),
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

/// An index written by an older version: before entries listed their chunks (no
/// `braid_format`), and English-only (format 2: one English field for every language, no
/// `lang`). Its entries cannot be read as this version's (a German chunk's text is in `body`,
/// analysed as English): not serving, naming the rebuild, until `braidctl reindex --leg text`
/// switched to an index of this format.
#[tokio::test]
async fn an_index_of_another_entry_format_is_not_serving_until_rebuilt() {
    let older = [
        (json!({ "braid_supersedes": [] }), "format none"),
        (
            json!({ "braid_supersedes": [], "braid_format": 2 }),
            "format 2",
        ),
    ];
    for (meta, format) in older {
        let mut answers = setup_answers();
        answers.extend([
            (200, json!({ "status": "green", "unassigned_shards": 0 })),
            (200, json!({ SERVING: { "mappings": { "_meta": meta } } })),
        ]);
        let (_wire, es) = serve(answers).await;
        let err = es.check().await.unwrap_err();
        assert!(
            matches!(&err, TextError::NotServing(r) if r.contains("another Braid version")
                && r.contains(&format!("({format}, this version writes {FORMAT})"))
                && r.contains("reindex --leg text")),
            "{err:?}"
        );
        assert!(matches!(
            es.search(comet_query()).await,
            Err(TextError::NotServing(_))
        ));
    }
}

#[tokio::test]
async fn a_switch_between_lookup_and_bulk_writes_again_against_the_new_index() {
    let switched = "braid-text-fedcba9876543210fedcba9876543210";
    let written_to = |index: &str| {
        json!({ "took": 1, "errors": false, "items": [
            { "index": { "_index": index, "_id": "x", "status": 201 } },
            { "index": { "_index": index, "_id": "x", "status": 201 } },
        ] })
    };
    let mut answers = setup_answers();
    let (_, mut relookup) = lookup_answer(Some(&["d:0"]));
    relookup["docs"][0]["_index"] = json!(switched);
    answers.extend([
        lookup_answer(Some(&["d:0"])),
        // A rebuild finished meanwhile: the alias now names another index.
        (200, written_to(switched)),
        (200, relookup),
        (200, written_to(switched)),
        refresh_answer(),
    ]);
    let (wire, es) = serve(answers).await;
    es.replace_document("t", "d", vec![chunk(0)]).await.unwrap();
    let seen = wire.seen.lock().unwrap().clone();
    let paths: Vec<&str> = seen[2..].iter().map(|(_, p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/_mget",
            "/_bulk?require_alias=true",
            "/_mget",
            "/_bulk?require_alias=true",
            "/braid-text/_refresh"
        ]
    );
}

#[tokio::test]
async fn a_rebuild_load_that_raced_a_live_write_removes_the_chunks_it_left() {
    let rebuild = "braid-text-fedcba9876543210fedcba9876543210";
    let created = |n: usize| {
        let item = json!({ "create": { "_index": rebuild, "_id": "x", "status": 201 } });
        json!({ "took": 1, "errors": false, "items": vec![item; n] })
    };
    let answers = vec![
        (
            200,
            json!({ rebuild: { "aliases": { "braid-text-rebuild": {} } } }),
        ),
        (200, created(1)),
        (200, created(2)),
        // Between the load's entry and its chunks, a live write left one chunk.
        (
            200,
            json!({ "docs": [ { "_index": rebuild, "_id": "x", "found": true, "_source": {
                "kind": "document", "write_id": "live", "chunk_ids": ["d:0"], "stale_ids": [] } } ] }),
        ),
        (
            200,
            json!({ "took": 1, "errors": false, "items": [
                { "delete": { "_index": rebuild, "_id": "x", "status": 200 } } ] }),
        ),
    ];
    let (wire, es) = serve(answers).await;
    let written = crate::index::IndexAdmin::rebuild_write(
        &es,
        rebuild,
        vec![("t".into(), "d".into(), vec![chunk(0), chunk(1)])],
    )
    .await
    .unwrap();
    assert_eq!(written, (1, 0));
    let bulks = bulks(&wire);
    assert_eq!(bulks.len(), 3, "{bulks:?}");
    let undo: Vec<&str> = bulks[2].2.lines().collect();
    assert_eq!(undo.len(), 1, "{undo:?}");
    assert!(
        undo[0].contains("\"delete\"") && undo[0].contains("d:1"),
        "{undo:?}"
    );
}
