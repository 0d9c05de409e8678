//! "Why not this document?" end to end (issue 25 item 3), through the gateway with user
//! tokens, the real model, PostgreSQL + pgvector and Tantivy: `SearchRequest.why` says where
//! one document stood — in both legs, removed by a filter clause, cut by `min_score` — and a
//! document the caller may not read gets exactly the answer of one that does not exist.

use std::collections::HashMap;

use braid_tests::v1::gateway_client::GatewayClient;
use braid_tests::v1::{
    DocumentAcl, DocumentWhy, MetadataFilter, SearchMode, SearchRequest, SearchResponse, WhyRequest,
};
use braid_tests::{DocumentInputExt, Ingest, Stack, Users, as_user, doc};
use tonic::transport::Channel;

const QUERY: &str = "volcano lava eruption";

fn by_external(id: &str) -> Option<WhyRequest> {
    Some(WhyRequest {
        external_id: id.into(),
        ..Default::default()
    })
}

async fn search(gw: &mut GatewayClient<Channel>, token: &str, r: SearchRequest) -> SearchResponse {
    gw.search(as_user(
        SearchRequest {
            query: QUERY.into(),
            top_k: 10,
            mode: SearchMode::Hybrid as i32,
            ..r
        },
        token,
    ))
    .await
    .expect("search")
    .into_inner()
}

async fn why(gw: &mut GatewayClient<Channel>, token: &str, r: SearchRequest) -> DocumentWhy {
    let response = search(gw, token, r).await;
    assert!(!response.degraded, "{response:?}");
    response.why.expect("a why answer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn why_not_this_document() {
    let users = Users::new("why-not-test-secret-of-32-bytes-long!");
    let stack = Stack::start_with(users.stack_options()).await.unwrap();
    let mut gw = stack.gateway_client().await.unwrap();
    // An admin labels documents for groups it is not in.
    let loader = users.token_with_acl("loader", "acme", "admin", 0, &[]);
    let reader = users.token("rita", "acme", "reader");
    let insider = users.token_with_acl("ines", "acme", "reader", 3, &["geology"]);
    let secret_acl = Some(DocumentAcl {
        clearance: 3,
        groups: vec!["geology".into()],
    });
    let docs = vec![
        doc(
            "volcano",
            "The volcano woke at dawn: an eruption sent lava down the northern slope.",
        )
        .title("Field notes")
        .meta("lang", "en"),
        doc(
            "lava-fields",
            "Cooled lava fields after an old eruption make poor farmland.",
        )
        .title("Field notes")
        .meta("lang", "de"),
        doc(
            "harbour",
            "Fishing boats in the harbour and a quiet market.",
        )
        .title("Field notes")
        .meta("lang", "en"),
        doc(
            "secret",
            "Volcano eruption forecast: lava, lava and more lava from the volcano.",
        )
        .title("Field notes")
        .meta("lang", "en")
        .acl(secret_acl),
    ];
    let ids = Ingest::new(docs).as_user(&loader).accepted(&mut gw).await;
    let secret_id = ids[3].clone();

    // Present in both legs: each leg's rank and score, the fused rank, in the answer.
    let plain = search(&mut gw, &reader, SearchRequest::default()).await;
    let w = why(
        &mut gw,
        &reader,
        SearchRequest {
            why: by_external("volcano"),
            ..Default::default()
        },
    )
    .await;
    assert!(w.found && w.returned, "{w:?}");
    let at = plain
        .hits
        .iter()
        .position(|h| h.external_id == "volcano")
        .expect("volcano is a hit");
    assert_eq!(w.fused_rank as usize, at + 1, "{w:?}");
    assert_eq!(w.fused_score, plain.hits[at].score);
    assert_eq!(w.legs.len(), 2);
    for l in &w.legs {
        assert!(l.returned && l.rank >= 1, "{l:?}");
    }
    assert_eq!(Some(w.legs[0].score), plain.hits[at].vector_score);
    assert_eq!(Some(w.legs[1].rank), plain.hits[at].text_rank);
    let e = w.explanation.as_ref().expect("explanation");
    assert_eq!(e.legs.len(), 2);
    // The default fusion (LINEAR z-score) says how its score is formed.
    assert!(
        e.score_formula
            .starts_with("score = Phi(sum of contributions)"),
        "{e:?}"
    );
    assert!(w.failed_filter_clauses.is_empty(), "{w:?}");

    // Removed by a filter clause: which one, and neither leg had it as a candidate.
    let w = why(
        &mut gw,
        &reader,
        SearchRequest {
            filter: Some(MetadataFilter {
                equals: HashMap::from([("lang".to_string(), "en".to_string())]),
                ..Default::default()
            }),
            why: by_external("lava-fields"),
            ..Default::default()
        },
    )
    .await;
    assert!(w.found && !w.returned, "{w:?}");
    assert_eq!(w.failed_filter_clauses.len(), 1, "{w:?}");
    assert!(
        w.failed_filter_clauses[0].contains("lang") && w.failed_filter_clauses[0].contains("en"),
        "{w:?}"
    );
    assert!(w.legs.iter().all(|l| !l.returned), "{w:?}");
    assert_eq!(w.fused_rank, 0);
    assert!(w.reasons.iter().any(|r| r.contains("filter")), "{w:?}");

    // Below min_score: fused, but its score is under the threshold.
    let lava = plain
        .hits
        .iter()
        .position(|h| h.external_id == "lava-fields")
        .expect("lava-fields is a hit");
    let cut = plain.hits[lava].score + 1e-4;
    assert!(cut < plain.hits[0].score, "{plain:?}");
    let w = why(
        &mut gw,
        &reader,
        SearchRequest {
            min_score: Some(cut),
            why: by_external("lava-fields"),
            ..Default::default()
        },
    )
    .await;
    assert!(w.found && !w.returned, "{w:?}");
    assert!(w.fused_rank >= 1 && w.fused_score < cut, "{w:?}");
    assert!(w.legs.iter().any(|l| l.returned), "{w:?}");
    assert!(w.reasons.iter().any(|r| r.contains("min_score")), "{w:?}");

    // A document the caller may not read: exactly the answer of one that does not exist,
    // by external id and by document id alike.
    let hidden = why(
        &mut gw,
        &reader,
        SearchRequest {
            why: by_external("secret"),
            ..Default::default()
        },
    )
    .await;
    let missing = why(
        &mut gw,
        &reader,
        SearchRequest {
            why: by_external("no-such-document"),
            ..Default::default()
        },
    )
    .await;
    assert!(!hidden.found, "{hidden:?}");
    assert_eq!(hidden, missing);
    let hidden_by_id = why(
        &mut gw,
        &reader,
        SearchRequest {
            why: Some(WhyRequest {
                document_id: secret_id.clone(),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await;
    let missing_by_id = why(
        &mut gw,
        &reader,
        SearchRequest {
            why: Some(WhyRequest {
                document_id: "00000000-0000-4000-8000-000000000000".into(),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(hidden_by_id, missing_by_id);
    assert_eq!(hidden_by_id, missing);
    // Someone cleared for it gets the real answer.
    let w = why(
        &mut gw,
        &insider,
        SearchRequest {
            why: by_external("secret"),
            ..Default::default()
        },
    )
    .await;
    assert!(w.found && w.returned, "{w:?}");
    assert_eq!(w.document_id, secret_id);

    // `why` must name exactly one document.
    let e = gw
        .search(as_user(
            SearchRequest {
                query: QUERY.into(),
                why: Some(WhyRequest::default()),
                ..Default::default()
            },
            &reader,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().starts_with("why:"), "{}", e.message());
    stack.shutdown().await.unwrap();
}
