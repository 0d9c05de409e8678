//! End to end: all five services in-process against real PostgreSQL + pgvector, Tantivy and
//! the real embedding model.

use std::collections::HashMap;
use std::time::Duration;

use braid_proto::tonic::Code;
use braid_tests::v1::{
    DeleteDocumentRequest, DocumentInput, DocumentStatus, GetDocumentRequest, MetadataFilter,
    SearchMode, SearchRequest, SearchResponse,
};
use braid_tests::{DocumentInputExt, Ingest, Stack, doc, eventually, http_get, ingest_ready};

fn corpus() -> Vec<DocumentInput> {
    vec![
        doc(
            "pgvector",
            "# Vector search in PostgreSQL\n\nThe **pgvector** extension adds a `vector` column type to PostgreSQL. \
             HNSW indexes give approximate nearest neighbour search with cosine distance, and \
             `hnsw.ef_search` trades recall for speed.",
        )
        .title("Vector search in PostgreSQL")
        .mime("text/markdown")
        .meta("topic", "tech"),
        doc(
            "sourdough",
            "<html><head><title>Baking sourdough bread</title><script>track()</script></head><body>\
             <h1>Sourdough</h1><p>A sourdough starter is a culture of wild yeast and lactic acid bacteria. \
             Feed it flour and water, let the dough proof overnight, then bake it in a hot Dutch oven \
             until the crust is dark.</p></body></html>",
        )
        .title("Baking sourdough bread")
        .mime("text/html")
        .meta("topic", "food"),
        doc(
            "marathon",
            "Weekly long runs build aerobic endurance. Increase mileage gradually, taper in the final \
             three weeks before race day, and eat plenty of carbohydrates the evening before the 42 km.",
        )
        .title("Training for a marathon")
        .meta("topic", "sport"),
        doc(
            "volcano",
            "Magma rises through cracks in the crust. Dissolved gases expand as the pressure drops, and \
             explosive eruptions throw ash and pumice high into the atmosphere while lava flows downhill.",
        )
        .title("How volcanoes erupt")
        .meta("topic", "science"),
        doc(
            "borrowck",
            "## Ownership\n\nThe borrow checker enforces ownership and lifetimes at compile time, so \
             programs are free of use-after-free and data races without a garbage collector.",
        )
        .title("Memory safety in Rust")
        .mime("text/markdown")
        .meta("topic", "tech"),
    ]
}

async fn search(stack: &Stack, query: &str, mode: SearchMode) -> SearchResponse {
    search_with(
        stack,
        SearchRequest {
            query: query.into(),
            top_k: 5,
            mode: mode as i32,
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

async fn search_with(
    stack: &Stack,
    request: SearchRequest,
) -> Result<SearchResponse, tonic::Status> {
    let mut gw = stack.gateway_client().await.unwrap();
    gw.search(request).await.map(|r| r.into_inner())
}

fn top(r: &SearchResponse) -> &str {
    r.hits
        .first()
        .map_or("<no hits>", |h| h.external_id.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ingest_search_every_mode_and_delete() {
    let stack = Stack::start().await.unwrap();
    let mut gw = stack.gateway_client().await.unwrap();
    let ids = ingest_ready(&mut gw, "", corpus()).await;
    assert_eq!(ids.len(), 5);

    // Hybrid: both legs contribute, expected document first.
    let r = search(
        &stack,
        "approximate nearest neighbour index in postgres",
        SearchMode::Hybrid,
    )
    .await;
    assert!(!r.degraded, "{:?}", r.degraded_reasons);
    assert_eq!(top(&r), "pgvector", "{r:#?}");
    let best = &r.hits[0];
    assert!(
        best.vector_score.is_some() && best.text_score.is_some(),
        "{best:?}"
    );
    assert_eq!(best.vector_rank, Some(1));
    assert!(best.score > 0.0 && best.title == "Vector search in PostgreSQL");
    assert!(r.hits.iter().all(|h| !h.document_id.is_empty()));

    // Vector only: a paraphrase sharing no words with the document.
    let r = search(
        &stack,
        "making a loaf with natural leavening",
        SearchMode::Vector,
    )
    .await;
    assert_eq!(top(&r), "sourdough", "{r:#?}");
    assert!(r.hits[0].text_score.is_none() && r.hits[0].vector_score.unwrap() > 0.3);

    // Text only: an exact keyword, with a highlighted snippet.
    let r = search(&stack, "pumice", SearchMode::Text).await;
    assert_eq!(top(&r), "volcano", "{r:#?}");
    assert_eq!(r.hits.len(), 1, "BM25 matches only documents with the term");
    assert!(
        r.hits[0].snippet.contains("<b>pumice</b>"),
        "{}",
        r.hits[0].snippet
    );
    assert!(r.hits[0].vector_score.is_none());

    // HTML extraction dropped the script; Markdown syntax is gone from the text leg.
    let r = search(&stack, "track", SearchMode::Text).await;
    assert!(r.hits.is_empty(), "script content was indexed: {r:#?}");
    let r = search(&stack, "pgvector extension column type", SearchMode::Text).await;
    let markdown = r
        .hits
        .iter()
        .find(|h| h.external_id == "pgvector")
        .unwrap_or_else(|| panic!("{r:#?}"));
    assert!(
        markdown
            .text
            .contains("The pgvector extension adds a vector column type"),
        "emphasis and code marks stripped: {:?}",
        markdown.text
    );
    for syntax in ["**", "`", "# "] {
        assert!(
            !markdown.text.contains(syntax),
            "Markdown {syntax:?} left in the indexed text: {:?}",
            markdown.text
        );
    }

    // Metadata filters apply inside both legs.
    let r = search_with(
        &stack,
        SearchRequest {
            query: "bread dough".into(),
            top_k: 5,
            filter: Some(MetadataFilter {
                equals: HashMap::from([("topic".into(), "tech".into())]),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(
        r.hits
            .iter()
            .all(|h| h.external_id == "pgvector" || h.external_id == "borrowck"),
        "{r:#?}"
    );
    assert!(
        !r.hits.is_empty(),
        "the vector leg still ranks the tech documents"
    );

    // The document records both legs' sync times.
    let d = gw
        .get_document(GetDocumentRequest {
            external_id: "volcano".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.status, DocumentStatus::Ready as i32);
    assert!(d.vector_synced_at.is_some() && d.text_synced_at.is_some());
    assert!(d.chunk_count >= 1);
    assert_eq!(d.metadata["topic"], "science");

    // Re-ingesting the same content is a no-op.
    let again = Ingest::new(vec![corpus().remove(3)])
        .no_wait()
        .send(&mut gw)
        .await
        .unwrap();
    assert!(again.results[0].unchanged);
    assert_eq!(again.results[0].document_id, d.document_id);

    // Delete removes the document from both legs.
    gw.delete_document(DeleteDocumentRequest {
        document_id: d.document_id.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    eventually(
        "volcano gone from both legs",
        Duration::from_secs(60),
        || async {
            let text = search(&stack, "magma pumice lava", SearchMode::Text).await;
            let vector = search(&stack, "magma pumice lava eruption", SearchMode::Vector).await;
            let gone = |r: &SearchResponse| r.hits.iter().all(|h| h.external_id != "volcano");
            (gone(&text) && gone(&vector)).then_some(())
        },
    )
    .await
    .unwrap();
    // Until its delete jobs are done the row says DELETING; then it is gone: NOT_FOUND, and
    // no other error along the way.
    let gone = eventually("document row removed", Duration::from_secs(30), || {
        let mut gw = gw.clone();
        let id = d.document_id.clone();
        async move {
            match gw
                .get_document(GetDocumentRequest {
                    document_id: id,
                    ..Default::default()
                })
                .await
            {
                Ok(doc) => {
                    assert_eq!(
                        doc.get_ref().status,
                        DocumentStatus::Deleting as i32,
                        "a deleted document still shown: {doc:?}"
                    );
                    None
                }
                Err(status) => Some(status),
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(gone.code(), Code::NotFound, "{gone:?}");
    let missing = gw
        .delete_document(DeleteDocumentRequest {
            document_id: d.document_id,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    stack.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn text_leg_down_degrades_to_vector_results() {
    let mut stack = Stack::start().await.unwrap();
    ingest_ready(&mut stack.gateway_client().await.unwrap(), "", corpus()).await;
    stack.text.stop().await.unwrap();

    let r = search(
        &stack,
        "how should I prepare for a long distance running race",
        SearchMode::Hybrid,
    )
    .await;
    assert!(r.degraded);
    assert_eq!(r.degraded_reasons.len(), 1);
    assert!(
        r.degraded_reasons[0].starts_with("text leg failed"),
        "{:?}",
        r.degraded_reasons
    );
    assert_eq!(top(&r), "marathon", "{r:#?}");
    assert!(
        r.hits
            .iter()
            .all(|h| h.text_score.is_none() && h.vector_score.is_some())
    );

    // Asking for the text leg alone now fails outright.
    let err = search_with(
        &stack,
        SearchRequest {
            query: "marathon".into(),
            mode: SearchMode::Text as i32,
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");

    // The gateway still reports SERVING: the vector leg can answer.
    use tonic_health::pb::health_check_response::ServingStatus;
    assert_eq!(
        stack.gateway.health("braid.v1.Gateway").await,
        Some(ServingStatus::Serving)
    );
    stack.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tenants_are_isolated_in_both_legs() {
    let stack = Stack::start().await.unwrap();
    let mut gw = stack.gateway_client().await.unwrap();
    ingest_ready(&mut gw, "acme", vec![corpus().remove(0)]).await;
    ingest_ready(&mut gw, "globex", vec![corpus().remove(1)]).await;
    for mode in [SearchMode::Vector, SearchMode::Text, SearchMode::Hybrid] {
        let r = search_with(
            &stack,
            SearchRequest {
                tenant: "acme".into(),
                query: "sourdough bread starter pgvector".into(),
                mode: mode as i32,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert!(
            r.hits.iter().all(|h| h.external_id == "pgvector"),
            "{mode:?}: {r:#?}"
        );
        assert!(!r.hits.is_empty());
    }
    let err = gw
        .get_document(GetDocumentRequest {
            tenant: "acme".into(),
            external_id: "sourdough".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    stack.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_is_rejected_with_the_field_and_the_limit() {
    let mut options = braid_tests::StackOptions::default();
    options.ingest.limits.max_document_bytes = 2_000;
    let stack = Stack::start_with(options).await.unwrap();
    let mut gw = stack.gateway_client().await.unwrap();

    // One oversized and one valid document: the valid one is indexed, the other reported.
    let oversized = doc("big", "word ".repeat(1_000))
        .title("Big")
        .meta("topic", "x");
    let valid = corpus().remove(2);
    let r = Ingest::new(vec![oversized, valid])
        .send(&mut gw)
        .await
        .unwrap();
    assert_eq!(r.results[0].error_code, Code::InvalidArgument as i32);
    assert!(
        r.results[0].error.contains("documents[0]") && r.results[0].error.contains("at most 2000"),
        "{:?}",
        r.results[0]
    );
    assert_eq!(r.results[1].status, DocumentStatus::Ready as i32);

    // Every document rejected: the call fails with INVALID_ARGUMENT.
    let err = Ingest::new(vec![
        doc("pdf", "%PDF")
            .mime("application/pdf")
            .meta("topic", "x"),
    ])
    .no_wait()
    .send(&mut gw)
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("mime_type"), "{}", err.message());

    for (request, needle) in [
        (
            SearchRequest {
                query: "x".into(),
                top_k: 10_000,
                ..Default::default()
            },
            "top_k: 10000 is out of range 1..=100",
        ),
        (
            SearchRequest {
                query: "  ".into(),
                ..Default::default()
            },
            "query: must not be empty",
        ),
        (
            SearchRequest {
                query: "x".repeat(5_000),
                ..Default::default()
            },
            "at most 2048",
        ),
        (
            SearchRequest {
                query: "x".into(),
                tenant: "no spaces".into(),
                ..Default::default()
            },
            "tenant",
        ),
    ] {
        let err = search_with(&stack, request).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(
            err.message().contains(needle),
            "{} does not mention {needle}",
            err.message()
        );
    }
    stack.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn health_reflection_and_metrics_on_every_service() {
    use braid_proto::service_names as n;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let stack = Stack::start().await.unwrap();
    let names = [
        n::GATEWAY,
        n::INGEST,
        n::EMBEDDING,
        n::VECTOR_SEARCH,
        n::TEXT_SEARCH,
    ];
    for (service, name) in stack.services().into_iter().zip(names) {
        use tonic_health::pb::health_check_response::ServingStatus;
        assert_eq!(
            service.health(name).await,
            Some(ServingStatus::Serving),
            "{name}"
        );
        assert_eq!(
            service.health("").await,
            Some(ServingStatus::Serving),
            "{name} overall"
        );

        // Internal services need a service credential for reflection too.
        let mut reflection = ServerReflectionClient::new(braid_tests::service_channel(service));
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut stream = reflection
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        let listed = match stream.message().await.unwrap().unwrap().message_response {
            Some(MessageResponse::ListServicesResponse(l)) => {
                l.service.into_iter().map(|s| s.name).collect::<Vec<_>>()
            }
            other => panic!("unexpected reflection response {other:?}"),
        };
        assert!(listed.iter().any(|s| s == name), "{name} not in {listed:?}");
        // Internal services also serve the status RPC the gateway's status view calls.
        let internal = name != n::GATEWAY;
        assert_eq!(
            listed.iter().any(|s| s == n::SERVICE_STATUS),
            internal,
            "{name}: {listed:?}"
        );
        let foreign = listed
            .iter()
            .filter(|s| s.starts_with("braid.") && *s != name && *s != n::SERVICE_STATUS)
            .count();
        assert_eq!(
            foreign, 0,
            "{name} advertises services it does not serve: {listed:?}"
        );
        assert!(
            listed.iter().any(|s| s == "grpc.health.v1.Health"),
            "{listed:?}"
        );

        let (status, body) = http_get(service.admin, "/metrics").await.unwrap();
        assert!(status.contains("200"), "{status}");
        assert!(body.contains("braid_grpc_requests_total"), "{name}: {body}");
        let (status, _) = http_get(service.admin, "/healthz").await.unwrap();
        assert!(status.contains("200"), "{status}");
    }
    stack.shutdown().await.unwrap();
}
