//! A text reindex on the engine while searches and ingests run: the rebuild fills a new index
//! behind the rebuild alias, takes the documents written meanwhile, switches the serving alias
//! atomically and drops the old index; no search fails, degrades or answers differently on
//! the way, and the new index holds every document, the late ones included.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use braid_tests::opensearch::{
    engine_config_with, engine_documents, engine_get, engine_url, remove_indices, stack_options,
};
use braid_tests::v1::{DocumentInput, ReindexLeg, ReindexRequest, SearchMode};
use braid_tests::{Stack, ingest_ready};
use braid_text_search::Layout;

use super::{TEXTS, search, top};

/// (query, the document it must find first) for the searches that run throughout.
const QUERIES: [(&str, &str); 3] = [
    ("sourdough yeast dough", "doc-0"),
    ("magma pumice volcanic", "doc-2"),
    ("glaciers valleys", "doc-5"),
];

fn document(external_id: String, title: &str, content: String) -> DocumentInput {
    DocumentInput {
        external_id,
        title: title.into(),
        content,
        mime_type: "text/plain".into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reindex_switches_the_alias_while_searches_and_ingests_run() {
    reindex_under_load(Layout::PerTenant).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reindex_switches_the_alias_while_searches_and_ingests_run_shared_layout() {
    reindex_under_load(Layout::Shared).await;
}

/// In the per-tenant layout every tenant's alias moves with the catalog's in one request.
async fn reindex_under_load(layout: Layout) {
    let engine = engine_config_with(&engine_url(), layout);
    let stack = Stack::start_with(stack_options(&engine)).await.unwrap();
    let mut gw = stack.gateway_client().await.unwrap();
    // The six topics, then enough other documents for the rebuild to take several batches.
    let mut corpus: Vec<DocumentInput> = TEXTS
        .iter()
        .enumerate()
        .map(|(i, t)| document(format!("doc-{i}"), &format!("Topic {i}"), t.to_string()))
        .collect();
    corpus.extend((0..150).map(|i| {
        document(
            format!("ledger-{i:03}"),
            "Ledger",
            format!("Ledger entry {i}: inventory of crates, barrels and rope in warehouse {i}."),
        )
    }));
    for batch in corpus.chunks(50) {
        ingest_ready(&mut gw, "", batch.to_vec()).await;
    }
    let (old_index, count) = engine_documents(&engine).await.unwrap();
    assert_eq!(count, corpus.len() as u64);
    let mut expected = Vec::new();
    for (q, first) in QUERIES {
        let r = search(&mut gw, q, SearchMode::Text).await.unwrap();
        assert_eq!(top(&r), first, "{q}: {r:#?}");
        expected.push(
            r.hits
                .iter()
                .map(|h| h.external_id.clone())
                .collect::<Vec<_>>(),
        );
    }
    let expected = Arc::new(expected);

    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut searchers = Vec::new();
    for worker in 0..2 {
        let (stop, answered, failures, expected) = (
            stop.clone(),
            answered.clone(),
            failures.clone(),
            expected.clone(),
        );
        let mut gw = gw.clone();
        searchers.push(tokio::spawn(async move {
            let mut i = worker;
            while !stop.load(Ordering::SeqCst) {
                let (q, _) = QUERIES[i % QUERIES.len()];
                let mode = [SearchMode::Text, SearchMode::Hybrid][i / QUERIES.len() % 2];
                let want = &expected[i % QUERIES.len()];
                let got = match search(&mut gw, q, mode).await {
                    Err(e) => Err(format!("{q} ({mode:?}): {e}")),
                    Ok(r) if r.degraded => Err(format!("{q}: degraded {:?}", r.degraded_reasons)),
                    Ok(r) => {
                        let ids: Vec<String> =
                            r.hits.iter().map(|h| h.external_id.clone()).collect();
                        match mode {
                            SearchMode::Text if ids != *want => {
                                Err(format!("{q}: {ids:?}, before the reindex {want:?}"))
                            }
                            _ if ids.first() != want.first() => {
                                Err(format!("{q} ({mode:?}): first {ids:?}"))
                            }
                            _ => Ok(()),
                        }
                    }
                };
                if let Err(e) = got {
                    failures.lock().unwrap().push(e);
                }
                answered.fetch_add(1, Ordering::SeqCst);
                i += 1;
            }
        }));
    }
    // Documents ingested while the rebuild runs: written live into both indices.
    let writer = {
        let (stop, mut gw) = (stop.clone(), gw.clone());
        tokio::spawn(async move {
            let mut late = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let n = late.len();
                let doc = document(
                    format!("late-{n}"),
                    "Late",
                    format!("Latecomer{n}q arrived while the index was rebuilt."),
                );
                ingest_ready(&mut gw, "", vec![doc]).await;
                late.push(format!("latecomer{n}q"));
            }
            late
        })
    };

    let before = answered.load(Ordering::SeqCst);
    let run = gw
        .reindex(ReindexRequest {
            leg: ReindexLeg::Text as i32,
            wait: true,
            wait_timeout_ms: 120_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap();
    let during = answered.load(Ordering::SeqCst) - before;
    stop.store(true, Ordering::SeqCst);
    for s in searchers {
        s.await.unwrap();
    }
    let late = writer.await.unwrap();
    assert_eq!(
        (run.state.as_str(), run.mode.as_str()),
        ("done", "rebuild"),
        "{run:?}"
    );
    assert!(during > 0, "no search ran during the reindex");
    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} of {} answers wrong: {failures:?}",
        failures.len(),
        answered.load(Ordering::SeqCst)
    );

    // A new index serves, the old one is gone, every document is in the new one.
    let (new_index, count) = engine_documents(&engine).await.unwrap();
    assert_ne!(new_index, old_index);
    assert_eq!(new_index, run.index_id);
    assert!(
        engine_get(&engine.urls[0], &format!("/{old_index}"))
            .await
            .is_err()
    );
    // Its tenant indices (per tenant) are gone with it.
    let old_tenants = engine_get(&engine.urls[0], &format!("/{old_index}-*/_alias"))
        .await
        .unwrap();
    assert_eq!(old_tenants, serde_json::json!({}));
    if layout == Layout::PerTenant {
        let tenants = engine_get(&engine.urls[0], &format!("/{new_index}-*/_alias"))
            .await
            .unwrap();
        assert_eq!(tenants.as_object().map(|o| o.len()), Some(1), "{tenants}");
    }
    assert_eq!(count, (corpus.len() + late.len()) as u64);
    for word in &late {
        let r = search(&mut gw, word, SearchMode::Text).await.unwrap();
        assert_eq!(r.hits.len(), 1, "{word}: {r:#?}");
    }

    stack.shutdown().await.unwrap();
    remove_indices(&engine).await.unwrap();
}
