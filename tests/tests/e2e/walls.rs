//! Issue 23's attacks replayed against the real stack (items 1, 3, 4 and 5), each refused or
//! harmless: a writer cannot delete, overwrite or probe a document it may not read, nor label
//! one above its own access; a tenant named in a request is checked before anything is charged
//! or recorded, so refused calls cost the caller and never the tenant they named, and one
//! hostile call cannot erase the audit trail; calls refused before authentication are limited
//! per peer and written as one counted record; calls cost what they ask for; the outbox takes
//! tenants in turns; a group name holding a separator is refused at the token.

use braid_gateway::Budget;
use braid_proto::tonic::Code;
use braid_tests::v1::{
    DeleteDocumentRequest, DocumentInput, DocumentStatus, FusionParams, GetDocumentRequest,
    IngestStreamRequest, SearchRequest, WaitIndexedRequest,
};
use braid_tests::{
    DocumentInputExt, Ingest, Stack, Users, acl, as_user, doc, http_get, metric_sum,
};
use sqlx::Row;
use tokio_stream::StreamExt;

const SECRET: &str = "walls-test-secret-0123456789abcdef-0123";

fn search(query: &str) -> SearchRequest {
    SearchRequest {
        query: query.into(),
        ..Default::default()
    }
}

async fn gateway_metrics(stack: &Stack) -> String {
    http_get(stack.gateway.admin, "/metrics").await.unwrap().1
}

/// Item 1. A clearance-0 writer in the same tenant tried to delete a clearance-5 document by
/// its external id (learning from the answer that it existed), to overwrite it by
/// re-ingesting the same external id (content replaced, ACL downgraded), and to read its
/// external id, chunk count and status through WaitIndexed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_writer_acts_only_on_documents_it_may_read() {
    let users = Users::new(SECRET);
    let stack = Stack::start_with(users.stack_options()).await.unwrap();
    let mut gw = stack.gateway_client().await.unwrap();
    let high = users.token_with_acl("hana", "acme", "writer", 5, &["board"]);
    let low = users.token_with_acl("lou", "acme", "writer", 0, &["staff"]);
    let admin = users.token_with_acl("ada", "acme", "admin", 0, &[]);

    let stored = Ingest::new(vec![
        doc("merger", "Board minutes: the merger closes in March.").acl(acl(5, &["board"])),
    ])
    .as_user(&high)
    .results(&mut gw)
    .await
    .remove(0);
    assert_eq!(stored.status, DocumentStatus::Ready as i32, "{stored:?}");
    let secret_id = stored.document_id.clone();
    let random_id = uuid::Uuid::new_v4().to_string();
    let get = |by_id: bool| {
        as_user(
            GetDocumentRequest {
                tenant: String::new(),
                document_id: if by_id {
                    secret_id.clone()
                } else {
                    String::new()
                },
                external_id: if by_id {
                    String::new()
                } else {
                    "merger".into()
                },
            },
            &high,
        )
    };
    let before = gw.get_document(get(true)).await.unwrap().into_inner();

    // Delete, by external id and by document id: exactly the answer a missing one gets.
    let delete = |document_id: &str, external_id: &str| {
        as_user(
            DeleteDocumentRequest {
                tenant: String::new(),
                document_id: document_id.into(),
                external_id: external_id.into(),
            },
            &low,
        )
    };
    let answer = |r: Result<_, tonic::Status>| {
        let s = r.unwrap_err();
        (s.code(), s.message().to_string())
    };
    let hidden = answer(gw.delete_document(delete("", "merger")).await);
    let missing = answer(gw.delete_document(delete("", "no-such-document")).await);
    assert_eq!(hidden, missing);
    assert_eq!(hidden.0, Code::NotFound);
    let hidden = answer(gw.delete_document(delete(&secret_id, "")).await);
    let missing = answer(gw.delete_document(delete(&random_id, "")).await);
    assert_eq!(hidden, missing);

    // WaitIndexed: the hidden document reads like a random id.
    let waited = gw
        .wait_indexed(as_user(
            WaitIndexedRequest {
                tenant: String::new(),
                document_ids: vec![secret_id.clone(), random_id.clone()],
                timeout_ms: 1_000,
            },
            &low,
        ))
        .await
        .unwrap()
        .into_inner()
        .results;
    for r in &waited {
        assert_eq!(
            (r.status, r.external_id.as_str(), r.chunk_count),
            (DocumentStatus::Unspecified as i32, "", 0),
            "{r:?}"
        );
    }

    // Re-ingesting its external id (new content and a public ACL, or the very same content):
    // refused for that document, nothing about it in the answer, nothing changed.
    for content in [
        "Nothing to see here.",
        "Board minutes: the merger closes in March.",
    ] {
        let result = Ingest::new(vec![
            doc("merger", content),
            doc("lunch", "The canteen serves soup on Fridays."),
        ])
        .as_user(&low)
        .no_wait()
        .results(&mut gw)
        .await;
        let refused = &result[0];
        assert_eq!(
            refused.error_code,
            Code::PermissionDenied as i32,
            "{refused:?}"
        );
        assert_eq!(
            (
                refused.document_id.as_str(),
                refused.status,
                refused.unchanged,
                refused.chunk_count
            ),
            ("", 0, false, 0),
            "{refused:?}"
        );
        assert_eq!(
            result[1].error, "",
            "the other document is stored: {result:?}"
        );
    }
    let after = gw.get_document(get(false)).await.unwrap().into_inner();
    assert_eq!(
        (after.version, &after.content_sha256, &after.acl),
        (before.version, &before.content_sha256, &before.acl),
        "the document is untouched"
    );

    // Labels: at most the writer's clearance, only its groups.
    let labelled = Ingest::new(vec![
        doc("above", "A memo for the board.").acl(acl(1, &[])),
        doc("foreign", "A memo for the board.").acl(acl(0, &["board"])),
        doc("own", "A memo for the staff.").acl(acl(0, &["staff"])),
    ])
    .as_user(&low)
    .no_wait()
    .results(&mut gw)
    .await;
    assert!(
        labelled[0].error.contains("documents[0].acl.clearance"),
        "{labelled:?}"
    );
    assert!(
        labelled[1].error.contains("documents[1].acl.groups[0]"),
        "{labelled:?}"
    );
    assert_eq!(labelled[2].error, "", "{labelled:?}");

    // An admin acts on any document of its tenant, whatever its own clearance.
    let deleted = gw
        .delete_document(as_user(
            DeleteDocumentRequest {
                tenant: String::new(),
                document_id: String::new(),
                external_id: "merger".into(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.document_id, secret_id);
    stack.shutdown().await.unwrap();
}

/// Item 3. Refused calls naming tenant B were charged to B's budget (A could lock B out), a
/// 1 MiB requested tenant became a rate-limiter key before it was checked, and a NUL byte in
/// one call's audit record made PostgreSQL refuse the whole batch of records.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn check_before_charging_and_an_audit_trail_no_call_can_erase() {
    let users = Users::new(SECRET);
    let mut options = users.stack_options();
    options.gateway.limits.search.per_tenant = Budget::new(1.0 / 600.0, 5);
    options.gateway.limits.ingest.per_subject = Budget::new(1.0 / 600.0, 3);
    options.gateway.audit.query_text = braid_gateway::QueryText::Plain;
    // Every call of this test shares one INSERT, as the hostile one did in the issue.
    options.gateway.audit.flush_interval_ms = 60_000;
    options.gateway.audit.batch_size = 1_000;
    let mut stack = Stack::start_with(options).await.unwrap();
    let mut gw = stack.gateway_client().await.unwrap();
    let a = users.token("amos", "tenant-a", "reader");
    let b = users.token("bea", "tenant-b", "reader");
    let c = users.token("cyd", "tenant-c", "writer");

    // A names B over and over: refused, and charged to A's own budget only.
    for i in 0..12 {
        let mut r = search("merger");
        r.tenant = "tenant-b".into();
        let refused = gw.search(as_user(r, &a)).await.unwrap_err();
        let expected = if i < 5 {
            Code::PermissionDenied
        } else {
            Code::ResourceExhausted
        };
        assert_eq!(refused.code(), expected, "call {i}: {refused:?}");
    }
    gw.search(as_user(search("merger"), &b))
        .await
        .expect("tenant B is not locked out by calls naming it");
    // A call refused for its role costs the caller too.
    for i in 0..4 {
        let refused = Ingest::new(vec![doc("x", "A reader may not write.")])
            .as_user(&a)
            .no_wait()
            .send(&mut gw)
            .await
            .unwrap_err();
        let expected = if i < 3 {
            Code::PermissionDenied
        } else {
            Code::ResourceExhausted
        };
        assert_eq!(refused.code(), expected, "ingest {i}: {refused:?}");
    }

    // Malformed tenants are refused by the rule, before any budget or record sees them.
    for (tenant, message) in [
        ("x".repeat(1 << 20), "tenant: 1048576 bytes, at most 128"),
        (
            "tenant-b\u{0}".to_string(),
            "tenant: only letters, digits, '_', '-' and '.' are allowed",
        ),
    ] {
        let mut r = search("merger");
        r.tenant = tenant;
        let refused = gw.search(as_user(r, &c)).await.unwrap_err();
        assert_eq!(
            (refused.code(), refused.message()),
            (Code::InvalidArgument, message)
        );
    }
    // NUL bytes wherever a caller can put them into a record.
    gw.search(as_user(search("merger\u{0}plans"), &c))
        .await
        .unwrap();
    let refused = gw
        .delete_document(as_user(
            DeleteDocumentRequest {
                tenant: String::new(),
                document_id: "id\u{0}\u{1b}[31m".into(),
                external_id: String::new(),
            },
            &c,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);

    // Stopping the gateway writes the one batch; every call of it is there.
    stack.gateway.stop().await.unwrap();
    let db = stack.db().await.unwrap();
    let rows = sqlx::query(
        "SELECT subject, tenant, rpc, code, query, document_ids FROM audit.records ORDER BY id",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    let count = |subject: &str| {
        rows.iter()
            .filter(|r| r.get::<String, _>("subject") == subject)
            .count()
    };
    assert_eq!((count("amos"), count("bea"), count("cyd")), (16, 1, 4));
    for r in rows
        .iter()
        .filter(|r| r.get::<String, _>("subject") == "amos")
    {
        assert_eq!(
            r.get::<String, _>("tenant"),
            "tenant-a",
            "charged and recorded to A"
        );
    }
    let queries: Vec<String> = rows.iter().map(|r| r.get("query")).collect();
    assert!(
        queries.contains(&"merger\\u{0}plans".to_string()),
        "{queries:?}"
    );
    let ids: Vec<Vec<String>> = rows.iter().map(|r| r.get("document_ids")).collect();
    assert!(
        ids.contains(&vec!["id\\u{0}\\u{1b}[31m".to_string()]),
        "{ids:?}"
    );
    let tenants: Vec<String> = rows.iter().map(|r| r.get("tenant")).collect();
    assert!(
        tenants.iter().all(|t| t.len() <= 128),
        "no long tenant is recorded"
    );
    stack.shutdown().await.unwrap();
}

/// Item 4, before authentication. Unauthenticated calls each became an audit row, and nothing
/// limited a peer before its token was checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn before_authentication_peers_are_limited_and_counted_not_recorded_one_by_one() {
    let users = Users::new(SECRET);
    let mut options = users.stack_options();
    options.gateway.limits.per_peer = Budget::new(1.0 / 600.0, 30);
    let mut stack = Stack::start_with(options).await.unwrap();
    let mut gw = stack.gateway_client().await.unwrap();
    let good = users.token("rita", "acme", "reader");
    let forged = format!("{good}x");

    for _ in 0..25 {
        let refused = gw
            .search(as_user(search("anything"), &forged))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated);
    }
    // Five calls left in this peer's budget, whatever the token.
    for _ in 0..5 {
        gw.search(as_user(search("anything"), &good)).await.unwrap();
    }
    for token in [&good, &forged] {
        let refused = gw
            .search(as_user(search("anything"), token))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
        assert!(
            refused.message().contains("per peer address"),
            "{refused:?}"
        );
        assert!(refused.metadata().get("retry-after").is_some());
    }
    assert_eq!(
        metric_sum(
            &gateway_metrics(&stack).await,
            "braid_gateway_peer_limited_total",
            &[]
        ),
        2.0
    );

    // The window ends when the gateway stops: one record per peer, RPC and code.
    stack.gateway.stop().await.unwrap();
    let db = stack.db().await.unwrap();
    let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
        "SELECT code, subject, client_addr, calls FROM audit.records \
         WHERE subject = '' ORDER BY code",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(
        rows,
        [
            (
                "ResourceExhausted".to_string(),
                String::new(),
                "127.0.0.1".to_string(),
                2
            ),
            (
                "Unauthenticated".to_string(),
                String::new(),
                "127.0.0.1".to_string(),
                25
            ),
        ]
    );
    let named: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit.records WHERE subject = 'rita'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(
        named, 5,
        "authenticated calls are still recorded one by one"
    );
    stack.shutdown().await.unwrap();
}

/// Item 4, after authentication. A 1,000-candidate, cache-bypassing, 500-deep search cost one
/// token, and so did an IngestStream of any number of documents.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn calls_cost_what_they_ask_for() {
    let users = Users::new(SECRET);
    let mut options = users.stack_options();
    options.gateway.limits.search.per_subject = Budget::new(1.0 / 600.0, 10);
    options.gateway.limits.ingest.per_subject = Budget::new(0.5, 4);
    let stack = Stack::start_with(options).await.unwrap();
    let mut gw = stack.gateway_client().await.unwrap();
    let heavy = users.token("hal", "acme", "writer");
    let light = users.token("lin", "acme", "reader");

    // The deep search takes the whole burst of 10 (it would cost 26)...
    let deep = SearchRequest {
        query: "anything".into(),
        top_k: 500,
        page_size: 10,
        bypass_cache: true,
        fusion: Some(FusionParams {
            vector_candidates: 1000,
            text_candidates: 1000,
            ..Default::default()
        }),
        ..Default::default()
    };
    gw.search(as_user(deep, &heavy)).await.unwrap();
    let refused = gw
        .search(as_user(search("anything"), &heavy))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    // ...while ten default searches fit the same burst.
    for _ in 0..10 {
        gw.search(as_user(search("anything"), &light))
            .await
            .unwrap();
    }

    // A stream pays per document as it goes: the burst of 4 takes the call and three
    // documents, the other three wait for their tokens (0.5 a second), and none fails...
    let messages: Vec<IngestStreamRequest> = (0..6)
        .map(|i| IngestStreamRequest {
            tenant: String::new(),
            document: Some(doc(format!("s{i}"), "A streamed note about soup.")),
        })
        .collect();
    let results: Vec<_> = gw
        .ingest_stream(as_user(tokio_stream::iter(messages), &heavy))
        .await
        .unwrap()
        .into_inner()
        .collect::<Vec<_>>()
        .await;
    assert_eq!(results.len(), 6);
    for r in &results {
        assert_eq!(r.as_ref().unwrap().error, "", "{r:?}");
    }
    assert!(
        metric_sum(
            &gateway_metrics(&stack).await,
            "braid_gateway_ingest_stream_budget_waits_total",
            &[]
        ) >= 1.0
    );
    // ...and leaves the budget empty: two more documents do not fit yet.
    let refused = Ingest::new(vec![
        doc("u1", "One more note."),
        doc("u2", "And another one."),
    ])
    .as_user(&heavy)
    .no_wait()
    .send(&mut gw)
    .await
    .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("ingest budget per subject"),
        "{refused:?}"
    );
    stack.shutdown().await.unwrap();
}

/// Item 4, the outbox. One queue, oldest first: tenant A's bulk load delayed every other
/// tenant's indexing by its whole backlog. Now tenants take turns: B's one document is
/// claimed within a job or two of being queued, long before A's queue drains.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_tenants_bulk_load_does_not_starve_another_tenants_indexing() {
    let users = Users::new(SECRET);
    let mut options = users.stack_options();
    // One worker: claims are strictly one after the other, so the order is the policy's.
    options.ingest.worker.concurrency = 1;
    options.gateway.limits.ingest.per_subject = Budget::new(1000.0, 10_000);
    let stack = Stack::start_with(options).await.unwrap();
    let mut gw = stack.gateway_client().await.unwrap();
    let a = users.token("bulk", "tenant-a", "writer");
    let b = users.token("small", "tenant-b", "writer");

    // A: 60 documents of a few chunks each (120 jobs), queued without waiting.
    let paragraph = "Bulk load paragraph about rivers, bridges and the towns between them. ";
    let bulk: Vec<DocumentInput> = (0..60)
        .map(|i| doc(format!("a{i}"), paragraph.repeat(40)))
        .collect();
    for chunk in bulk.chunks(20) {
        Ingest::new(chunk.to_vec())
            .as_user(&a)
            .no_wait()
            .send(&mut gw)
            .await
            .unwrap();
    }
    // B: one document, waited for.
    let b_result = Ingest::new(vec![doc("b0", "Tenant B's only note.")])
        .as_user(&b)
        .results(&mut gw)
        .await
        .remove(0);
    assert_eq!(
        b_result.status,
        DocumentStatus::Ready as i32,
        "{b_result:?}"
    );

    // How many of A's jobs were still to go when B's were queued, and how many of them
    // finished before B was READY.
    let db = stack.db().await.unwrap();
    let (a_queued_before_b, a_done_meanwhile): (i64, i64) = sqlx::query_as(
        "WITH b AS (SELECT min(created_at) AS queued, max(updated_at) AS ready \
                    FROM ingest.jobs WHERE tenant = 'tenant-b') \
         SELECT \
           (SELECT count(*) FROM ingest.jobs a, b WHERE a.tenant = 'tenant-a' \
              AND (a.state <> 'done' OR a.updated_at > b.queued)), \
           (SELECT count(*) FROM ingest.jobs a, b WHERE a.tenant = 'tenant-a' \
              AND a.state = 'done' AND a.updated_at > b.queued AND a.updated_at <= b.ready)",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    eprintln!(
        "A's jobs waiting when B's were queued: {a_queued_before_b}; done before B was READY: {a_done_meanwhile}"
    );
    assert!(
        a_queued_before_b >= 20,
        "only {a_queued_before_b} of A's jobs were waiting when B's were queued: too few to show anything"
    );
    // B's two jobs (vector, text) alternate with A's: at most the job running when B's were
    // queued and one of A's between B's two.
    assert!(
        a_done_meanwhile <= 3,
        "{a_done_meanwhile} of the {a_queued_before_b} jobs of A waiting when B's were queued ran before B was READY"
    );
    stack.shutdown().await.unwrap();
}

/// Item 5. Groups were joined with U+001F before hashing into the cache key: a token with the
/// group `x\u{1f}y` read the cached answers of a user in groups `x` and `y`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_group_holding_a_separator_never_reads_another_callers_cache() {
    let users = Users::new(SECRET);
    let stack = Stack::start_with(users.stack_options()).await.unwrap();
    let mut gw = stack.gateway_client().await.unwrap();
    let admin = users.token("ada", "acme", "admin");
    let both = users.token_with_acl("xavier", "acme", "reader", 0, &["x", "y"]);
    let joined = users.token_with_acl("mallory", "acme", "reader", 0, &["x\u{1f}y"]);
    Ingest::new(vec![
        doc("for-x", "Quarterly volcano survey for group x only.").acl(acl(0, &["x"])),
    ])
    .as_user(&admin)
    .send(&mut gw)
    .await
    .unwrap();
    let hits = gw
        .search(as_user(search("volcano survey"), &both))
        .await
        .unwrap()
        .into_inner()
        .hits;
    assert!(hits.iter().any(|h| h.external_id == "for-x"), "{hits:?}");
    let refused = gw
        .search(as_user(search("volcano survey"), &joined))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    assert!(refused.message().contains("groups[0]"), "{refused:?}");
    stack.shutdown().await.unwrap();
}
