//! Search controls end to end (real PostgreSQL + pgvector, Tantivy and model): pagination of
//! the fused ranking, score thresholds, metadata filters applied inside each leg, and the
//! metadata types declared once (in the ingest service) and enforced at both ends.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use braid_core::filter::{MetaType, MetadataTypes};
use braid_proto::tonic::Code;
use braid_tests::v1::{
    DateRange, DocumentInput, FilterClause, FusionParams, MetadataFilter, NumberRange, SearchMode,
    SearchRequest, SearchResponse, StringList, filter_clause,
};
use braid_tests::{DocumentInputExt, Ingest, Stack, StackOptions, doc, eventually};
use tonic::transport::Channel;

type Gateway = braid_tests::v1::gateway_client::GatewayClient<Channel>;

const MODES: [SearchMode; 3] = [SearchMode::Hybrid, SearchMode::Vector, SearchMode::Text];

const TOPICS: [&str; 10] = [
    "rooftop solar panels in winter",
    "battery storage for solar power",
    "wind turbines offshore",
    "grid frequency regulation",
    "heat pumps and insulation",
    "hydroelectric dams and rivers",
    "electric vehicle charging",
    "geothermal wells in Iceland",
    "smart meters and tariffs",
    "nuclear fission reactors",
];

/// Document `i`: an energy report on one of ten topics, with metadata derived from `i`.
fn report(i: usize) -> DocumentInput {
    let topic = TOPICS[i % TOPICS.len()];
    let content = format!(
        "Energy report number {i} on {topic}. The study measured output over {} weeks and \
         compares costs with the previous report in the series. Appendix:{}",
        3 + i,
        // A length of its own: no two documents tie on BM25, so every ranking has one order.
        " note".repeat(i)
    );
    let report = doc(format!("r{i:02}"), content)
        .title(format!("Energy report {i}"))
        .meta("year", (2010 + i % 15).to_string())
        .meta(
            "published",
            format!("2024-{:02}-{:02}T08:00:00Z", 1 + i % 12, 1 + i % 28),
        )
        .meta("lang", ["en", "de", "fr"][i % 3]);
    if i.is_multiple_of(4) {
        report.meta("draft", "true")
    } else {
        report
    }
}

fn types() -> MetadataTypes {
    MetadataTypes {
        default: BTreeMap::from([
            ("year".into(), MetaType::Number),
            ("published".into(), MetaType::Date),
            ("draft".into(), MetaType::Bool),
        ]),
        tenants: BTreeMap::new(),
    }
}

/// A stack whose types are declared in the ingest service's config only: the gateway learns
/// them from it.
async fn start() -> Stack {
    let mut options = StackOptions::default();
    options.ingest.metadata_types = types();
    Stack::start_with(options).await.expect("stack")
}

async fn search(gw: &mut Gateway, r: SearchRequest) -> Result<SearchResponse, tonic::Status> {
    gw.search(r).await.map(|r| r.into_inner())
}

fn request(query: &str, mode: SearchMode, top_k: u32) -> SearchRequest {
    SearchRequest {
        query: query.into(),
        mode: mode as i32,
        top_k,
        bypass_cache: true,
        ..Default::default()
    }
}

fn ids(r: &SearchResponse) -> Vec<String> {
    r.hits.iter().map(|h| h.external_id.clone()).collect()
}

#[tokio::test]
async fn pages_and_thresholds() {
    let stack = start().await;
    let mut gw = stack.gateway_client().await.unwrap();
    let results = Ingest::new((0..30).map(report).collect())
        .results(&mut gw)
        .await;
    assert!(results.iter().all(|r| r.error.is_empty()), "{results:?}");

    for mode in MODES {
        for bypass_cache in [true, false] {
            let full = search(
                &mut gw,
                SearchRequest {
                    bypass_cache,
                    ..request("solar energy report costs", mode, 25)
                },
            )
            .await
            .unwrap();
            assert_eq!(full.hits.len(), 25, "{mode:?}: the corpus fills the depth");
            assert!(full.next_page_token.is_empty(), "no paging, no token");
            // Pages of 10 out of the same 25-deep ranking: 10 + 10 + 5.
            let mut walked = Vec::new();
            let mut token = String::new();
            let mut sizes = Vec::new();
            loop {
                let page = search(
                    &mut gw,
                    SearchRequest {
                        page_size: 10,
                        page_token: token.clone(),
                        bypass_cache,
                        ..request("solar energy report costs", mode, 25)
                    },
                )
                .await
                .unwrap();
                sizes.push(page.hits.len());
                walked.extend(page.hits.iter().map(|h| (h.external_id.clone(), h.score)));
                token = page.next_page_token;
                if token.is_empty() {
                    break;
                }
                assert!(
                    sizes.len() < 5,
                    "{mode:?}: 25 hits in pages of 10 never end: {sizes:?}"
                );
            }
            assert_eq!(sizes, [10, 10, 5], "{mode:?}: the last page has no token");
            let walked_ids: Vec<String> = walked.iter().map(|(id, _)| id.clone()).collect();
            assert_eq!(
                walked_ids,
                ids(&full),
                "{mode:?} cache={bypass_cache}: pages = one request"
            );
            let unique: HashSet<&String> = walked_ids.iter().collect();
            assert_eq!(unique.len(), walked_ids.len(), "no overlap between pages");
            let full_scores: Vec<f32> = full.hits.iter().map(|h| h.score).collect();
            let walked_scores: Vec<f32> = walked.iter().map(|(_, s)| *s).collect();
            assert_eq!(walked_scores, full_scores);
        }
    }

    // A page token is bound to its request: tampered, for another query, another tenant or
    // another page size, it is refused.
    let first = search(
        &mut gw,
        SearchRequest {
            page_size: 5,
            ..request("wind turbines", SearchMode::Hybrid, 20)
        },
    )
    .await
    .unwrap();
    let token = first.next_page_token.clone();
    assert!(!token.is_empty());
    let mut tampered = token.clone().into_bytes();
    tampered[3] = if tampered[3] == b'A' { b'B' } else { b'A' };
    let variants = [
        SearchRequest {
            page_size: 5,
            page_token: String::from_utf8(tampered).unwrap(),
            ..request("wind turbines", SearchMode::Hybrid, 20)
        },
        SearchRequest {
            page_size: 5,
            page_token: token.clone(),
            ..request("heat pumps", SearchMode::Hybrid, 20)
        },
        SearchRequest {
            tenant: "other".into(),
            page_size: 5,
            page_token: token.clone(),
            ..request("wind turbines", SearchMode::Hybrid, 20)
        },
        SearchRequest {
            page_size: 4,
            page_token: token.clone(),
            ..request("wind turbines", SearchMode::Hybrid, 20)
        },
        SearchRequest {
            page_size: 5,
            page_token: token.clone(),
            min_score: Some(0.0),
            ..request("wind turbines", SearchMode::Hybrid, 20)
        },
        SearchRequest {
            page_size: 5,
            page_token: "not-a-token".into(),
            ..request("wind turbines", SearchMode::Hybrid, 20)
        },
    ];
    for (i, r) in variants.into_iter().enumerate() {
        let e = search(&mut gw, r).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "variant {i}: {e:?}");
        assert!(
            e.message().starts_with("page_token:"),
            "variant {i}: {}",
            e.message()
        );
    }
    let second = search(
        &mut gw,
        SearchRequest {
            page_size: 5,
            page_token: token,
            ..request("wind turbines", SearchMode::Hybrid, 20)
        },
    )
    .await
    .unwrap();
    assert_eq!(second.hits.len(), 5);

    // min_score keeps exactly the hits at or above it, in every mode (fused score in hybrid,
    // the leg's own score otherwise); per-leg thresholds apply inside the legs.
    for mode in MODES {
        let full = search(&mut gw, request("battery storage report", mode, 20))
            .await
            .unwrap();
        let cut = cut_below(&full, 5);
        let expected: Vec<String> = full
            .hits
            .iter()
            .filter(|h| h.score >= cut)
            .map(|h| h.external_id.clone())
            .collect();
        assert!(
            expected.len() < full.hits.len(),
            "{mode:?}: the threshold drops some"
        );
        let kept = search(
            &mut gw,
            SearchRequest {
                min_score: Some(cut),
                ..request("battery storage report", mode, 20)
            },
        )
        .await
        .unwrap();
        assert_eq!(ids(&kept), expected, "{mode:?}");
    }
    for (mode, field) in [(SearchMode::Vector, "vector"), (SearchMode::Text, "text")] {
        let full = search(&mut gw, request("battery storage report", mode, 20))
            .await
            .unwrap();
        let cut = cut_below(&full, 5);
        let mut r = request("battery storage report", mode, 20);
        if field == "vector" {
            r.min_vector_score = Some(cut);
        } else {
            r.min_text_score = Some(cut);
        }
        let kept = search(&mut gw, r.clone()).await.unwrap();
        assert!(kept.hits.iter().all(|h| h.score >= cut), "{field}");
        assert_eq!(
            kept.hits.len(),
            full.hits.iter().filter(|h| h.score >= cut).count()
        );
        // In hybrid mode the threshold removes that leg's low hits before fusion.
        r.mode = SearchMode::Hybrid as i32;
        let hybrid = search(&mut gw, r).await.unwrap();
        for h in &hybrid.hits {
            let leg = if field == "vector" {
                h.vector_score
            } else {
                h.text_score
            };
            if let Some(score) = leg {
                assert!(score >= cut, "{field} leg score {score} below {cut}");
            }
        }
    }
}

/// The score of the first hit from `from` on that scores strictly above the next one, so a
/// threshold there keeps some hits and drops others.
fn cut_below(r: &SearchResponse, from: usize) -> f32 {
    r.hits[from..]
        .windows(2)
        .find(|w| w[0].score > w[1].score)
        .map(|w| w[0].score)
        .expect("a ranking whose scores drop somewhere")
}

fn clause(key: &str, op: filter_clause::Op) -> FilterClause {
    FilterClause {
        key: key.into(),
        op: Some(op),
        not: false,
    }
}

fn negated(c: FilterClause) -> FilterClause {
    FilterClause { not: true, ..c }
}

#[tokio::test]
async fn filters_apply_inside_each_leg() {
    let stack = start().await;
    let mut gw = stack.gateway_client().await.unwrap();
    let docs: Vec<DocumentInput> = (0..36).map(report).collect();
    let results = Ingest::new(docs.clone()).results(&mut gw).await;
    assert!(results.iter().all(|r| r.error.is_empty()), "{results:?}");
    fn meta(d: &DocumentInput, k: &str) -> Option<String> {
        d.metadata.get(k).cloned()
    }
    fn year(d: &DocumentInput) -> i32 {
        meta(d, "year").unwrap().parse().unwrap()
    }
    fn published(d: &DocumentInput) -> String {
        meta(d, "published").unwrap()
    }

    type Expect = Box<dyn Fn(&DocumentInput) -> bool>;
    let cases: Vec<(&str, MetadataFilter, Expect)> = vec![
        (
            "equals map",
            MetadataFilter {
                equals: HashMap::from([("lang".into(), "de".into())]),
                ..Default::default()
            },
            Box::new(|d| meta(d, "lang").as_deref() == Some("de")),
        ),
        (
            "eq",
            MetadataFilter {
                clauses: vec![clause("lang", filter_clause::Op::Eq("fr".into()))],
                ..Default::default()
            },
            Box::new(|d| meta(d, "lang").as_deref() == Some("fr")),
        ),
        (
            "in",
            MetadataFilter {
                clauses: vec![clause(
                    "lang",
                    filter_clause::Op::In(StringList {
                        values: vec!["en".into(), "fr".into()],
                    }),
                )],
                ..Default::default()
            },
            Box::new(|d| meta(d, "lang").as_deref() != Some("de")),
        ),
        (
            "number range",
            MetadataFilter {
                clauses: vec![clause(
                    "year",
                    filter_clause::Op::NumberRange(NumberRange {
                        gte: Some(2015.0),
                        lt: Some(2020.0),
                        ..Default::default()
                    }),
                )],
                ..Default::default()
            },
            Box::new(|d| (2015..2020).contains(&year(d))),
        ),
        (
            "date range",
            MetadataFilter {
                clauses: vec![clause(
                    "published",
                    filter_clause::Op::DateRange(DateRange {
                        gt: "2024-03-03T08:00:00Z".into(),
                        lte: "2024-07-01".into(),
                        ..Default::default()
                    }),
                )],
                ..Default::default()
            },
            Box::new(|d| {
                let p = published(d);
                p.as_str() > "2024-03-03T08:00:00Z" && p.as_str() <= "2024-07-01"
            }),
        ),
        (
            "exists",
            MetadataFilter {
                clauses: vec![clause("draft", filter_clause::Op::Exists(true))],
                ..Default::default()
            },
            Box::new(|d| meta(d, "draft").is_some()),
        ),
        (
            "not exists",
            MetadataFilter {
                clauses: vec![clause("draft", filter_clause::Op::Exists(false))],
                ..Default::default()
            },
            Box::new(|d| meta(d, "draft").is_none()),
        ),
        (
            "not in",
            MetadataFilter {
                clauses: vec![negated(clause(
                    "lang",
                    filter_clause::Op::In(StringList {
                        values: vec!["en".into(), "fr".into()],
                    }),
                ))],
                ..Default::default()
            },
            Box::new(|d| meta(d, "lang").as_deref() == Some("de")),
        ),
        (
            "not number range",
            MetadataFilter {
                clauses: vec![negated(clause(
                    "year",
                    filter_clause::Op::NumberRange(NumberRange {
                        gte: Some(2020.0),
                        ..Default::default()
                    }),
                ))],
                ..Default::default()
            },
            Box::new(|d| year(d) < 2020),
        ),
        (
            "not date range",
            MetadataFilter {
                clauses: vec![negated(clause(
                    "published",
                    filter_clause::Op::DateRange(DateRange {
                        lte: "2024-06-01".into(),
                        ..Default::default()
                    }),
                ))],
                ..Default::default()
            },
            Box::new(|d| published(d).as_str() > "2024-06-01"),
        ),
        (
            "not eq, and a range (AND)",
            MetadataFilter {
                clauses: vec![
                    negated(clause("lang", filter_clause::Op::Eq("en".into()))),
                    clause(
                        "year",
                        filter_clause::Op::NumberRange(NumberRange {
                            lte: Some(2016.0),
                            ..Default::default()
                        }),
                    ),
                ],
                ..Default::default()
            },
            Box::new(|d| meta(d, "lang").as_deref() != Some("en") && year(d) <= 2016),
        ),
    ];
    for (name, filter, expect) in &cases {
        let expected: HashSet<String> = docs
            .iter()
            .filter(|d| expect(d))
            .map(|d| d.external_id.clone())
            .collect();
        assert!(
            expected.len() >= 4 && expected.len() < docs.len(),
            "{name}: a selective filter with enough matches ({})",
            expected.len()
        );
        for mode in [SearchMode::Vector, SearchMode::Text] {
            // Deep enough for every match: exactly the matching documents.
            let all = search(
                &mut gw,
                SearchRequest {
                    filter: Some(filter.clone()),
                    ..request("energy report", mode, 100)
                },
            )
            .await
            .unwrap();
            let got: HashSet<String> = ids(&all).into_iter().collect();
            assert_eq!(got, expected, "{name} in {mode:?}");
            // Inside the leg's query, not after it: the leg is asked for 3 hits only, for a
            // query whose unfiltered top 3 holds a document the filter excludes. A leg that
            // ranked first and filtered its 3 hits afterwards would come back short.
            let three = FusionParams {
                vector_candidates: 3,
                text_candidates: 3,
                ..Default::default()
            };
            let mut proved = false;
            for topic in TOPICS {
                // Every report holds "energy report": the text leg has matches for all.
                let query = format!("energy report on {topic}");
                let top3 = |filter: Option<MetadataFilter>| SearchRequest {
                    filter,
                    fusion: Some(three),
                    ..request(&query, mode, 3)
                };
                let unfiltered = search(&mut gw, top3(None)).await.unwrap();
                if ids(&unfiltered).iter().all(|id| expected.contains(id)) {
                    continue;
                }
                let few = search(&mut gw, top3(Some(filter.clone()))).await.unwrap();
                assert_eq!(
                    few.hits.len(),
                    3,
                    "{name} in {mode:?} for `{topic}`: top_k filled ({:?}, unfiltered {:?})",
                    ids(&few),
                    ids(&unfiltered)
                );
                assert!(
                    ids(&few).iter().all(|id| expected.contains(id)),
                    "{name} in {mode:?}: {:?}",
                    ids(&few)
                );
                proved = true;
                break;
            }
            assert!(
                proved,
                "{name} in {mode:?}: no topic's top 3 holds an excluded document"
            );
        }
    }
}

#[tokio::test]
async fn types_and_validation() {
    let stack = start().await;
    let mut gw = stack.gateway_client().await.unwrap();

    // One document's value contradicts the declared type: it alone is rejected.
    let bad = report(1).meta("year", "soon");
    let bad_date = report(2).meta("published", "last Tuesday");
    let results = Ingest::new(vec![report(0), bad, bad_date, report(3)])
        .results(&mut gw)
        .await;
    assert!(
        results[0].error.is_empty() && results[3].error.is_empty(),
        "{results:?}"
    );
    assert_eq!(results[1].error_code, Code::InvalidArgument as i32);
    assert!(
        results[1].error.contains("metadata[year]") && results[1].error.contains("not a number"),
        "{}",
        results[1].error
    );
    assert!(
        results[2].error.contains("metadata[published]"),
        "{}",
        results[2].error
    );
    let kept = search(&mut gw, request("energy report", SearchMode::Text, 10))
        .await
        .unwrap();
    let mut kept = ids(&kept);
    kept.sort();
    assert_eq!(kept, ["r00", "r03"]);

    let with = |clauses: Vec<FilterClause>| SearchRequest {
        filter: Some(MetadataFilter {
            clauses,
            ..Default::default()
        }),
        ..request("energy report", SearchMode::Hybrid, 10)
    };
    let number = |gte: f64| {
        filter_clause::Op::NumberRange(NumberRange {
            gte: Some(gte),
            ..Default::default()
        })
    };
    let cases: Vec<(SearchRequest, &str, &str)> = vec![
        (
            with(vec![clause("lang", number(1.0))]),
            "filter.clauses[0].number_range:",
            "declared string",
        ),
        (
            with(vec![clause(
                "year",
                filter_clause::Op::DateRange(DateRange {
                    gte: "2024-01-01".into(),
                    ..Default::default()
                }),
            )]),
            "filter.clauses[0].date_range:",
            "declared number",
        ),
        (
            with(vec![clause("year", filter_clause::Op::Eq("recent".into()))]),
            "filter.clauses[0]:",
            "not a number",
        ),
        (
            with(vec![clause(
                "lang",
                filter_clause::Op::In(StringList::default()),
            )]),
            "filter.clauses[0].in:",
            "1..=64",
        ),
        (
            with(vec![clause(
                "year",
                filter_clause::Op::NumberRange(NumberRange {
                    gt: Some(2020.0),
                    lt: Some(2010.0),
                    ..Default::default()
                }),
            )]),
            "filter.clauses[0].number_range:",
            "inverted",
        ),
        (
            with(vec![FilterClause {
                key: "year".into(),
                op: None,
                not: false,
            }]),
            "filter.clauses[0]:",
            "no operator",
        ),
        (
            with(vec![clause("bad key", filter_clause::Op::Exists(true))]),
            "filter.clauses[0].key:",
            "keys may only contain",
        ),
        (
            with(
                (0..17)
                    .map(|i| clause(&format!("k{i}"), filter_clause::Op::Exists(true)))
                    .collect(),
            ),
            "filter:",
            "at most 16",
        ),
        (
            SearchRequest {
                page_size: 101,
                ..request("energy", SearchMode::Hybrid, 10)
            },
            "page_size:",
            "0..=100",
        ),
        (
            SearchRequest {
                page_token: "x".into(),
                ..request("energy", SearchMode::Hybrid, 10)
            },
            "page_token:",
            "page_size",
        ),
        (
            SearchRequest {
                page_size: 10,
                ..request("energy", SearchMode::Hybrid, 501)
            },
            "top_k:",
            "1..=500",
        ),
        (
            SearchRequest {
                min_score: Some(f32::NAN),
                ..request("energy", SearchMode::Hybrid, 10)
            },
            "min_score:",
            "finite",
        ),
    ];
    for (r, field, rule) in cases {
        let e = search(&mut gw, r).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{field}: {e:?}");
        assert!(
            e.message().starts_with(field) && e.message().contains(rule),
            "{field} / {rule}: {}",
            e.message()
        );
    }
}

/// Metadata types are declared once, in the ingest service's config: ingest enforces them per
/// document, the gateway checks filters against the same declaration (per tenant), follows a
/// change of it without a restart, and answers filtered searches while ingest is down.
#[tokio::test]
async fn metadata_types_are_declared_once_in_ingest() {
    let mut options = StackOptions::default();
    options.ingest.metadata_types = MetadataTypes {
        default: BTreeMap::from([("year".into(), MetaType::Number)]),
        tenants: BTreeMap::from([(
            "acme".into(),
            BTreeMap::from([("rating".into(), MetaType::Number)]),
        )]),
    };
    options.gateway.search.metadata_types_refresh_ms = 200;
    let mut stack = Stack::start_with(options).await.expect("stack");
    let mut gw = stack.gateway_client().await.unwrap();
    let rated = |i: usize, rating: &str| report(i).meta("rating", rating);

    // `rating` is a number in acme only: there a wrong-typed value costs its document alone;
    // in the default tenant any text is a fine value.
    let acme = Ingest::new(vec![
        rated(0, "4.5"),
        rated(1, "great"),
        rated(2, "2"),
        rated(3, "3.5"),
    ])
    .tenant("acme")
    .results(&mut gw)
    .await;
    assert_eq!(acme[1].error_code, Code::InvalidArgument as i32, "{acme:?}");
    assert!(
        acme[1].error.contains("metadata[rating]") && acme[1].error.contains("not a number"),
        "{}",
        acme[1].error
    );
    assert!(
        [0, 2, 3].iter().all(|&i| acme[i].error.is_empty()),
        "{acme:?}"
    );
    let default = Ingest::new(vec![rated(4, "great"), rated(5, "4")])
        .results(&mut gw)
        .await;
    assert!(default.iter().all(|r| r.error.is_empty()), "{default:?}");

    let rating_at_least = |tenant: &str, gte: f64| SearchRequest {
        tenant: tenant.into(),
        filter: Some(MetadataFilter {
            clauses: vec![clause(
                "rating",
                filter_clause::Op::NumberRange(NumberRange {
                    gte: Some(gte),
                    ..Default::default()
                }),
            )],
            ..Default::default()
        }),
        ..request("energy report", SearchMode::Text, 10)
    };
    let mut found = ids(&search(&mut gw, rating_at_least("acme", 3.0)).await.unwrap());
    found.sort();
    assert_eq!(
        found,
        ["r00", "r03"],
        "acme: a number range on its number key"
    );
    let e = search(&mut gw, rating_at_least("", 3.0)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(
        e.message().starts_with("filter.clauses[0].number_range:")
            && e.message().contains("`rating` is declared string"),
        "{}",
        e.message()
    );
    let e = search(
        &mut gw,
        SearchRequest {
            tenant: "acme".into(),
            filter: Some(MetadataFilter {
                clauses: vec![clause("rating", filter_clause::Op::Eq("best".into()))],
                ..Default::default()
            }),
            ..request("energy report", SearchMode::Text, 10)
        },
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(
        e.message().starts_with("filter.clauses[0]:") && e.message().contains("not a number"),
        "{}",
        e.message()
    );

    // Declared for every tenant in the ingest config alone: after ingest restarts with it,
    // the gateway (not restarted) accepts the range in the default tenant within its refresh.
    stack
        .ingest_config
        .metadata_types
        .default
        .insert("rating".into(), MetaType::Number);
    stack.restart_ingest().await.unwrap();
    let accepted = eventually(
        "the gateway follows the ingest service's types",
        Duration::from_secs(30),
        || {
            let mut gw = gw.clone();
            async move { search(&mut gw, rating_at_least("", 3.0)).await.ok() }
        },
    )
    .await
    .unwrap();
    assert_eq!(
        ids(&accepted),
        ["r05"],
        "only the value that reads as a number"
    );

    // Ingest down: once the held types expire, a filtered search is still answered (the
    // legs apply the filter), unchecked, and counted as such.
    stack.ingest.stop().await.unwrap();
    let unchecked = || async {
        let (_, body) = braid_tests::http_get(stack.gateway.admin, "/metrics")
            .await
            .unwrap();
        braid_tests::metric_sum(
            &body,
            "braid_metadata_types_lookups_total",
            &["result=\"unavailable\""],
        )
    };
    assert_eq!(unchecked().await, 0.0);
    let answered = eventually(
        "a filtered search answered without the ingest service",
        Duration::from_secs(30),
        || {
            let mut gw = gw.clone();
            async move {
                let r = search(&mut gw, rating_at_least("acme", 3.0)).await.unwrap();
                (unchecked().await > 0.0).then_some(r)
            }
        },
    )
    .await
    .unwrap();
    let mut found = ids(&answered);
    found.sort();
    assert_eq!(found, ["r00", "r03"]);
}
