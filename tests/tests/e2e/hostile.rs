//! Hostile input end to end, through the real gateway and legs (PostgreSQL + pgvector, Tantivy,
//! the real model): every answer is OK or INVALID_ARGUMENT naming the field, never INTERNAL, a
//! panic, a degraded search or a lost batch; PII redaction reaches both legs; `/metrics` does
//! not grow with invented method paths.

use std::collections::HashMap;
use std::time::Duration;

use braid_proto::tonic::{Code, Status};
use braid_tests::v1::{
    DocumentInput, DocumentResult, DocumentStatus, GetDocumentRequest, LegSearchRequest,
    MetadataFilter, SearchMode, SearchRequest, SearchResponse, WaitIndexedRequest,
};
use braid_tests::{
    DocumentInputExt, Ingest, Stack, StackOptions, doc, eventually, http_get, metric_sum,
};

/// `(name, text)` of every file in `tests/fuzz-corpus/`, plus an oversized entry.
fn corpus() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz-corpus");
    let mut entries: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("tests/fuzz-corpus exists")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "txt"))
        .map(|e| {
            let bytes = std::fs::read(e.path()).expect("readable corpus file");
            (
                e.file_name().to_string_lossy().into_owned(),
                String::from_utf8_lossy(&bytes).into_owned(),
            )
        })
        .collect();
    entries.sort();
    assert!(entries.len() >= 20, "corpus went missing: {entries:?}");
    // Over every field limit at once (6.6 KB), in several scripts.
    entries.push(("huge".into(), "日本語🦀e\u{301}Ёё ".repeat(400)));
    entries
}

/// A well-formed document, to sit among the hostile ones (specific to this file).
fn good(id: &str, text: &str) -> DocumentInput {
    doc(id, text)
        .title(format!("Good document {id}"))
        .meta("topic", "good")
}

/// The INVALID_ARGUMENT message names `field` (messages read `field: rule`).
fn names_field(message: &str, field: &str) -> bool {
    message.starts_with(&format!("{field}:"))
        || message.starts_with(&format!("{field}["))
        || message.contains(&format!("): {field}"))
        || message.contains(&format!("): {field}["))
        // Per-document rejections: `documents[i].<field>: ...`.
        || message.contains(&format!("].{field}:"))
        || message.contains(&format!("].{field}["))
}

/// OK, or INVALID_ARGUMENT naming one of `fields`; never anything else.
fn ok_or_invalid<T>(what: &str, result: Result<T, Status>, fields: &[&str]) -> Option<T> {
    match result {
        Ok(v) => Some(v),
        Err(s) => {
            assert_eq!(s.code(), Code::InvalidArgument, "{what}: {s:?}");
            assert!(
                fields.iter().any(|f| names_field(s.message(), f)),
                "{what}: {:?} names none of {fields:?}",
                s.message()
            );
            None
        }
    }
}

fn not_degraded(what: &str, r: Option<SearchResponse>) {
    if let Some(r) = r {
        assert!(!r.degraded, "{what}: {:?}", r.degraded_reasons);
    }
}

async fn search(stack: &Stack, request: SearchRequest) -> Result<SearchResponse, Status> {
    let mut gw = stack.gateway_client().await.unwrap();
    gw.search(request).await.map(|r| r.into_inner())
}

/// Waits (in 2-minute WaitIndexed calls) until every stored document of a large batch has
/// settled: on a busy machine, indexing ~200 documents can outlast one wait.
async fn settle(stack: &Stack, results: &mut [DocumentResult]) {
    let settled = |s: i32| {
        [
            DocumentStatus::Ready,
            DocumentStatus::Partial,
            DocumentStatus::Failed,
        ]
        .iter()
        .any(|x| *x as i32 == s)
    };
    for _ in 0..5 {
        let ids: Vec<String> = results
            .iter()
            .filter(|r| !r.document_id.is_empty() && !settled(r.status))
            .map(|r| r.document_id.clone())
            .collect();
        if ids.is_empty() {
            return;
        }
        let mut gw = stack.gateway_client().await.unwrap();
        let waited = gw
            .wait_indexed(WaitIndexedRequest {
                tenant: String::new(),
                document_ids: ids,
                timeout_ms: 120_000,
            })
            .await
            .unwrap()
            .into_inner();
        for w in waited.results {
            if let Some(r) = results.iter_mut().find(|r| r.document_id == w.document_id) {
                r.status = w.status;
            }
        }
    }
}

fn assert_ready(r: &DocumentResult) {
    assert_eq!(r.error, "", "{r:?}");
    assert_eq!(r.status, DocumentStatus::Ready as i32, "{r:?}");
}

/// Issue 9 case: bytes in one document of a batch used to lose the whole batch (INTERNAL from
/// PostgreSQL for NUL, a panic message for an HTML entity next to multi-byte text).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_hostile_document_does_not_cost_the_good_ones() {
    let stack = Stack::start().await.unwrap();
    let docs = vec![
        good("good-a", "Sourdough starters ferment flour and water."),
        good("nul-metadata", "metadata with a NUL byte").meta("note", "a\0b"),
        good("nul-content", "volcanic\0ash clouds"),
        good("entity", "<p>caf&aaaaaaaaaaé; fin &#0; ok</p>").mime("text/html"),
        good("invoice\u{202E}fdp.exe", "bidi override in the id").title("bidi"),
        good("good-b", "Marathon runners taper before race day."),
    ];
    let response = Ingest::new(docs)
        .send(&mut stack.gateway_client().await.unwrap())
        .await
        .expect("the batch is answered");
    let r = &response.results;
    assert_eq!(r.len(), 6);
    assert_ready(&r[0]);
    assert_eq!(r[1].error_code, Code::InvalidArgument as i32, "{:?}", r[1]);
    assert!(names_field(&r[1].error, "metadata"), "{:?}", r[1].error);
    assert!(
        r[1].error.contains("control characters"),
        "{:?}",
        r[1].error
    );
    // Content NUL is turned into a space (its rule), so the document is stored and indexed.
    assert_ready(&r[2]);
    assert_ready(&r[3]);
    assert_eq!(r[4].error_code, Code::InvalidArgument as i32, "{:?}", r[4]);
    assert!(names_field(&r[4].error, "external_id"), "{:?}", r[4].error);
    assert!(r[4].error.contains("bidirectional"), "{:?}", r[4].error);
    assert!(
        !r[4].error.contains('\u{202E}'),
        "the id is shown escaped: {:?}",
        r[4].error
    );
    assert_ready(&r[5]);

    // Both legs hold the NUL document's text with a space for the NUL.
    for mode in [SearchMode::Text, SearchMode::Vector] {
        let found = search(
            &stack,
            SearchRequest {
                query: "volcanic ash".into(),
                mode: mode as i32,
                top_k: 3,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert!(!found.degraded, "{:?}", found.degraded_reasons);
        let hit = found
            .hits
            .iter()
            .find(|h| h.external_id == "nul-content")
            .unwrap_or_else(|| panic!("{mode:?}: {found:#?}"));
        assert_eq!(hit.text, "volcanic ash clouds");
    }
    stack.shutdown().await.unwrap();
}

/// Issue 9 case: an odd metadata filter key turned a search into a degraded answer with an
/// internal error from the vector leg. Now the gateway and both legs reject it by the rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn odd_filter_keys_are_invalid_argument_at_the_gateway_and_in_the_legs() {
    let stack = Stack::start().await.unwrap();
    for key in ["a\0b", "topic'); --", "k\u{202E}", "", "日本", "\"k\""] {
        let result = search(
            &stack,
            SearchRequest {
                query: "bread".into(),
                filter: Some(MetadataFilter {
                    equals: HashMap::from([(key.to_string(), "x".to_string())]),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await;
        let status = result.expect_err(key);
        assert_eq!(status.code(), Code::InvalidArgument, "{key:?}: {status:?}");
        assert!(
            names_field(status.message(), "filter.equals"),
            "{key:?}: {status:?}"
        );
    }
    // The legs apply the same rule to direct callers.
    let leg_request = || LegSearchRequest {
        tenant: "default".into(),
        top_k: 5,
        filter: Some(MetadataFilter {
            equals: HashMap::from([("a\0b".to_string(), "x".to_string())]),
            ..Default::default()
        }),
        query: "bread".into(),
        embedding: vec![0.05; 384],
        model: String::new(),
        access: Some(braid_core::auth::Access::unrestricted().to_filter()),
        detail_top_k: 0,
        min_score: None,
        ef_search: 0,
        chunk_level: false,
    };
    let mut vector = stack.vector_client();
    let status = vector.search(leg_request()).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(names_field(status.message(), "filter.equals"), "{status:?}");
    let mut text = stack.text_client();
    let status = text.search(leg_request()).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(names_field(status.message(), "filter.equals"), "{status:?}");

    // Degraded reasons are worded for operators: no host, port or transport detail.
    let mut stack = stack;
    stack.text.stop().await.unwrap();
    let r = search(
        &stack,
        SearchRequest {
            query: "bread".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(r.degraded);
    let reason = r.degraded_reasons.join("; ");
    assert!(reason.starts_with("text leg failed: "), "{reason}");
    for leak in ["127.0.0.1", "tcp", "transport", "error trying to connect"] {
        assert!(!reason.contains(leak), "{leak} in {reason}");
    }
    stack.shutdown().await.unwrap();
}

/// Issue 9 case: requests to invented method paths grew `/metrics` by one series each.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_method_paths_do_not_grow_metrics() {
    let stack = Stack::start().await.unwrap();
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let send = |path: String| {
        let client = client.clone();
        let url = format!("http://{}{path}", stack.gateway.grpc);
        async move {
            client
                .post(url)
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .body(vec![0u8, 0, 0, 0, 0])
                .send()
                .await
                .expect("the server answers")
                .status()
        }
    };
    // One real call, so the known label exists.
    search(
        &stack,
        SearchRequest {
            query: "warm up".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let series = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with("braid_grpc_requests_total{"))
            .count()
    };
    let (_, before) = http_get(stack.gateway.admin, "/metrics").await.unwrap();
    for i in 0..40 {
        send(format!("/random.Service{i}/Method{i}")).await;
        send(format!("/braid.v1.Gateway/NoSuchMethod{i}")).await;
    }
    let after = eventually("unknown calls counted", Duration::from_secs(10), || async {
        let (_, text) = http_get(stack.gateway.admin, "/metrics").await.ok()?;
        let unknown = metric_sum(&text, "braid_grpc_requests_total", &["method=\"unknown\""]);
        (unknown >= 80.0).then_some(text)
    })
    .await
    .unwrap();
    assert!(
        series(&after) <= series(&before) + 1,
        "at most the `unknown` series is new:\n{after}"
    );
    assert!(!after.contains("random.Service"), "{after}");
    assert!(!after.contains("NoSuchMethod"), "{after}");
    assert!(
        metric_sum(
            &after,
            "braid_grpc_requests_total",
            &["method=\"/braid.v1.Gateway/Search\""]
        ) >= 1.0
    );
    stack.shutdown().await.unwrap();
}

/// What each corpus entry is tried as, and the field a rejection must name.
#[derive(Clone, Copy, Debug)]
enum Slot {
    ExternalId,
    Title,
    Plain,
    Html,
    Markdown,
    MimeType,
    MetadataKey,
    MetadataValue,
}

impl Slot {
    const ALL: [Slot; 8] = [
        Slot::ExternalId,
        Slot::Title,
        Slot::Plain,
        Slot::Html,
        Slot::Markdown,
        Slot::MimeType,
        Slot::MetadataKey,
        Slot::MetadataValue,
    ];

    fn field(self) -> &'static str {
        match self {
            Slot::ExternalId => "external_id",
            Slot::Title => "title",
            Slot::Plain | Slot::Html | Slot::Markdown => "content",
            Slot::MimeType => "mime_type",
            Slot::MetadataKey | Slot::MetadataValue => "metadata",
        }
    }

    fn document(self, id: &str, entry: &str) -> DocumentInput {
        let mut d = doc(id, "fuzz carrier text about gardening")
            .title("Fuzz carrier")
            .meta("topic", "fuzz");
        match self {
            Slot::ExternalId => d.external_id = entry.into(),
            Slot::Title => d.title = entry.into(),
            Slot::Plain => d.content = entry.into(),
            Slot::Html => {
                d.content = entry.into();
                d.mime_type = "text/html".into();
            }
            Slot::Markdown => {
                d.content = entry.into();
                d.mime_type = "text/markdown".into();
            }
            Slot::MimeType => d.mime_type = entry.into(),
            Slot::MetadataKey => {
                d.metadata.insert(entry.into(), "v".into());
            }
            Slot::MetadataValue => {
                d.metadata.insert("k".into(), entry.into());
            }
        }
        d
    }
}

/// The corpus replayed as every DocumentInput field (one batch with good documents mixed in),
/// as a search query, a filter key and value, a tenant and an external id to look up.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fuzz_corpus_replayed_through_the_gateway() {
    let stack = Stack::start().await.unwrap();
    let entries = corpus();

    let mut docs = vec![good("good-0", "Sourdough bread needs a lively starter.")];
    let mut slots = vec![None];
    for (i, (_, entry)) in entries.iter().enumerate() {
        for slot in Slot::ALL {
            docs.push(slot.document(&format!("fuzz-{i}-{slot:?}"), entry));
            slots.push(Some((i, slot)));
        }
        if i == entries.len() / 2 {
            docs.push(good("good-1", "Volcanoes erupt when magma rises."));
            slots.push(None);
        }
    }
    docs.push(good("good-2", "Marathon training builds endurance."));
    slots.push(None);
    let mut response = Ingest::new(docs)
        .send(&mut stack.gateway_client().await.unwrap())
        .await
        .expect("the batch is answered");
    assert_eq!(response.results.len(), slots.len());
    settle(&stack, &mut response.results).await;
    let mut rejected = 0;
    for (result, slot) in response.results.iter().zip(&slots) {
        match slot {
            None => assert_ready(result),
            Some((i, slot)) => {
                let what = format!("{} as {slot:?}", entries[*i].0);
                if result.error.is_empty() {
                    assert_eq!(
                        result.status,
                        DocumentStatus::Ready as i32,
                        "{what}: accepted documents are indexed: {result:?}"
                    );
                } else {
                    rejected += 1;
                    assert_eq!(
                        result.error_code,
                        Code::InvalidArgument as i32,
                        "{what}: {result:?}"
                    );
                    assert!(
                        names_field(&result.error, slot.field()),
                        "{what}: {:?} does not name {}",
                        result.error,
                        slot.field()
                    );
                }
            }
        }
    }
    assert!(
        rejected > 0,
        "the corpus holds entries that must be rejected"
    );

    for (name, entry) in &entries {
        let r = search(
            &stack,
            SearchRequest {
                query: entry.clone(),
                top_k: 5,
                ..Default::default()
            },
        )
        .await;
        not_degraded(
            &format!("{name} as query"),
            ok_or_invalid(&format!("{name} as query"), r, &["query"]),
        );
        for (what, filter) in [
            (
                "filter key",
                HashMap::from([(entry.clone(), "x".to_string())]),
            ),
            (
                "filter value",
                HashMap::from([("topic".to_string(), entry.clone())]),
            ),
        ] {
            let r = search(
                &stack,
                SearchRequest {
                    query: "sourdough bread".into(),
                    filter: Some(MetadataFilter {
                        equals: filter,
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )
            .await;
            let what = format!("{name} as {what}");
            not_degraded(&what, ok_or_invalid(&what, r, &["filter.equals"]));
        }
        let r = search(
            &stack,
            SearchRequest {
                query: "sourdough bread".into(),
                tenant: entry.clone(),
                ..Default::default()
            },
        )
        .await;
        let what = format!("{name} as tenant");
        not_degraded(&what, ok_or_invalid(&what, r, &["tenant"]));
        let mut gw = stack.gateway_client().await.unwrap();
        let r = gw
            .get_document(GetDocumentRequest {
                external_id: entry.clone(),
                ..Default::default()
            })
            .await;
        if !matches!(&r, Err(s) if s.code() == Code::NotFound) {
            ok_or_invalid(
                &format!("{name} as external_id lookup"),
                r,
                &["external_id", "document_id"],
            );
        }
    }

    // The good documents of the batch are all there and searchable.
    let r = search(
        &stack,
        SearchRequest {
            query: "good document".into(),
            top_k: 20,
            filter: Some(MetadataFilter {
                equals: HashMap::from([("topic".to_string(), "good".to_string())]),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    for id in ["good-0", "good-1", "good-2"] {
        assert!(r.hits.iter().any(|h| h.external_id == id), "{id}: {r:#?}");
    }
    stack.shutdown().await.unwrap();
}

/// Turning redaction on re-indexes unchanged documents, and both legs then hold only the
/// redacted text (title, body and metadata).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn turning_redaction_on_reindexes_and_both_legs_hold_redacted_text() {
    let mut stack = Stack::start_with(StackOptions::default()).await.unwrap();
    // PII only in the content: the stored title and metadata do not change, so only the
    // redaction fingerprint in the hash can tell that this document must be re-indexed.
    let pii = good(
        "pii",
        "Contact jane.doe@example.com or card 4111 1111 1111 1111 about the seminar schedule.",
    );
    let meta = good(
        "pii-meta",
        "Office hours are listed on the department page.",
    )
    .title("Office hours of jane.doe@example.com")
    .meta("owner", "jane.doe@example.com");
    let docs = vec![pii, meta];
    let mut gw = stack.gateway_client().await.unwrap();
    let first = Ingest::new(docs.clone()).send(&mut gw).await.unwrap();
    first.results.iter().for_each(assert_ready);
    let again = Ingest::new(docs.clone()).send(&mut gw).await.unwrap();
    assert!(again.results[0].unchanged, "same settings: unchanged");

    stack.ingest_config.redaction.emails = true;
    stack.ingest_config.redaction.card_numbers = true;
    stack.restart_ingest().await.unwrap();
    let redacted = Ingest::new(docs).send(&mut gw).await.unwrap();
    assert!(
        !redacted.results[0].unchanged,
        "redaction settings are part of the hash: {redacted:?}"
    );
    redacted.results.iter().for_each(assert_ready);

    for mode in [SearchMode::Text, SearchMode::Vector] {
        let r = search(
            &stack,
            SearchRequest {
                query: "seminar schedule".into(),
                mode: mode as i32,
                top_k: 3,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let hit = r
            .hits
            .iter()
            .find(|h| h.external_id == "pii")
            .unwrap_or_else(|| panic!("{mode:?}: {r:#?}"));
        assert_eq!(
            hit.text, "Contact [EMAIL] or card [CARD] about the seminar schedule.",
            "{mode:?}"
        );
    }
    // The old text is gone from the text index, not just outranked.
    let r = search(
        &stack,
        SearchRequest {
            query: "jane.doe@example.com 4111".into(),
            mode: SearchMode::Text as i32,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(r.hits.is_empty(), "{r:#?}");
    let mut gw = stack.gateway_client().await.unwrap();
    let stored = gw
        .get_document(GetDocumentRequest {
            external_id: "pii-meta".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.metadata["owner"], "[EMAIL]");
    assert_eq!(stored.title, "Office hours of [EMAIL]");
    let r = search(
        &stack,
        SearchRequest {
            query: "office hours".into(),
            mode: SearchMode::Text as i32,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let hit = r.hits.iter().find(|h| h.external_id == "pii-meta");
    assert_eq!(
        hit.map(|h| h.title.as_str()),
        Some("Office hours of [EMAIL]"),
        "{r:#?}"
    );
    stack.shutdown().await.unwrap();
}
