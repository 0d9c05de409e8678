//! The audit trail end to end: allowed and denied calls become rows in `audit.records` with
//! the right fields (query hashed by default), `ListAudit` filters and pages them, and an
//! unreachable audit database costs records (counted) under best_effort, calls under
//! fail_closed.

use std::time::Duration;

use braid_gateway::{Budget, OnFailure};
use braid_proto::tonic::Code;
use braid_tests::v1::{DocumentInput, IngestRequest, ListAuditRequest, SearchRequest};
use braid_tests::{Stack, StackOptions, eventually, http_get, metric_sum};
use sha2::{Digest, Sha256};
use sqlx::Row;

const PATIENCE: Duration = Duration::from_secs(90);

fn doc(id: &str, content: &str) -> DocumentInput {
    DocumentInput {
        external_id: id.into(),
        title: format!("Document {id}"),
        content: content.into(),
        mime_type: "text/plain".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn allowed_and_denied_calls_are_recorded_and_listed() {
    let mut options = StackOptions::default();
    // Three searches, then refused: the fourth is a RESOURCE_EXHAUSTED record.
    options.gateway.limits.search.per_subject = Budget::new(1.0 / 600.0, 3);
    let stack = Stack::start_with(options).await.unwrap();
    let mut gw = stack.gateway_client().await.unwrap();

    let ingested = gw
        .ingest(IngestRequest {
            documents: vec![
                doc("quantum", "Quantum physics describes particles and waves."),
                doc(
                    "cells",
                    "Cell biology studies the membranes of living cells.",
                ),
            ],
            wait_until_indexed: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<String> = ingested
        .results
        .iter()
        .map(|r| r.document_id.clone())
        .collect();

    let query = "quantum physics particles";
    let hits = gw
        .search(SearchRequest {
            query: query.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .hits;
    assert!(!hits.is_empty());
    let invalid = gw
        .search(SearchRequest {
            query: query.into(),
            top_k: 1_000_000,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), Code::InvalidArgument);
    gw.search(SearchRequest {
        query: "cells".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let limited = gw
        .search(SearchRequest {
            query: "cells".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(limited.code(), Code::ResourceExhausted);

    let db = stack.db().await.unwrap();
    let rows = eventually("5 audit rows", PATIENCE, || {
        let db = db.clone();
        async move {
            let rows = sqlx::query(
                "SELECT subject, tenant, role, client_addr, rpc, code, latency_ms, result_count, \
                 document_ids, query FROM audit.records ORDER BY id",
            )
            .fetch_all(&db)
            .await
            .ok()?;
            (rows.len() >= 5).then_some(rows)
        }
    })
    .await
    .unwrap();
    let get = |i: usize, col: &str| -> String { rows[i].get(col) };
    let codes: Vec<(String, String)> = (0..5).map(|i| (get(i, "rpc"), get(i, "code"))).collect();
    assert_eq!(
        codes,
        [
            ("Ingest", "Ok"),
            ("Search", "Ok"),
            ("Search", "InvalidArgument"),
            ("Search", "Ok"),
            ("Search", "ResourceExhausted"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    for row in &rows[..5] {
        assert_eq!(row.get::<String, _>("subject"), "anonymous");
        assert_eq!(row.get::<String, _>("role"), "admin");
        assert_eq!(row.get::<String, _>("tenant"), "default");
        assert!(
            row.get::<String, _>("client_addr")
                .starts_with("127.0.0.1:")
        );
        assert!(row.get::<f64, _>("latency_ms") >= 0.0);
    }
    // Ingest: both documents.
    assert_eq!(rows[0].get::<i64, _>("result_count"), 2);
    assert_eq!(rows[0].get::<Vec<String>, _>("document_ids"), ids);
    // Search: its hits, in order, and the query hashed (the default).
    assert_eq!(rows[1].get::<i64, _>("result_count"), hits.len() as i64);
    let hit_ids: Vec<String> = hits
        .iter()
        .take(10)
        .map(|h| h.document_id.clone())
        .collect();
    assert_eq!(rows[1].get::<Vec<String>, _>("document_ids"), hit_ids);
    assert_eq!(
        get(1, "query"),
        hex::encode(Sha256::digest(query.as_bytes()))
    );
    assert_ne!(get(1, "query"), query);
    assert_eq!(rows[2].get::<i64, _>("result_count"), 0);

    // ListAudit: filters and keyset pages.
    let list = |r: ListAuditRequest| {
        let mut gw = gw.clone();
        async move { gw.list_audit(r).await.unwrap().into_inner() }
    };
    let searches = list(ListAuditRequest {
        rpc: "Search".into(),
        subject: "anonymous".into(),
        ..Default::default()
    })
    .await;
    assert_eq!(searches.records.len(), 4);
    assert!(searches.records.iter().all(|r| r.rpc == "Search"));
    // Newest first.
    assert_eq!(searches.records[0].code, "ResourceExhausted");
    assert!(
        list(ListAuditRequest {
            subject: "nobody".into(),
            ..Default::default()
        })
        .await
        .records
        .is_empty()
    );
    let first = list(ListAuditRequest {
        rpc: "Search".into(),
        page_size: 3,
        ..Default::default()
    })
    .await;
    assert_eq!(first.records.len(), 3);
    assert!(!first.next_page_token.is_empty());
    let second = list(ListAuditRequest {
        rpc: "Search".into(),
        page_size: 3,
        page_token: first.next_page_token.clone(),
        ..Default::default()
    })
    .await;
    assert_eq!(second.records.len(), 1);
    assert_eq!(second.records[0].code, "Ok");
    assert!(second.next_page_token.is_empty());
    let in_an_hour = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        + 3_600_000;
    let future = list(ListAuditRequest {
        since: Some(braid_proto::timestamp_from_millis(in_an_hour)),
        ..Default::default()
    })
    .await;
    assert!(future.records.is_empty());
    stack.shutdown().await.unwrap();
}

#[tokio::test]
async fn best_effort_drops_and_counts_while_searches_succeed() {
    let mut options = StackOptions::default();
    // Nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    options.gateway.audit.database.url = format!("postgres://braid@127.0.0.1:{port}/nowhere");
    options.gateway.audit.database.acquire_timeout_ms = 500;
    options.gateway.audit.on_failure = OnFailure::BestEffort;
    let stack = Stack::start_with(options).await.unwrap();
    let mut gw = stack.gateway_client().await.unwrap();
    for _ in 0..3 {
        gw.search(SearchRequest {
            query: "anything".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    eventually("dropped audit records counted", PATIENCE, || async {
        let text = http_get(stack.gateway.admin, "/metrics").await.ok()?.1;
        (metric_sum(&text, "braid_gateway_audit_dropped_total", &[]) >= 3.0).then_some(())
    })
    .await
    .unwrap();
    stack.shutdown().await.unwrap();
}

#[tokio::test]
async fn fail_closed_refuses_calls_it_cannot_record() {
    let mut options = StackOptions::default();
    // Accepts connections and never answers: the writer stays stuck on its first batch.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    options.gateway.audit.database.url = format!("postgres://braid@127.0.0.1:{port}/silent");
    options.gateway.audit.database.acquire_timeout_ms = 120_000;
    options.gateway.audit.on_failure = OnFailure::FailClosed;
    options.gateway.audit.queue_capacity = 1;
    options.gateway.audit.batch_size = 1;
    let stack = Stack::start_with(options).await.unwrap();
    let gw = stack.gateway_client().await.unwrap();
    let refused = eventually("a call refused for want of audit", PATIENCE, || {
        let mut gw = gw.clone();
        async move {
            gw.search(SearchRequest {
                query: "anything".into(),
                ..Default::default()
            })
            .await
            .err()
        }
    })
    .await
    .unwrap();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(refused.message().contains("audit"));
    drop(silent);
    stack.shutdown().await.unwrap();
}
