//! CPU per BM25 query of the Tantivy leg, before and after the fast-path changes, on a SciFact
//! index built the way the service builds it (chunks of ~100 words, title + body).
//!
//! `cargo run --release -p braid-text-search --example bm25_cost -- <scifact dir> [docs] [queries]`
//! (figures in BENCHMARKS.md, fastpath section)
//!
//! * before: a query parser built per query (what the leg did) and text + snippet for every
//!   candidate (`detail = 0`), as the gateway asked for 50 candidates;
//! * after: the parser built once, text + snippet only for the page (`detail = 10`).
//!
//! CPU is the sum over the process's threads (`/proc/self/task/*/schedstat`, ns).

use std::time::Instant;

use braid_proto::prost::Message;
use braid_proto::v1::LegSearchResponse;
mod scifact;

use braid_text_search::{IndexConfig, SearchConfig, TantivyIndex, TextIndex, TextQuery};

fn cpu_ns() -> u64 {
    let mut total = 0;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for t in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) {
                total += s
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    total
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(args.get(1).map_or("../shared/eval/scifact", |s| s));
    let max_docs: usize = args.get(2).map_or(Ok(usize::MAX), |s| s.parse())?;
    let n_queries: usize = args.get(3).map_or(Ok(2_000), |s| s.parse())?;

    let tmp = tempfile::tempdir()?;
    let config = IndexConfig {
        dir: tmp.path().to_path_buf(),
        writer_memory_mb: 64,
        writer_threads: 1,
        ..IndexConfig::default()
    };
    let index = TantivyIndex::open(
        &config,
        &SearchConfig {
            snippet_chars: 160,
            ..SearchConfig::default()
        },
    )?;
    let mut chunks_total = 0;
    let corpus = scifact::lines(&dir.join("corpus.jsonl"))?;
    // Documents go in 256 at a time: concurrent writes share one commit (group commit).
    let mut docs = 0;
    for batch in corpus.iter().take(max_docs).collect::<Vec<_>>().chunks(256) {
        let writes = batch.iter().map(|d| {
            let (id, chunks) = scifact::chunks(d);
            chunks_total += chunks.len();
            let index = index.clone();
            async move { index.replace_document("default", &id, chunks).await }
        });
        for r in futures::future::join_all(writes.collect::<Vec<_>>()).await {
            r?;
        }
        docs += batch.len();
    }
    let queries: Vec<String> = scifact::lines(&dir.join("queries.jsonl"))?
        .iter()
        .filter_map(|q| q["text"].as_str().map(str::to_string))
        .collect();
    anyhow::ensure!(!queries.is_empty(), "no queries");
    println!(
        "index: {docs} documents, {chunks_total} chunks; {n_queries} queries (cycling {})",
        queries.len()
    );

    // The per-query parser of the old code: the same construction, on an index opened the
    // same way.
    let reopened = tantivy::Index::open_in_dir(tmp.path())?;
    let schema = reopened.schema();
    let (title, body) = (schema.get_field("title")?, schema.get_field("body")?);

    for round in 0..2 {
        for (name, per_query_parser, detail) in [("before", true, 0u32), ("after", false, 10)] {
            let mut bytes = 0usize;
            let (cpu0, wall0) = (cpu_ns(), Instant::now());
            for q in queries.iter().cycle().take(n_queries) {
                if per_query_parser {
                    let mut parser =
                        tantivy::query::QueryParser::for_index(&reopened, vec![title, body]);
                    parser.set_field_boost(title, 1.5);
                    std::hint::black_box(&parser);
                }
                let hits = index
                    .search(TextQuery {
                        tenant: "default".into(),
                        query: q.clone(),
                        top_k: 50,
                        filter: braid_core::filter::Filter::default(),
                        min_score: None,
                        access: braid_core::auth::Access::unrestricted(),
                        detail,
                        chunk_level: false,
                    })
                    .await?;
                bytes += LegSearchResponse { hits }.encoded_len();
            }
            let (cpu, wall) = (cpu_ns() - cpu0, wall0.elapsed());
            if round == 1 {
                println!(
                    "{name:>6}: {:.3} ms CPU/query, {:.3} ms wall/query, {:.0} QPS on one core, {} B/response",
                    cpu as f64 / n_queries as f64 / 1e6,
                    wall.as_secs_f64() * 1e3 / n_queries as f64,
                    n_queries as f64 / (cpu as f64 / 1e9),
                    bytes / n_queries
                );
            }
        }
    }
    Ok(())
}
