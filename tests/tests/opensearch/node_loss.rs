//! The engine stopped under load and started again (a node of the test's own, stopped with
//! SIGTERM as an operator's restart would): hybrid searches keep answering throughout, those
//! without the text leg flagged degraded with the text leg named, none wrong (the vector
//! leg's best hit); text-search reports NOT_SERVING meanwhile; a document ingested during the
//! outage is accepted and becomes READY and searchable when the node is back; then every
//! answer is whole again, without restarting any service.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use braid_proto::service_names::TEXT_SEARCH;
use braid_tests::opensearch::{Node, engine_config, stack_options};
use braid_tests::v1::{
    DocumentInput, DocumentStatus, IngestRequest, SearchMode, WaitIndexedRequest,
};
use braid_tests::{Stack, eventually, ingest_texts};
use tonic_health::pb::health_check_response::ServingStatus;

use super::{TEXTS, search, top};

const PATIENCE: Duration = Duration::from_secs(120);

/// Hybrid queries the vector leg alone answers right: (query, expected best document).
const QUERIES: [(&str, &str); 3] = [
    ("volcano erupting magma and pumice", "doc-2"),
    ("baking sourdough bread with yeast", "doc-0"),
    ("training for a marathon race", "doc-1"),
];

#[derive(Default)]
struct Tally {
    answered: AtomicU64,
    degraded: AtomicU64,
    whole: AtomicU64,
    /// Wrong answers and errors.
    failures: Mutex<Vec<String>>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_node_stopped_under_load_degrades_with_the_reason_then_recovers() {
    let mut node = Node::start()
        .await
        .expect("an OpenSearch node of the test's own");
    let engine = engine_config(&node.url);
    let mut options = stack_options(&engine);
    // The harness retries jobs within a second or so (five attempts); a node restart takes
    // longer. Production spreads five attempts over about a day.
    options.ingest.worker.max_attempts = 100;
    let stack = Stack::start_with(options).await.unwrap();
    let mut gw = stack.gateway_client().await.unwrap();
    ingest_texts(&mut gw, &TEXTS).await;

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let mut load = Vec::new();
    for worker in 0..3 {
        let (stop, tally, mut gw) = (stop.clone(), tally.clone(), gw.clone());
        load.push(tokio::spawn(async move {
            let mut i = worker;
            while !stop.load(Ordering::SeqCst) {
                let (q, want) = QUERIES[i % QUERIES.len()];
                i += 1;
                let failure = match search(&mut gw, q, SearchMode::Hybrid).await {
                    Err(e) => Some(format!("{q}: {e}")),
                    Ok(r) if top(&r) != want => Some(format!("{q}: first {} {r:?}", top(&r))),
                    Ok(r) if r.degraded => {
                        tally.degraded.fetch_add(1, Ordering::SeqCst);
                        let named = r.degraded_reasons.len() == 1
                            && r.degraded_reasons[0].starts_with("text leg failed");
                        let vector_only = r.hits.iter().all(|h| h.text_score.is_none());
                        (!(named && vector_only))
                            .then(|| format!("{q}: degraded as {:?}: {r:?}", r.degraded_reasons))
                    }
                    Ok(r) => {
                        tally.whole.fetch_add(1, Ordering::SeqCst);
                        r.hits[0]
                            .text_score
                            .is_none()
                            .then(|| format!("{q}: whole but without a text score: {r:?}"))
                    }
                };
                if let Some(f) = failure {
                    tally.failures.lock().unwrap().push(f);
                }
                tally.answered.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    let count = |c: &AtomicU64| c.load(Ordering::SeqCst);
    eventually("searches under way", PATIENCE, || async {
        (count(&tally.whole) >= 10).then_some(())
    })
    .await
    .unwrap();

    // The node goes away.
    node.stop().await.unwrap();
    let degraded_before = count(&tally.degraded);
    eventually("answers without the text leg", PATIENCE, || async {
        (count(&tally.degraded) >= degraded_before + 5).then_some(())
    })
    .await
    .unwrap();
    eventually("text-search NOT_SERVING", PATIENCE, || async {
        (stack.text.health(TEXT_SEARCH).await == Some(ServingStatus::NotServing)).then_some(())
    })
    .await
    .unwrap();
    // A write meanwhile is accepted; its text job waits for the node.
    let accepted = gw
        .ingest(IngestRequest {
            documents: vec![DocumentInput {
                external_id: "during-outage".into(),
                title: "Outage".into(),
                content: "Stalactites grow from cave ceilings, drop by drop.".into(),
                mime_type: "text/plain".into(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert!(accepted[0].error.is_empty(), "{accepted:?}");

    // The node comes back on the same data.
    node.resume().await.unwrap();
    stack.text.wait_serving(TEXT_SEARCH).await.unwrap();
    let ready = gw
        .wait_indexed(WaitIndexedRequest {
            document_ids: vec![accepted[0].document_id.clone()],
            timeout_ms: 120_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(ready[0].status, DocumentStatus::Ready as i32, "{ready:?}");
    let r = search(&mut gw, "stalactites cave", SearchMode::Text)
        .await
        .unwrap();
    assert_eq!(top(&r), "during-outage", "{r:#?}");
    // Whole answers again: count some after the first one, with no degraded one among them.
    let whole = count(&tally.whole);
    eventually("whole answers again", PATIENCE, || async {
        (count(&tally.whole) >= whole + 10).then_some(())
    })
    .await
    .unwrap();
    let (degraded, whole) = (count(&tally.degraded), count(&tally.whole));
    eventually("more whole answers", PATIENCE, || async {
        (count(&tally.whole) >= whole + 20).then_some(())
    })
    .await
    .unwrap();
    stop.store(true, Ordering::SeqCst);
    for l in load {
        l.await.unwrap();
    }
    assert_eq!(
        count(&tally.degraded),
        degraded,
        "degraded after the recovery"
    );
    let failures = tally.failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} of {} answers wrong: {failures:#?}",
        failures.len(),
        count(&tally.answered)
    );

    stack.shutdown().await.unwrap();
    drop(node);
}
