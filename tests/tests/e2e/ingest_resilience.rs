//! Ingest never loses a document: retries while a leg is down, dead-lettering and operator
//! retry/discard, idempotent re-ingest and atomic updates, idempotency keys, streaming bulk
//! ingest (leases: `leases.rs`). Real PostgreSQL, Tantivy and model throughout.

use std::time::Duration;

use braid_proto::tonic::Code;
use braid_tests::replicas::scrape;
use braid_tests::v1::gateway_client::GatewayClient;
use braid_tests::v1::{
    DiscardJobsRequest, DocumentInput, DocumentStatus, GetDocumentRequest, IngestRequest,
    IngestStreamRequest, JobState, ListJobsRequest, RetryJobsRequest, SearchMode, SearchRequest,
    StatsRequest, WaitIndexedRequest,
};
use braid_tests::{DocumentInputExt, Ingest, Stack, StackOptions, doc, eventually};
use tonic::transport::Channel;

const PATIENCE: Duration = Duration::from_secs(90);

async fn status(gw: &mut GatewayClient<Channel>, document_id: &str) -> (DocumentStatus, String) {
    let d = gw
        .get_document(GetDocumentRequest {
            document_id: document_id.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    (DocumentStatus::try_from(d.status).unwrap(), d.last_error)
}

async fn wait_status(gw: &GatewayClient<Channel>, document_id: &str, want: DocumentStatus) {
    let waited = eventually(&format!("{document_id} {want:?}"), PATIENCE, || {
        let mut gw = gw.clone();
        async move { (status(&mut gw, document_id).await.0 == want).then_some(()) }
    })
    .await;
    if let Err(e) = waited {
        let all = [
            JobState::Pending,
            JobState::Running,
            JobState::Done,
            JobState::Dead,
            JobState::Discarded,
        ];
        let jobs = gw
            .clone()
            .list_jobs(ListJobsRequest {
                states: all.iter().map(|s| *s as i32).collect(),
                ..Default::default()
            })
            .await
            .map(|r| r.into_inner().jobs);
        let (s, last_error) = status(&mut gw.clone(), document_id).await;
        panic!("{e}: document is {s:?} ({last_error}); jobs: {jobs:#?}");
    }
}

async fn text_hits(gw: &mut GatewayClient<Channel>, query: &str) -> Vec<String> {
    search_ids(gw, query, SearchMode::Text).await
}

async fn search_ids(gw: &mut GatewayClient<Channel>, query: &str, mode: SearchMode) -> Vec<String> {
    gw.search(SearchRequest {
        query: query.into(),
        mode: mode as i32,
        top_k: 50,
        chunk_level: true,
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .hits
    .into_iter()
    .map(|h| h.chunk_id)
    .collect()
}

/// Rows in the vector store for one document.
async fn vector_rows(stack: &Stack, document_id: &str) -> i64 {
    let db = stack.db().await.unwrap();
    sqlx::query_scalar("SELECT count(*) FROM vectors.chunks WHERE document_id = $1::uuid")
        .bind(document_id)
        .fetch_one(&db)
        .await
        .unwrap()
}

async fn job_count(db: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM ingest.jobs")
        .fetch_one(db)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn vector_leg_down_during_ingest_is_retried_until_it_returns() {
    let mut options = StackOptions::default();
    options.ingest.worker.max_attempts = 100;
    // The leg's absence is charged as failed attempts at once (no outage grace: that path is
    // `a_short_leg_outage_...`).
    options.ingest.worker.outage_grace_ms = 0;
    let mut stack = Stack::start_with(options).await.unwrap();
    let mut gw = stack.gateway_client().await.unwrap();
    stack.vector.stop().await.unwrap();

    let id = Ingest::new(vec![
        doc("a", "Glaciers carve valleys over thousands of years.").title("Document a"),
    ])
    .no_wait()
    .accepted(&mut gw)
    .await
    .remove(0);
    // The vector job fails and is retried with backoff; the text leg is already in sync.
    eventually("vector job retried twice", PATIENCE, || {
        let mut gw = gw.clone();
        async move {
            let jobs = gw
                .list_jobs(ListJobsRequest {
                    states: vec![JobState::Pending as i32, JobState::Running as i32],
                    leg: "vector".into(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .jobs;
            jobs.iter()
                .any(|j| j.attempts >= 2 && !j.last_error.is_empty())
                .then_some(())
        }
    })
    .await
    .unwrap();
    let (s, last_error) = status(&mut gw, &id).await;
    assert_eq!(s, DocumentStatus::Indexing, "one leg synced, one retrying");
    assert!(last_error.starts_with("vector leg:"), "{last_error}");

    stack.restart_vector().await.unwrap();
    wait_status(&gw, &id, DocumentStatus::Ready).await;
    let chunks = search_ids(&mut gw, "glacier valleys", SearchMode::Vector).await;
    assert_eq!(
        chunks,
        vec![format!("{id}:0")],
        "exactly one copy of the chunk"
    );
    assert_eq!(vector_rows(&stack, &id).await, 1);
    stack.shutdown().await.unwrap();
}

/// The jobs of one leg, every state.
async fn leg_jobs(gw: &mut GatewayClient<Channel>, leg: &str) -> Vec<braid_tests::v1::Job> {
    gw.list_jobs(ListJobsRequest {
        states: vec![
            JobState::Pending as i32,
            JobState::Running as i32,
            JobState::Dead as i32,
        ],
        leg: leg.into(),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .jobs
}

/// A leg down for a moment (a restart, a rollout) is no failure of its documents: with the
/// production retry schedule (first retry after up to 40 minutes) and only 2 attempts allowed,
/// only the job whose failure began the outage is charged an attempt, the leg is tried about
/// once per pause (not once per waiting job), and every document is indexed within seconds of
/// its return.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_short_leg_outage_charges_one_job_at_most_and_ends_seconds_after_the_leg_returns() {
    const DOCUMENTS: usize = 40;
    let production = braid_ingest::WorkerConfig::default();
    let mut options = StackOptions::default();
    options.ingest.worker.backoff_base_ms = production.backoff_base_ms;
    options.ingest.worker.backoff_max_ms = production.backoff_max_ms;
    options.ingest.worker.max_attempts = 2;
    let mut stack = Stack::start_with(options).await.unwrap();
    let mut gw = stack.gateway_client().await.unwrap();
    stack.text.stop().await.unwrap();

    let documents = (0..DOCUMENTS)
        .map(|i| {
            doc(
                format!("reef-{i}"),
                format!("Coral reef {i} bleaches when the water warms."),
            )
            .title(format!("Reef {i}"))
        })
        .collect();
    let ids = Ingest::new(documents).no_wait().accepted(&mut gw).await;
    eventually("a text job met the outage", PATIENCE, || {
        let mut gw = gw.clone();
        async move {
            let jobs = leg_jobs(&mut gw, "text").await;
            jobs.iter()
                .any(|j| j.last_error.contains("unavailable"))
                .then_some(())
        }
    })
    .await
    .unwrap();
    // Several seconds of outage: time for more tries than the 2 attempts allowed.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let jobs = leg_jobs(&mut gw, "text").await;
    assert_eq!(jobs.len(), DOCUMENTS);
    let charged: Vec<_> = jobs
        .iter()
        .filter(|j| j.state != JobState::Running as i32 && j.attempts > 0)
        .collect();
    assert!(
        charged.len() <= 1 && charged.iter().all(|j| j.attempts == 1),
        "an outage is charged to the job that began it only: {charged:#?}"
    );
    assert!(jobs.iter().all(|j| j.state != JobState::Dead as i32));
    let tries = scrape(&stack.ingest, "braid_ingest_jobs_total", &["leg=\"text\""])
        .await
        .unwrap();
    assert!(
        (1.0..DOCUMENTS as f64).contains(&tries),
        "{tries} tries of the text leg for {DOCUMENTS} waiting jobs: a paused leg is tried about \
         once per pause, not once per job"
    );
    assert_eq!(status(&mut gw, &ids[0]).await.0, DocumentStatus::Indexing);

    stack.restart_text().await.unwrap();
    let back = std::time::Instant::now();
    for id in &ids {
        wait_status(&gw, id, DocumentStatus::Ready).await;
    }
    let took = back.elapsed();
    eprintln!(
        "{DOCUMENTS} documents READY {took:?} after text-search returned ({tries} tries during the outage)"
    );
    // The longest pause is 15 s; the retry schedule it replaces waits up to 40 minutes.
    assert!(
        took < Duration::from_secs(60),
        "READY only {took:?} after the leg returned"
    );
    assert_eq!(
        text_hits(&mut gw, "coral reef bleaches").await.len(),
        DOCUMENTS
    );
    stack.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failing_leg_dead_letters_then_operator_retries_or_discards() {
    let mut options = StackOptions::default();
    options.ingest.worker.max_attempts = 2;
    // A leg down for longer than the outage grace (here: none) dead-letters its jobs.
    options.ingest.worker.outage_grace_ms = 0;
    let mut stack = Stack::start_with(options).await.unwrap();
    let mut gw = stack.gateway_client().await.unwrap();
    stack.text.stop().await.unwrap();

    let ids = Ingest::new(vec![
        doc("keep", "Tidal pools host anemones.").title("Document keep"),
        doc("drop", "Sand dunes migrate with the wind.").title("Document drop"),
    ])
    .no_wait()
    .accepted(&mut gw)
    .await;
    for id in &ids {
        wait_status(&gw, id, DocumentStatus::Partial).await;
    }
    let dead = gw
        .list_jobs(ListJobsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .jobs;
    assert_eq!(dead.len(), 2, "{dead:#?}");
    assert!(
        dead.iter()
            .all(|j| j.leg == "text" && j.attempts == 2 && j.state == JobState::Dead as i32)
    );
    assert!(
        dead.iter()
            .all(|j| j.last_error.contains("unavailable") && !j.last_error.contains("127.0.0.1")),
        "{dead:#?}"
    );
    let stats = gw
        .stats(StatsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.dead_jobs, 2);
    assert_eq!(stats.documents_by_status.get("partial"), Some(&2));

    // Paging walks the dead-letter queue one job at a time.
    let first = gw
        .list_jobs(ListJobsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.jobs.len(), 1);
    let second = gw
        .list_jobs(ListJobsRequest {
            page_size: 1,
            page_token: first.next_page_token.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.jobs.len(), 1);
    assert_ne!(first.jobs[0].job_id, second.jobs[0].job_id);

    let drop_job = dead
        .iter()
        .find(|j| j.external_id == "drop")
        .unwrap()
        .job_id;
    let discarded = gw
        .discard_jobs(DiscardJobsRequest {
            job_ids: vec![drop_job],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(discarded.discarded, 1);

    stack.restart_text().await.unwrap();
    let retried = gw
        .retry_jobs(RetryJobsRequest {
            all_dead: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried.retried, 1, "only the job that was not discarded");
    wait_status(&gw, &ids[0], DocumentStatus::Ready).await;
    assert_eq!(status(&mut gw, &ids[1]).await.0, DocumentStatus::Partial);
    assert!(text_hits(&mut gw, "anemones").await.len() == 1);
    assert!(text_hits(&mut gw, "dunes").await.is_empty());

    let err = gw
        .retry_jobs(RetryJobsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    stack.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reingest_is_a_no_op_and_updates_replace_chunks_in_both_legs() {
    let stack = Stack::start().await.unwrap();
    let mut gw = stack.gateway_client().await.unwrap();
    let db = stack.db().await.unwrap();

    let v1 = doc("u", "Old content mentions zeppelins.").title("Document u");
    let id = Ingest::new(vec![v1.clone()])
        .no_wait()
        .accepted(&mut gw)
        .await
        .remove(0);
    wait_status(&gw, &id, DocumentStatus::Ready).await;
    let before = job_count(&db).await;
    let again = Ingest::new(vec![v1]).no_wait().send(&mut gw).await.unwrap();
    assert!(again.results[0].unchanged);
    assert_eq!(again.results[0].document_id, id);
    assert_eq!(
        job_count(&db).await,
        before,
        "no new jobs for unchanged content"
    );
    assert_eq!(text_hits(&mut gw, "zeppelins").await.len(), 1);

    let v2 = "New content mentions submarines instead. ".repeat(60);
    let updated = Ingest::new(vec![doc("u", v2).title("Document u")])
        .no_wait()
        .accepted(&mut gw)
        .await
        .remove(0);
    assert_eq!(
        updated, id,
        "same (tenant, external_id) is the same document"
    );
    wait_status(&gw, &id, DocumentStatus::Ready).await;
    assert!(
        text_hits(&mut gw, "zeppelins").await.is_empty(),
        "old chunks gone from the text leg"
    );
    let new_chunks = text_hits(&mut gw, "submarines").await;
    let d = gw
        .get_document(GetDocumentRequest {
            document_id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.version, 2);
    assert!(d.chunk_count >= 2);
    assert_eq!(new_chunks.len(), d.chunk_count as usize);
    assert_eq!(
        vector_rows(&stack, &id).await,
        d.chunk_count as i64,
        "old vectors replaced, not added"
    );
    let old_vectors: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM vectors.chunks WHERE document_id = $1::uuid AND body LIKE '%zeppelins%'",
    )
    .bind(&id)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(old_vectors, 0);
    stack.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idempotency_key_makes_a_retried_call_safe() {
    let stack = Stack::start().await.unwrap();
    let mut gw = stack.gateway_client().await.unwrap();
    let request = |content: &str| IngestRequest {
        documents: vec![
            doc("k1", content).title("Document k1"),
            doc("k2", "Second document.").title("Document k2"),
        ],
        idempotency_key: "batch-42".into(),
        ..Default::default()
    };
    let first = gw
        .ingest(request("First document."))
        .await
        .unwrap()
        .into_inner();
    let retry = gw
        .ingest(request("First document."))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first, retry, "the retry returns the first answer");
    assert!(!retry.results[0].unchanged, "not re-run as a second ingest");

    let err = gw.ingest(request("Different content.")).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("idempotency_key"),
        "{}",
        err.message()
    );
    stack.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn streaming_bulk_ingest_reports_each_document_and_waits_for_ready() {
    let mut options = StackOptions::default();
    options.ingest.limits.max_document_bytes = 5_000;
    let stack = Stack::start_with(options).await.unwrap();
    let mut gw = stack.gateway_client().await.unwrap();

    let mut docs: Vec<DocumentInput> = (0..40)
        .map(|i| {
            doc(
                format!("s{i}"),
                format!("Streamed document number {i} about lighthouses."),
            )
            .title(format!("Document s{i}"))
        })
        .collect();
    docs.insert(
        7,
        doc("too-big", "x ".repeat(5_000)).title("Document too-big"),
    );
    let total = docs.len();
    let outbound = tokio_stream::iter(docs.into_iter().map(|d| IngestStreamRequest {
        tenant: "bulk".into(),
        document: Some(d),
    }));
    let mut results = gw.ingest_stream(outbound).await.unwrap().into_inner();
    let mut ids = Vec::new();
    let mut seen = 0;
    while let Some(r) = results.message().await.unwrap() {
        if r.external_id == "too-big" {
            assert_eq!(r.error_code, Code::InvalidArgument as i32);
            assert!(r.error.contains("at most 5000"), "{}", r.error);
        } else {
            assert_eq!(r.error, "");
            ids.push(r.document_id);
        }
        seen += 1;
    }
    assert_eq!(seen, total, "one result per document");

    let waited = gw
        .wait_indexed(WaitIndexedRequest {
            tenant: "bulk".into(),
            document_ids: ids.clone(),
            timeout_ms: 120_000,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(waited.results.len(), 40);
    assert!(
        waited
            .results
            .iter()
            .all(|r| r.status == DocumentStatus::Ready as i32),
        "{waited:#?}"
    );

    // Another tenant cannot observe these documents.
    let foreign = gw
        .wait_indexed(WaitIndexedRequest {
            tenant: "other".into(),
            document_ids: ids[..1].to_vec(),
            timeout_ms: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        foreign.results[0].status,
        DocumentStatus::Unspecified as i32
    );

    let stats = gw
        .stats(StatsRequest {
            tenant: "bulk".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.documents_total, 40);
    assert_eq!(stats.documents_by_status.get("ready"), Some(&40));
    assert_eq!(stats.chunks_total, 40);
    assert_eq!(stats.queue_depth, 0);
    assert!(stats.last_sync_at.is_some());
    stack.shutdown().await.unwrap();
}
