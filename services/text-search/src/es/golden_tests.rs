//! Golden tests: every request the Elasticsearch backend sends (method, path, query string,
//! body or bulk lines), compared exactly with `tests/golden/<name>.json`, so a change to any
//! of them shows up in review. Each was checked against Elasticsearch's documented API (the
//! page is named next to each case and on the builder). Regenerate after an intended change
//! with `BRAID_UPDATE_GOLDEN=1 cargo test -p braid-text-search --features elasticsearch
//! golden` and review the diff.

use std::collections::HashMap;

use braid_core::auth::Access;
use braid_proto::v1::{
    Chunk, DateRange, DocumentAcl, FilterClause, MetadataFilter, NumberRange, StringList,
    filter_clause,
};
use serde_json::{Value, json};

use super::bulk::{self, Op};
use super::mapping;
use super::query::{self, Scoring};
use super::request::{self, EsRequest, Names};
use super::write;
use crate::config::{ElasticsearchConfig, Layout, SearchConfig};
use crate::index::TextQuery;
use crate::language::{Lang, chunk_langs};

fn check(name: &str, requests: &[EsRequest]) {
    let value = match requests {
        [one] => one.to_golden(),
        many => Value::Array(many.iter().map(EsRequest::to_golden).collect()),
    };
    let text = serde_json::to_string_pretty(&value).unwrap() + "\n";
    let path = format!("{}/tests/golden/{name}.json", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("BRAID_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e} (BRAID_UPDATE_GOLDEN=1 writes it)"));
    assert_eq!(
        text, want,
        "{name}: the request differs from {path}; if intended, regenerate with \
         BRAID_UPDATE_GOLDEN=1 and review the diff"
    );
}

fn names() -> Names {
    Names::new("braid-text")
}

fn scoring() -> Scoring {
    Scoring {
        title_boost: 0.5,
        snippet_chars: 200,
    }
}

fn chunk(ordinal: u32, text: &str) -> Chunk {
    Chunk {
        chunk_id: format!("doc-1:{ordinal}"),
        document_id: "doc-1".into(),
        tenant: "acme".into(),
        external_id: "notes/heat-pumps.md".into(),
        title: "Heat pumps".into(),
        text: text.into(),
        ordinal,
        metadata: HashMap::from([
            ("lang".to_string(), "en".to_string()),
            ("year".to_string(), "2019".to_string()),
            ("published".to_string(), "2024-05-01".to_string()),
            ("draft".to_string(), "false".to_string()),
        ]),
        acl: Some(DocumentAcl {
            clearance: 2,
            groups: vec!["engineering".into(), "ops".into()],
        }),
    }
}

/// A query with every filter operator (eq, in, number and date ranges, exists, a negated
/// clause) and a restricted caller.
fn filtered_query() -> TextQuery {
    let clause = |key: &str, op, not| FilterClause {
        key: key.into(),
        not,
        op: Some(op),
    };
    let filter = braid_core::filter::parse(Some(&MetadataFilter {
        equals: HashMap::from([("lang".to_string(), "en".to_string())]),
        clauses: vec![
            clause(
                "region",
                filter_clause::Op::In(StringList {
                    values: vec!["eu".into(), "us".into()],
                }),
                false,
            ),
            clause(
                "year",
                filter_clause::Op::NumberRange(NumberRange {
                    gte: Some(2019.0),
                    lt: Some(2025.0),
                    ..Default::default()
                }),
                false,
            ),
            clause(
                "published",
                filter_clause::Op::DateRange(DateRange {
                    gt: "2024-01-01".into(),
                    ..Default::default()
                }),
                false,
            ),
            clause("draft", filter_clause::Op::Exists(true), true),
            clause("status", filter_clause::Op::Eq("retracted".into()), true),
        ],
    }))
    .unwrap();
    TextQuery {
        tenant: "acme".into(),
        query: "heat pump's \"efficiency\" title:(AND".into(),
        top_k: 10,
        filter,
        min_score: Some(0.5),
        access: Access {
            tenant: Some("acme".into()),
            clearance: 2,
            groups: ["engineering".to_string()].into(),
            unrestricted: false,
        },
        detail: 3,
        chunk_level: false,
    }
}

/// <https://www.elastic.co/guide/en/elasticsearch/reference/8.17/indices-put-template.html>
/// (body: index_patterns, priority, _meta, template.settings / template.mappings);
/// similarity: <https://www.elastic.co/guide/en/elasticsearch/reference/8.17/index-modules-similarity.html>;
/// analysis: custom analyzer, pattern tokenizer, pattern_replace char filter, length, stop
/// (`_english_`) and stemmer (`porter2`) token filters.
#[test]
fn golden_index_template() {
    let search = SearchConfig::default();
    check(
        "index_template",
        &[mapping::template(
            &names(),
            &ElasticsearchConfig::default(),
            &search,
        )],
    );
}

/// `_bulk` (<https://www.elastic.co/guide/en/elasticsearch/reference/8.17/docs-bulk.html>):
/// action lines `{"index" | "delete": {"_index", "_id", "routing"}}`, each `index` followed by
/// its source line; `require_alias=true`, no `refresh`. A replace of a document whose entry
/// listed three chunks with two: the chunks and the entry (listing them and the one it
/// deletes), then the delete of the chunk the new version lacks.
#[test]
fn golden_bulk_replace() {
    let chunks = [
        chunk(0, "Heat pumps move heat."),
        chunk(1, "heat. They are efficient."),
    ];
    let held = write::Held {
        index: "braid-text-0123456789abcdef0123456789abcdef".into(),
        present: true,
        write_id: "w0".into(),
        chunk_ids: vec!["doc-1:0".into(), "doc-1:1".into(), "doc-1:2".into()],
        stale_ids: Vec::new(),
    };
    let langs = chunk_langs(&chunks);
    let items = write::replace(
        "braid-text",
        &held,
        ("acme", "doc-1"),
        (&chunks, &langs),
        "w1",
        false,
    )
    .unwrap();
    let (writes, deletes): (Vec<_>, Vec<_>) = items.into_iter().partition(|i| i.op != Op::Delete);
    check(
        "bulk_replace",
        &[bulk::request(&writes), bulk::request(&deletes)],
    );
}

/// A rebuild's bulk load: `create` actions (409 when the entry exists) through the rebuild
/// alias.
#[test]
fn golden_bulk_rebuild() {
    let mut c = chunk(0, "Heat pumps move heat.");
    c.acl = None;
    c.metadata.clear();
    let (entry, items) = bulk::document_items(
        &names().rebuild_alias,
        ("acme", "doc-1"),
        &[c],
        &[Lang::En],
        "w2",
        Op::Create,
        &[],
    )
    .unwrap();
    let mut all: Vec<_> = entry.into_iter().collect();
    all.extend(items);
    check("bulk_rebuild", &[bulk::request(&all)]);
}

/// A German document (no metadata `lang`: detected) written live: its chunks' text in
/// `title_de` / `body_de`, the document entry's in `doc_title_de` / `doc_body_de`, `lang`
/// `de` and the `meta` value `lang\x1fde` on every entry.
#[test]
fn golden_bulk_german() {
    let german = |ordinal: u32, text: &str| Chunk {
        chunk_id: format!("doc-2:{ordinal}"),
        document_id: "doc-2".into(),
        tenant: "acme".into(),
        external_id: "notizen/haeuser.md".into(),
        title: "Häuser am Fluss".into(),
        text: text.into(),
        ordinal,
        metadata: HashMap::new(),
        acl: None,
    };
    let chunks = [
        german(
            0,
            "Die alten Häuser am Fluss wurden nach dem Hochwasser gründlich renoviert.",
        ),
        german(
            1,
            "Im Frühjahr bekamen die Häuser neue Fenster und die Dächer neue Ziegel.",
        ),
    ];
    let langs = chunk_langs(&chunks);
    assert_eq!(langs, [Lang::De, Lang::De]);
    let held = write::Held::default();
    let items = write::replace(
        "braid-text",
        &held,
        ("acme", "doc-2"),
        (&chunks, &langs),
        "w1",
        false,
    )
    .unwrap();
    check("bulk_german", &[bulk::request(&items)]);
}

/// A live delete while a rebuild loads, in order: the realtime `_mget` of the document entry
/// through both aliases
/// (<https://www.elastic.co/guide/en/elasticsearch/reference/8.17/docs-multi-get.html>:
/// `docs[]._index`, `_id`, `routing`, `_source`); the tombstone in the rebuild index; the
/// chunk deletes in both; the document entry's delete; the `_refresh` of the serving alias.
#[test]
fn golden_document_delete() {
    let n = names();
    let held = |chunk_ids: &[&str]| write::Held {
        index: "braid-text-0123456789abcdef0123456789abcdef".into(),
        present: true,
        write_id: "w1".into(),
        chunk_ids: chunk_ids.iter().map(|s| s.to_string()).collect(),
        stale_ids: vec!["doc-1:5".into()],
    };
    let doc = ("acme", "doc-1");
    let mut items = write::replace(
        &n.alias,
        &held(&["doc-1:0", "doc-1:1"]),
        doc,
        (&[], &[]),
        "w2",
        false,
    )
    .unwrap();
    items.extend(
        write::replace(
            &n.rebuild_alias,
            &held(&["doc-1:0"]),
            doc,
            (&[], &[]),
            "w2",
            true,
        )
        .unwrap(),
    );
    let (writes, deletes): (Vec<_>, Vec<_>) = items.into_iter().partition(|i| i.op != Op::Delete);
    check(
        "document_delete",
        &[
            write::lookup(&[&n.alias, &n.rebuild_alias], "acme", "doc-1"),
            bulk::request(&writes),
            bulk::request(&deletes),
            bulk::request(&[write::delete_entry(&n.alias, doc)]),
            request::refresh(&n.alias),
        ],
    );
}

/// `_search` (<https://www.elastic.co/guide/en/elasticsearch/reference/8.17/search-search.html>):
/// `size`, `track_total_hits`, `_source`, `min_score`, `query.bool` (`should` of `match`,
/// `minimum_should_match`, `filter`, `must_not`), `nested`, `range`, `terms`, `exists`.
#[test]
fn golden_search_documents() {
    check(
        "search_documents",
        &[query::documents(
            "braid-text",
            &filtered_query(),
            &[Lang::En],
            scoring(),
        )],
    );
}

/// The best chunk per document: `collapse` on `document_id` and `highlight` (`pre_tags`,
/// `post_tags`, `encoder`, `fields.body.fragment_size` / `number_of_fragments`).
#[test]
fn golden_search_best_chunks() {
    let ids = ["doc-1".to_string(), "doc-7".to_string()];
    check(
        "search_best_chunks",
        &[query::best_chunks(
            "braid-text",
            &filtered_query(),
            &[Lang::En],
            scoring(),
            &ids,
        )],
    );
}

/// Chunk-level ranking, an unrestricted caller (no ACL clauses) and no metadata filter.
#[test]
fn golden_search_chunks() {
    let mut q = filtered_query();
    q.chunk_level = true;
    q.min_score = None;
    q.filter = Default::default();
    q.access = Access::unrestricted();
    check(
        "search_chunks",
        &[query::chunks("braid-text", &q, &[Lang::En], scoring())],
    );
}

/// The multilingual query and the `lang` filter: the tenant's languages (a `terms`
/// aggregation on `lang`), then the text clauses of each of them (`Haus` analysed by each
/// field's analyzer), with a `term` on `meta` (one language) or a `terms` (several).
#[test]
fn golden_search_lang_filter() {
    let lang = |op| {
        braid_core::filter::parse(Some(&MetadataFilter {
            clauses: vec![FilterClause {
                key: "lang".into(),
                not: false,
                op: Some(op),
            }],
            ..Default::default()
        }))
        .unwrap()
    };
    let search = |filter| TextQuery {
        tenant: "acme".into(),
        query: "Haus".into(),
        top_k: 10,
        filter,
        min_score: None,
        access: Access::unrestricted(),
        detail: 0,
        chunk_level: false,
    };
    // A tenant with English, German, Korean and Japanese entries.
    let langs = [Lang::En, Lang::De, Lang::Ko, Lang::Ja];
    let german = search(lang(filter_clause::Op::Eq("de".into())));
    let cjk = search(lang(filter_clause::Op::In(StringList {
        values: vec!["ko".into(), "ja".into()],
    })));
    check(
        "search_lang_filter",
        &[
            query::languages("braid-text", "acme"),
            query::documents("braid-text", &german, &langs, scoring()),
            query::chunks("braid-text", &cjk, &langs, scoring()),
        ],
    );
}

/// Fetching chunks by id, and listing one document's chunks (`sort` by `ordinal`, routed).
#[test]
fn golden_fetch_and_list() {
    let ids = ["doc-1:0".to_string(), "doc-1:3".to_string()];
    check(
        "fetch_and_list",
        &[
            query::fetch(
                "braid-text",
                ("acme", "heat pumps"),
                &ids,
                &[Lang::En],
                scoring(),
            ),
            query::document_chunks("braid-text", "acme", "doc-1"),
        ],
    );
}

/// `GET _cluster/health/<target>`
/// (<https://www.elastic.co/guide/en/elasticsearch/reference/8.17/cluster-health.html>),
/// `GET <alias>/_mapping` and `GET _alias/<alias>`.
#[test]
fn golden_health_and_lookups() {
    check(
        "health_and_lookups",
        &[
            request::health("braid-text"),
            request::get_mapping("braid-text"),
            request::get_alias("braid-text-rebuild"),
        ],
    );
}

/// A rebuild's admin requests in order: create the index under the rebuild alias with the
/// bulk refresh interval (create index API: `aliases`, `settings`, `mappings._meta`), count
/// its documents, restore `refresh_interval` (update settings API), refresh, switch the alias
/// (`POST _aliases` with `remove` / `add` actions), delete the old index.
#[test]
fn golden_rebuild() {
    let names = names();
    let new = "braid-text-0123456789abcdef0123456789abcdef";
    let old = "braid-text-fedcba9876543210fedcba9876543210";
    check(
        "rebuild",
        &[
            request::create_index(
                new,
                &names.rebuild_alias,
                "-1",
                &[old.to_string()],
                Layout::Shared,
            ),
            request::count_documents(new),
            request::put_refresh_interval(new, "1s"),
            request::refresh(new),
            request::switch_alias(&names, Some(old), new, &[]),
            request::delete_index(old),
        ],
    );
}

/// The per-tenant layout's requests: a tenant's index created on its first write (one
/// primary shard, its alias), every index of the prefix with its aliases (`GET
/// <pattern>/_alias`), a rebuild counted and restored over the catalog and its tenant indices
/// (`<id>*`), and the switch moving the catalog alias and every tenant's alias in one
/// `_aliases` request (removals first), then the old generation deleted by name.
#[test]
fn golden_per_tenant() {
    let names = names();
    let new = "braid-text-0123456789abcdef0123456789abcdef";
    let old = "braid-text-fedcba9876543210fedcba9876543210";
    let acme = names.tenant("Acme");
    let beta = names.tenant("beta");
    let tenant_indices = vec![
        (
            request::tenant_index(old, &acme.key),
            vec![acme.alias.clone()],
        ),
        (
            request::tenant_index(new, &acme.key),
            vec![acme.rebuild_alias.clone()],
        ),
        (
            request::tenant_index(new, &beta.key),
            vec![beta.rebuild_alias.clone()],
        ),
    ];
    let (actions, old_tenants) = request::tenant_switch(&names, new, &tenant_indices);
    assert_eq!(old_tenants, [request::tenant_index(old, &acme.key)]);
    check(
        "per_tenant",
        &[
            request::create_index(new, &names.rebuild_alias, "-1", &[], Layout::PerTenant),
            request::create_tenant_index(
                &request::tenant_index(new, &beta.key),
                &beta.rebuild_alias,
                "-1",
            ),
            request::indices_with_aliases(&names.pattern()),
            request::count_documents(&format!("{new}*")),
            request::put_refresh_interval(&format!("{new}*"), "1s"),
            request::switch_alias(&names, Some(old), new, &actions),
            request::delete_index(&format!("{old},{}", old_tenants.join(","))),
        ],
    );
}

#[test]
fn tenant_names_are_legal_unique_and_recognised() {
    let n = names();
    let keys: Vec<String> = ["acme", "Acme", "ACME", "a/c*m e", "", "ü", &"x".repeat(500)]
        .iter()
        .map(|t| request::tenant_key(t))
        .collect();
    let unique: std::collections::HashSet<&String> = keys.iter().collect();
    assert_eq!(unique.len(), keys.len(), "{keys:?}");
    assert!(keys[0].starts_with("acme-") && keys[1].starts_with("acme-"));
    for key in &keys {
        // Lowercase letters, digits and '-', never leading '-' from the tenant's side of
        // the name, and short enough for any prefix (<= 100) within Lucene's 255 bytes.
        assert!(
            key.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "{key}"
        );
        assert!(key.len() <= 65, "{key}");
        let index = request::tenant_index(&n.new_index(), key);
        assert!(n.is_tenant_index(&index) && !n.is_index(&index), "{index}");
        let generation = n.generation_of(&index).unwrap();
        assert!(n.is_index(generation));
    }
    let t = n.tenant("acme");
    for alias in [&t.alias, &t.rebuild_alias] {
        assert!(!n.is_index(alias) && !n.is_tenant_index(alias), "{alias}");
    }
    assert!(!n.is_tenant_index("braid-text-0123456789abcdef0123456789abcdef-"));
}

#[test]
fn names_recognise_only_concrete_indices() {
    let n = names();
    assert!(n.is_index(&n.new_index()));
    assert!(!n.is_index("braid-text"));
    assert!(!n.is_index("braid-text-rebuild"));
    assert!(!n.is_index("other-0123456789abcdef0123456789abcdef"));
    let _ = json!(null);
}
