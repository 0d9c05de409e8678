//! The "database lost" drill on the real stack: documents ingested, `deploy/scripts/backup.sh
//! backup` taken while the stack serves, the database dropped, `backup.sh restore` into a new
//! one, the services restarted on it (the Tantivy directory kept) — and every fixed query, in
//! all three modes, and every GetDocument answer is the same as before the loss.

use std::path::{Path, PathBuf};
use std::process::Output;

use braid_tests::Stack;
use braid_tests::v1::gateway_client::GatewayClient;
use braid_tests::v1::{Document, GetDocumentRequest, SearchHit, SearchMode, SearchRequest};
use sqlx::Connection;
use tonic::transport::Channel;

const TOPICS: &[&str] = &[
    "Mitochondria produce most of the chemical energy needed by the cell.",
    "Vaccines train the immune system to recognise a pathogen before an infection.",
    "Insulin regulates the level of glucose in the blood after a meal.",
    "Photosynthesis in chloroplasts turns sunlight, water and carbon dioxide into sugar.",
    "Neurons pass signals across synapses with neurotransmitters such as dopamine.",
    "Antibiotics kill bacteria but do nothing against viruses like influenza.",
];

const QUERIES: &[&str] = &[
    "cell energy",
    "immune response to infection",
    "blood sugar",
    "plants and sunlight",
    "brain signals",
    "treating a viral infection",
];

const MODES: [SearchMode; 3] = [SearchMode::Hybrid, SearchMode::Vector, SearchMode::Text];

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/scripts/backup.sh")
}

/// Runs `backup.sh <args>` against `database_url`, backups under `dir`; fails with its output.
async fn backup_sh(database_url: &str, dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let mut command = std::process::Command::new("bash");
    command
        .arg(script())
        .args(args)
        .env("BRAID_BACKUP_DATABASE_URL", database_url)
        .env("BRAID_BACKUP_DIR", dir);
    let output: Output = tokio::task::spawn_blocking(move || command.output()).await??;
    let stderr = String::from_utf8_lossy(&output.stderr);
    anyhow::ensure!(
        output.status.success(),
        "backup.sh {args:?} exited with {}:\n{stderr}",
        output.status
    );
    Ok(format!(
        "{}{stderr}",
        String::from_utf8_lossy(&output.stdout)
    ))
}

/// Every fixed query in every mode, straight to both legs (`bypass_cache`).
async fn answers(gw: &mut GatewayClient<Channel>) -> Vec<(String, Vec<SearchHit>)> {
    let mut out = Vec::new();
    for mode in MODES {
        for query in QUERIES {
            let response = gw
                .search(SearchRequest {
                    query: (*query).into(),
                    mode: mode as i32,
                    top_k: 4,
                    bypass_cache: true,
                    ..Default::default()
                })
                .await
                .expect("search")
                .into_inner();
            assert!(
                !response.degraded,
                "{mode:?} {query:?} degraded: {:?}",
                response.degraded_reasons
            );
            assert!(!response.hits.is_empty(), "{mode:?} {query:?}: no hits");
            out.push((format!("{mode:?} {query}"), response.hits));
        }
    }
    out
}

async fn documents(gw: &mut GatewayClient<Channel>) -> Vec<Document> {
    let mut out = Vec::new();
    for i in 0..TOPICS.len() {
        out.push(
            gw.get_document(GetDocumentRequest {
                external_id: format!("doc-{i}"),
                ..Default::default()
            })
            .await
            .expect("get_document")
            .into_inner(),
        );
    }
    out
}

/// The same server, database `postgres`.
fn admin_url(database_url: &str) -> String {
    let (base, _) = database_url.rsplit_once('/').expect("URL with a database");
    format!("{base}/postgres")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn database_lost_restore_answers_the_same() {
    let mut stack = Stack::start().await.expect("stack");
    let mut gw = stack.gateway_client().await.expect("gateway client");
    braid_tests::ingest_texts(&mut gw, TOPICS).await;

    let before = answers(&mut gw).await;
    let documents_before = documents(&mut gw).await;
    let chunks: i64 = sqlx::query_scalar("SELECT count(*) FROM vectors.chunks")
        .fetch_one(&stack.db().await.expect("db"))
        .await
        .expect("count vectors");
    assert!(chunks >= TOPICS.len() as i64, "{chunks} vectors");

    // The backup runs while the stack serves (and the gateway writes audit records).
    let backups = tempfile::tempdir().expect("tempdir");
    let log = backup_sh(&stack.db.url, backups.path(), &["backup"])
        .await
        .expect("backup");
    assert!(log.contains("vectors.chunks"), "{log}");
    let manifest = std::fs::read_dir(backups.path())
        .expect("backup dir")
        .map(|e| e.expect("entry").path().join("manifest"))
        .find(|p| p.exists())
        .expect("a backup with a manifest");
    let manifest = std::fs::read_to_string(manifest).expect("manifest");
    for table in ["ingest.documents", "ingest.chunks", "vectors.chunks"] {
        assert!(
            manifest
                .lines()
                .any(|l| l.starts_with(&format!("rows {table} ")) && !l.ends_with(" 0")),
            "{table} missing or empty in the manifest:\n{manifest}"
        );
    }
    assert!(
        manifest.contains(&format!("rows vectors.chunks {chunks}\n")),
        "{manifest}"
    );

    // The database is lost: everything that uses it stops, then it is dropped.
    for service in [
        &mut stack.gateway,
        &mut stack.ingest,
        &mut stack.vector,
        &mut stack.text,
    ] {
        service.stop().await.expect("stop");
    }
    let db_name = stack.db.url.rsplit('/').next().expect("name").to_string();
    let mut admin = sqlx::PgConnection::connect(&admin_url(&stack.db.url))
        .await
        .expect("admin connection");
    sqlx::query(&format!("DROP DATABASE {db_name} WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .expect("drop database");
    assert!(
        sqlx::PgConnection::connect(&stack.db.url).await.is_err(),
        "the database is gone"
    );

    // Restore the newest backup (the script creates the database), then restart on it.
    let log = backup_sh(&stack.db.url, backups.path(), &["restore"])
        .await
        .expect("restore");
    assert!(log.contains("row counts match the manifest"), "{log}");
    stack.restart_vector().await.expect("restart vector-search");
    stack.restart_text().await.expect("restart text-search");
    stack.restart_ingest().await.expect("restart ingest");
    stack.restart_gateway().await.expect("restart gateway");

    let mut gw = stack.gateway_client().await.expect("gateway client");
    let after = answers(&mut gw).await;
    for ((query, hits_before), (_, hits_after)) in before.iter().zip(&after) {
        assert_eq!(
            hits_before, hits_after,
            "{query}: different answers after the restore"
        );
    }
    assert_eq!(before.len(), after.len());
    assert_eq!(documents_before, documents(&mut gw).await);

    // A restore never silently replaces a database that holds data.
    let refused = backup_sh(&stack.db.url, backups.path(), &["restore"])
        .await
        .expect_err("restore over a non-empty database without --force");
    assert!(refused.to_string().contains("--force"), "{refused}");

    stack.shutdown().await.expect("shutdown");
}
