//! CPU per search of the vector leg, in PostgreSQL (the backend) and in the client (the
//! vector-search code and sqlx), before and after issue 24's changes, interleaved in one run;
//! and what the gateway's batched audit INSERTs cost PostgreSQL per record.
//!
//! `cargo run --release -p braid-vector-search --example vector_cost -- [rows] [searches] [rounds] [top_k]`
//! (defaults 12000 2000 3 50; figures in BENCHMARKS.md, section "Vector leg: CPU per search")
//!
//! Data: `rows` random unit vectors of 384 dimensions (3 chunks per document, one tenant),
//! written through [`Store::replace_document`] into a database of its own on
//! `BRAID_TEST_DATABASE_URL`'s server (dropped at the end), HNSW index as migrated. Queries:
//! stored vectors with noise added (each has near neighbours, as a real query has), every one
//! distinct. Random vectors have no cluster structure, so the HNSW scan visits more of the
//! graph than for SciFact's embeddings: the scan's own CPU is an upper bound.
//!
//! Arms, each on a pool of one connection, in a rotating order round after round:
//! - `before`: the search as it was (copied below): `BEGIN`, a `set_config` statement, the
//!   query vector as binary `real[]` cast to `vector`, an unnamed statement (Parse + Describe,
//!   then Bind + Execute), `COMMIT`;
//! - `after`: [`Store::search`] without a pooler: one named, cached statement on the
//!   connection's session settings, the query vector as pgvector's binary `vector`;
//! - `pooler`: [`Store::search`] configured for a transaction-mode pooler (`real[]`, `SET
//!   LOCAL` and an unnamed statement in a transaction of their own), here straight to
//!   PostgreSQL: the same work as `before`.
//!
//! The first 200 queries' answers (ids and exact scores) must be identical in all arms.
//!
//! CPU: the backends of the bench database (`/proc/<pid>/schedstat`, ns; the server must run
//! on this machine) and this process (`/proc/self/task/*/schedstat`), around each arm's run.

use std::time::Instant;

use braid_core::auth::Access;
use braid_core::db::{DatabaseConfig, Db, Pooler};
use braid_core::filter::Filter;
use braid_proto::v1::{Chunk, ChunkHit};
use braid_vector_search::{Query, SearchConfig, Store};
use sqlx::{Connection, QueryBuilder};

const DIMS: usize = 384;
const CHUNKS_PER_DOC: usize = 3;
const CHECKED: usize = 200;

fn ns_of(path: &std::path::Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn process_cpu_ns() -> u64 {
    std::fs::read_dir("/proc/self/task")
        .map(|tasks| {
            tasks
                .flatten()
                .map(|t| ns_of(&t.path().join("schedstat")))
                .sum()
        })
        .unwrap_or(0)
}

fn backends_cpu_ns(pids: &[i32]) -> u64 {
    pids.iter()
        .map(|p| {
            ns_of(
                &std::path::Path::new("/proc")
                    .join(p.to_string())
                    .join("schedstat"),
            )
        })
        .sum()
}

/// splitmix64 → uniform in [-0.5, 0.5).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    }
}

fn normalised(v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / norm).collect()
}

type HitRow = (String, String, String, String, String, i32, f64);

/// The search as it was before issue 24 (store.rs at main 1b05d6f), without filters.
async fn search_before(db: &Db, embedding: &[f32], top_k: u32) -> anyhow::Result<Vec<ChunkHit>> {
    let access = Access::unrestricted();
    let mut tx = db.begin().await?;
    sqlx::query(
        "SELECT set_config('hnsw.ef_search', $1, true), set_config('hnsw.iterative_scan', $2, true) \
         FROM (SELECT '[1]'::vector) AS loaded",
    )
    .bind(SearchConfig::default().ef_search.to_string())
    .bind("relaxed_order")
    .execute(&mut tx)
    .await?;
    let rows: Vec<HitRow> = sqlx::query_as(
        "SELECT chunk_id, document_id::text, external_id, title, body, ordinal, \
                1 - (embedding <=> $1::real[]::vector) AS score \
         FROM vectors.chunks \
         WHERE tenant = $2 AND ($4 = '' OR model = $4) \
           AND ($5 OR (acl_clearance <= $6::int8 \
                       AND (acl_groups = '{}' OR acl_groups && $7::text[]))) \
         ORDER BY embedding <=> $1::real[]::vector \
         LIMIT $3",
    )
    .bind(embedding)
    .bind("t")
    .bind(top_k as i64)
    .bind("")
    .bind(access.unrestricted)
    .bind(i64::from(access.clearance))
    .bind(access.groups.iter().map(String::as_str).collect::<Vec<_>>())
    .persistent(false)
    .fetch_all(&mut tx)
    .await?;
    tx.commit().await?;
    let mut hits: Vec<ChunkHit> = rows
        .into_iter()
        .map(
            |(chunk_id, document_id, external_id, title, text, ordinal, score)| ChunkHit {
                chunk_id,
                document_id,
                external_id,
                title,
                text,
                ordinal: ordinal as u32,
                score: score as f32,
                snippet: String::new(),
            },
        )
        .collect();
    hits.sort_by(|a, b| b.score.total_cmp(&a.score));
    Ok(hits)
}

enum Arm {
    Before(Db),
    After(Store),
    Pooler(Store),
}

impl Arm {
    fn name(&self) -> &'static str {
        match self {
            Arm::Before(_) => "before",
            Arm::After(_) => "after",
            Arm::Pooler(_) => "pooler",
        }
    }

    async fn search(&self, embedding: &[f32], top_k: u32) -> anyhow::Result<Vec<ChunkHit>> {
        let store = match self {
            Arm::Before(db) => return search_before(db, embedding, top_k).await,
            Arm::After(s) | Arm::Pooler(s) => s,
        };
        let access = Access::unrestricted();
        Ok(store
            .search(Query {
                tenant: "t",
                embedding,
                top_k,
                filter: &Filter::default(),
                min_score: None,
                model: "",
                access: &access,
                ef_search: None,
            })
            .await?)
    }
}

fn answer(hits: &[ChunkHit]) -> Vec<(String, u32)> {
    hits.iter()
        .map(|h| (h.chunk_id.clone(), h.score.to_bits()))
        .collect()
}

/// One document of `CHUNKS_PER_DOC` chunks.
fn document(n: usize) -> (String, Vec<Chunk>) {
    let id = uuid::Uuid::from_u128(n as u128 + 1).to_string();
    let chunks = (0..CHUNKS_PER_DOC)
        .map(|o| Chunk {
            chunk_id: format!("{id}:{o}"),
            document_id: id.clone(),
            tenant: "t".into(),
            external_id: format!("doc-{n}"),
            title: format!("Document {n}"),
            ordinal: o as u32,
            text: format!("chunk {o} of document {n}, about as long as a title line"),
            ..Default::default()
        })
        .collect();
    (id, chunks)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: usize| -> anyhow::Result<usize> {
        Ok(match args.get(i) {
            Some(a) => a.parse()?,
            None => default,
        })
    };
    let rows = arg(0, 12_000)?;
    let searches = arg(1, 2_000)?;
    let rounds = arg(2, 3)?;
    let top_k = arg(3, 50)? as u32;

    let admin = std::env::var("BRAID_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://braid@127.0.0.1:54329/postgres".into());
    let name = format!("braid_vector_cost_{}", std::process::id());
    let mut conn = sqlx::PgConnection::connect(&admin).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await?;
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    let url = format!("{base}/{name}");
    let result = run(&url, rows, searches, rounds, top_k).await;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await?;
    result
}

async fn run(
    url: &str,
    rows: usize,
    searches: usize,
    rounds: usize,
    top_k: u32,
) -> anyhow::Result<()> {
    let metrics = braid_core::metrics::Metrics::new("vector_cost");
    let direct = DatabaseConfig {
        url: url.into(),
        max_connections: 1,
        ..DatabaseConfig::default()
    };
    let pooled = DatabaseConfig {
        pooler: Pooler::Transaction,
        migrate: false,
        ..direct.clone()
    };
    let search = SearchConfig::default();
    let store = Store::connect(&direct, &search, &metrics)?;
    store.migrate().await?;
    let arms = [
        Arm::Before(braid_core::db::primary(
            &direct,
            "braid-vector-cost-before",
        )?),
        Arm::After(store.clone()),
        Arm::Pooler(Store::connect(&pooled, &search, &metrics)?),
    ];

    // Data.
    let mut rng = Rng(24);
    let vectors: Vec<Vec<f32>> = (0..rows)
        .map(|_| normalised((0..DIMS).map(|_| rng.next()).collect()))
        .collect();
    let started = Instant::now();
    for (n, docs) in vectors.chunks(CHUNKS_PER_DOC).enumerate() {
        let (id, chunks) = document(n);
        store
            .replace_document("t", &id, "m", false, &chunks[..docs.len()], docs)
            .await?;
    }
    let mut admin = sqlx::PgConnection::connect(url).await?;
    sqlx::query("VACUUM ANALYZE vectors.chunks")
        .execute(&mut admin)
        .await?;
    println!(
        "{rows} vectors of {DIMS} dimensions written in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let queries: Vec<Vec<f32>> = (0..searches)
        .map(|i| {
            let base = &vectors[(i * 7919) % rows];
            normalised(base.iter().map(|x| x + 0.08 * rng.next()).collect())
        })
        .collect();

    // Warm-up, and the answers compared.
    let mut answers = Vec::new();
    for arm in &arms {
        let mut mine = Vec::new();
        for q in queries.iter().take(CHECKED) {
            mine.push(answer(&arm.search(q, top_k).await?));
        }
        answers.push(mine);
    }
    for (arm, mine) in arms.iter().zip(&answers).skip(1) {
        let differ = mine.iter().zip(&answers[0]).filter(|(a, b)| a != b).count();
        if let Some((a, b)) = mine.iter().zip(&answers[0]).find(|(a, b)| a != b) {
            eprintln!(
                "first difference:\n  {}: {a:?}\n  before: {b:?}",
                arm.name()
            );
        }
        anyhow::ensure!(
            differ == 0,
            "{}: {differ} of {} answers differ from `before`",
            arm.name(),
            CHECKED.min(searches)
        );
    }
    println!(
        "answers of the first {} queries identical in every arm (ids, exact scores)",
        CHECKED.min(searches)
    );

    explain(&mut admin, &queries[0], top_k).await?;

    let backends: Vec<i32> = sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_all(&mut admin)
    .await?;
    println!(
        "{} backends; {searches} searches per arm and round, top_k {top_k}",
        backends.len()
    );
    println!("round arm     backend µs/search  client µs/search  wall µs/search");
    let mut figures: Vec<Vec<(f64, f64)>> = vec![Vec::new(); arms.len()];
    for round in 0..rounds {
        for k in 0..arms.len() {
            let i = (k + round) % arms.len();
            let arm = &arms[i];
            let (b0, c0, t0) = (backends_cpu_ns(&backends), process_cpu_ns(), Instant::now());
            for q in &queries {
                arm.search(q, top_k).await?;
            }
            let wall = t0.elapsed().as_nanos() as f64;
            let backend = (backends_cpu_ns(&backends) - b0) as f64;
            let client = (process_cpu_ns() - c0) as f64;
            let per = |ns: f64| ns / searches as f64 / 1000.0;
            println!(
                "{round:>5} {:<7} {:>17.1} {:>17.1} {:>15.1}",
                arm.name(),
                per(backend),
                per(client),
                per(wall)
            );
            figures[i].push((per(backend), per(client)));
        }
    }
    println!("median over {rounds} rounds:");
    let before = (
        median(figures[0].iter().map(|f| f.0).collect()),
        median(figures[0].iter().map(|f| f.1).collect()),
    );
    for (arm, f) in arms.iter().zip(&figures) {
        let backend = median(f.iter().map(|f| f.0).collect());
        let client = median(f.iter().map(|f| f.1).collect());
        println!(
            "  {:<7} backend {backend:.1} µs ({:.2} × before), client {client:.1} µs ({:.2} × before), both {:.1} µs ({:.2} × before)",
            arm.name(),
            backend / before.0,
            client / before.1,
            backend + client,
            (backend + client) / (before.0 + before.1)
        );
    }

    writes(&arms, &vectors, &backends, rounds).await?;
    audit(url, &mut admin, rounds).await
}

/// The plan of one search at the default settings (`EXPLAIN (ANALYZE, BUFFERS)`).
async fn explain(admin: &mut sqlx::PgConnection, query: &[f32], top_k: u32) -> anyhow::Result<()> {
    let mut tx = admin.begin().await?;
    sqlx::query(
        "SELECT set_config('hnsw.ef_search', $1, true), set_config('hnsw.iterative_scan', 'relaxed_order', true) \
         FROM (SELECT '[1]'::vector) AS loaded",
    )
    .bind(SearchConfig::default().ef_search.to_string())
    .execute(&mut *tx)
    .await?;
    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN (ANALYZE, BUFFERS) \
         SELECT chunk_id, document_id::text, external_id, title, body, ordinal, \
                1 - (embedding <=> $1::real[]::vector) AS score \
         FROM vectors.chunks WHERE tenant = 't' \
         ORDER BY embedding <=> $1::real[]::vector LIMIT $2",
    )
    .bind(query)
    .bind(top_k as i64)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    println!(
        "plan of one search (ef_search {}):",
        SearchConfig::default().ef_search
    );
    for line in &plan {
        // The query vector's literal is 384 numbers long.
        match line.char_indices().nth(120) {
            Some((cut, _)) => println!("  {}…", &line[..cut]),
            None => println!("  {line}"),
        }
    }
    Ok(())
}

/// CPU per chunk written: `after` (vector[]) against `pooler` (the former real[] INSERT).
async fn writes(
    arms: &[Arm],
    vectors: &[Vec<f32>],
    backends: &[i32],
    rounds: usize,
) -> anyhow::Result<()> {
    const DOCS: usize = 300;
    println!("writes: {DOCS} documents of {CHUNKS_PER_DOC} chunks replaced per arm and round");
    for round in 0..rounds {
        for arm in arms {
            let store = match arm {
                Arm::Before(_) => continue,
                Arm::After(s) | Arm::Pooler(s) => s,
            };
            let (b0, c0) = (backends_cpu_ns(backends), process_cpu_ns());
            for (n, docs) in vectors.chunks(CHUNKS_PER_DOC).take(DOCS).enumerate() {
                let (id, chunks) = document(n);
                store
                    .replace_document("t", &id, "m", false, &chunks[..docs.len()], docs)
                    .await?;
            }
            let per = |ns: u64| ns as f64 / (DOCS * CHUNKS_PER_DOC) as f64 / 1000.0;
            println!(
                "{round:>5} {:<7} backend {:.1} µs/chunk, client {:.1} µs/chunk",
                if matches!(arm, Arm::After(_)) {
                    "vector[]"
                } else {
                    "real[]"
                },
                per(backends_cpu_ns(backends) - b0),
                per(process_cpu_ns() - c0)
            );
        }
    }
    Ok(())
}

/// What the gateway's audit trail costs PostgreSQL per search: its schema (the gateway's
/// migrations) and its INSERT (a copy of `AuditStore::insert`), one record per search, in
/// batches of the sizes the writer produces (1 at a trickle, up to `audit.batch_size` = 256).
async fn audit(url: &str, admin: &mut sqlx::PgConnection, rounds: usize) -> anyhow::Result<()> {
    sqlx::raw_sql(include_str!("../../gateway/migrations/3001_audit.sql"))
        .execute(&mut *admin)
        .await?;
    sqlx::raw_sql(include_str!(
        "../../gateway/migrations/3002_audit_calls.sql"
    ))
    .execute(&mut *admin)
    .await?;
    let db = braid_core::db::primary(
        &DatabaseConfig {
            url: url.into(),
            max_connections: 1,
            ..DatabaseConfig::default()
        },
        "braid-vector-cost-audit",
    )?;
    sqlx::query("SELECT 1").execute(&db).await?;
    let pid: i32 = sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'braid-vector-cost-audit' \
         AND datname = current_database()",
    )
    .fetch_one(&mut *admin)
    .await?;
    const RECORDS: usize = 4096;
    let documents: Vec<String> = (0..10)
        .map(|n| uuid::Uuid::from_u128(n + 1).to_string())
        .collect();
    println!("audit: {RECORDS} Search records per batch size and round (10 document ids each)");
    for round in 0..rounds {
        for batch in [1usize, 16, 64, 256] {
            let (b0, c0) = (backends_cpu_ns(&[pid]), process_cpu_ns());
            for first in (0..RECORDS).step_by(batch) {
                let mut q = QueryBuilder::new(
                    "INSERT INTO audit.records (at, subject, tenant, role, client_addr, rpc, code, \
                     latency_ms, result_count, document_ids, trace_id, query, calls) ",
                );
                q.push_values(first..first + batch, |mut b, n| {
                    b.push("to_timestamp(")
                        .push_bind_unseparated(1.7e9 + n as f64 / 1000.0)
                        .push_unseparated(")")
                        .push_bind(format!("reader-{}", n % 32))
                        .push_bind("t")
                        .push_bind("reader")
                        .push_bind("127.0.0.1:40000")
                        .push_bind("Search")
                        .push_bind("Ok")
                        .push_bind(12.5f64)
                        .push_bind(10i64)
                        .push_bind(&documents)
                        .push_bind(format!("{n:032x}"))
                        .push_bind(format!("{n:064x}"))
                        .push_bind(1i64);
                });
                q.build().execute(&db).await?;
            }
            let per = |ns: u64| ns as f64 / RECORDS as f64 / 1000.0;
            println!(
                "{round:>5} batch {batch:>3}: backend {:.1} µs/record, client {:.1} µs/record",
                per(backends_cpu_ns(&[pid]) - b0),
                per(process_cpu_ns() - c0)
            );
        }
    }
    db.close().await;
    Ok(())
}
