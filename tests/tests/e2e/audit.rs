//! The audit trail end to end: allowed and denied calls become rows in `audit.records` with
//! the right fields (query hashed by default), `ListAudit` filters and pages them, and an
//! unreachable audit database costs records (counted) under best_effort, calls under
//! fail_closed.

use std::time::Duration;

use braid_gateway::{Budget, OnFailure};
use braid_proto::tonic::Code;
use braid_tests::v1::{ListAuditRequest, SearchRequest};
use braid_tests::{
    DocumentInputExt, Ingest, Stack, StackOptions, Users, as_user, doc, eventually, http_get,
    metric_sum,
};
use sha2::{Digest, Sha256};
use sqlx::Row;
use tokio_stream::StreamExt;

const PATIENCE: Duration = Duration::from_secs(90);

#[tokio::test]
async fn allowed_and_denied_calls_are_recorded_and_listed() {
    let mut options = StackOptions::default();
    // Three searches, then refused: the fourth is a RESOURCE_EXHAUSTED record.
    options.gateway.limits.search.per_subject = Budget::new(1.0 / 600.0, 3);
    let stack = Stack::start_with(options).await.unwrap();
    let mut gw = stack.gateway_client().await.unwrap();

    let ids = Ingest::new(vec![
        doc("quantum", "Quantum physics describes particles and waves.").title("Document quantum"),
        doc(
            "cells",
            "Cell biology studies the membranes of living cells.",
        )
        .title("Document cells"),
    ])
    .ready(&mut gw)
    .await;

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
        // Measured, not a placeholder: every call here crossed the network to a real service.
        let latency = row.get::<f64, _>("latency_ms");
        assert!(latency > 0.0 && latency < 120_000.0, "latency_ms {latency}");
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

const SECRET: &str = "audit-test-secret-0123456789abcdef";

/// One stored record, as the assertions read it.
#[derive(Debug, Clone, PartialEq)]
struct Stored {
    rpc: String,
    code: String,
    subject: String,
    tenant: String,
    role: String,
    result_count: i64,
    document_ids: Vec<String>,
}

/// Waits until `audit.records` holds at least `n` rows; returns them oldest first.
async fn rows(db: &sqlx::PgPool, n: usize) -> Vec<Stored> {
    eventually(&format!("{n} audit rows"), PATIENCE, || {
        let db = db.clone();
        async move {
            let rows = sqlx::query(
                "SELECT rpc, code, subject, tenant, role, result_count, document_ids \
                 FROM audit.records ORDER BY id",
            )
            .fetch_all(&db)
            .await
            .ok()?;
            (rows.len() >= n).then(|| {
                rows.iter()
                    .map(|r| Stored {
                        rpc: r.get("rpc"),
                        code: r.get("code"),
                        subject: r.get("subject"),
                        tenant: r.get("tenant"),
                        role: r.get("role"),
                        result_count: r.get("result_count"),
                        document_ids: r.get("document_ids"),
                    })
                    .collect()
            })
        }
    })
    .await
    .unwrap()
}

fn row(
    rpc: &str,
    code: &str,
    subject: &str,
    tenant: &str,
    role: &str,
) -> (String, String, String, String, String) {
    (
        rpc.into(),
        code.into(),
        subject.into(),
        tenant.into(),
        role.into(),
    )
}

/// ListAudit is for admins only; refused calls — a bad token (UNAUTHENTICATED, no subject
/// known: counted per peer and written when the window ends) and a role that may not call
/// the RPC (PERMISSION_DENIED, subject known) — are recorded with their code, and an admin
/// reads them back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn denied_calls_are_recorded_and_only_admins_read_the_trail() {
    let users = Users::new(SECRET);
    let mut options = users.stack_options();
    options.gateway.audit.anonymous_window_ms = 500;
    let stack = Stack::start_with(options).await.unwrap();
    let mut gw = stack.gateway_client().await.unwrap();
    let reader = users.token("rita", "acme", "reader");
    let writer = users.token("walt", "acme", "writer");
    let admin = users.token("ada", "acme", "admin");

    for (who, t) in [("reader", &reader), ("writer", &writer)] {
        let refused = gw
            .list_audit(as_user(ListAuditRequest::default(), t))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied, "{who}: {refused:?}");
        assert!(refused.message().contains("admin"), "{who}: {refused:?}");
    }
    let forged = users.token("mallory", "acme", "admin") + "x";
    let unauthenticated = gw
        .search(as_user(
            SearchRequest {
                query: "anything".into(),
                ..Default::default()
            },
            &forged,
        ))
        .await
        .unwrap_err();
    assert_eq!(unauthenticated.code(), Code::Unauthenticated);
    let denied = Ingest::new(vec![
        doc("r1", "A reader may not write this.").title("Document r1"),
    ])
    .as_user(&reader)
    .no_wait()
    .send(&mut gw)
    .await
    .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);

    let db = stack.db().await.unwrap();
    let mut stored: Vec<_> = rows(&db, 4)
        .await
        .into_iter()
        .map(|r| (r.rpc, r.code, r.subject, r.tenant, r.role))
        .collect();
    // The refusal before authentication is written at its window's end: order aside, these.
    stored.sort();
    let mut expected = [
        row("ListAudit", "PermissionDenied", "rita", "acme", "reader"),
        row("ListAudit", "PermissionDenied", "walt", "acme", "writer"),
        row("Search", "Unauthenticated", "", "", ""),
        row("Ingest", "PermissionDenied", "rita", "acme", "reader"),
    ];
    expected.sort();
    assert_eq!(stored, expected);

    // The admin reads the trail (its own call is recorded after it answers).
    let listed = gw
        .list_audit(as_user(ListAuditRequest::default(), &admin))
        .await
        .unwrap()
        .into_inner()
        .records;
    let codes: Vec<(&str, &str, &str)> = listed
        .iter()
        .map(|r| (r.rpc.as_str(), r.code.as_str(), r.subject.as_str()))
        .collect();
    // A tenant-bound admin sees its own tenant's records; the refused token named none.
    assert_eq!(
        codes,
        [
            ("Ingest", "PermissionDenied", "rita"),
            ("ListAudit", "PermissionDenied", "walt"),
            ("ListAudit", "PermissionDenied", "rita"),
        ]
    );
    stack.shutdown().await.unwrap();
}

/// IngestStream's record is written when the stream ends: with the stream's real outcome,
/// the number of results the caller received and their document ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ingest_stream_records_its_outcome_and_counts() {
    use braid_tests::v1::IngestStreamRequest;
    let users = Users::new(SECRET);
    let stack = Stack::start_with(users.stack_options()).await.unwrap();
    let mut gw = stack.gateway_client().await.unwrap();
    let writer = users.token("walt", "acme", "writer");
    let message = |tenant: &str, id: &str| IngestStreamRequest {
        tenant: tenant.into(),
        document: Some(
            doc(id, format!("Streamed document {id} about glaciers."))
                .title(format!("Document {id}")),
        ),
    };

    // Three documents, all accepted: OK, 3 results.
    let ok: Vec<_> = ["s1", "s2", "s3"].map(|id| message("", id)).into();
    let results: Vec<_> = gw
        .ingest_stream(as_user(tokio_stream::iter(ok), &writer))
        .await
        .unwrap()
        .into_inner()
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(|r| r.unwrap().document_id)
        .collect();
    assert_eq!(results.len(), 3);

    // One document, then one naming another tenant: the stream ends PERMISSION_DENIED after
    // the first document's result.
    let cut = vec![message("", "s4"), message("beta", "planted")];
    let mut stream = gw
        .ingest_stream(as_user(tokio_stream::iter(cut), &writer))
        .await
        .unwrap()
        .into_inner();
    let first = stream.next().await.unwrap().unwrap();
    let end = stream.next().await.unwrap().unwrap_err();
    assert_eq!(end.code(), Code::PermissionDenied, "{end:?}");

    let db = stack.db().await.unwrap();
    let stored = rows(&db, 2).await;
    let expected = |code: &str, ids: Vec<String>| Stored {
        rpc: "IngestStream".into(),
        code: code.into(),
        subject: "walt".into(),
        tenant: "acme".into(),
        role: "writer".into(),
        result_count: ids.len() as i64,
        document_ids: ids,
    };
    assert_eq!(
        stored,
        [
            expected("Ok", results),
            expected("PermissionDenied", vec![first.document_id]),
        ]
    );
    stack.shutdown().await.unwrap();
}

/// The purge job removes records older than `audit.retention_days` and keeps the rest.
#[tokio::test]
async fn records_past_retention_are_purged() {
    let mut options = StackOptions::default();
    options.gateway.audit.retention_days = 7;
    options.gateway.audit.purge_interval_ms = 100;
    let stack = Stack::start_with(options).await.unwrap();
    let db = stack.db().await.unwrap();
    // The purge job creates the schema before its first purge.
    eventually("audit.records exists", PATIENCE, || {
        let db = db.clone();
        async move {
            let exists: Option<String> =
                sqlx::query_scalar("SELECT to_regclass('audit.records')::text")
                    .fetch_one(&db)
                    .await
                    .ok()?;
            exists.map(|_| ())
        }
    })
    .await
    .unwrap();
    let insert = |age: &'static str, subject: &'static str| {
        let db = db.clone();
        async move {
            sqlx::query(&format!(
                "INSERT INTO audit.records (at, subject, tenant, role, client_addr, rpc, code, \
                 latency_ms, result_count, document_ids, trace_id, query) \
                 VALUES (now() - interval '{age}', $1, 'default', 'admin', '', 'Search', 'Ok', \
                 1, 0, '{{}}', '', '')"
            ))
            .bind(subject)
            .execute(&db)
            .await
            .unwrap();
        }
    };
    insert("30 days", "old-30d").await;
    insert("8 days", "old-8d").await;
    insert("6 days", "recent-6d").await;
    insert("1 minute", "recent-1m").await;
    let left = eventually("records past retention purged", PATIENCE, || {
        let db = db.clone();
        async move {
            let subjects: Vec<String> =
                sqlx::query_scalar("SELECT subject FROM audit.records ORDER BY id")
                    .fetch_all(&db)
                    .await
                    .ok()?;
            (!subjects.iter().any(|s| s.starts_with("old"))).then_some(subjects)
        }
    })
    .await
    .unwrap();
    assert_eq!(left, ["recent-6d", "recent-1m"]);
    stack.shutdown().await.unwrap();
}
