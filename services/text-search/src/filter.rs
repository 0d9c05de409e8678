//! Metadata filters as Tantivy clauses, and the `meta` terms they match.
//!
//! Every chunk's metadata goes into one untokenised `meta` field as terms:
//! `key\x1fvalue` for each entry (equality, `in`, `exists`), plus `key\x1en<hex>` for a value
//! that reads as a number and `key\x1ed<hex>` for one that reads as a date, where `<hex>` is an
//! order-preserving encoding ([`typed::sortable_f64`], [`typed::sortable_i64`]). A number or
//! date range is then a range over the term dictionary, and `exists` the range of all
//! `key\x1f…` terms. Keys and values cannot contain control characters, so no term of one key
//! collides with another's. The trade-off against typed fast fields (a JSON field): no
//! schema change and no per-document column, at the price of one extra term per typed value
//! and ranges resolved through the term dictionary (fine for metadata cardinalities).
//!
//! [`filter_clauses`] is the one place that builds filter clauses: every query over the
//! chunk index adds them as zero-score `Must` (`MustNot` when negated) clauses, so `top_k`
//! counts only matching chunks.

use std::collections::HashMap;
use std::ops::Bound;

use braid_core::filter::{Filter, Op, typed};
use tantivy::Term;
use tantivy::query::{
    BooleanQuery, ConstScoreQuery, Occur, Query, RangeQuery, TermQuery, TermSetQuery,
};
use tantivy::schema::{Field, IndexRecordOption};

/// Between a key and its value in an equality term.
pub const SEP: char = '\u{1f}';
/// Between a key and a typed (number / date) term.
const TYPED: char = '\u{1e}';

/// Every `meta` term of one chunk's metadata.
pub fn meta_terms(metadata: &HashMap<String, String>) -> Vec<String> {
    let mut terms = Vec::with_capacity(metadata.len() * 2);
    for (k, v) in metadata {
        terms.push(format!("{k}{SEP}{v}"));
        if let Some(n) = typed::number(v) {
            terms.push(format!("{k}{TYPED}n{}", typed::sortable_f64(n)));
        } else if let Some(ms) = typed::date_millis(v) {
            terms.push(format!("{k}{TYPED}d{}", typed::sortable_i64(ms)));
        }
    }
    terms
}

/// The clauses of `filter` over the `meta` field: zero-score `Must` clauses, `MustNot` for
/// negated ones (a chunk without the key satisfies a negated clause).
pub fn filter_clauses(meta: Field, filter: &Filter) -> Vec<(Occur, Box<dyn Query>)> {
    let term = |text: String| Term::from_field_text(meta, &text);
    filter
        .clauses
        .iter()
        .map(|c| {
            let key = &c.key;
            let query: Box<dyn Query> = match &c.op {
                Op::Eq(v) => Box::new(TermQuery::new(
                    term(format!("{key}{SEP}{v}")),
                    IndexRecordOption::Basic,
                )),
                Op::In(values) => any_term(
                    values
                        .iter()
                        .map(|v| term(format!("{key}{SEP}{v}")))
                        .collect(),
                ),
                Op::Exists => Box::new(RangeQuery::new(
                    Bound::Included(term(format!("{key}{SEP}"))),
                    // The character after SEP: every `key\x1f…` term sorts below it.
                    Bound::Excluded(term(format!("{key}\u{20}"))),
                )),
                Op::Number { lower, upper } => typed_range(
                    meta,
                    &format!("{key}{TYPED}n"),
                    map(*lower, typed::sortable_f64),
                    map(*upper, typed::sortable_f64),
                ),
                Op::Date { lower, upper } => typed_range(
                    meta,
                    &format!("{key}{TYPED}d"),
                    map(*lower, typed::sortable_i64),
                    map(*upper, typed::sortable_i64),
                ),
            };
            let occur = if c.negate {
                Occur::MustNot
            } else {
                Occur::Must
            };
            (
                occur,
                Box::new(ConstScoreQuery::new(query, 0.0)) as Box<dyn Query>,
            )
        })
        .collect()
}

/// Up to this many terms, [`any_term`] is a union of term queries.
const FEW_TERMS: usize = 16;

/// Entries holding any of `terms`. A few terms are a union of term queries: a `TermSetQuery`
/// builds an automaton of its terms per search and runs it over the term dictionary of every
/// segment, which costs more than looking a few terms up (bm25_cost example, `acl` caller);
/// more terms are a `TermSetQuery`, which scales with the dictionary, not with the terms.
pub fn any_term(terms: Vec<Term>) -> Box<dyn Query> {
    if terms.len() > FEW_TERMS {
        return Box::new(TermSetQuery::new(terms));
    }
    Box::new(BooleanQuery::new(
        terms
            .into_iter()
            .map(|t| {
                let q: Box<dyn Query> = Box::new(TermQuery::new(t, IndexRecordOption::Basic));
                (Occur::Should, q)
            })
            .collect(),
    ))
}

fn map<T>(bound: Bound<T>, encode: impl Fn(T) -> String) -> Bound<String> {
    match bound {
        Bound::Included(v) => Bound::Included(encode(v)),
        Bound::Excluded(v) => Bound::Excluded(encode(v)),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// Terms `prefix<hex>` within the bounds; an open side stops at the prefix's own terms.
fn typed_range(
    meta: Field,
    prefix: &str,
    lower: Bound<String>,
    upper: Bound<String>,
) -> Box<dyn Query> {
    let term = |hex: &str| Term::from_field_text(meta, &format!("{prefix}{hex}"));
    let lower = match lower {
        Bound::Included(hex) => Bound::Included(term(&hex)),
        Bound::Excluded(hex) => Bound::Excluded(term(&hex)),
        // Every encoded value is 16 hex digits, so it sorts after the bare prefix.
        Bound::Unbounded => Bound::Included(term("")),
    };
    let upper = match upper {
        Bound::Included(hex) => Bound::Included(term(&hex)),
        Bound::Excluded(hex) => Bound::Excluded(term(&hex)),
        // Above every hex digit ('0'-'9', 'a'-'f').
        Bound::Unbounded => Bound::Excluded(term("g")),
    };
    Box::new(RangeQuery::new(lower, upper))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_values_get_a_typed_term() {
        let m = HashMap::from([
            ("year".to_string(), "2019".to_string()),
            ("at".to_string(), "2024-05-01".to_string()),
            ("lang".to_string(), "en".to_string()),
        ]);
        let mut terms = meta_terms(&m);
        terms.sort();
        assert_eq!(terms.len(), 5, "{terms:?}");
        assert!(terms.iter().any(|t| t.starts_with("year\u{1e}n")));
        assert!(terms.iter().any(|t| t.starts_with("at\u{1e}d")));
        assert!(terms.contains(&"lang\u{1f}en".to_string()));
    }
}
