//! The contract's cases and the helpers they share; each runs against one fresh backend.

use std::collections::HashMap;

use braid_core::auth::Access;
use braid_proto::v1::{Chunk, DocumentAcl, FilterClause, MetadataFilter, filter_clause};
use braid_text_search::TextQuery;

use super::Backend;

pub fn chunk(doc: &str, ordinal: u32, title: &str, text: &str) -> Chunk {
    Chunk {
        chunk_id: format!("{doc}:{ordinal}"),
        document_id: doc.into(),
        tenant: "t".into(),
        external_id: format!("ext-{doc}"),
        title: title.into(),
        text: text.into(),
        ordinal,
        metadata: HashMap::new(),
        acl: None,
    }
}

pub fn query(text: &str) -> TextQuery {
    TextQuery {
        tenant: "t".into(),
        query: text.into(),
        top_k: 10,
        filter: Default::default(),
        min_score: None,
        access: Access::unrestricted(),
        detail: 0,
        chunk_level: false,
    }
}

pub async fn put(b: &Backend, doc: &str, chunks: Vec<Chunk>) {
    b.index.replace_document("t", doc, chunks).await.unwrap();
}

pub async fn doc_ids(b: &Backend, q: TextQuery) -> Vec<String> {
    let mut ids: Vec<String> = b
        .index
        .search(q)
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.document_id)
        .collect();
    ids.sort();
    ids
}

pub async fn replace_search_and_delete(b: Backend) {
    put(
        &b,
        "d1",
        vec![chunk(
            "d1",
            0,
            "Rust",
            "ownership and borrowing in Rust programs",
        )],
    )
    .await;
    put(
        &b,
        "d2",
        vec![chunk("d2", 0, "Gardening", "tomatoes need sun and water")],
    )
    .await;
    let mut other = chunk("d3", 0, "Rust", "borrowing rules");
    other.tenant = "u".into();
    b.index
        .replace_document("u", "d3", vec![other])
        .await
        .unwrap();

    // Visible on return; stemming (borrowed ~ borrowing); the other tenant is not seen.
    let hits = b.index.search(query("borrowed")).await.unwrap();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(
        (hits[0].document_id.as_str(), hits[0].chunk_id.as_str()),
        ("d1", "d1:0")
    );
    assert_eq!(hits[0].external_id, "ext-d1");
    assert!(hits[0].snippet.contains("<b>borrowing</b>"), "{hits:?}");
    assert!(hits[0].score > 0.0);

    // A replace swaps every chunk: nothing of the old text, fewer chunks, none left over.
    put(
        &b,
        "d1",
        vec![
            chunk("d1", 0, "Rust", "lifetimes"),
            chunk("d1", 1, "Rust", "traits"),
        ],
    )
    .await;
    put(&b, "d1", vec![chunk("d1", 0, "Rust", "lifetimes")]).await;
    assert!(b.index.search(query("borrowing")).await.unwrap().is_empty());
    assert!(b.index.search(query("traits")).await.unwrap().is_empty());
    assert_eq!(b.index.search(query("lifetimes")).await.unwrap().len(), 1);
    let listed = b.admin.document_chunks("t", "d1").await.unwrap();
    assert_eq!(listed, [("d1:0".to_string(), "lifetimes".to_string())]);

    assert_eq!(b.index.delete_document("t", "d1").await.unwrap(), 1);
    assert!(b.index.search(query("lifetimes")).await.unwrap().is_empty());
    assert_eq!(b.index.delete_document("t", "d1").await.unwrap(), 0);
    assert!(b.admin.document_chunks("t", "d1").await.unwrap().is_empty());
}

pub async fn user_text_is_never_query_syntax(b: Backend) {
    put(
        &b,
        "d1",
        vec![chunk(
            "d1",
            0,
            "Notes",
            "notes on title rust and the e-mail policy",
        )],
    )
    .await;
    put(
        &b,
        "d2",
        vec![chunk("d2", 0, "Other", "nothing relevant here")],
    )
    .await;
    for (q, hits) in [
        ("title:rust", 1),
        ("body:nothing", 1),
        ("-rust", 1),
        ("policy^", 1),
        ("[a TO z]", 0),
        ("\"e-mail", 1),
        ("(((", 0),
        ("*", 0),
        ("AND OR NOT", 0),
        ("日本語 🦀", 0),
    ] {
        let found = b.index.search(query(q)).await.unwrap();
        assert_eq!(found.len(), hits, "{q}: {found:?}");
    }
}

pub fn metadata(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub async fn every_filter_operator(b: Backend) {
    let docs = [
        (
            "a",
            metadata(&[("lang", "en"), ("year", "2019"), ("at", "2024-05-01")]),
        ),
        (
            "b",
            metadata(&[("lang", "de"), ("year", "2021"), ("draft", "true")]),
        ),
        (
            "c",
            metadata(&[
                ("lang", "fr"),
                ("year", "2015"),
                ("at", "2023-01-01T10:00:00Z"),
            ]),
        ),
        ("d", metadata(&[])),
    ];
    for (id, m) in docs {
        let mut c = chunk(id, 0, "", "solar panels");
        c.metadata = m;
        put(&b, id, vec![c]).await;
    }
    use filter_clause::Op;
    let run = |clauses: Vec<FilterClause>| {
        let b = b.clone();
        async move {
            let mut q = query("solar");
            q.filter = braid_core::filter::parse(Some(&MetadataFilter {
                equals: HashMap::new(),
                clauses,
            }))
            .unwrap();
            doc_ids(&b, q).await
        }
    };
    let c = |key: &str, op: Op, not: bool| FilterClause {
        key: key.into(),
        op: Some(op),
        not,
    };
    let list = |v: &[&str]| braid_proto::v1::StringList {
        values: v.iter().map(|s| s.to_string()).collect(),
    };
    assert_eq!(
        run(vec![c("lang", Op::Eq("en".into()), false)]).await,
        ["a"]
    );
    assert_eq!(
        run(vec![c("lang", Op::In(list(&["de", "fr"])), false)]).await,
        ["b", "c"]
    );
    // Negated: documents without the key pass.
    assert_eq!(
        run(vec![c("lang", Op::Eq("en".into()), true)]).await,
        ["b", "c", "d"]
    );
    assert_eq!(run(vec![c("draft", Op::Exists(true), false)]).await, ["b"]);
    assert_eq!(
        run(vec![c("draft", Op::Exists(false), false)]).await,
        ["a", "c", "d"]
    );
    let years = braid_proto::v1::NumberRange {
        gte: Some(2019.0),
        lt: Some(2021.0),
        ..Default::default()
    };
    assert_eq!(
        run(vec![c("year", Op::NumberRange(years), false)]).await,
        ["a"]
    );
    let open = braid_proto::v1::NumberRange {
        gt: Some(2015.0),
        ..Default::default()
    };
    assert_eq!(
        run(vec![c("year", Op::NumberRange(open), false)]).await,
        ["a", "b"]
    );
    let dates = braid_proto::v1::DateRange {
        gte: "2024-01-01".into(),
        ..Default::default()
    };
    assert_eq!(run(vec![c("at", Op::DateRange(dates), false)]).await, ["a"]);
    let before = braid_proto::v1::DateRange {
        lt: "2023-01-01T10:00:01Z".into(),
        ..Default::default()
    };
    assert_eq!(
        run(vec![c("at", Op::DateRange(before), false)]).await,
        ["c"]
    );
    // Clauses AND together.
    let years = braid_proto::v1::NumberRange {
        lte: Some(2021.0),
        ..Default::default()
    };
    assert_eq!(
        run(vec![
            c("year", Op::NumberRange(years), false),
            c("lang", Op::Eq("de".into()), true),
        ])
        .await,
        ["a", "c"]
    );
}

pub fn access(clearance: u32, groups: &[&str]) -> Access {
    Access {
        tenant: None,
        clearance,
        groups: groups.iter().map(|g| g.to_string()).collect(),
        unrestricted: false,
    }
}

pub async fn acl_inside_the_query(b: Backend) {
    let acl = |clearance, groups: &[&str]| {
        Some(DocumentAcl {
            clearance,
            groups: groups.iter().map(|g| g.to_string()).collect(),
        })
    };
    for (id, a) in [
        ("public", None),
        ("c2", acl(2, &[])),
        ("c3", acl(3, &[])),
        ("physics", acl(0, &["physics"])),
        ("physics-or-chem-c2", acl(2, &["physics", "chem"])),
    ] {
        let mut c = chunk(id, 0, "", "neutron stars");
        c.acl = a;
        put(&b, id, vec![c]).await;
    }
    let ids = |a: Access| {
        let mut q = query("neutron");
        q.access = a;
        doc_ids(&b, q)
    };
    assert_eq!(ids(access(1, &[])).await, ["public"]);
    assert_eq!(ids(access(2, &[])).await, ["c2", "public"]);
    assert_eq!(ids(access(0, &["physics"])).await, ["physics", "public"]);
    assert_eq!(
        ids(access(2, &["chem"])).await,
        ["c2", "physics-or-chem-c2", "public"]
    );
    assert_eq!(ids(access(5, &["biology"])).await, ["c2", "c3", "public"]);
    assert_eq!(ids(Access::unrestricted()).await.len(), 5);
    assert_eq!(
        ids(braid_core::auth::access_from_filter(None)).await,
        ["public"]
    );

    // top_k counts only visible documents.
    for i in 0..12 {
        let id = format!("secret{i:02}");
        let mut c = chunk(&id, 0, "neutron", "neutron neutron neutron");
        c.acl = acl(9, &["astro"]);
        put(&b, &id, vec![c]).await;
    }
    let mut q = query("neutron");
    q.top_k = 2;
    q.access = access(1, &[]);
    assert_eq!(doc_ids(&b, q).await, ["public"]);
}

pub async fn documents_rank_on_their_whole_text(b: Backend) {
    // `long`: the two query words in different chunks; `short`: one word in a tiny chunk.
    put(
        &b,
        "long",
        vec![
            chunk(
                "long",
                0,
                "",
                "quasar jets seen from far away in the survey",
            ),
            chunk("long", 1, "", "away in the survey a bright magnetar flared"),
        ],
    )
    .await;
    put(&b, "short", vec![chunk("short", 0, "", "quasar")]).await;
    let hits = b.index.search(query("quasar magnetar")).await.unwrap();
    let docs: Vec<&str> = hits.iter().map(|h| h.document_id.as_str()).collect();
    assert_eq!(docs, ["long", "short"], "one hit per document: {hits:?}");
    assert!(hits[0].snippet.contains("<b>"), "{hits:?}");
    assert!(hits[0].score > hits[1].score);

    let mut q = query("quasar magnetar");
    q.chunk_level = true;
    // Chunk level: each matching chunk on its own, best first. (Which chunk wins depends on
    // collection statistics the two engines keep differently, so only the set is fixed.)
    let chunks = b.index.search(q).await.unwrap();
    let mut ids: Vec<&str> = chunks.iter().map(|h| h.chunk_id.as_str()).collect();
    assert!(
        chunks.windows(2).all(|w| w[0].score >= w[1].score),
        "{chunks:?}"
    );
    ids.sort();
    assert_eq!(ids, ["long:0", "long:1", "short:0"], "{chunks:?}");

    // min_score cuts on the document's score.
    let mut q = query("quasar magnetar");
    q.min_score = Some((hits[0].score + hits[1].score) / 2.0);
    assert_eq!(doc_ids(&b, q).await, ["long"]);
}

pub async fn detail_hits_and_fetch(b: Backend) {
    for (i, words) in ["comet comet comet tail", "comet comet orbit", "comet dust"]
        .iter()
        .enumerate()
    {
        let d = format!("d{i}");
        put(&b, &d, vec![chunk(&d, 0, "", words)]).await;
    }
    let mut q = query("comet");
    q.detail = 1;
    let hits = b.index.search(q).await.unwrap();
    assert_eq!(hits.len(), 3);
    assert_eq!(hits[0].text, "comet comet comet tail");
    assert!(hits[0].snippet.contains("<b>comet</b>"), "{hits:?}");
    for h in &hits[1..] {
        assert!(h.text.is_empty() && h.snippet.is_empty(), "{h:?}");
    }
    let wanted = vec![
        hits[2].chunk_id.clone(),
        "nope".into(),
        hits[1].chunk_id.clone(),
    ];
    let fetched = b.index.fetch("t", "comet", wanted.clone()).await.unwrap();
    assert_eq!(fetched.len(), 2, "{fetched:?}");
    assert_eq!(fetched[0].chunk_id, wanted[0]);
    assert_eq!(fetched[1].chunk_id, wanted[2]);
    assert!(
        fetched
            .iter()
            .all(|h| h.snippet.contains("<b>comet</b>") && !h.text.is_empty())
    );
    // Another tenant's fetch finds nothing.
    assert!(
        b.index
            .fetch("u", "comet", wanted)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn rebuild_switches_and_keeps_live_writes(b: Backend) {
    put(&b, "a", vec![chunk("a", 0, "", "old text alpha")]).await;
    let old = b.admin.status("").await.unwrap().index_id;
    assert!(!old.is_empty());
    let rb = b.admin.rebuild_start("idx-recorded").await.unwrap();
    assert_eq!(
        b.admin.status(&old).await.unwrap().rebuild.map(|r| r.0),
        Some(rb.clone())
    );
    // A live write during the rebuild wins over the rebuild's older copy.
    put(&b, "a", vec![chunk("a", 0, "", "new text beta")]).await;
    let (written, skipped) = b
        .admin
        .rebuild_write(
            &rb,
            vec![
                (
                    "t".into(),
                    "a".into(),
                    vec![chunk("a", 0, "", "old text alpha")],
                ),
                ("t".into(), "b".into(), vec![chunk("b", 0, "", "gamma")]),
            ],
        )
        .await
        .unwrap();
    assert_eq!((written, skipped), (1, 1));
    assert!(
        b.index.search(query("gamma")).await.unwrap().is_empty(),
        "not switched yet"
    );
    let new = b.admin.rebuild_finish(&rb).await.unwrap();
    assert_ne!(new, old);
    assert_eq!(b.index.search(query("gamma")).await.unwrap().len(), 1);
    assert_eq!(b.index.search(query("beta")).await.unwrap().len(), 1);
    assert!(b.index.search(query("alpha")).await.unwrap().is_empty());
    let status = b.admin.status(&old).await.unwrap();
    assert_eq!(
        (status.index_id.as_str(), status.fault.as_deref()),
        (new.as_str(), None)
    );
    assert!(
        b.admin
            .status("idx-recorded")
            .await
            .unwrap()
            .fault
            .is_none()
    );
    // An index ingest never wrote to is a fault: searches are refused.
    assert!(b.admin.status("idx-unknown").await.unwrap().fault.is_some());
    assert!(b.index.search(query("gamma")).await.is_err());
    assert!(
        b.admin.rebuild_write(&rb, Vec::new()).await.is_err(),
        "finished: gone"
    );
}

pub async fn a_live_delete_during_a_rebuild_is_not_undone(b: Backend) {
    put(&b, "a", vec![chunk("a", 0, "", "zebra stripes")]).await;
    put(&b, "b", vec![chunk("b", 0, "", "zebra crossing")]).await;
    let rb = b.admin.rebuild_start("").await.unwrap();
    assert_eq!(b.index.delete_document("t", "a").await.unwrap(), 1);
    // The rebuild read both documents before the delete: its copy of `a` is older, skipped.
    let (written, skipped) = b
        .admin
        .rebuild_write(
            &rb,
            vec![
                (
                    "t".into(),
                    "a".into(),
                    vec![chunk("a", 0, "", "zebra stripes")],
                ),
                (
                    "t".into(),
                    "b".into(),
                    vec![chunk("b", 0, "", "zebra crossing")],
                ),
            ],
        )
        .await
        .unwrap();
    assert_eq!((written, skipped), (1, 1));
    b.admin.rebuild_finish(&rb).await.unwrap();
    assert_eq!(doc_ids(&b, query("zebra")).await, ["b"]);
    assert!(b.admin.document_chunks("t", "a").await.unwrap().is_empty());
    // Deleted, not barred: it can come back.
    put(&b, "a", vec![chunk("a", 0, "", "zebra again")]).await;
    assert_eq!(doc_ids(&b, query("zebra")).await, ["a", "b"]);
}

pub async fn concurrent_writes_are_each_searchable_on_return(b: Backend) {
    let tasks: Vec<_> = (0..24)
        .map(|i| {
            let b = b.clone();
            tokio::spawn(async move {
                let (id, word) = (format!("w{i}"), format!("marker{i}q"));
                put(&b, &id, vec![chunk(&id, 0, "", &format!("entry {word}"))]).await;
                let hits = b.index.search(query(&word)).await.unwrap();
                assert_eq!(hits.len(), 1, "{word} not searchable on return: {hits:?}");
                assert_eq!(b.index.delete_document("t", &id).await.unwrap(), 1);
                let hits = b.index.search(query(&word)).await.unwrap();
                assert!(
                    hits.is_empty(),
                    "{word} still found after its delete: {hits:?}"
                );
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

/// (document id, score bits) of every hit of `tenant` for `text`, in rank order.
async fn tenant_scores(
    b: &Backend,
    tenant: &str,
    text: &str,
    chunk_level: bool,
) -> Vec<(String, u32)> {
    let mut q = query(text);
    q.tenant = tenant.into();
    q.chunk_level = chunk_level;
    b.index
        .search(q)
        .await
        .unwrap()
        .into_iter()
        .map(|h| (h.chunk_id, h.score.to_bits()))
        .collect()
}

fn tenant_chunk(tenant: &str, doc: &str, text: &str) -> Chunk {
    Chunk {
        tenant: tenant.into(),
        ..chunk(doc, 0, "Field notes", text)
    }
}

/// Per-tenant statistics (issue 23 item 2): another tenant's writes with the same terms never
/// move a tenant's scores, document or chunk level, so scores reveal nothing of another
/// tenant's documents. A backend without them (Elasticsearch's `shared` layout, documented
/// as such) must show the leak, so the case proves it measures what it claims.
pub async fn another_tenants_writes_never_move_scores(b: Backend) {
    let text = "volcano lava eruption";
    for (doc, content) in [
        (
            "a-volcano",
            "The volcano woke at dawn: an eruption sent lava down the slope.",
        ),
        (
            "a-harbour",
            "Fishing boats in the harbour and a quiet market.",
        ),
        ("a-lava", "Cooled lava fields make poor farmland."),
    ] {
        let chunks = vec![tenant_chunk("acme", doc, content)];
        b.index.replace_document("acme", doc, chunks).await.unwrap();
    }
    let docs = tenant_scores(&b, "acme", text, false).await;
    let chunks = tenant_scores(&b, "acme", text, true).await;
    assert_eq!(docs.len(), 2, "{docs:?}");
    // A tenant with no document at all: no hits, not an error.
    assert!(tenant_scores(&b, "nobody", text, false).await.is_empty());

    for i in 0..40 {
        let doc = format!("b-{i:02}");
        let content = format!("Volcano survey {i}: lava, lava and more lava after the eruption.");
        let chunks = vec![tenant_chunk("beta", &doc, &content)];
        b.index
            .replace_document("beta", &doc, chunks)
            .await
            .unwrap();
    }
    assert_eq!(tenant_scores(&b, "beta", text, false).await.len(), 10);
    let after = (
        tenant_scores(&b, "acme", text, false).await,
        tenant_scores(&b, "acme", text, true).await,
    );
    if b.tenant_statistics {
        assert_eq!(after, (docs, chunks), "acme's scores moved when beta wrote");
    } else {
        assert_ne!(
            after.0, docs,
            "shared statistics: beta's writes move acme's scores"
        );
    }
}
