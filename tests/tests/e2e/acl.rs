//! Document ACLs end to end: documents ingested with ACLs through the gateway reach both
//! search legs with them, and each leg applies the caller's access inside its own query, so
//! `top_k` is filled with visible hits even when invisible ones match better. Changing only a
//! document's ACL re-indexes it. Real PostgreSQL + pgvector, Tantivy and the real model.

use std::collections::BTreeSet;

use braid_proto::tonic::Code;
use braid_tests::v1::ingest_service_client::IngestServiceClient;
use braid_tests::v1::{
    AccessFilter, DocumentAcl, DocumentInput, DocumentStatus, EmbedRequest, GetDocumentRequest,
    IngestResponse, InputType, LegSearchRequest,
};
use braid_tests::{DocumentInputExt, Ingest, Service, Stack, acl, doc};

const QUERY: &str = "volcano eruption lava";

fn access(clearance: u32, groups: &[&str]) -> Option<AccessFilter> {
    Some(AccessFilter {
        clearance,
        groups: groups.iter().map(|g| g.to_string()).collect(),
        unrestricted: false,
    })
}

fn unrestricted() -> Option<AccessFilter> {
    Some(AccessFilter {
        unrestricted: true,
        ..Default::default()
    })
}

/// 20 restricted reports that match the query far better than the 5 public diaries, plus one
/// document needing clearance 2 and one for the physics group.
fn corpus() -> Vec<DocumentInput> {
    let mut docs = Vec::new();
    for i in 0..20 {
        docs.push(
            doc(
                format!("secret{i:02}"),
                format!(
                    "Volcano report {i}: the volcano eruption sent lava down the slope; lava and \
                     ash from the eruption covered the volcano's flanks at survey site {i}."
                ),
            )
            .acl(acl(3, &["astro", "geo"])),
        );
    }
    let places = ["Lisbon", "Kyoto", "Oslo", "Lima", "Cairo"];
    for (i, place) in places.iter().enumerate() {
        docs.push(doc(
            format!("public{i}"),
            format!(
                "Travel diary from {place}: we visited museums, tried the street food, walked by \
                 the harbour and, on the last day, saw an old volcano from the train window."
            ),
        ));
    }
    docs.push(
        doc(
            "cleared2",
            "Budget memo: the observatory near the volcano needs new seismometers next year.",
        )
        .acl(acl(2, &[])),
    );
    docs.push(
        doc(
            "physics",
            "Physics seminar notes: gas pressure inside a volcano and the viscosity of magma.",
        )
        .acl(acl(0, &["physics"])),
    );
    docs
}

fn assert_all_ready(r: &IngestResponse) {
    for d in &r.results {
        assert_eq!(d.error, "", "{d:?}");
        assert_eq!(d.status, DocumentStatus::Ready as i32, "{d:?}");
    }
}

async fn query_embedding(stack: &Stack) -> Vec<f32> {
    let mut client = stack.embedding_client();
    let r = client
        .embed(EmbedRequest {
            texts: vec![QUERY.into()],
            input_type: InputType::Query as i32,
        })
        .await
        .unwrap()
        .into_inner();
    r.embeddings[0].values.clone()
}

/// External ids of a leg's hits, as a set (asserting there were no duplicates).
fn ids(hits: &[braid_tests::v1::ChunkHit]) -> BTreeSet<String> {
    let set: BTreeSet<String> = hits.iter().map(|h| h.external_id.clone()).collect();
    assert_eq!(set.len(), hits.len(), "one chunk per document");
    set
}

/// Both legs' hits for `QUERY` with `access`.
async fn both_legs(
    stack: &Stack,
    embedding: &[f32],
    top_k: u32,
    access: Option<AccessFilter>,
) -> (BTreeSet<String>, BTreeSet<String>) {
    let request = LegSearchRequest {
        tenant: "default".into(),
        top_k,
        query: QUERY.into(),
        embedding: embedding.to_vec(),
        access,
        ..Default::default()
    };
    let vector = stack
        .vector_client()
        .search(request.clone())
        .await
        .unwrap()
        .into_inner()
        .hits;
    let text = stack
        .text_client()
        .search(request)
        .await
        .unwrap()
        .into_inner()
        .hits;
    (ids(&vector), ids(&text))
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

fn public() -> Vec<&'static str> {
    vec!["public0", "public1", "public2", "public3", "public4"]
}

async fn get_acl(ingest: &Service, external_id: &str) -> (DocumentAcl, u64) {
    let d = IngestServiceClient::new(braid_tests::service_channel(ingest))
        .get_document(GetDocumentRequest {
            tenant: String::new(),
            document_id: String::new(),
            external_id: external_id.into(),
        })
        .await
        .unwrap()
        .into_inner();
    (d.acl.expect("GetDocument returns the ACL"), d.version)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn both_legs_apply_document_acls_inside_their_queries() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let mut gw = stack.gateway_client().await?;
    assert_all_ready(&Ingest::new(corpus()).send(&mut gw).await?);
    let embedding = query_embedding(&stack).await;

    // Restricted documents are the best matches in both legs, for a caller who may see them.
    let (vector, text) = both_legs(&stack, &embedding, 5, unrestricted()).await;
    for (leg, hits) in [("vector", &vector), ("text", &text)] {
        assert_eq!(hits.len(), 5, "{leg}: {hits:?}");
        assert!(
            !hits.iter().any(|h| h.starts_with("public")),
            "{leg}: {hits:?}"
        );
    }

    // Clearance 1, another group: top_k = 5 is filled with exactly the 5 public documents.
    let (vector, text) = both_legs(&stack, &embedding, 5, access(1, &["biology"])).await;
    assert_eq!(vector, set(&public()), "vector leg");
    assert_eq!(text, set(&public()), "text leg");

    // An unset AccessFilter is public documents only (fail closed).
    let (vector, text) = both_legs(&stack, &embedding, 10, None).await;
    assert_eq!(vector, set(&public()), "vector leg");
    assert_eq!(text, set(&public()), "text leg");

    // Clearance at the document's level admits it; a shared group admits the group's document.
    let mut visible = public();
    visible.extend(["cleared2", "physics"]);
    let (vector, text) = both_legs(&stack, &embedding, 10, access(2, &["physics"])).await;
    assert_eq!(vector, set(&visible), "vector leg");
    assert_eq!(text, set(&visible), "text leg");
    let mut visible = public();
    visible.push("physics");
    let (vector, text) = both_legs(&stack, &embedding, 10, access(0, &["physics"])).await;
    assert_eq!(vector, set(&visible), "vector leg");
    assert_eq!(text, set(&visible), "text leg");

    // GetDocument returns the stored (normalised) ACL.
    let (secret_acl, _) = get_acl(&stack.ingest, "secret07").await;
    assert_eq!(Some(secret_acl), acl(3, &["astro", "geo"]));

    // Changing only the ACL re-indexes through the outbox, and both legs apply the new one.
    let (_, version_before) = get_acl(&stack.ingest, "cleared2").await;
    let mut changed: Vec<DocumentInput> = corpus()
        .into_iter()
        .filter(|d| d.external_id == "cleared2" || d.external_id == "physics")
        .collect();
    changed[0].acl = None; // cleared2: now public
    changed[1].acl = acl(5, &["physics"]); // physics: now also needs clearance 5
    let r = Ingest::new(changed).send(&mut gw).await?;
    assert_all_ready(&r);
    assert!(r.results.iter().all(|d| !d.unchanged), "{r:?}");
    let (cleared_acl, version_after) = get_acl(&stack.ingest, "cleared2").await;
    assert_eq!(Some(cleared_acl), acl(0, &[]));
    assert_eq!(version_after, version_before + 1);
    let mut visible = public();
    visible.push("cleared2");
    let (vector, text) = both_legs(&stack, &embedding, 10, access(2, &["physics"])).await;
    assert_eq!(vector, set(&visible), "vector leg");
    assert_eq!(text, set(&visible), "text leg");

    stack.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bad_acl_rejects_only_its_document() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let r = Ingest::new(vec![
        doc("good", "A public note about rivers."),
        doc("bad", "A note with a broken ACL.").acl(acl(0, &["staff", "bad\u{7}group"])),
        doc("high", "A note needing too much clearance.").acl(acl(1001, &[])),
    ])
    .no_wait()
    .send(&mut stack.gateway_client().await?)
    .await?;
    assert_eq!(r.results[0].error, "", "{r:?}");
    assert!(!r.results[0].document_id.is_empty());
    assert_eq!(r.results[1].error_code, Code::InvalidArgument as i32);
    assert!(
        r.results[1]
            .error
            .starts_with("documents[1].acl.groups[1]: must not contain control characters"),
        "{}",
        r.results[1].error
    );
    assert!(
        r.results[2]
            .error
            .starts_with("documents[2].acl.clearance: 1001, at most 1000"),
        "{}",
        r.results[2].error
    );
    stack.shutdown().await
}
