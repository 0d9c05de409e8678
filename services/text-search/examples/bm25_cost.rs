//! CPU per BM25 query of the Tantivy leg, on a SciFact index built the way the service builds
//! it (chunks of ~100 words, title + body, document entries), as the gateway asks: 50
//! candidates, text and snippet for the first 10 (`detail`).
//!
//! `cargo run --release -p braid-text-search --example bm25_cost -- <scifact dir> [docs] [queries] [rounds] [rankings file]`
//! (figures in BENCHMARKS.md, fastpath section)
//!
//! Rankings: the warm-up round's answers (every hit's chunk, document, external id, ordinal and
//! exact score, and a digest of its title, text and snippet), one line per query and caller,
//! are summed up in a printed digest; with a rankings file, the first build writes them there
//! and every later build compares its own with them and fails at the first query that differs
//! (beyond the order of exactly tied hits), so a speed-up that changes a ranking, a score or a
//! snippet cannot go unnoticed.
//!
//! Two callers alternate, round after round: `open` (unrestricted: auth disabled) and `acl` (a
//! reader with clearance 2 and two groups, so the query carries the ACL clauses). Each round
//! prints both; the last line gives the median over the rounds. Compare two builds by running
//! them one after the other, or interleaved, on the same machine.
//!
//! CPU is the sum over the process's threads (`/proc/self/task/*/schedstat`, ns).

use std::time::Instant;

use braid_proto::prost::Message;
use braid_proto::v1::{ChunkHit, LegSearchResponse};
use sha2::{Digest, Sha256};
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

/// One line describing a query's answer exactly (see the module docs).
fn ranking_line(arm: &str, query: &str, hits: &[ChunkHit]) -> String {
    let mut line = format!("{arm}\t{query}");
    for h in hits {
        let shown = Sha256::digest(format!("{}\u{0}{}\u{0}{}", h.title, h.text, h.snippet));
        line.push_str(&format!(
            "\t{}|{}|{}|{}|{:08x}|{}",
            h.chunk_id,
            h.document_id,
            h.external_id,
            h.ordinal,
            h.score.to_bits(),
            &hex::encode(shown)[..16]
        ));
    }
    line.push('\n');
    line
}

/// Writes `rankings` to `path` if it does not exist, else fails at the first line that differs
/// beyond the order of exactly tied hits (see [`canonical`]).
fn check_rankings(path: &std::path::Path, rankings: &str) -> anyhow::Result<()> {
    if !path.exists() {
        std::fs::write(path, rankings)?;
        println!("rankings written to {}", path.display());
        return Ok(());
    }
    let expected = std::fs::read_to_string(path)?;
    let mut reordered = 0;
    for (i, (want, got)) in expected.lines().zip(rankings.lines()).enumerate() {
        if want == got {
            continue;
        }
        anyhow::ensure!(
            canonical(want) == canonical(got),
            "ranking {i} differs from {}:\n  expected {want}\n  got      {got}",
            path.display()
        );
        reordered += 1;
    }
    anyhow::ensure!(
        expected.lines().count() == rankings.lines().count(),
        "{} holds {} rankings, this run made {}",
        path.display(),
        expected.lines().count(),
        rankings.lines().count()
    );
    println!(
        "rankings identical to {} ({reordered} with exactly tied hits in another order)",
        path.display()
    );
    Ok(())
}

/// A ranking line with exactly tied hits in chunk id order, and without the shown-text digest
/// of tied hits (a tie across the `detail` cut shows the text of one or the other). Ties are
/// ordered by their place in the index, which the example's concurrent group commits cut
/// differently from run to run.
fn canonical(line: &str) -> Vec<String> {
    let mut fields = line.split('\t');
    let head: Vec<String> = fields.by_ref().take(2).map(str::to_string).collect();
    let hits: Vec<Vec<&str>> = fields.map(|h| h.split('|').collect()).collect();
    fn score<'a>(hit: &[&'a str]) -> &'a str {
        hit.get(4).copied().unwrap_or_default()
    }
    let tied = |h: &[&str]| hits.iter().filter(|o| score(o) == score(h)).count() > 1;
    let mut out: Vec<String> = hits
        .iter()
        .map(|h| {
            let keep = if tied(h) { 5 } else { h.len() };
            h[..keep.min(h.len())].join("|")
        })
        .collect();
    // Stable by score (the line is best first), chunk id order within a score.
    let mut order: Vec<usize> = (0..out.len()).collect();
    order.sort_by(|&a, &b| {
        score(&hits[b])
            .cmp(score(&hits[a]))
            .then_with(|| out[a].cmp(&out[b]))
    });
    out = order.into_iter().map(|i| out[i].clone()).collect();
    head.into_iter().chain(out).collect()
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
        "index: {docs} documents, {chunks_total} chunks, {} segments; {n_queries} queries \
         (cycling {})",
        index.id_column_segments(),
        queries.len()
    );

    let rounds: usize = args.get(4).map_or(Ok(5), |s| s.parse())?;
    let reader = braid_core::auth::Access {
        unrestricted: false,
        clearance: 2,
        groups: ["chem".to_string(), "physics".to_string()]
            .into_iter()
            .collect(),
        ..braid_core::auth::Access::unrestricted()
    };
    let rankings_file = args.get(5).map(std::path::PathBuf::from);
    let mut rankings = String::new();
    let mut cpu_ms: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    // Round 0 warms up and is not counted.
    for round in 0..=rounds {
        for (arm, name) in ["open", "acl"].iter().enumerate() {
            let access = if arm == 0 {
                braid_core::auth::Access::unrestricted()
            } else {
                reader.clone()
            };
            let mut bytes = 0usize;
            let (cpu0, wall0) = (cpu_ns(), Instant::now());
            for q in queries.iter().cycle().take(n_queries) {
                let hits = index
                    .search(TextQuery {
                        tenant: "default".into(),
                        query: q.clone(),
                        top_k: 50,
                        filter: braid_core::filter::Filter::default(),
                        min_score: None,
                        access: access.clone(),
                        detail: 10,
                        chunk_level: false,
                    })
                    .await?;
                if round == 0 {
                    rankings.push_str(&ranking_line(name, q, &hits));
                }
                bytes += LegSearchResponse { hits }.encoded_len();
            }
            let (cpu, wall) = (cpu_ns() - cpu0, wall0.elapsed());
            let per_query = cpu as f64 / n_queries as f64 / 1e6;
            if round > 0 {
                cpu_ms[arm].push(per_query);
                println!(
                    "round {round} {name:>4}: {per_query:.3} ms CPU/query, {:.3} ms wall/query, {} B/response",
                    wall.as_secs_f64() * 1e3 / n_queries as f64,
                    bytes / n_queries
                );
            }
        }
    }
    println!(
        "rankings digest: {}",
        &hex::encode(Sha256::digest(&rankings))[..16]
    );
    if let Some(path) = &rankings_file {
        check_rankings(path, &rankings)?;
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (open, acl) = (median(&mut cpu_ms[0]), median(&mut cpu_ms[1]));
    println!(
        "median over {rounds} rounds: open {open:.3} ms CPU/query ({:.0} QPS per core), acl {acl:.3} ms (+{:.3})",
        1e3 / open,
        acl - open
    );
    Ok(())
}
