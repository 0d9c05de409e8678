//! `braid-bench text-engines` (feature `elasticsearch`): the text leg on Tantivy and on an
//! Elasticsearch-compatible engine back to back in one run. Each round starts a fresh stack
//! per engine, Tantivy then the engine (interleaved, so both see the same machine load),
//! ingests the same SciFact slice through the gateway until every document is READY, then
//! sends the same queries one after another, hybrid then text-only. Speed is reported as
//! the engine over Tantivy per round (the machine is shared; absolute figures drift with its
//! load, ratios from one round much less), with the absolute medians beside them.

use std::io::BufRead;
use std::path::Path;
use std::time::{Duration, Instant};

use braid_tests::opensearch::{engine_config, engine_get, remove_indices, stack_options};
use braid_tests::v1::{SearchMode, SearchRequest};
use braid_tests::{Stack, StackOptions, metric_sum};

use crate::measure::{LoadSamples, Spread, cores, cpu_model, percentile};

/// What one stack measured.
struct Run {
    settled: Duration,
    not_ready: usize,
    /// text-search ReplaceDocument: summed seconds and calls (service side).
    write_secs: f64,
    writes: f64,
    /// Refreshes of the engine's index during the ingest (periodic and explicit); None on
    /// Tantivy.
    refreshes: Option<u64>,
    hybrid: Vec<Duration>,
    text: Vec<Duration>,
}

fn read_queries(path: &Path, n: usize) -> anyhow::Result<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Query {
        text: String,
    }
    let file = std::fs::File::open(path)?;
    std::io::BufReader::new(file)
        .lines()
        .take(n)
        .map(|l| Ok(serde_json::from_str::<Query>(&l?)?.text))
        .collect()
}

async fn timed(
    gw: &mut crate::Gateway,
    queries: &[String],
    mode: SearchMode,
) -> anyhow::Result<Vec<Duration>> {
    let mut took = Vec::with_capacity(queries.len());
    for q in queries {
        let started = Instant::now();
        let r = gw
            .search(SearchRequest {
                query: q.clone(),
                mode: mode as i32,
                top_k: 10,
                bypass_cache: true,
                ..Default::default()
            })
            .await?
            .into_inner();
        took.push(started.elapsed());
        anyhow::ensure!(!r.degraded, "{q}: degraded {:?}", r.degraded_reasons);
    }
    took.sort();
    Ok(took)
}

/// One stack on `engine_url` (None: Tantivy): ingest, then the queries.
async fn one(
    corpus: &Path,
    limit: usize,
    queries: &[String],
    engine_url: Option<&str>,
) -> anyhow::Result<Run> {
    let docs = crate::read_corpus(corpus, limit)?;
    let engine = engine_url.map(engine_config);
    let options = engine
        .as_ref()
        .map_or_else(StackOptions::default, stack_options);
    let stack = Stack::start_with(options).await?;
    let mut gw = stack.gateway_client().await?;
    let (_, settled, not_ready) = crate::ingest_all(&mut gw, docs, "bench").await?;
    let metrics = crate::metrics(stack.text.admin).await?;
    let refreshes = match &engine {
        Some(e) => {
            let stats =
                engine_get(&e.urls[0], &format!("/{}-*/_stats/refresh", e.index_prefix)).await?;
            stats["_all"]["primaries"]["refresh"]["total"].as_u64()
        }
        None => None,
    };
    // Warm-up (not measured): the first queries after a bulk load pay for cold caches.
    timed(
        &mut gw,
        &queries[..queries.len().min(10)],
        SearchMode::Hybrid,
    )
    .await?;
    let hybrid = timed(&mut gw, queries, SearchMode::Hybrid).await?;
    let text = timed(&mut gw, queries, SearchMode::Text).await?;
    stack.shutdown().await?;
    if let Some(e) = &engine {
        remove_indices(e).await?;
    }
    Ok(Run {
        settled,
        not_ready,
        write_secs: metric_sum(
            &metrics,
            "braid_grpc_request_duration_seconds_sum",
            &["ReplaceDocument"],
        ),
        writes: metric_sum(
            &metrics,
            "braid_grpc_request_duration_seconds_count",
            &["ReplaceDocument"],
        ),
        refreshes,
        hybrid,
        text,
    })
}

pub struct Args<'a> {
    pub corpus: &'a Path,
    pub queries: &'a Path,
    pub engine_url: &'a str,
    pub engine_name: &'a str,
    pub limit: usize,
    pub query_count: usize,
    pub rounds: usize,
    pub out: Option<&'a Path>,
}

pub async fn run(a: Args<'_>) -> anyhow::Result<()> {
    let queries = read_queries(a.queries, a.query_count)?;
    let mut load = LoadSamples::default();
    let (mut tantivy, mut engine) = (Vec::new(), Vec::new());
    for round in 1..=a.rounds {
        load.sample();
        let t = one(a.corpus, a.limit, &queries, None).await?;
        eprintln!(
            "braid-bench: round {round}: Tantivy ingest {:.1?}",
            t.settled
        );
        let e = one(a.corpus, a.limit, &queries, Some(a.engine_url)).await?;
        eprintln!(
            "braid-bench: round {round}: {} ingest {:.1?}",
            a.engine_name, e.settled
        );
        tantivy.push(t);
        engine.push(e);
    }
    load.sample();

    let spread =
        |runs: &[Run], f: &dyn Fn(&Run) -> f64| Spread::of(&runs.iter().map(f).collect::<Vec<_>>());
    let ratio = |f: &dyn Fn(&Run) -> f64| {
        Spread::of(
            &tantivy
                .iter()
                .zip(&engine)
                .map(|(t, e)| f(e) / f(t))
                .collect::<Vec<_>>(),
        )
    };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    type Figure<'f> = (&'f str, Box<dyn Fn(&Run) -> f64>, usize);
    let n_docs = a.limit as f64;
    let figures: Vec<Figure> = vec![
        (
            "ingest until every document is READY (s)",
            Box::new(|r| r.settled.as_secs_f64()),
            1,
        ),
        (
            "ingest throughput (documents/s)",
            Box::new(move |r| n_docs / r.settled.as_secs_f64()),
            1,
        ),
        (
            "text-search ReplaceDocument per document, service side (ms)",
            Box::new(|r| r.write_secs * 1000.0 / r.writes.max(1.0)),
            1,
        ),
        (
            "hybrid search p50 (ms)",
            Box::new(move |r| ms(percentile(&r.hybrid, 0.5))),
            1,
        ),
        (
            "hybrid search p99 (ms)",
            Box::new(move |r| ms(percentile(&r.hybrid, 0.99))),
            1,
        ),
        (
            "text-only search p50 (ms)",
            Box::new(move |r| ms(percentile(&r.text, 0.5))),
            1,
        ),
        (
            "text-only search p99 (ms)",
            Box::new(move |r| ms(percentile(&r.text, 0.99))),
            1,
        ),
    ];
    let mut rows = String::new();
    for (name, f, digits) in &figures {
        rows.push_str(&format!(
            "| {name} | {} | {} | {} |\n",
            spread(&tantivy, f).show(*digits),
            spread(&engine, f).show(*digits),
            ratio(f).show(2),
        ));
    }
    let refreshes = spread(&engine, &|r| {
        r.refreshes.unwrap_or(0) as f64 / r.writes.max(1.0)
    });
    let not_ready: Vec<String> = tantivy
        .iter()
        .chain(&engine)
        .map(|r| r.not_ready.to_string())
        .collect();
    let report = format!(
        "<!-- bench:text-engines -->\n\
## The text leg on {engine} next to Tantivy (SciFact slice)\n\n\
Command: `make bench` (BENCH_DOCS={limit}): `braid-bench text-engines --corpus ../shared/eval/scifact/corpus.jsonl --queries ../shared/eval/scifact/queries.jsonl --limit {limit} --query-count {nq} --rounds {rounds} --engine-url <node>`, \
against the single-node {engine} `make bench` starts (deploy/scripts/opensearch.sh: 512 MB heap, one shard, no replica, on this machine). \
Each round starts a fresh stack (all five services in one process, release build, real PostgreSQL 18 + pgvector, the real model) on Tantivy, then one on {engine}, and on each ingests the same {limit} documents through the gateway until every one is READY (every write searchable: Tantivy's group commit, the engine's coalesced refresh), then sends the first {nq} SciFact queries one after another (after 10 unmeasured), hybrid then text-only, top 10, no query cache. \
Figures: **median (min–max) of {rounds} rounds**; the last column is the engine over Tantivy within each round. {cores} cores ({cpu}); {load} (shared machine).\n\n\
| measure | Tantivy | {engine} | {engine} / Tantivy |\n| --- | --- | --- | --- |\n\
{rows}\
| {engine} refreshes per document written (periodic 1 s and coalesced explicit, primaries) | – | {} | |\n\n\
Documents not READY per stack: {not_ready}.\n\
<!-- /bench:text-engines -->\n",
        refreshes.show(2),
        engine = a.engine_name,
        limit = a.limit,
        nq = queries.len(),
        rounds = a.rounds,
        cores = cores(),
        cpu = cpu_model(),
        load = load.show(),
        not_ready = not_ready.join(", "),
    );
    println!("{report}");
    if let Some(out) = a.out {
        crate::write_section(out, "text-engines", &report)?;
        eprintln!("braid-bench: wrote {}", out.display());
    }
    Ok(())
}
