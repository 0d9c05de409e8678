//! Tenant and ACL walls, every filter operator and delete, through the gateway with user
//! tokens, the text leg on the engine: what one user may not see never reaches an answer in
//! any mode, each filter selects exactly its documents inside the engine's query, and a
//! delete leaves the engine.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use braid_core::filter::{MetaType, MetadataTypes};
use braid_tests::opensearch::{engine_config, engine_documents, engine_url, remove_indices};
use braid_tests::v1::gateway_client::GatewayClient;
use braid_tests::v1::{
    DateRange, DeleteDocumentRequest, DocumentAcl, DocumentInput, DocumentStatus, FilterClause,
    IngestRequest, MetadataFilter, NumberRange, SearchMode, SearchRequest, StringList,
    filter_clause,
};
use braid_tests::{Stack, Users, as_user, eventually};
use tonic::transport::Channel;

use super::request;

const SECRET: &str = "opensearch-walls-test-secret-0123456789";
const QUERY: &str = "energy report solar";

/// Report `i` of tenant acme: metadata derived from `i`.
fn report(i: usize) -> DocumentInput {
    let mut metadata = HashMap::from([
        ("year".to_string(), (2010 + i % 12).to_string()),
        (
            "published".to_string(),
            format!("2024-{:02}-{:02}T08:00:00Z", 1 + i % 12, 1 + i % 28),
        ),
        ("lang".to_string(), ["en", "de", "fr"][i % 3].to_string()),
    ]);
    if i.is_multiple_of(4) {
        metadata.insert("draft".into(), "true".into());
    }
    DocumentInput {
        external_id: format!("r{i:02}"),
        title: format!("Energy report {i}"),
        content: format!(
            "Energy report number {i} on rooftop solar panels and storage.{}",
            " Appendix note.".repeat(i)
        ),
        mime_type: "text/plain".into(),
        metadata,
        acl: None,
    }
}

fn restricted(id: &str, clearance: u32, groups: &[&str]) -> DocumentInput {
    DocumentInput {
        external_id: id.into(),
        title: format!("Restricted energy report {id}"),
        content: "Energy report on solar: solar energy report, solar report, energy.".into(),
        acl: Some(DocumentAcl {
            clearance,
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }),
        ..Default::default()
    }
}

async fn ingest(gw: &mut GatewayClient<Channel>, token: &str, documents: Vec<DocumentInput>) {
    let results = gw
        .ingest(as_user(
            IngestRequest {
                documents,
                wait_until_indexed: true,
                wait_timeout_ms: 120_000,
                ..Default::default()
            },
            token,
        ))
        .await
        .unwrap()
        .into_inner()
        .results;
    assert!(
        results
            .iter()
            .all(|r| r.error.is_empty() && r.status == DocumentStatus::Ready as i32),
        "{results:?}"
    );
}

async fn visible(
    gw: &mut GatewayClient<Channel>,
    token: &str,
    r: SearchRequest,
) -> HashSet<String> {
    let answer = gw.search(as_user(r, token)).await.unwrap().into_inner();
    assert!(!answer.degraded, "{:?}", answer.degraded_reasons);
    answer.hits.into_iter().map(|h| h.external_id).collect()
}

fn clause(key: &str, op: filter_clause::Op, not: bool) -> FilterClause {
    FilterClause {
        key: key.into(),
        op: Some(op),
        not,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tenant_and_acl_walls_every_filter_operator_and_delete() {
    let users = Users::new(SECRET);
    let engine = engine_config(&engine_url());
    let mut options = users.stack_options();
    options.text_engine = Some(engine.clone());
    options.ingest.metadata_types = MetadataTypes {
        default: BTreeMap::from([
            ("year".into(), MetaType::Number),
            ("published".into(), MetaType::Date),
            ("draft".into(), MetaType::Bool),
        ]),
        tenants: BTreeMap::new(),
    };
    let stack = Stack::start_with(options).await.unwrap();
    let mut gw = stack.gateway_client().await.unwrap();

    let reports: Vec<DocumentInput> = (0..24).map(report).collect();
    let mut acme = reports.clone();
    acme.push(restricted("secret-c3", 3, &[]));
    acme.push(restricted("secret-physics", 0, &["physics"]));
    // Labelling above one's own clearance or with others' groups is an admin's right (a
    // writer labels only within its own access, issue 23).
    ingest(&mut gw, &users.token("loader", "acme", "admin"), acme).await;
    let globex: Vec<DocumentInput> = (0..3)
        .map(|i| DocumentInput {
            external_id: format!("g{i}"),
            ..restricted("x", 0, &[])
        })
        .map(|d| DocumentInput { acl: None, ..d })
        .collect();
    ingest(&mut gw, &users.token("loader", "globex", "writer"), globex).await;

    // Walls, in every mode, deep enough for everything that matches.
    let reader = users.token("rita", "acme", "reader");
    let cleared = users.token_with_acl("carl", "acme", "reader", 3, &["physics"]);
    let outsider = users.token("gus", "globex", "reader");
    let report_ids: HashSet<String> = reports.iter().map(|d| d.external_id.clone()).collect();
    for mode in [SearchMode::Text, SearchMode::Hybrid] {
        let seen = visible(&mut gw, &reader, request(QUERY, mode, 100)).await;
        assert_eq!(seen, report_ids, "{mode:?}: acme without clearance");
        let seen = visible(&mut gw, &cleared, request(QUERY, mode, 100)).await;
        assert!(
            seen.contains("secret-c3") && seen.contains("secret-physics") && seen.len() == 26,
            "{mode:?}: {seen:?}"
        );
        let seen = visible(&mut gw, &outsider, request(QUERY, mode, 100)).await;
        let globex_ids: HashSet<String> = (0..3).map(|i| format!("g{i}")).collect();
        assert_eq!(seen, globex_ids, "{mode:?}: globex sees only its own");
        // top_k counts visible documents only: the restricted ones rank first for the
        // cleared user, yet the reader's two hits are two reports.
        let top2 = visible(&mut gw, &reader, request(QUERY, mode, 2)).await;
        assert!(
            top2.len() == 2 && top2.is_subset(&report_ids),
            "{mode:?}: {top2:?}"
        );
    }

    // Every filter operator, negated where it can be, inside the engine's query.
    let meta = |d: &DocumentInput, k: &str| d.metadata.get(k).cloned();
    let year = move |d: &DocumentInput| meta(d, "year").unwrap().parse::<i32>().unwrap();
    type Expect = Box<dyn Fn(&DocumentInput) -> bool>;
    let list = |v: &[&str]| StringList {
        values: v.iter().map(|s| s.to_string()).collect(),
    };
    let cases: Vec<(&str, MetadataFilter, Expect)> = vec![
        (
            "equals",
            MetadataFilter {
                equals: HashMap::from([("lang".into(), "de".into())]),
                ..Default::default()
            },
            Box::new(move |d| meta(d, "lang").as_deref() == Some("de")),
        ),
        (
            "eq",
            MetadataFilter {
                clauses: vec![clause("lang", filter_clause::Op::Eq("fr".into()), false)],
                ..Default::default()
            },
            Box::new(move |d| meta(d, "lang").as_deref() == Some("fr")),
        ),
        (
            "not in",
            MetadataFilter {
                clauses: vec![clause(
                    "lang",
                    filter_clause::Op::In(list(&["en", "fr"])),
                    true,
                )],
                ..Default::default()
            },
            Box::new(move |d| meta(d, "lang").as_deref() == Some("de")),
        ),
        (
            "number range",
            MetadataFilter {
                clauses: vec![clause(
                    "year",
                    filter_clause::Op::NumberRange(NumberRange {
                        gte: Some(2013.0),
                        lt: Some(2017.0),
                        ..Default::default()
                    }),
                    false,
                )],
                ..Default::default()
            },
            Box::new(move |d| (2013..2017).contains(&year(d))),
        ),
        (
            "date range",
            MetadataFilter {
                clauses: vec![clause(
                    "published",
                    filter_clause::Op::DateRange(DateRange {
                        gt: "2024-03-03T08:00:00Z".into(),
                        lte: "2024-08-01".into(),
                        ..Default::default()
                    }),
                    false,
                )],
                ..Default::default()
            },
            Box::new(move |d| {
                let p = meta(d, "published").unwrap();
                p.as_str() > "2024-03-03T08:00:00Z" && p.as_str() <= "2024-08-01"
            }),
        ),
        (
            "exists",
            MetadataFilter {
                clauses: vec![clause("draft", filter_clause::Op::Exists(true), false)],
                ..Default::default()
            },
            Box::new(move |d| meta(d, "draft").is_some()),
        ),
        (
            "not exists",
            MetadataFilter {
                clauses: vec![clause("draft", filter_clause::Op::Exists(false), false)],
                ..Default::default()
            },
            Box::new(move |d| meta(d, "draft").is_none()),
        ),
        (
            "not number range, and not eq (AND)",
            MetadataFilter {
                clauses: vec![
                    clause(
                        "year",
                        filter_clause::Op::NumberRange(NumberRange {
                            gte: Some(2018.0),
                            ..Default::default()
                        }),
                        true,
                    ),
                    clause("lang", filter_clause::Op::Eq("en".into()), true),
                ],
                ..Default::default()
            },
            Box::new(move |d| year(d) < 2018 && meta(d, "lang").as_deref() != Some("en")),
        ),
    ];
    for (name, filter, expect) in &cases {
        let expected: HashSet<String> = reports
            .iter()
            .filter(|d| expect(d))
            .map(|d| d.external_id.clone())
            .collect();
        assert!(
            expected.len() >= 3 && expected.len() < reports.len(),
            "{name}: a selective filter ({})",
            expected.len()
        );
        let r = SearchRequest {
            filter: Some(filter.clone()),
            ..request(QUERY, SearchMode::Text, 100)
        };
        assert_eq!(visible(&mut gw, &reader, r).await, expected, "{name}");
        // Hybrid: whatever either leg returns satisfies the filter.
        let r = SearchRequest {
            filter: Some(filter.clone()),
            ..request(QUERY, SearchMode::Hybrid, 10)
        };
        let hybrid = visible(&mut gw, &reader, r).await;
        assert!(
            !hybrid.is_empty() && hybrid.is_subset(&expected),
            "{name}: {hybrid:?}"
        );
    }

    // Delete: gone from the text leg, and from the engine.
    let (_, before) = engine_documents(&engine).await.unwrap();
    let writer = users.token("loader", "acme", "writer");
    gw.delete_document(as_user(
        DeleteDocumentRequest {
            external_id: "r05".into(),
            ..Default::default()
        },
        &writer,
    ))
    .await
    .unwrap();
    eventually(
        "r05 gone from the text leg",
        Duration::from_secs(60),
        || {
            let (mut gw, reader) = (gw.clone(), reader.clone());
            async move {
                let seen = visible(&mut gw, &reader, request(QUERY, SearchMode::Text, 100)).await;
                (!seen.contains("r05") && seen.len() == 23).then_some(())
            }
        },
    )
    .await
    .unwrap();
    let (_, after) = engine_documents(&engine).await.unwrap();
    assert_eq!(after, before - 1);

    stack.shutdown().await.unwrap();
    remove_indices(&engine).await.unwrap();
}
