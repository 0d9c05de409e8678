//! The store against the real PostgreSQL, each test on a database of its own.

use std::time::Duration;

use braid_core::db::ScratchDatabase;
use braid_proto::v1::DocumentAcl;

use super::*;

async fn store() -> (Store, ScratchDatabase) {
    let scratch = ScratchDatabase::create("braid_ingest_test").await;
    let store = Store::connect(&scratch.config).unwrap();
    store.migrate().await.unwrap();
    (store, scratch)
}

fn document(external_id: &str) -> NewDocument {
    NewDocument {
        tenant: "t".into(),
        external_id: external_id.into(),
        title: "A title".into(),
        mime_type: "text/plain",
        metadata: HashMap::new(),
        acl: DocumentAcl::default(),
        content_sha256: format!("sha-of-{external_id}"),
        chunks: vec![("Some text.".into(), 3)],
    }
}

/// (state, attempts, leased) of a job.
async fn job_row(store: &Store, id: i64) -> (String, i32, bool) {
    sqlx::query_as(
        "SELECT state, attempts, locked_until IS NOT NULL FROM ingest.jobs WHERE id = $1",
    )
    .bind(id)
    .fetch_one(store.db().pool())
    .await
    .unwrap()
}

async fn last_error(store: &Store, document: Uuid) -> Option<String> {
    sqlx::query_scalar("SELECT last_error FROM ingest.documents WHERE id = $1")
        .bind(document)
        .fetch_one(store.db().pool())
        .await
        .unwrap()
}

/// A worker whose lease lapsed during a slow leg call, while another worker claimed the job,
/// then sees the call fail: its failure must not touch the job the other worker now runs (no
/// dead-lettering, no retry scheduled under the other worker, no attempt count from the past)
/// nor the document's error. The worker that holds the job records its own failure.
#[tokio::test]
async fn a_failure_from_a_worker_whose_lease_lapsed_records_nothing() {
    let (store, scratch) = store().await;
    let everyone = Visibility {
        all: true,
        clearance: 0,
        groups: Vec::new(),
    };
    store
        .upsert_document(&document("doc-1"), &everyone)
        .await
        .unwrap();
    // The vector job only (the text leg "paused"), under a lease that lapses at once.
    let stale = store
        .claim_job(Duration::from_millis(1), &["text"])
        .await
        .unwrap()
        .expect("the document's vector job");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let current = store
        .claim_job(Duration::from_secs(600), &["text"])
        .await
        .unwrap()
        .expect("the lapsed job, claimed again");
    assert_eq!(current.id, stale.id);
    assert_eq!(current.attempts, stale.attempts + 1);

    store
        .fail_job(&stale, "from the lapsed lease", AfterFailure::Dead)
        .await
        .unwrap();
    assert_eq!(
        job_row(&store, current.id).await,
        ("running".to_string(), current.attempts, true),
        "the stale worker's failure changed the job another worker holds"
    );
    assert_eq!(last_error(&store, current.document_id).await, None);

    store
        .fail_job(
            &current,
            "from the current lease",
            AfterFailure::Retry(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    assert_eq!(
        job_row(&store, current.id).await,
        ("pending".to_string(), current.attempts, false)
    );
    assert_eq!(
        last_error(&store, current.document_id).await.as_deref(),
        Some("vector leg: from the current lease")
    );
    store.db().close().await;
    scratch.drop().await;
}
