//! The "database lost" drill on the real stack: documents ingested, `deploy/scripts/backup.sh
//! backup` taken while the stack serves, the database dropped, `backup.sh restore` into a new
//! one, the services restarted on it (the Tantivy directory kept, or also lost and rebuilt
//! from the restored database with `Reindex`) — and every fixed query, in all three modes,
//! and every GetDocument answer is the same as before the loss.

use std::path::{Path, PathBuf};
use std::process::Output;

use braid_tests::v1::gateway_client::GatewayClient;
use std::time::Duration;

use braid_proto::service_names::TEXT_SEARCH;
use braid_tests::v1::{
    Document, GetDocumentRequest, ReindexLeg, ReindexRequest, SearchHit, SearchMode, SearchRequest,
};
use braid_tests::{Stack, TestDb};
use sqlx::Connection;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;

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
    backup_sh_keep(database_url, dir, args, "7").await
}

/// [`backup_sh`] keeping `keep` generations.
async fn backup_sh_keep(
    database_url: &str,
    dir: &Path,
    args: &[&str],
    keep: &str,
) -> anyhow::Result<String> {
    let mut command = std::process::Command::new("bash");
    command
        .arg(script())
        .args(args)
        .env("BRAID_BACKUP_DATABASE_URL", database_url)
        .env("BRAID_BACKUP_DIR", dir)
        .env("BRAID_BACKUP_KEEP", keep)
        // By count only: the rotation test's backups are all minutes old.
        .env("BRAID_BACKUP_KEEP_DAYS", "0");
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
    drill(false).await;
}

/// The whole drill: the database AND the text index are lost; restore the database, rebuild
/// the text index from it with `Reindex`, and every answer is the same as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn database_and_text_index_lost_restore_and_reindex_answer_the_same() {
    drill(true).await;
}

/// Same hits in the same order; scores equal up to float noise (a rebuilt BM25 index lays
/// its segments out differently).
fn assert_same_answers(before: &[(String, Vec<SearchHit>)], after: &[(String, Vec<SearchHit>)]) {
    assert_eq!(before.len(), after.len());
    for ((query, hits_before), (_, hits_after)) in before.iter().zip(after) {
        let ids = |hits: &[SearchHit]| {
            hits.iter()
                .map(|h| (h.document_id.clone(), h.chunk_id.clone(), h.text.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ids(hits_before),
            ids(hits_after),
            "{query}: different answers after the restore"
        );
        for (b, a) in hits_before.iter().zip(hits_after) {
            assert!(
                (b.score - a.score).abs() < 1e-4,
                "{query}: score {} vs {}",
                b.score,
                a.score
            );
        }
    }
}

async fn drill(lose_text_index: bool) {
    let mut options = braid_tests::StackOptions::default();
    // Ingest notices a lost text index quickly.
    options.ingest.recovery.text_index_check_ms = 200;
    let mut stack = Stack::start_with(options).await.expect("stack");
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
    if lose_text_index {
        for entry in std::fs::read_dir(&stack.text_config.index.dir).expect("index dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                std::fs::remove_dir_all(&path).expect("remove");
            } else {
                std::fs::remove_file(&path).expect("remove");
            }
        }
    }

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
    if lose_text_index {
        // Rebuild the text leg from the restored chunks, then wait for it to serve.
        let run = gw
            .reindex(ReindexRequest {
                leg: ReindexLeg::Text as i32,
                wait: true,
                wait_timeout_ms: 100_000,
                ..Default::default()
            })
            .await
            .expect("reindex")
            .into_inner()
            .run
            .expect("a reindex run");
        assert_eq!(run.state, "done", "{run:?}");
        assert_eq!(run.done, TOPICS.len() as u64, "{run:?}");
        braid_tests::eventually(
            "text-search SERVING again",
            Duration::from_secs(90),
            || async {
                (stack.text.health(TEXT_SEARCH).await == Some(ServingStatus::Serving)).then_some(())
            },
        )
        .await
        .expect("text-search serving");
    }
    let after = answers(&mut gw).await;
    assert_same_answers(&before, &after);
    assert_eq!(documents_before, documents(&mut gw).await);

    // A restore never silently replaces a database that holds data.
    let refused = backup_sh(&stack.db.url, backups.path(), &["restore"])
        .await
        .expect_err("restore over a non-empty database without --force");
    assert!(refused.to_string().contains("--force"), "{refused}");

    stack.shutdown().await.expect("shutdown");
}

/// The newest-first backup directories under `dir` (complete ones: with a manifest).
fn backups_in(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("backup dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.join("manifest").exists())
        .collect();
    found.sort();
    found.reverse();
    found
}

async fn rows(url: &str) -> i64 {
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    sqlx::query_scalar("SELECT count(*) FROM ingest.documents")
        .fetch_one(&mut conn)
        .await
        .expect("count")
}

/// Retention, a corrupt dump and restoring an older generation, without the services.
#[tokio::test]
async fn backups_rotate_and_a_corrupt_dump_is_never_restored() {
    let db = TestDb::create().await.expect("test database");
    let admin_url = admin_url(&db.url);
    let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    for sql in [
        "CREATE SCHEMA ingest",
        "CREATE TABLE ingest.documents (id integer PRIMARY KEY, body text NOT NULL)",
        "INSERT INTO ingest.documents SELECT g, 'doc ' || g FROM generate_series(1, 50) g",
    ] {
        sqlx::query(sql).execute(&mut conn).await.expect(sql);
    }
    let dir = tempfile::tempdir().expect("tempdir");

    // Three backups (50, 60, 70 rows) with two generations kept: the 50-row one goes.
    for more in [0, 10, 20] {
        if more > 0 {
            sqlx::query(
                "INSERT INTO ingest.documents SELECT g, 'doc ' || g FROM generate_series($1, $2) g",
            )
            .bind(51 + more - 10)
            .bind(50 + more)
            .execute(&mut conn)
            .await
            .expect("insert");
        }
        backup_sh_keep(&db.url, dir.path(), &["backup"], "2")
            .await
            .expect("backup");
    }
    drop(conn);
    let kept = backups_in(dir.path());
    assert_eq!(kept.len(), 2, "{kept:?}");
    let manifest = |p: &Path| std::fs::read_to_string(p.join("manifest")).expect("manifest");
    assert!(manifest(&kept[0]).contains("rows ingest.documents 70\n"));
    assert!(manifest(&kept[1]).contains("rows ingest.documents 60\n"));

    // One flipped byte in the newest dump: verify and restore refuse it, nothing is created.
    let dump = std::fs::read_dir(&kept[0])
        .expect("backup")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|e| e == "dump"))
        .expect("dump file");
    let mut bytes = std::fs::read(&dump).expect("dump");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&dump, bytes).expect("write dump");
    let err = backup_sh(&db.url, dir.path(), &["verify"])
        .await
        .expect_err("verify a corrupt dump");
    assert!(err.to_string().contains("is corrupt"), "{err}");
    let restored_name = format!("braid_test_restored_{}", uuid_suffix(&db.url));
    let restored_url = format!(
        "{}/{restored_name}",
        admin_url.rsplit_once('/').expect("url").0
    );
    let err = backup_sh(&restored_url, dir.path(), &["restore"])
        .await
        .expect_err("restore a corrupt dump");
    assert!(err.to_string().contains("is corrupt"), "{err}");
    assert!(
        sqlx::PgConnection::connect(&restored_url).await.is_err(),
        "no database created from a corrupt backup"
    );

    // The older generation restores, with its own row count.
    let older = kept[1].to_str().expect("utf-8 path");
    backup_sh(&restored_url, dir.path(), &["restore", older])
        .await
        .expect("restore the older backup");
    assert_eq!(rows(&restored_url).await, 60);

    let mut admin = sqlx::PgConnection::connect(&admin_url)
        .await
        .expect("admin");
    for name in [
        restored_name.as_str(),
        db.url.rsplit('/').next().expect("name"),
    ] {
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut admin)
            .await
            .expect("drop database");
    }
}

/// The random part of a test database's name.
fn uuid_suffix(url: &str) -> &str {
    url.rsplit('_').next().expect("braid_test_<uuid>")
}

/// Point-in-time recovery as docs/operations.md "Recovery" describes it, on a throw-away cluster of its own
/// (`deploy/scripts/pitr_drill.sh`: WAL archiving, base backup, recovery to a time between two
/// writes, only the earlier one back).
#[tokio::test]
async fn point_in_time_recovery_stops_at_the_target_time() {
    let drill = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/scripts/pitr_drill.sh");
    let output =
        tokio::task::spawn_blocking(move || std::process::Command::new("bash").arg(drill).output())
            .await
            .expect("join")
            .expect("run pitr_drill.sh");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "pitr_drill.sh exited with {}:\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains("rows 1-200 back"), "{stdout}\n{stderr}");
}

/// Point-in-time recovery the Helm chart's way (`backup.pitr`), on a throw-away cluster of its
/// own (`deploy/scripts/pitr_stream_drill.sh`): WAL streamed by `backup.sh wal-receive`
/// (pg_receivewal through a slot, as a role with only REPLICATION), a base backup without WAL
/// by `backup.sh pitr-basebackup` (what the CronJob runs), recovery from the received WAL to a
/// time between two writes: only the earlier one is back.
#[tokio::test]
async fn streamed_wal_recovery_stops_at_the_target_time() {
    let drill =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/scripts/pitr_stream_drill.sh");
    let output =
        tokio::task::spawn_blocking(move || std::process::Command::new("bash").arg(drill).output())
            .await
            .expect("join")
            .expect("run pitr_stream_drill.sh");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "pitr_stream_drill.sh exited with {}:\n{stdout}\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains("from streamed WAL: rows 1-200 back"),
        "{stdout}\n{stderr}"
    );
}
