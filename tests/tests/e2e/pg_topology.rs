//! PostgreSQL the way it is run at scale, end to end with real processes:
//! - every service's database traffic through PgBouncer in transaction mode (ingest, the
//!   indexing workers, vector-search with per-search HNSW settings, the gateway's audit log),
//!   with PgBouncer's own counters proving it carried the traffic;
//! - vector-search reading from a streaming replica (`pg_basebackup` of a private primary),
//!   proven by a document the replica has not replayed yet; falling back to the primary when
//!   the replica lags past the bound or stops, and returning to it when it is back.

use std::time::Duration;

use braid_core::db::Pooler;
use braid_tests::pg_topology::{Cluster, PgBouncer, Topology, base_of};
use braid_tests::v1::{FusionParams, SearchMode, SearchRequest, SearchResponse};
use braid_tests::{
    Ingest, Stack, StackOptions, eventually, http_get, ingest_texts, metric_sum, titled,
};
use sqlx::Connection;

const TEXTS: [&str; 4] = [
    "Sourdough bread rises slowly because wild yeast ferments the dough overnight.",
    "Marathon runners taper their training in the weeks before a long race.",
    "Volcanic eruptions eject magma, ash and pumice into the atmosphere.",
    "The borrow checker rejects programs with dangling references at compile time.",
];

async fn search(stack: &Stack, query: &str, mode: SearchMode, ef_search: u32) -> SearchResponse {
    stack
        .gateway_client()
        .await
        .expect("gateway client")
        .search(SearchRequest {
            query: query.into(),
            top_k: 3,
            mode: mode as i32,
            fusion: Some(FusionParams {
                ef_search,
                ..Default::default()
            }),
            bypass_cache: true,
            ..Default::default()
        })
        .await
        .expect("search")
        .into_inner()
}

/// External ids of a vector search that did not degrade.
async fn vector_hits(stack: &Stack, query: &str) -> Vec<String> {
    let r = search(stack, query, SearchMode::Vector, 0).await;
    assert!(!r.degraded, "{:?}", r.degraded_reasons);
    r.hits.into_iter().map(|h| h.external_id).collect()
}

/// A value of a `SHOW` row, by column name.
fn col<'a>(row: &'a [(String, String)], name: &str) -> &'a str {
    row.iter()
        .find(|(c, _)| c == name)
        .map_or("", |(_, v)| v.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ingest_search_and_audit_run_through_pgbouncer_in_transaction_mode() -> anyhow::Result<()> {
    let shared = Topology::default();
    let upstream: u16 = base_of(&shared.admin_url)
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port in BRAID_TEST_DATABASE_URL");
    // Two server connections for every client pool: statements of different clients share them.
    let bouncer = PgBouncer::start(upstream, 2).await?;
    let mut options = StackOptions::default();
    options.topology.primary_base = bouncer.base_url();
    options.topology.pooler = Pooler::Transaction;
    let stack = Stack::start_with(options).await?;
    let mut gw = stack.gateway_client().await?;

    let config = bouncer.show("CONFIG").await?;
    let pool_mode = config.iter().find(|r| col(r, "key") == "pool_mode");
    assert_eq!(pool_mode.map(|r| col(r, "value")), Some("transaction"));

    // Ingest, the workers' job queue and the vector upserts, all through PgBouncer.
    ingest_texts(&mut gw, &TEXTS).await;
    // Searches with and without their own ef_search, concurrently, over two server connections.
    let searches = (0..12).map(|i| {
        let stack = &stack;
        async move {
            search(
                stack,
                "why does bread dough rise",
                SearchMode::Hybrid,
                if i % 2 == 0 { 0 } else { 40 + i },
            )
            .await
        }
    });
    for r in futures::future::join_all(searches).await {
        assert!(!r.degraded, "{:?}", r.degraded_reasons);
        let top = &r.hits[0];
        assert_eq!(top.external_id, "doc-0", "{r:#?}");
        assert!(
            top.vector_score.is_some() && top.text_score.is_some(),
            "{top:?}"
        );
    }

    // The HNSW settings are SET LOCAL: none outlives its search's transaction on PgBouncer's
    // shared server connections (a session-level SET would leak to every later client).
    // Two transactions held open at once occupy both server connections of the pool.
    let leaked = hnsw_settings_left_on_servers(&bouncer, &stack.db.name).await?;
    assert!(
        leaked.iter().all(|v| v == "off"),
        "hnsw.iterative_scan left on PgBouncer's server connections: {leaked:?}"
    );

    // It really was PgBouncer answering: its clients are the services (by application
    // name) and its counters hold their transactions on this test's database.
    let clients = bouncer.show("CLIENTS").await?;
    let mut names: Vec<&str> = clients
        .iter()
        .filter(|r| col(r, "database") == stack.db.name)
        .map(|r| col(r, "application_name"))
        .collect();
    names.sort();
    names.dedup();
    for service in ["braid-gateway-audit", "braid-ingest", "braid-vector-search"] {
        assert!(names.contains(&service), "pgbouncer clients: {names:?}");
    }
    let stats = bouncer.show("STATS").await?;
    let transactions: u64 = stats
        .iter()
        .find(|r| col(r, "database") == stack.db.name)
        .map(|r| col(r, "total_xact_count").parse().unwrap_or(0))
        .unwrap_or(0);
    assert!(
        transactions >= 50,
        "pgbouncer carried {transactions} transactions"
    );

    // The gateway's audit trail was written through PgBouncer too.
    let db = stack.db().await?;
    let audited = eventually(
        "audit records of the searches",
        Duration::from_secs(30),
        || {
            let db = db.clone();
            async move {
                let n: i64 =
                    sqlx::query_scalar("SELECT count(*) FROM audit.records WHERE rpc = 'Search'")
                        .fetch_one(&db)
                        .await
                        .ok()?;
                (n >= 12).then_some(n)
            }
        },
    )
    .await?;
    assert!(audited >= 12);
    stack.shutdown().await
}

/// `hnsw.iterative_scan` as each of the pool's two server connections sees it outside any
/// search (`off` when pgvector's default or not loaded), through two concurrent transactions.
async fn hnsw_settings_left_on_servers(
    bouncer: &PgBouncer,
    db: &str,
) -> anyhow::Result<Vec<String>> {
    use sqlx::Row;
    let url = format!("{}/{db}", bouncer.base_url());
    let mut conns = Vec::new();
    let mut seen = Vec::new();
    for _ in 0..2 {
        let options: sqlx::postgres::PgConnectOptions = url.parse()?;
        let mut conn =
            sqlx::PgConnection::connect_with(&options.statement_cache_capacity(0)).await?;
        sqlx::raw_sql("BEGIN").execute(&mut conn).await?;
        let row = sqlx::raw_sql(
            "SELECT coalesce(current_setting('hnsw.iterative_scan', true), 'off'), pg_backend_pid()",
        )
        .fetch_one(&mut conn)
        .await?;
        seen.push((row.try_get::<String, _>(0)?, row.try_get::<i32, _>(1)?));
        conns.push(conn);
    }
    assert_ne!(
        seen[0].1, seen[1].1,
        "two transactions on one server connection"
    );
    for mut conn in conns {
        sqlx::raw_sql("COMMIT").execute(&mut conn).await?;
    }
    Ok(seen.into_iter().map(|(v, _)| v).collect())
}

/// Whether vector-search's `/metrics` says searches read from `target` for `reason`.
async fn route_is(stack: &Stack, target: &str, reason: &str) -> bool {
    let Ok((_, body)) = http_get(stack.vector.admin, "/metrics").await else {
        return false;
    };
    metric_sum(
        &body,
        "braid_vector_search_read_route",
        &[
            &format!("target=\"{target}\""),
            &format!("reason=\"{reason}\""),
        ],
    ) == 1.0
}

async fn wait_route(stack: &Stack, target: &str, reason: &str) -> anyhow::Result<()> {
    eventually(
        &format!("searches reading from the {target} ({reason})"),
        Duration::from_secs(60),
        || async { route_is(stack, target, reason).await.then_some(()) },
    )
    .await
}

async fn replica_sql(replica: &Cluster, db: &str, sql: &str) -> anyhow::Result<()> {
    let mut conn = sqlx::PgConnection::connect(&format!("{}/{db}", replica.base_url())).await?;
    sqlx::raw_sql(sql).execute(&mut conn).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn searches_read_from_the_replica_and_fall_back_to_the_primary() -> anyhow::Result<()> {
    let primary = Cluster::primary().await?;
    let replica = Cluster::replica_of(&primary).await?;
    let options = StackOptions {
        topology: Topology {
            admin_url: primary.admin_url(),
            primary_base: primary.base_url(),
            pooler: Pooler::None,
            replica_base: Some(replica.base_url()),
            // First no lag bound to speak of: a paused replica keeps serving, visibly stale.
            max_replica_lag_ms: 600_000,
            replica_check_interval_ms: 100,
        },
        ..StackOptions::default()
    };
    let mut stack = Stack::start_with(options).await?;
    let mut gw = stack.gateway_client().await?;
    ingest_texts(&mut gw, &TEXTS).await;
    wait_route(&stack, "replica", "ok").await?;
    let db = stack.db.name.clone();

    // Reads go to the replica: with its replay paused, a document READY on the primary stays
    // invisible to vector searches until replay resumes.
    replica_sql(&replica, &db, "SELECT pg_wal_replay_pause()").await?;
    Ingest::new(vec![titled(
        "geysers",
        "Geysers erupt when underground water boils under pressure.",
    )])
    .accepted(&mut gw)
    .await;
    let on_primary: i64 =
        sqlx::query_scalar("SELECT count(*) FROM vectors.chunks WHERE external_id = 'geysers'")
            .fetch_one(&stack.db().await?)
            .await?;
    assert!(on_primary > 0, "the write went to the primary");
    assert!(route_is(&stack, "replica", "ok").await);
    let hits = vector_hits(&stack, "hot water erupting from the ground").await;
    assert!(!hits.contains(&"geysers".to_string()), "{hits:?}");
    replica_sql(&replica, &db, "SELECT pg_wal_replay_resume()").await?;
    eventually(
        "the replica replays the new document",
        Duration::from_secs(30),
        || async {
            let hits = vector_hits(&stack, "hot water erupting from the ground").await;
            (hits.first().map(String::as_str) == Some("geysers")).then_some(())
        },
    )
    .await?;

    // A lag bound of 1 s: a replica that stops replaying while the primary takes writes is
    // left for the primary, which has the new document; back when it catches up.
    stack.vector_config.database.max_replica_lag_ms = 1_000;
    stack.restart_vector().await?;
    wait_route(&stack, "replica", "ok").await?;
    replica_sql(&replica, &db, "SELECT pg_wal_replay_pause()").await?;
    Ingest::new(vec![titled(
        "tides",
        "Tides rise and fall with the pull of the moon.",
    )])
    .accepted(&mut gw)
    .await;
    wait_route(&stack, "primary", "replica_lagging").await?;
    let hits = vector_hits(&stack, "the moon pulls the ocean").await;
    assert_eq!(hits.first().map(String::as_str), Some("tides"), "{hits:?}");
    replica_sql(&replica, &db, "SELECT pg_wal_replay_resume()").await?;
    wait_route(&stack, "replica", "ok").await?;

    // The replica stops: searches keep answering (from the primary), and return to the
    // replica once it is back.
    replica.stop().await?;
    for _ in 0..3 {
        let hits = vector_hits(&stack, "why does bread dough rise").await;
        assert_eq!(hits.first().map(String::as_str), Some("doc-0"), "{hits:?}");
    }
    wait_route(&stack, "primary", "replica_down").await?;
    replica.start().await?;
    wait_route(&stack, "replica", "ok").await?;
    let hits = vector_hits(&stack, "why does bread dough rise").await;
    assert_eq!(hits.first().map(String::as_str), Some("doc-0"), "{hits:?}");
    stack.shutdown().await
}
