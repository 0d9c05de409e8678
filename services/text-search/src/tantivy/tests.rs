//! Unit tests of the Tantivy backend.

use std::collections::HashMap;

use braid_core::auth::Access;
use braid_proto::v1::DocumentAcl;
use tantivy::Term;
use tantivy::collector::TopDocs;
use tantivy::query::Query;
use tantivy::schema::{STORED, STRING, Schema};

use super::tenants::{Population, TenantStatistics};
use super::*;

fn chunk(tenant: &str, doc: &str, ordinal: u32, title: &str, text: &str) -> Chunk {
    Chunk {
        acl: None,
        chunk_id: format!("{doc}:{ordinal}"),
        document_id: doc.into(),
        tenant: tenant.into(),
        external_id: format!("ext-{doc}"),
        title: title.into(),
        text: text.into(),
        ordinal,
        metadata: HashMap::from([("lang".to_string(), "en".to_string())]),
    }
}

pub(super) fn query(tenant: &str, q: &str) -> TextQuery {
    TextQuery {
        tenant: tenant.into(),
        query: q.into(),
        top_k: 10,
        filter: braid_core::filter::Filter::default(),
        min_score: None,
        access: Access::unrestricted(),
        detail: 0,
        chunk_level: false,
    }
}

fn test_search() -> SearchConfig {
    SearchConfig {
        snippet_chars: 120,
        title_boost: 1.5,
        ..SearchConfig::default()
    }
}

fn test_config(dir: &std::path::Path) -> IndexConfig {
    IndexConfig {
        dir: dir.to_path_buf(),
        writer_memory_mb: 20,
        writer_threads: 1,
        ..IndexConfig::default()
    }
}

#[tokio::test]
async fn bm25_filters_replace_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let idx = TantivyIndex::open(&test_config(dir.path()), &test_search()).unwrap();
    idx.replace_document(
        "t1",
        "d1",
        vec![chunk(
            "t1",
            "d1",
            0,
            "Rust",
            "ownership and borrowing in Rust programs",
        )],
    )
    .await
    .unwrap();
    idx.replace_document(
        "t1",
        "d2",
        vec![chunk(
            "t1",
            "d2",
            0,
            "Gardening",
            "tomatoes need sun and water",
        )],
    )
    .await
    .unwrap();
    idx.replace_document(
        "t2",
        "d3",
        vec![chunk("t2", "d3", 0, "Rust", "borrowing rules")],
    )
    .await
    .unwrap();

    let hits = idx.search(query("t1", "borrowed")).await.unwrap();
    assert_eq!(
        hits.len(),
        1,
        "stemming matches borrowed ~ borrowing; tenant t2 excluded"
    );
    assert_eq!(hits[0].document_id, "d1");
    assert!(hits[0].snippet.contains("<b>"), "{}", hits[0].snippet);

    let mut q = query("t1", "tomatoes");
    q.filter = braid_core::filter::parse(Some(&braid_proto::v1::MetadataFilter {
        equals: HashMap::from([("lang".into(), "de".into())]),
        ..Default::default()
    }))
    .unwrap();
    assert!(
        idx.search(q).await.unwrap().is_empty(),
        "metadata filter applies"
    );

    // Replacing swaps the chunks; nothing of the old text remains.
    idx.replace_document("t1", "d1", vec![chunk("t1", "d1", 0, "Rust", "lifetimes")])
        .await
        .unwrap();
    assert!(
        idx.search(query("t1", "borrowing"))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(idx.search(query("t1", "lifetimes")).await.unwrap().len(), 1);

    assert_eq!(idx.delete_document("t1", "d1").await.unwrap(), 1);
    assert!(
        idx.search(query("t1", "lifetimes"))
            .await
            .unwrap()
            .is_empty()
    );
    // Odd query syntax is not an error.
    assert!(idx.search(query("t1", "\"unbalanced AND (")).await.is_ok());
}

fn acl(clearance: u32, groups: &[&str]) -> Option<DocumentAcl> {
    Some(DocumentAcl {
        clearance,
        groups: groups.iter().map(|g| g.to_string()).collect(),
    })
}

fn access(clearance: u32, groups: &[&str]) -> Access {
    Access {
        tenant: None,
        clearance,
        groups: groups.iter().map(|g| g.to_string()).collect(),
        unrestricted: false,
    }
}

async fn ids(idx: &TantivyIndex, text: &str, access: Access) -> Vec<String> {
    let mut q = query("t", text);
    q.access = access;
    let mut ids: Vec<String> = idx
        .search(q)
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.document_id)
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn access_applies_clearance_and_groups_inside_the_query() {
    let dir = tempfile::tempdir().unwrap();
    let idx = TantivyIndex::open(&test_config(dir.path()), &test_search()).unwrap();
    let docs = [
        ("public", None),
        ("c2", acl(2, &[])),
        ("c3", acl(3, &[])),
        ("physics", acl(0, &["physics"])),
        ("physics-or-chem-c2", acl(2, &["physics", "chem"])),
    ];
    for (id, a) in docs {
        let mut c = chunk("t", id, 0, "", "neutron stars");
        c.acl = a;
        idx.replace_document("t", id, vec![c]).await.unwrap();
    }
    // Clearance below, at and above the documents' levels; no groups.
    assert_eq!(ids(&idx, "neutron", access(1, &[])).await, ["public"]);
    assert_eq!(ids(&idx, "neutron", access(2, &[])).await, ["c2", "public"]);
    assert_eq!(
        ids(&idx, "neutron", access(3, &[])).await,
        ["c2", "c3", "public"]
    );
    // A shared group admits; another group does not; both rules must hold.
    assert_eq!(
        ids(&idx, "neutron", access(0, &["physics"])).await,
        ["physics", "public"]
    );
    assert_eq!(
        ids(&idx, "neutron", access(5, &["biology"])).await,
        ["c2", "c3", "public"]
    );
    assert_eq!(
        ids(&idx, "neutron", access(2, &["chem"])).await,
        ["c2", "physics-or-chem-c2", "public"]
    );
    // Unrestricted sees everything; an unset AccessFilter is public documents only.
    assert_eq!(ids(&idx, "neutron", Access::unrestricted()).await.len(), 5);
    assert_eq!(
        ids(&idx, "neutron", braid_core::auth::access_from_filter(None)).await,
        ["public"]
    );
}

#[tokio::test]
async fn a_caller_with_many_groups_is_filtered_like_one_with_few() {
    let dir = tempfile::tempdir().unwrap();
    let idx = TantivyIndex::open(&test_config(dir.path()), &test_search()).unwrap();
    for (id, a) in [
        ("physics", acl(0, &["physics"])),
        ("chem", acl(0, &["chem"])),
    ] {
        let mut c = chunk("t", id, 0, "", "neutron stars");
        c.acl = a;
        idx.replace_document("t", id, vec![c]).await.unwrap();
    }
    // Past `filter::FEW_TERMS` the groups are a term set instead of a union of terms.
    let mut many: Vec<String> = (0..40).map(|i| format!("g{i}")).collect();
    many.push("physics".into());
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert_eq!(ids(&idx, "neutron", access(0, &many)).await, ["physics"]);
    assert!(ids(&idx, "neutron", access(0, &many[..3])).await.is_empty());
    assert_eq!(
        ids(&idx, "neutron", access(0, &["g1", "chem"])).await,
        ["chem"]
    );
}

#[tokio::test]
async fn top_k_is_filled_with_visible_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let idx = TantivyIndex::open(&test_config(dir.path()), &test_search()).unwrap();
    // 20 restricted documents match the query far better than the 5 public ones.
    for i in 0..20 {
        let id = format!("secret{i:02}");
        let mut c = chunk("t", &id, 0, "quasar", "quasar quasar quasar jets");
        c.acl = acl(3, &["astro"]);
        idx.replace_document("t", &id, vec![c]).await.unwrap();
    }
    for i in 0..5 {
        let id = format!("public{i}");
        let c = chunk(
            "t",
            &id,
            0,
            "",
            &format!("a long note {i} that mentions a quasar once among many other words"),
        );
        idx.replace_document("t", &id, vec![c]).await.unwrap();
    }
    let mut q = query("t", "quasar");
    q.top_k = 5;
    q.access = access(1, &["physics"]);
    let hits = idx.search(q.clone()).await.unwrap();
    let mut got: Vec<&str> = hits.iter().map(|h| h.document_id.as_str()).collect();
    got.sort();
    assert_eq!(got, ["public0", "public1", "public2", "public3", "public4"]);
    q.access = Access::unrestricted();
    let hits = idx.search(q).await.unwrap();
    assert!(
        hits.iter().all(|h| h.document_id.starts_with("secret")),
        "the restricted documents do rank first for a caller who may see them"
    );
}

#[tokio::test]
async fn query_syntax_typed_by_a_user_is_just_text() {
    let dir = tempfile::tempdir().unwrap();
    let idx = TantivyIndex::open(&test_config(dir.path()), &test_search()).unwrap();
    idx.replace_document(
        "t",
        "d1",
        vec![chunk(
            "t",
            "d1",
            0,
            "Notes",
            "notes on title rust and the e-mail policy",
        )],
    )
    .await
    .unwrap();
    idx.replace_document(
        "t",
        "d2",
        vec![chunk("t", "d2", 0, "Other", "nothing relevant here")],
    )
    .await
    .unwrap();
    // As query syntax these would be a field query, a prohibited term, a range, a
    // phrase prefix, a boost or a syntax error; as text they are words.
    for (q, hits) in [
        // Field syntax: the words are words in any field, not a field query (as one,
        // `title:rust` would find nothing; `body:nothing` finds d2 by the word
        // "nothing", not by a field query on `body`).
        ("title:rust", 1),
        ("body:nothing", 1),
        ("-rust", 1),
        ("policy^", 1),
        ("[a TO z]", 0),
        ("\"e-mail", 1),
        ("(((", 0),
        ("*", 0),
        // English stop words only: nothing left to match.
        ("AND OR NOT", 0),
        ("日本語 🦀", 0),
    ] {
        let found = idx.search(query("t", q)).await.unwrap();
        assert_eq!(found.len(), hits, "{q}: {found:?}");
    }
    // `-rust` excludes nothing: as text it finds the document about rust.
    assert_eq!(
        idx.search(query("t", "-rust")).await.unwrap()[0].document_id,
        "d1"
    );
}

#[tokio::test]
async fn chunks_of_one_document_must_share_its_acl() {
    let dir = tempfile::tempdir().unwrap();
    let idx = TantivyIndex::open(&test_config(dir.path()), &test_search()).unwrap();
    let a = chunk("t", "d", 0, "", "one");
    let mut b = chunk("t", "d", 1, "", "two");
    b.acl = acl(1, &[]);
    let err = idx
        .replace_document("t", "d", vec![a, b])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("chunks[1].acl"), "{err}");
}

#[tokio::test]
async fn chunks_of_one_document_must_share_its_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let idx = TantivyIndex::open(&test_config(dir.path()), &test_search()).unwrap();
    let a = chunk("t", "d", 0, "", "one");
    let mut b = chunk("t", "d", 1, "", "two");
    b.metadata.insert("lang".into(), "de".into());
    let err = idx
        .replace_document("t", "d", vec![a, b])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("chunks[1].metadata"), "{err}");
}

#[test]
fn an_index_without_acl_fields_is_refused_with_a_way_out() {
    let dir = tempfile::tempdir().unwrap();
    let mut old = Schema::builder();
    old.add_text_field("chunk_id", STRING | STORED);
    Index::create_in_dir(dir.path(), old.build()).unwrap();
    let err = TantivyIndex::open(&test_config(dir.path()), &test_search())
        .err()
        .expect("an index with another schema must not open")
        .to_string();
    assert!(err.contains("another Braid version"), "{err}");
}

#[tokio::test]
async fn plain_queries_score_as_the_query_parser_did() {
    let dir = tempfile::tempdir().unwrap();
    let idx = TantivyIndex::open(&test_config(dir.path()), &test_search()).unwrap();
    let texts = [
        (
            "Rust ownership",
            "ownership and borrowing in rust programs, e-mail rust",
        ),
        ("Gardening", "tomatoes need sun and water; rust on leaves"),
        ("Mail", "the e-mail server sends mail about borrowing"),
    ];
    for (i, (title, body)) in texts.iter().enumerate() {
        let d = format!("d{i}");
        idx.replace_document("t", &d, vec![chunk("t", &d, 0, title, body)])
            .await
            .unwrap();
    }
    let inner = &idx.inner;
    let mut parser = tantivy::query::QueryParser::for_index(
        &inner.index,
        vec![inner.fields.title[0], inner.fields.body[0]],
    );
    parser.set_field_boost(inner.fields.title[0], inner.title_boost);
    let searcher = inner.reader.searcher();
    for q in [
        "rust borrowing",
        "e-mail rust",
        "tomatoes water sun",
        "Rust, ownership.",
    ] {
        let (parsed, errors) = parser.parse_query_lenient(q);
        assert!(errors.is_empty(), "{q}");
        let ours = inner.text_query(q, &[crate::language::Lang::En]).unwrap();
        let top = |query: &dyn Query| {
            searcher
                .search(query, &TopDocs::with_limit(10))
                .unwrap()
                .into_iter()
                .map(|(score, a)| (a, score))
                .collect::<Vec<_>>()
        };
        let (want, got) = (top(&*parsed), top(&*ours));
        assert_eq!(want.len(), got.len(), "{q}");
        for ((wa, ws), (ga, gs)) in want.iter().zip(&got) {
            assert_eq!(wa, ga, "{q}");
            assert!((ws - gs).abs() < 1e-5, "{q}: {ws} vs {gs}");
        }
    }
}

#[tokio::test]
async fn text_only_for_the_detail_hits_and_fetch_fills_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let idx = TantivyIndex::open(&test_config(dir.path()), &test_search()).unwrap();
    for (i, words) in ["comet comet comet tail", "comet comet orbit", "comet dust"]
        .iter()
        .enumerate()
    {
        let d = format!("d{i}");
        idx.replace_document("t", &d, vec![chunk("t", &d, 0, "", words)])
            .await
            .unwrap();
    }
    idx.replace_document("u", "x", vec![chunk("u", "x", 0, "", "comet")])
        .await
        .unwrap();
    let mut q = query("t", "comet");
    q.detail = 1;
    let hits = idx.search(q.clone()).await.unwrap();
    assert_eq!(hits.len(), 3);
    assert!(hits[0].snippet.contains("<b>comet</b>"), "{hits:?}");
    assert_eq!(hits[0].text, "comet comet comet tail");
    for h in &hits[1..] {
        assert!(h.text.is_empty() && h.snippet.is_empty(), "{h:?}");
        assert!(!h.chunk_id.is_empty() && !h.document_id.is_empty() && h.score > 0.0);
    }
    q.detail = 0;
    let full = idx.search(q).await.unwrap();
    let ids: Vec<_> = full.iter().map(|h| h.chunk_id.clone()).collect();
    assert_eq!(
        ids,
        hits.iter().map(|h| h.chunk_id.clone()).collect::<Vec<_>>()
    );

    // Fetch: in the order asked, other tenants' and unknown ids left out.
    let wanted = vec![ids[2].clone(), "nope".into(), "x:0".into(), ids[1].clone()];
    let fetched = idx.fetch("t", "comet", wanted).await.unwrap();
    assert_eq!(fetched.len(), 2, "{fetched:?}");
    assert_eq!(fetched[0].chunk_id, ids[2]);
    assert_eq!(fetched[0].text, full[2].text);
    assert_eq!(fetched[0].snippet, full[2].snippet);
    assert_eq!(fetched[1].text, full[1].text);
    assert!(fetched[1].snippet.contains("<b>comet</b>"));
}

#[tokio::test]
async fn documents_rank_on_their_whole_text_and_show_their_best_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let idx = TantivyIndex::open(&test_config(dir.path()), &test_search()).unwrap();
    // `long`: the two query words in different chunks; `short`: one word, in a tiny
    // chunk that outscores either chunk of `long` on its own.
    let long = vec![
        chunk(
            "t",
            "long",
            0,
            "",
            "quasar jets seen from far away in the survey",
        ),
        chunk(
            "t",
            "long",
            1,
            "",
            "away in the survey a bright magnetar flared",
        ),
    ];
    idx.replace_document("t", "long", long).await.unwrap();
    idx.replace_document("t", "short", vec![chunk("t", "short", 0, "", "quasar")])
        .await
        .unwrap();
    let hits = idx.search(query("t", "quasar magnetar")).await.unwrap();
    let docs: Vec<&str> = hits.iter().map(|h| h.document_id.as_str()).collect();
    assert_eq!(docs, ["long", "short"], "{hits:?}");
    assert_eq!(hits.len(), 2, "one hit per document");
    assert!(hits[0].snippet.contains("<b>"), "{hits:?}");

    // Chunk level: each matching chunk on its own; the tiny chunk ranks first.
    let mut q = query("t", "quasar magnetar");
    q.chunk_level = true;
    let chunks = idx.search(q).await.unwrap();
    let ids: Vec<&str> = chunks.iter().map(|h| h.chunk_id.as_str()).collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert_eq!(ids[0], "short:0", "{chunks:?}");

    // The document entry follows replaces and deletes like its chunks.
    idx.replace_document("t", "long", vec![chunk("t", "long", 0, "", "nothing")])
        .await
        .unwrap();
    let hits = idx.search(query("t", "magnetar")).await.unwrap();
    assert!(hits.is_empty(), "{hits:?}");
    assert_eq!(idx.delete_document("t", "short").await.unwrap(), 1);
    assert!(idx.search(query("t", "quasar")).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_share_commits_and_every_one_is_visible_on_return() {
    let dir = tempfile::tempdir().unwrap();
    let idx = TantivyIndex::open(&test_config(dir.path()), &test_search()).unwrap();
    let writes = (0..24).map(|i| {
        let idx = idx.clone();
        async move {
            let doc = format!("d{i}");
            idx.replace_document(
                "t",
                &doc,
                vec![chunk("t", &doc, 0, "", &format!("word{i} shared"))],
            )
            .await
            .unwrap();
            // Visible as soon as the call returns, whoever committed it.
            let hits = idx.search(query("t", &format!("word{i}"))).await.unwrap();
            assert_eq!(hits.len(), 1, "d{i} not visible after its write returned");
        }
    });
    futures::future::join_all(writes).await;
    let mut q = query("t", "shared");
    q.top_k = 100;
    assert_eq!(idx.search(q).await.unwrap().len(), 24);
    let committed = *idx.inner.committed.lock().unwrap();
    assert_eq!(committed, 24, "every write was covered by a commit");
}

/// (score bits, document id, chunk id, snippet) of every hit of `q`, best first; equal scores
/// by chunk id (the index orders them by position, which merges change).
async fn answer(idx: &TantivyIndex, q: TextQuery) -> Vec<(u32, String, String, String)> {
    let mut hits: Vec<_> = idx
        .search(q)
        .await
        .unwrap()
        .into_iter()
        .map(|h| (h.score.to_bits(), h.document_id, h.chunk_id, h.snippet))
        .collect();
    // Positive floats order as their bits.
    hits.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.2.cmp(&b.2)));
    hits
}

#[tokio::test]
async fn another_tenants_writes_never_move_a_tenants_scores() {
    let dir = tempfile::tempdir().unwrap();
    let idx = TantivyIndex::open(&test_config(dir.path()), &test_search()).unwrap();
    // Segments are merged when the test says so (below), not in the background.
    idx.inner
        .writer
        .lock()
        .unwrap()
        .set_merge_policy(Box::new(tantivy::merge_policy::NoMergePolicy));
    let mine = [
        (
            "v",
            "Volcano notes",
            "the volcano erupted and lava flowed to the sea",
        ),
        ("l", "", "old lava fields"),
        ("h", "Harbour", "boats in the harbour"),
    ];
    for (id, title, text) in mine {
        let chunks = vec![
            chunk("a", id, 0, title, text),
            chunk("a", id, 1, title, "a second chunk with one more volcano"),
        ];
        idx.replace_document("a", id, chunks).await.unwrap();
    }
    let queries = || {
        let mut chunks = query("a", "volcano lava eruption");
        chunks.chunk_level = true;
        [
            query("a", "volcano lava eruption"),
            query("a", "lava"),
            chunks,
        ]
    };
    let mut before = Vec::new();
    for q in queries() {
        before.push(answer(&idx, q).await);
    }
    assert_eq!(before[0].len(), 3, "{:?}", before[0]);

    // Tenant b writes many entries with the same terms, in several commits, and the segments
    // are merged into one holding both tenants.
    for batch in 0..5 {
        let docs = (0..20)
            .map(|i| {
                let id = format!("b{batch}-{i}");
                let text = format!("volcano lava lava eruption {i} volcano");
                let chunks = vec![chunk("b", &id, 0, "Volcano", &text)];
                ("b".to_string(), id, chunks)
            })
            .collect();
        idx.replace_many(docs).await.unwrap();
    }
    let before_merge: Vec<_> = {
        let mut after = Vec::new();
        for q in queries() {
            after.push(answer(&idx, q).await);
        }
        after
    };
    assert_eq!(
        before_merge, before,
        "bit-identical with b in segments of its own"
    );
    {
        let segments = idx.inner.index.searchable_segment_ids().unwrap();
        let mut writer = idx.inner.writer.lock().unwrap();
        writer.merge(&segments).wait().unwrap();
    }
    idx.replace_document("b", "last", vec![chunk("b", "last", 0, "", "lava")])
        .await
        .unwrap();
    let searcher = idx.inner.reader.searcher();
    assert!(
        searcher.segment_readers().iter().any(|s| s.max_doc() > 100),
        "one merged segment holds both tenants"
    );
    for (q, want) in queries().into_iter().zip(&before) {
        assert_eq!(
            &answer(&idx, q).await,
            want,
            "bit-identical after the merge"
        );
    }
    // b finds its own entries.
    assert_eq!(idx.search(query("b", "volcano")).await.unwrap().len(), 10);

    // a's own writes do move a's scores.
    idx.replace_document("a", "more", vec![chunk("a", "more", 0, "", "lava")])
        .await
        .unwrap();
    assert_ne!(
        answer(&idx, query("a", "volcano lava eruption")).await,
        before[0]
    );
}

#[tokio::test]
async fn a_single_tenants_statistics_are_the_index_statistics() {
    let dir = tempfile::tempdir().unwrap();
    let idx = TantivyIndex::open(&test_config(dir.path()), &test_search()).unwrap();
    for i in 0..30 {
        let d = format!("d{i}");
        let text = format!("lava {} and volcano number {i}", "ash ".repeat(i % 7));
        let chunks = vec![
            chunk("t", &d, 0, "Volcano", &text),
            chunk("t", &d, 1, "", "a second chunk about lava"),
        ];
        idx.replace_document("t", &d, chunks).await.unwrap();
    }
    // Replaced and deleted entries stay in the statistics until merged away, as in Tantivy's.
    idx.replace_document("t", "d3", vec![chunk("t", "d3", 0, "", "lava")])
        .await
        .unwrap();
    idx.delete_document("t", "d4").await.unwrap();
    let inner = &idx.inner;
    let f = inner.fields;
    let searcher = inner.reader.searcher();
    let columns = inner.columns.get(&f, &searcher).unwrap();
    let entries = TenantStatistics::new(&f, &searcher, &columns, "t", Population::Entries);
    let documents = TenantStatistics::new(&f, &searcher, &columns, "t", Population::Documents);
    use tantivy::query::Bm25StatisticsProvider;
    assert_eq!(
        entries.total_num_docs().unwrap(),
        searcher.total_num_docs().unwrap()
    );
    let kind = Term::from_field_text(f.kind, schema::KIND_DOCUMENT);
    assert_eq!(documents.population(), searcher.doc_freq(&kind).unwrap());
    for field in [f.title[0], f.body[0], f.doc_title[0], f.doc_body[0]] {
        assert_eq!(
            entries.tokens(field),
            searcher.total_num_tokens(field).unwrap()
        );
        for word in ["lava", "volcano", "ash", "second", "absent"] {
            let term = Term::from_field_text(field, word);
            assert_eq!(
                entries.doc_freq(&term).unwrap(),
                searcher.doc_freq(&term).unwrap(),
                "{word}"
            );
        }
    }
    let other = TenantStatistics::new(&f, &searcher, &columns, "u", Population::Entries);
    assert_eq!(other.population(), 0);
    assert_eq!(other.tokens(f.body[0]), 0);
}

#[tokio::test]
async fn pruning_finds_the_same_top_k_as_scoring_everything() {
    let dir = tempfile::tempdir().unwrap();
    let idx = TantivyIndex::open(&test_config(dir.path()), &test_search()).unwrap();
    // Pseudo-random documents over a Zipf-like vocabulary, in a few commits (segments of
    // several blocks per common term), two tenants, some of them restricted.
    let words: Vec<String> = (0..40).map(|i| format!("w{i}x")).collect();
    let mut seed = 11u64;
    let mut next = |n: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    for batch in 0..3 {
        let mut docs = Vec::new();
        for i in 0..500 {
            let id = format!("d{batch}-{i}");
            let tenant = if next(5) == 0 { "other" } else { "t" };
            let len = 3 + next(60) as usize;
            let text: Vec<&str> = (0..len)
                .map(|_| {
                    // Word k with probability ~ 1/(k+1).
                    let k = (next(1000) as f64 / 1000.0 * 3.7).exp() as usize - 1;
                    words[k.min(words.len() - 1)].as_str()
                })
                .collect();
            let title = if next(4) == 0 {
                words[next(40) as usize].as_str()
            } else {
                ""
            };
            let mut c = chunk(tenant, &id, 0, title, &text.join(" "));
            if next(3) == 0 {
                c.acl = acl(2, &["g"]);
            }
            docs.push((tenant.to_string(), id, vec![c]));
        }
        idx.replace_many(docs).await.unwrap();
    }
    let mut pruned_somewhere = false;
    for round in 0..60 {
        let n = 1 + next(6) as usize;
        let text: Vec<&str> = (0..n).map(|_| words[next(25) as usize].as_str()).collect();
        let mut q = query("t", &text.join(" "));
        if round % 3 == 1 {
            q.access = access(1, &["h"]);
        }
        q.top_k = 10;
        let pruned = idx.search(q.clone()).await.unwrap();
        // A top k larger than every match: nothing can be pruned.
        q.top_k = 10_000;
        let all = idx.search(q).await.unwrap();
        let ids = |hits: &[ChunkHit]| -> Vec<(String, u32)> {
            hits.iter()
                .map(|h| (h.document_id.clone(), h.score.to_bits()))
                .collect()
        };
        let want: Vec<_> = ids(&all).into_iter().take(10).collect();
        assert_eq!(ids(&pruned), want, "{text:?}");
        pruned_somewhere |= all.len() > 10;
    }
    assert!(pruned_somewhere);
}

fn chunk_in(tenant: &str, doc: &str, lang: Option<&str>, title: &str, text: &str) -> Chunk {
    let mut c = chunk(tenant, doc, 0, title, text);
    c.metadata = lang
        .map(|l| HashMap::from([("lang".to_string(), l.to_string())]))
        .unwrap_or_default();
    c
}

#[tokio::test]
async fn each_language_is_analysed_and_scored_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let idx = TantivyIndex::open(&test_config(dir.path()), &test_search()).unwrap();
    let english = [
        (
            "en1",
            "River houses",
            "The old houses by the river were repaired after the flood.",
        ),
        (
            "en2",
            "Night trains",
            "Night trains between the capitals returned this year.",
        ),
    ];
    for (id, title, text) in english {
        idx.replace_document("t", id, vec![chunk_in("t", id, None, title, text)])
            .await
            .unwrap();
    }
    let scores = |hits: Vec<ChunkHit>| -> Vec<(String, u32)> {
        hits.into_iter()
            .map(|h| (h.document_id, h.score.to_bits()))
            .collect()
    };
    let before = scores(idx.search(query("t", "houses river")).await.unwrap());
    assert_eq!(before.first().map(|(id, _)| id.as_str()), Some("en1"));

    // German (detected) and Korean (metadata) documents join the tenant.
    let german = "Die alten Häuser am Fluss wurden nach dem Hochwasser gründlich renoviert.";
    idx.replace_document(
        "t",
        "de1",
        vec![chunk_in("t", "de1", None, "Häuser", german)],
    )
    .await
    .unwrap();
    let korean = "서울의 도서관들은 주말에도 늦게까지 문을 엽니다.";
    idx.replace_document(
        "t",
        "ko1",
        vec![chunk_in("t", "ko1", Some("ko"), "도서관", korean)],
    )
    .await
    .unwrap();

    // The English documents' statistics are the English documents' own: scores unchanged.
    assert_eq!(
        scores(idx.search(query("t", "houses river")).await.unwrap()),
        before
    );
    // German stems and Korean bigrams, document- and chunk-level, with snippets in the
    // document's own analysis.
    for chunk_level in [false, true] {
        let hits = idx
            .search(TextQuery {
                chunk_level,
                ..query("t", "Haus")
            })
            .await
            .unwrap();
        assert_eq!(hits.len(), 1, "{hits:?}");
        assert_eq!(hits[0].document_id, "de1");
        assert!(
            hits[0].snippet.contains("<b>Häuser</b>"),
            "{}",
            hits[0].snippet
        );
        assert!(hits[0].text.starts_with("Die alten"));
        let hits = idx
            .search(TextQuery {
                chunk_level,
                ..query("t", "도서관")
            })
            .await
            .unwrap();
        assert_eq!(hits.len(), 1, "{hits:?}");
        assert_eq!(hits[0].document_id, "ko1");
        assert_eq!(hits[0].title, "도서관");
    }
    // Filter by language: the detected one, and the metadata's.
    let lang = |code: &str| braid_core::filter::Filter {
        clauses: vec![braid_core::filter::Clause {
            field: "filter.clauses[0]".into(),
            key: "lang".into(),
            op: braid_core::filter::Op::Eq(code.into()),
            negate: false,
        }],
    };
    for (code, expected) in [("de", "de1"), ("ko", "ko1")] {
        let hits = idx
            .search(TextQuery {
                filter: lang(code),
                ..query("t", "Haus 도서관 houses")
            })
            .await
            .unwrap();
        let ids: Vec<&str> = hits.iter().map(|h| h.document_id.as_str()).collect();
        assert_eq!(ids, [expected], "{code}");
    }
    let searcher = idx.inner.reader.searcher();
    let f = idx.inner.fields;
    let columns = idx.inner.columns.get(&f, &searcher).unwrap();
    let documents = TenantStatistics::new(&f, &searcher, &columns, "t", Population::Documents);
    assert_eq!(documents.population(), 4);
    assert_eq!(documents.population_of(crate::language::Lang::En), 2);
    assert_eq!(documents.population_of(crate::language::Lang::De), 1);
    assert_eq!(documents.population_of(crate::language::Lang::Ko), 1);
}
