//! `braidctl search` against the real stack: the `--explain` table (each hit's leg rows add
//! up to its score), `--filter` (applied by both legs; a range on a key the ingest service
//! does not declare numeric is refused naming the field), and `--page-size` /
//! `--page-token` (the pages make up the one-request answer).

mod common;

use std::collections::{BTreeMap, HashMap};

use braid_core::filter::{MetaType, MetadataTypes};
use common::stdout;

use braid_tests::v1::DocumentInput;
use braid_tests::{Stack, StackOptions};

/// Runs braidctl against `gateway` with an empty `BRAID_HOME` (no dev key: no token; the
/// test stack's gateway has user auth off), off the runtime's threads.
async fn braidctl(gateway: &str, args: &[&str]) -> std::process::Output {
    let home = tempfile::tempdir().unwrap();
    let mut all = vec!["--gateway", gateway];
    all.extend_from_slice(args);
    common::braidctl(home.path(), &all).await
}

/// One hit of the table: external id, printed score, and the explanation's leg rows
/// (leg, contribution).
#[derive(Debug)]
struct Hit {
    external_id: String,
    score: f64,
    header_score: Option<f64>,
    /// The header says `score = Phi(sum of contributions)` (LINEAR z-score, the default).
    phi_of_sum: bool,
    legs: Vec<(String, f64)>,
}

/// Reads braidctl's table: `  1. 0.0328  Title [ext]   vector …  text …`, then the excerpt,
/// then with `--explain` `METHOD: score S = sum of contributions` (or `= Phi(sum of
/// contributions), …`), a column header and one row per leg (`leg rank raw normalised weight contribution chunk`).
fn hits(table: &str) -> Vec<Hit> {
    let mut hits: Vec<Hit> = Vec::new();
    for line in table.lines() {
        let trimmed = line.trim_start();
        let words: Vec<&str> = trimmed.split_whitespace().collect();
        if line.starts_with(' ')
            && words
                .first()
                .is_some_and(|w| w.ends_with('.') && w.trim_end_matches('.').parse::<u32>().is_ok())
        {
            let external_id = line
                .rsplit_once('[')
                .and_then(|(_, rest)| rest.split_once(']'))
                .map(|(id, _)| id.to_string())
                .expect("a hit line names its external id");
            hits.push(Hit {
                external_id,
                score: words[1].parse().expect("the hit's score"),
                header_score: None,
                phi_of_sum: false,
                legs: Vec::new(),
            });
        } else if let Some(hit) = hits.last_mut() {
            if let Some((_, rest)) = trimmed.split_once(": score ")
                && let Some((score, formula)) = rest.split_once(" = ")
            {
                hit.header_score = Some(score.parse().expect("explained score"));
                hit.phi_of_sum = formula.starts_with("Phi(sum of contributions)");
                assert!(
                    hit.phi_of_sum || formula == "sum of contributions",
                    "{trimmed}"
                );
            } else if matches!(words.first(), Some(&"vector") | Some(&"text"))
                && words.len() == 7
                && words[1].parse::<u32>().is_ok()
                && let Ok(contribution) = words[5].parse::<f64>()
            {
                hit.legs.push((words[0].to_string(), contribution));
            }
        }
    }
    hits
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn search_explains_filters_and_pages_in_braidctl() {
    let mut options = StackOptions::default();
    options.ingest.metadata_types = MetadataTypes {
        default: BTreeMap::from([("year".into(), MetaType::Number)]),
        tenants: BTreeMap::new(),
    };
    let stack = Stack::start_with(options).await.expect("stack");
    let mut gw = stack.gateway_client().await.unwrap();
    let topics = [
        "glaciers retreat",
        "glacier ice cores",
        "ocean currents",
        "alpine lakes",
    ];
    let documents: Vec<DocumentInput> = (0..12)
        .map(|i| DocumentInput {
            external_id: format!("g{i:02}"),
            title: format!("Field notes {i}"),
            content: format!(
                "Field notes {i} on {}: glaciers and meltwater measured over {} seasons.{}",
                topics[i % topics.len()],
                2 + i,
                " more".repeat(i)
            ),
            mime_type: "text/plain".into(),
            metadata: HashMap::from([("year".to_string(), (2010 + i).to_string())]),
            acl: None,
        })
        .collect();
    braid_tests::ingest_ready(&mut gw, "", documents).await;
    let gateway = stack.gateway.endpoint();
    let query = [
        "search",
        "glaciers meltwater",
        "--bypass-cache",
        "--top-k",
        "5",
    ];

    // --explain: every hit has both legs' rows here, and they add up to the hit's score (the
    // default, LINEAR z-score: Phi of their sum is the score).
    let explained = braidctl(&gateway, &[&query[..], &["--explain"][..]].concat()).await;
    assert!(explained.status.success(), "{explained:?}");
    let table = stdout(&explained);
    let found = hits(&table);
    assert_eq!(found.len(), 5, "{table}");
    for h in &found {
        let mut sum: f64 = h.legs.iter().map(|(_, c)| c).sum();
        assert!(
            h.phi_of_sum,
            "the default fusion is LINEAR z-score: {h:?}\n{table}"
        );
        if h.phi_of_sum {
            sum = braid_gateway::fusion::phi(sum);
        }
        let header = h.header_score.expect("an explanation per hit");
        assert!((header - h.score).abs() < 1e-4, "{h:?}\n{table}");
        assert!(
            (sum - header).abs() < 1e-5,
            "{h:?}: rows sum to {sum}\n{table}"
        );
        assert!(!h.legs.is_empty(), "{h:?}");
    }
    assert!(
        found.iter().any(|h| h.legs.len() == 2),
        "a hit found by both legs\n{table}"
    );

    // --filter, and pages of 2 that make up the one-request answer.
    let filtered = [&query[..], &["--filter", "year>=2015"][..]].concat();
    let whole = braidctl(&gateway, &filtered).await;
    assert!(whole.status.success(), "{whole:?}");
    let whole: Vec<String> = hits(&stdout(&whole))
        .into_iter()
        .map(|h| h.external_id)
        .collect();
    assert_eq!(whole.len(), 5);
    assert!(
        whole.iter().all(|id| id.as_str() >= "g05"),
        "year >= 2015 only: {whole:?}"
    );
    let mut paged = Vec::new();
    let mut token = String::new();
    for page in 0.. {
        assert!(page < 5, "pages never end: {paged:?}");
        let mut args = [&filtered[..], &["--page-size", "2"][..]].concat();
        if !token.is_empty() {
            args.extend(["--page-token", token.as_str()]);
        }
        let out = braidctl(&gateway, &args).await;
        assert!(out.status.success(), "{out:?}");
        let text = stdout(&out);
        paged.extend(hits(&text).into_iter().map(|h| h.external_id));
        match text
            .lines()
            .find_map(|l| l.strip_prefix("next page: --page-token "))
        {
            Some(next) => token = next.trim().to_string(),
            None => break,
        }
    }
    assert_eq!(paged, whole, "pages 2 + 2 + 1 = one request");

    // A range on a key ingest does not declare numeric: refused, naming the field.
    let refused = braidctl(
        &gateway,
        &[&query[..], &["--filter", "lang>=3"][..]].concat(),
    )
    .await;
    assert!(!refused.status.success(), "{refused:?}");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("filter.clauses[0].number_range") && err.contains("declared string"),
        "{err}"
    );
}
