//! Search request bodies. The user's text only ever goes into `match` queries (analyzed as
//! text, never parsed as query syntax: `title:x`, `"`, `(`, `AND`, `*` are just words). Every
//! filter — tenant, metadata, the caller's ACL, the entry kind — is a `bool.filter` (or
//! `bool.must_not` for a negated clause) clause, so it never scores and `size` counts only
//! visible entries. See
//! <https://www.elastic.co/guide/en/elasticsearch/reference/8.17/query-dsl-bool-query.html>,
//! <https://www.elastic.co/guide/en/elasticsearch/reference/8.17/query-dsl-match-query.html>,
//! <https://www.elastic.co/guide/en/elasticsearch/reference/8.17/collapse-search-results.html> and
//! <https://www.elastic.co/guide/en/elasticsearch/reference/8.17/highlighting.html>.
//!
//! Languages: the query's language is not guessed (one to three words are too few). A search
//! first asks which languages the tenant has entries in ([`languages`]: a `terms`
//! aggregation on `lang`), then runs the text against those languages' fields, each `match`
//! analysed by its field's analyzer, so an entry is scored by its own language's analysis and
//! statistics only (its text is in one language's fields), and a German query finds German
//! entries by their German stems. As the Tantivy side does. Not every language's fields: a
//! `match` expands to one term query per analysed word and field, and the engine refuses a
//! query of more than 1,024 of them (`indices.query.bool.max_clause_count`), so 44 fields
//! would refuse queries of about 23 words (a quarter of SciFact's test queries were longer);
//! with the tenant's languages an English-only tenant sends exactly the two English clauses
//! it sent before there were other languages (same scores, same limit). The price is one
//! more request per search, an aggregation over the tenant's entries (doc values of one
//! keyword). The `lang` filter is an ordinary metadata clause: a `term` on `meta` (see
//! [`super::mapping`]).

use std::ops::Bound;

use braid_core::auth::Access;
use braid_core::filter::{Filter, Op};
use serde_json::{Map, Value, json};

use super::mapping::{KIND_CHUNK, KIND_DOCUMENT, SEP, doc_key};
use super::request::{EsRequest, Method};
use crate::index::TextQuery;
use crate::language::{ALL, Lang, field_name};

/// Fields a hit is built from: its text is in its language's `title*` / `body*` fields.
const HIT_SOURCE: [&str; 7] = [
    "chunk_id",
    "document_id",
    "external_id",
    "title*",
    "body*",
    "ordinal",
    "lang",
];

/// Query-side settings of every search.
#[derive(Debug, Clone, Copy)]
pub struct Scoring {
    pub title_boost: f32,
    pub snippet_chars: usize,
}

/// Filter clauses and negated clauses of a query, plus the kind of entry searched.
fn filters(kind: &str, q: &TextQuery) -> (Vec<Value>, Vec<Value>) {
    let mut filter = vec![
        json!({ "term": { "kind": kind } }),
        json!({ "term": { "tenant": q.tenant } }),
    ];
    let mut must_not = Vec::new();
    metadata_clauses(&q.filter, &mut filter, &mut must_not);
    filter.extend(access_clauses(&q.access));
    (filter, must_not)
}

/// The metadata filter: each clause into `filter`, or into `must_not` when negated (an entry
/// without the key satisfies a negated clause, as on the Tantivy side).
pub fn metadata_clauses(f: &Filter, filter: &mut Vec<Value>, must_not: &mut Vec<Value>) {
    for c in &f.clauses {
        let key = &c.key;
        let clause = match &c.op {
            Op::Eq(v) => json!({ "term": { "meta": format!("{key}{SEP}{v}") } }),
            Op::In(values) => {
                let terms: Vec<String> = values.iter().map(|v| format!("{key}{SEP}{v}")).collect();
                json!({ "terms": { "meta": terms } })
            }
            Op::Exists => json!({ "term": { "meta_keys": key } }),
            Op::Number { lower, upper } => typed_range(key, "number", range(*lower, *upper)),
            Op::Date { lower, upper } => typed_range(key, "date", range(*lower, *upper)),
        };
        if c.negate {
            must_not.push(clause);
        } else {
            filter.push(clause);
        }
    }
}

fn range<T: Into<Value>>(lower: Bound<T>, upper: Bound<T>) -> Map<String, Value> {
    let mut r = Map::new();
    let lower = match lower {
        Bound::Included(v) => Some(("gte", v)),
        Bound::Excluded(v) => Some(("gt", v)),
        Bound::Unbounded => None,
    };
    let upper = match upper {
        Bound::Included(v) => Some(("lte", v)),
        Bound::Excluded(v) => Some(("lt", v)),
        Bound::Unbounded => None,
    };
    for (name, v) in lower.into_iter().chain(upper) {
        r.insert(name.to_string(), v.into());
    }
    r
}

/// A range over one key's typed values (`meta_typed` is nested: key and value must hold in
/// the same nested entry).
fn typed_range(key: &str, field: &str, bounds: Map<String, Value>) -> Value {
    let mut range = Map::new();
    range.insert(format!("meta_typed.{field}"), Value::Object(bounds));
    json!({
        "nested": {
            "path": "meta_typed",
            "query": {
                "bool": {
                    "filter": [
                        { "term": { "meta_typed.key": key } },
                        { "range": range },
                    ]
                }
            }
        }
    })
}

/// Entries `access` may see: clearance at most the caller's, and no groups or one of the
/// caller's. Nothing for unrestricted access.
pub fn access_clauses(access: &Access) -> Vec<Value> {
    if access.unrestricted {
        return Vec::new();
    }
    let mut groups =
        vec![json!({ "bool": { "must_not": { "exists": { "field": "acl_groups" } } } })];
    if !access.groups.is_empty() {
        groups.push(json!({ "terms": { "acl_groups": access.groups } }));
    }
    vec![
        json!({ "range": { "acl_clearance": { "lte": access.clearance } } }),
        json!({ "bool": { "should": groups, "minimum_should_match": 1 } }),
    ]
}

/// The languages `tenant` has entries in (chunk or document), read by [`super::response::languages`].
/// See <https://www.elastic.co/guide/en/elasticsearch/reference/8.17/search-aggregations-bucket-terms-aggregation.html>.
pub fn languages(alias: &str, tenant: &str) -> EsRequest {
    search(
        alias,
        json!({
            "size": 0,
            "track_total_hits": false,
            "query": { "bool": { "filter": [{ "term": { "tenant": tenant } }] } },
            "aggs": { "lang": { "terms": { "field": "lang", "size": ALL.len() } } },
        }),
    )
}

/// The text scored in the title fields (boosted) and body fields of each of `langs`, in
/// their order.
fn text_clauses(
    text: &str,
    (title, body): (&str, &str),
    langs: &[Lang],
    title_boost: f32,
) -> Vec<Value> {
    langs
        .iter()
        .flat_map(|&lang| {
            let (title, body) = (field_name(title, lang), field_name(body, lang));
            [
                json!({ "match": { title: { "query": text, "boost": title_boost } } }),
                json!({ "match": { body: { "query": text } } }),
            ]
        })
        .collect()
}

fn highlight(s: Scoring) -> Value {
    json!({
        "pre_tags": ["<b>"],
        "post_tags": ["</b>"],
        "encoder": "html",
        // Every language's body field; a chunk has text in one of them.
        "fields": {
            "body*": { "fragment_size": s.snippet_chars, "number_of_fragments": 1 }
        }
    })
}

fn search(alias: &str, body: Value) -> EsRequest {
    EsRequest::new(Method::Post, format!("/{alias}/_search")).json(body)
}

/// Documents ranked by BM25 over their whole text (`doc_title` boosted + `doc_body`), under
/// every filter; `min_score` cuts on the document's score.
pub fn documents(alias: &str, q: &TextQuery, langs: &[Lang], s: Scoring) -> EsRequest {
    let (filter, must_not) = filters(KIND_DOCUMENT, q);
    let mut body = json!({
        "size": q.top_k,
        "track_total_hits": false,
        "_source": ["document_id"],
        "query": {
            "bool": {
                "should": text_clauses(&q.query, ("doc_title", "doc_body"), langs, s.title_boost),
                "minimum_should_match": 1,
                "filter": filter,
                "must_not": must_not,
            }
        },
    });
    if let Some(min) = q.min_score {
        body["min_score"] = json!(min);
    }
    search(alias, body)
}

/// The best chunk (chunk-level BM25 of the text; a chunk matching no word still counts) of
/// each of `document_ids`, under the same filters: one hit per document (`collapse`).
pub fn best_chunks(
    alias: &str,
    q: &TextQuery,
    langs: &[Lang],
    s: Scoring,
    document_ids: &[String],
) -> EsRequest {
    let (mut filter, must_not) = filters(KIND_CHUNK, q);
    let keys: Vec<String> = document_ids.iter().map(|d| doc_key(&q.tenant, d)).collect();
    filter.push(json!({ "terms": { "doc_key": keys } }));
    search(
        alias,
        json!({
            "size": document_ids.len(),
            "track_total_hits": false,
            "_source": HIT_SOURCE,
            "query": {
                "bool": {
                    "should": text_clauses(&q.query, ("title", "body"), langs, s.title_boost),
                    "filter": filter,
                    "must_not": must_not,
                }
            },
            "collapse": { "field": "document_id" },
            "highlight": highlight(s),
        }),
    )
}

/// Chunks ranked by their own BM25 (`chunk_level`).
pub fn chunks(alias: &str, q: &TextQuery, langs: &[Lang], s: Scoring) -> EsRequest {
    let (filter, must_not) = filters(KIND_CHUNK, q);
    let mut body = json!({
        "size": q.top_k,
        "track_total_hits": false,
        "_source": HIT_SOURCE,
        "query": {
            "bool": {
                "should": text_clauses(&q.query, ("title", "body"), langs, s.title_boost),
                "minimum_should_match": 1,
                "filter": filter,
                "must_not": must_not,
            }
        },
        "highlight": highlight(s),
    });
    if let Some(min) = q.min_score {
        body["min_score"] = json!(min);
    }
    search(alias, body)
}

/// Chunks of `tenant` by id, highlighted for `text` (`fetch`).
pub fn fetch(
    alias: &str,
    (tenant, text): (&str, &str),
    chunk_ids: &[String],
    langs: &[Lang],
    s: Scoring,
) -> EsRequest {
    search(
        alias,
        json!({
            "size": chunk_ids.len(),
            "track_total_hits": false,
            "_source": HIT_SOURCE,
            "query": {
                "bool": {
                    "should": text_clauses(text, ("title", "body"), langs, s.title_boost),
                    "filter": [
                        { "term": { "kind": KIND_CHUNK } },
                        { "term": { "tenant": tenant } },
                        { "terms": { "chunk_id": chunk_ids } },
                    ],
                }
            },
            "highlight": highlight(s),
        }),
    )
}

/// Most chunks one document may have in the index listing (`document_chunks`).
pub const MAX_LISTED_CHUNKS: usize = 10_000;

/// Every chunk entry of one document (id and text), by ordinal.
pub fn document_chunks(alias: &str, tenant: &str, document_id: &str) -> EsRequest {
    let key = doc_key(tenant, document_id);
    search(
        alias,
        json!({
            "size": MAX_LISTED_CHUNKS,
            "track_total_hits": false,
            "_source": ["chunk_id", "body*", "lang"],
            "query": {
                "bool": {
                    "filter": [
                        { "term": { "doc_key": key } },
                        { "term": { "kind": KIND_CHUNK } },
                    ]
                }
            },
            "sort": [{ "ordinal": "asc" }],
        }),
    )
    .param("routing", key)
}
