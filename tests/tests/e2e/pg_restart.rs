//! PostgreSQL restarted under load: the whole stack runs on a PostgreSQL cluster of the
//! test's own (never the shared one), searches and a trickle of ingest keep going while it is
//! stopped (`pg_ctl stop -m fast`, as an operator's restart) and started again. Errors happen
//! only inside that window, each UNAVAILABLE in words an operator can act on; afterwards every
//! service answers again without being restarted itself (pools reconnect, the outbox workers
//! resume) and every document that was accepted becomes READY.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use braid_proto::tonic::{Code, Request, Status};
use braid_tests::pg_topology::{Cluster, Topology};
use braid_tests::v1::gateway_client::GatewayClient;
use braid_tests::v1::{IngestRequest, SearchMode, SearchRequest};
use braid_tests::{DocumentInputExt, Ingest, Stack, StackOptions, doc, eventually};
use tonic::transport::Channel;

const PATIENCE: Duration = Duration::from_secs(90);

const TOPICS: &[&str] = &[
    "Mitochondria produce most of the chemical energy needed by the cell.",
    "Vaccines train the immune system to recognise a pathogen.",
    "Insulin regulates the level of glucose in the blood.",
];

/// Where the test is: before the stop, inside the restart window, after recovery was seen.
const BEFORE: u8 = 0;
const WINDOW: u8 = 1;
const AFTER: u8 = 2;

#[derive(Debug)]
struct Failure {
    call: &'static str,
    code: Code,
    message: String,
    /// Phases when the call was sent and when it returned.
    phases: (u8, u8),
}

#[derive(Default)]
struct Tally {
    answered: AtomicU64,
    answered_after: AtomicU64,
    degraded_in_window: AtomicU64,
    ingest_errors_in_window: AtomicU64,
    accepted_after: AtomicU64,
    /// Why answers were degraded inside the window.
    degraded_reasons: Mutex<Vec<String>>,
    /// External ids of the trickle documents the service accepted.
    accepted: Mutex<Vec<String>>,
    failures: Mutex<Vec<Failure>>,
}

fn search(i: u64) -> Request<SearchRequest> {
    let words = ["energy", "immune", "glucose"];
    let mut r = Request::new(SearchRequest {
        query: format!("{} {i}", words[i as usize % words.len()]),
        mode: SearchMode::Hybrid as i32,
        top_k: 3,
        // Every search reaches both legs (and PostgreSQL through the vector leg).
        bypass_cache: true,
        ..Default::default()
    });
    r.set_timeout(Duration::from_secs(60));
    r
}

/// The trickle's document `n`, not waited for, with a 60 s deadline (specific to this file:
/// the load that runs across the restart).
fn trickle_document(n: u64) -> Request<IngestRequest> {
    let content =
        format!("Note {n}: enzymes speed up chemical reactions in the cell without being used up.");
    let mut request = Ingest::new(vec![
        doc(format!("trickle-{n}"), content).title(format!("Trickle {n}")),
    ])
    .no_wait()
    .request();
    request.set_timeout(Duration::from_secs(60));
    request
}

fn record(tally: &Tally, call: &'static str, status: &Status, phases: (u8, u8)) {
    tally.failures.lock().unwrap().push(Failure {
        call,
        code: status.code(),
        message: status.message().to_string(),
        phases,
    });
}

fn search_loops(
    gw: &GatewayClient<Channel>,
    clients: u64,
    phase: &Arc<AtomicU8>,
    stop: &Arc<AtomicBool>,
    tally: &Arc<Tally>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..clients)
        .map(|c| {
            let (mut gw, phase, stop, tally) =
                (gw.clone(), phase.clone(), stop.clone(), tally.clone());
            tokio::spawn(async move {
                let mut i = c;
                while !stop.load(Ordering::SeqCst) {
                    let sent = phase.load(Ordering::SeqCst);
                    let outcome = gw.search(search(i)).await;
                    let returned = phase.load(Ordering::SeqCst);
                    match outcome {
                        Ok(r) => {
                            tally.answered.fetch_add(1, Ordering::SeqCst);
                            if sent == AFTER {
                                tally.answered_after.fetch_add(1, Ordering::SeqCst);
                            }
                            if r.get_ref().degraded && (sent == WINDOW || returned == WINDOW) {
                                tally.degraded_in_window.fetch_add(1, Ordering::SeqCst);
                                tally
                                    .degraded_reasons
                                    .lock()
                                    .unwrap()
                                    .extend(r.into_inner().degraded_reasons);
                            }
                        }
                        Err(s) => record(&tally, "Search", &s, (sent, returned)),
                    }
                    i += clients;
                }
            })
        })
        .collect()
}

/// One single-document ingest every 200 ms (a steady trickle, not a synchronisation).
fn ingest_trickle(
    gw: &GatewayClient<Channel>,
    phase: &Arc<AtomicU8>,
    stop: &Arc<AtomicBool>,
    tally: &Arc<Tally>,
) -> tokio::task::JoinHandle<()> {
    let (mut gw, phase, stop, tally) = (gw.clone(), phase.clone(), stop.clone(), tally.clone());
    tokio::spawn(async move {
        let mut pace = tokio::time::interval(Duration::from_millis(200));
        let mut n = 0;
        while !stop.load(Ordering::SeqCst) {
            pace.tick().await;
            n += 1;
            let sent = phase.load(Ordering::SeqCst);
            let outcome = gw.ingest(trickle_document(n)).await;
            let returned = phase.load(Ordering::SeqCst);
            let in_window = sent == WINDOW || returned == WINDOW;
            match outcome {
                Ok(r) => {
                    let result = &r.get_ref().results[0];
                    if result.error.is_empty() {
                        tally
                            .accepted
                            .lock()
                            .unwrap()
                            .push(result.external_id.clone());
                        if sent == AFTER {
                            tally.accepted_after.fetch_add(1, Ordering::SeqCst);
                        }
                    } else {
                        // A document rejected alone: its own code and message.
                        let status = Status::new(Code::from(result.error_code), &result.error);
                        record(&tally, "Ingest (document)", &status, (sent, returned));
                        if in_window {
                            tally.ingest_errors_in_window.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
                Err(s) => {
                    record(&tally, "Ingest", &s, (sent, returned));
                    if in_window {
                        tally.ingest_errors_in_window.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        }
    })
}

/// What an operator may read in an error: no SQL, hosts, driver or server messages.
fn leaks_internals(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    [
        "sqlx",
        "error returned from database",
        "select ",
        "insert ",
        "127.0.0.1",
        "postgres://",
        "terminating connection",
        "shutting down",
        "io error",
    ]
    .iter()
    .any(|w| lower.contains(w))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restarting_postgres_under_load_fails_only_inside_the_window_and_loses_no_document() {
    let cluster = Cluster::primary().await.expect("own PostgreSQL cluster");
    let options = StackOptions {
        topology: Topology {
            admin_url: cluster.admin_url(),
            primary_base: cluster.base_url(),
            ..Topology::default()
        },
        ..Default::default()
    };
    let stack = Stack::start_with(options).await.expect("stack");
    let mut gw = stack.gateway_client().await.expect("client");
    braid_tests::ingest_texts(&mut gw, TOPICS).await;

    let phase = Arc::new(AtomicU8::new(BEFORE));
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let mut loops = search_loops(&gw, 4, &phase, &stop, &tally);
    loops.push(ingest_trickle(&gw, &phase, &stop, &tally));
    eventually(
        "searches and ingests before the restart",
        PATIENCE,
        || async {
            (tally.answered.load(Ordering::SeqCst) > 10
                && tally.accepted.lock().unwrap().len() >= 2)
                .then_some(())
        },
    )
    .await
    .expect("load running");

    // The restart window: from the stop until answers and ingests are seen working again.
    phase.store(WINDOW, Ordering::SeqCst);
    cluster.stop().await.expect("stop PostgreSQL");
    eventually(
        "the outage seen by both searches and ingests",
        PATIENCE,
        || async {
            (tally.degraded_in_window.load(Ordering::SeqCst) > 0
                && tally.ingest_errors_in_window.load(Ordering::SeqCst) > 0)
                .then_some(())
        },
    )
    .await
    .expect("searches degrade and ingests fail while PostgreSQL is down");
    cluster.start().await.expect("start PostgreSQL again");
    // Recovered, with no service restarted: a fresh search is hybrid again and a fresh ingest
    // is accepted.
    eventually("a hybrid answer after the restart", PATIENCE, || {
        let mut gw = gw.clone();
        async move {
            let r = gw.search(search(0)).await.ok()?.into_inner();
            (!r.degraded).then_some(())
        }
    })
    .await
    .expect("hybrid again after the restart");
    eventually("an ingest accepted after the restart", PATIENCE, || {
        let mut gw = gw.clone();
        async move {
            let r = gw.ingest(trickle_document(0)).await.ok()?.into_inner();
            r.results[0].error.is_empty().then_some(())
        }
    })
    .await
    .expect("ingest accepted again after the restart");
    phase.store(AFTER, Ordering::SeqCst);
    eventually("load served after the window", PATIENCE, || async {
        (tally.answered_after.load(Ordering::SeqCst) >= 20
            && tally.accepted_after.load(Ordering::SeqCst) >= 3)
            .then_some(())
    })
    .await
    .expect("searches and ingests keep working after the restart");
    stop.store(true, Ordering::SeqCst);
    for l in loops {
        l.await.expect("load loop");
    }

    let failures = std::mem::take(&mut *tally.failures.lock().unwrap());
    let reasons = std::mem::take(&mut *tally.degraded_reasons.lock().unwrap());
    eprintln!(
        "PostgreSQL restart: {} answers ({} degraded inside the window), {} ingests accepted, {} failed calls: {:?}",
        tally.answered.load(Ordering::SeqCst),
        tally.degraded_in_window.load(Ordering::SeqCst),
        tally.accepted.lock().unwrap().len(),
        failures.len(),
        failures
            .iter()
            .map(|f| format!("{} {:?}: {}", f.call, f.code, f.message))
            .collect::<std::collections::BTreeSet<_>>()
    );
    // The vector leg says its store is unavailable (not an internal error) while PostgreSQL
    // is down, and the answer keeps the text leg's hits.
    let internal: Vec<&String> = reasons
        .iter()
        .filter(|r| !r.contains("unavailable") || leaks_internals(r))
        .collect();
    assert!(
        internal.is_empty(),
        "degraded for another reason than an unavailable leg: {internal:?}"
    );
    let outside: Vec<&Failure> = failures
        .iter()
        .filter(|f| f.phases.0 == AFTER || f.phases.1 == BEFORE)
        .collect();
    assert!(
        outside.is_empty(),
        "failures outside the restart window: {outside:?}"
    );
    let bad: Vec<&Failure> = failures
        .iter()
        .filter(|f| {
            f.code != Code::Unavailable || leaks_internals(&f.message) || f.message.is_empty()
        })
        .collect();
    assert!(
        bad.is_empty(),
        "failures in the window must be UNAVAILABLE in operator words: {bad:?}"
    );
    // Bounded: the trickle sends 5 ingests a second and the searches degrade instead of
    // failing, so a restart of a few seconds costs a few dozen failed calls, not an avalanche.
    assert!(
        failures.len() <= 200,
        "{} failures: {:?}",
        failures.len(),
        &failures[..10]
    );

    // No job lost: every accepted document (and the corpus) becomes READY, through the
    // outbox workers of the same ingest service.
    let mut accepted = std::mem::take(&mut *tally.accepted.lock().unwrap());
    accepted.push("trickle-0".into());
    accepted.sort();
    accepted.dedup();
    let db = stack.db().await.expect("db");
    let want = accepted.len() + TOPICS.len();
    let left = eventually("every accepted document READY", PATIENCE, || {
        let db = db.clone();
        async move {
            let (ready, total): (i64, i64) = sqlx::query_as(
                "SELECT count(*) FILTER (WHERE status = 'ready'), count(*) FROM ingest.documents",
            )
            .fetch_one(&db)
            .await
            .ok()?;
            (ready == total && total as usize == want).then_some(())
        }
    })
    .await;
    if left.is_err() {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT external_id, status FROM ingest.documents WHERE status <> 'ready'",
        )
        .fetch_all(&db)
        .await
        .unwrap_or_default();
        panic!("documents not READY after the restart: {rows:?} (want {want} in all)");
    }
    use braid_proto::service_names as n;
    let names = [
        n::GATEWAY,
        n::INGEST,
        n::EMBEDDING,
        n::VECTOR_SEARCH,
        n::TEXT_SEARCH,
    ];
    for (service, name) in stack.services().into_iter().zip(names) {
        service
            .wait_serving(name)
            .await
            .expect("SERVING again after the restart, without a restart of its own");
    }
    db.close().await;
    stack.shutdown().await.expect("shutdown");
    drop(cluster);
}
