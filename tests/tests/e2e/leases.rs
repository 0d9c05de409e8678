//! Job leases in the ingest outbox: a job whose worker died is taken over only once its lease
//! has run out (never before), and a long job keeps its lease by renewing it, so it outlives
//! many lease periods without a second worker grabbing it.
//!
//! Every claim and every renewal is recorded by a trigger on `ingest.jobs` in the test
//! database, with PostgreSQL's own clock (the clock the leases are written with), so the
//! assertions compare database timestamps, never the test's wall clock.

use std::time::Duration;

use braid_tests::v1::embedding_service_client::EmbeddingServiceClient;
use braid_tests::v1::gateway_client::GatewayClient;
use braid_tests::v1::{DocumentStatus, EmbedRequest, GetDocumentRequest, InputType};
use braid_tests::{
    DocumentInputExt, Ingest, ServiceChannel, Stack, StackOptions, doc, eventually, http_get,
    metric_sum,
};
use tonic::transport::Channel;

const PATIENCE: Duration = Duration::from_secs(120);

/// Records every claim (attempts went up) and every renewal (a running job's lease moved
/// forward) of `ingest.jobs`.
async fn record_lease_events(db: &sqlx::PgPool) {
    for statement in [
        "CREATE TABLE public.job_claims (job bigint, leg text, attempts int, \
           claimed_at timestamptz, prev_state text, prev_locked_until timestamptz)",
        "CREATE TABLE public.job_renewals (job bigint, attempts int, renewed_at timestamptz, \
           prev_locked_until timestamptz, new_locked_until timestamptz)",
        "CREATE FUNCTION public.log_lease() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           IF NEW.attempts > OLD.attempts THEN \
             INSERT INTO public.job_claims VALUES \
               (NEW.id, NEW.leg, NEW.attempts, now(), OLD.state, OLD.locked_until); \
           ELSIF NEW.state = 'running' AND OLD.state = 'running' \
                 AND NEW.locked_until > OLD.locked_until THEN \
             INSERT INTO public.job_renewals VALUES \
               (NEW.id, NEW.attempts, now(), OLD.locked_until, NEW.locked_until); \
           END IF; \
           RETURN NEW; END $$",
        "CREATE TRIGGER log_lease AFTER UPDATE ON ingest.jobs FOR EACH ROW \
           EXECUTE FUNCTION public.log_lease()",
    ] {
        sqlx::query(statement).execute(db).await.unwrap();
    }
}

async fn wait_ready(gw: &GatewayClient<Channel>, document_id: &str) {
    eventually(&format!("{document_id} READY"), PATIENCE, || {
        let mut gw = gw.clone();
        async move {
            let d = gw
                .get_document(GetDocumentRequest {
                    document_id: document_id.into(),
                    ..Default::default()
                })
                .await
                .ok()?
                .into_inner();
            (d.status == DocumentStatus::Ready as i32).then_some(())
        }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crashed_workers_job_is_taken_over_only_after_its_lease_expires() {
    let mut options = StackOptions::default();
    // Long enough that restarting the service takes well under one lease.
    options.ingest.worker.lease_ms = 5_000;
    options.ingest.worker.concurrency = 1;
    options.ingest.server.shutdown_grace_ms = 1;
    let mut stack = Stack::start_with(options).await.unwrap();
    let db = stack.db().await.unwrap();
    record_lease_events(&db).await;
    let mut gw = stack.gateway_client().await.unwrap();

    // Big enough that embedding it takes a while: a few dozen chunks.
    let body: String = (0..500)
        .map(|i| {
            format!(
                "Sentence {i} talks about river deltas and sediment number {}. ",
                i * 7
            )
        })
        .collect();
    let id = Ingest::new(vec![doc("big", body).title("Document big")])
        .no_wait()
        .accepted(&mut gw)
        .await
        .remove(0);
    eventually("a job running", PATIENCE, || {
        let db = db.clone();
        async move {
            let running: i64 =
                sqlx::query_scalar("SELECT count(*) FROM ingest.jobs WHERE state = 'running'")
                    .fetch_one(&db)
                    .await
                    .unwrap();
            (running > 0).then_some(())
        }
    })
    .await
    .unwrap();
    // The ingest service dies mid-job (workers aborted); its lease is still held.
    stack.ingest.stop().await.unwrap();
    let held: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ingest.jobs WHERE state = 'running' AND locked_until > now()",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert!(held >= 1, "a leased job was left behind");

    // A new process comes up within the lease: it must leave the held job alone until the
    // lease runs out, then take it over.
    stack.restart_ingest().await.unwrap();
    let takeovers: Vec<(i64, i32, bool)> =
        eventually("the crashed worker's job taken over", PATIENCE, || {
            let db = db.clone();
            async move {
                let rows: Vec<(i64, i32, bool)> = sqlx::query_as(
                    "SELECT job, attempts, coalesce(claimed_at > prev_locked_until, false) \
                     FROM public.job_claims \
                     WHERE prev_state = 'running' ORDER BY claimed_at",
                )
                .fetch_all(&db)
                .await
                .unwrap();
                (!rows.is_empty()).then_some(rows)
            }
        })
        .await
        .unwrap();
    for (job, attempts, after_expiry) in &takeovers {
        assert!(
            after_expiry,
            "job {job} (attempt {attempts}) was taken from a worker whose lease was still live"
        );
    }
    wait_ready(&gw, &id).await;
    let d = gw
        .get_document(GetDocumentRequest {
            document_id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(d.chunk_count > 20, "{}", d.chunk_count);
    let rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM vectors.chunks WHERE document_id = $1::uuid")
            .bind(&id)
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(rows, d.chunk_count as i64, "no duplicate or missing chunks");
    stack.shutdown().await.unwrap();
}

/// A document-lane request (48 window-filling texts) that keeps the single model thread busy
/// for a while.
fn embedding_backlog(
    client: &EmbeddingServiceClient<ServiceChannel>,
) -> Vec<tokio::task::JoinHandle<usize>> {
    // Six requests of 48 long texts, one text per forward pass on one model thread: seconds of
    // work even on an idle machine, so the job's own embedding call waits behind it for well
    // over three lease periods.
    (0..6)
        .map(|r| {
            let mut client = client.clone();
            let texts: Vec<String> = (0..48)
                .map(|i| {
                    format!(
                        "Backlog {r}-{i}: {}",
                        "Sediment settles where a river meets the sea. ".repeat(30)
                    )
                })
                .collect();
            tokio::spawn(async move {
                client
                    .embed(EmbedRequest {
                        texts,
                        input_type: InputType::Document as i32,
                    })
                    .await
                    .map(|r| r.into_inner().embeddings.len())
                    .unwrap_or(0)
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_long_job_renews_its_lease_and_is_never_grabbed_twice() {
    const LEASE_MS: i64 = 1_000;
    let mut options = StackOptions::default();
    options.ingest.worker.lease_ms = LEASE_MS as u64;
    // A second worker, idle, ready to take any job whose lease lapses.
    options.ingest.worker.concurrency = 2;
    // One model thread, one text per forward pass: a backlog ahead of the job's embedding call
    // keeps the job running for many lease periods.
    options.embedding.model.workers = 1;
    options.embedding.model.query_workers = 0;
    options.embedding.model.max_batch = 1;
    options.embedding.cache.l1_entries = 0;
    let stack = Stack::start_with(options).await.unwrap();
    let db = stack.db().await.unwrap();
    record_lease_events(&db).await;
    let mut gw = stack.gateway_client().await.unwrap();

    let backlog = embedding_backlog(&stack.embedding_client());
    eventually("the backlog running", PATIENCE, || async {
        let (_, m) = http_get(stack.embedding.admin, "/metrics").await.ok()?;
        (metric_sum(&m, "braid_embedding_batch_size_count", &[]) >= 1.0).then_some(())
    })
    .await
    .unwrap();
    let id = Ingest::new(vec![
        doc("slow", "Deltas form where rivers drop their sediment.").title("Document slow"),
    ])
    .no_wait()
    .accepted(&mut gw)
    .await
    .remove(0);
    // The vector job, still on its first attempt, has been running for three lease periods.
    let (job,): (i64,) = eventually("the vector job outliving 3 leases", PATIENCE, || {
        let db = db.clone();
        async move {
            sqlx::query_as(
                "SELECT j.id FROM ingest.jobs j JOIN public.job_claims c ON c.job = j.id \
                 WHERE j.leg = 'vector' AND j.state = 'running' AND j.attempts = 1 \
                   AND c.attempts = 1 AND c.claimed_at < now() - $1 * interval '1 millisecond'",
            )
            .bind(3 * LEASE_MS)
            .fetch_optional(&db)
            .await
            .unwrap()
        }
    })
    .await
    .unwrap();
    for handle in backlog {
        assert_eq!(handle.await.unwrap(), 48, "the backlog was embedded");
    }
    wait_ready(&gw, &id).await;

    let claims: Vec<(i32,)> =
        sqlx::query_as("SELECT attempts FROM public.job_claims WHERE job = $1")
            .bind(job)
            .fetch_all(&db)
            .await
            .unwrap();
    assert_eq!(claims, vec![(1,)], "claimed once, by one worker");
    let (renewals, late): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE renewed_at > prev_locked_until) \
         FROM public.job_renewals WHERE job = $1",
    )
    .bind(job)
    .fetch_one(&db)
    .await
    .unwrap();
    assert!(renewals >= 3, "{renewals} renewals in 3+ lease periods");
    assert_eq!(late, 0, "every renewal came before the lease ran out");
    stack.shutdown().await.unwrap();
}
