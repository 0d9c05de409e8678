//! Metadata filters as SQL: one predicate per clause of a [`Filter`], all bind parameters,
//! ANDed into the search's WHERE clause, so pgvector's iterative index scan keeps returning
//! candidates until `top_k` rows pass (never a post-filter).
//!
//! `eq` uses the GIN-indexed containment `metadata @> {"k":"v"}`; `in` and `exists` read the
//! `metadata` object; number and date ranges compare the typed reading kept in
//! `metadata_typed` ([`typed_metadata`]), so no string is cast in SQL. Each predicate is
//! `COALESCE(…, false)`: a missing key fails a clause and satisfies its negation.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use braid_core::filter::{Filter, Op, typed};
use serde_json::{Value, json};

/// A bind parameter of the filter SQL.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Text(String),
    TextArray(Vec<String>),
    Json(String),
    Float(f64),
    Int(i64),
}

/// The filter's predicates (`" AND …"` per clause, empty for no filter) with placeholders
/// numbered from `$first`, and their parameters in order.
#[derive(Debug, Default, PartialEq)]
pub struct FilterSql {
    pub sql: String,
    pub params: Vec<Param>,
}

impl FilterSql {
    fn param(&mut self, p: Param, first: usize) -> String {
        self.params.push(p);
        format!("${}", first + self.params.len() - 1)
    }
}

/// Builds the predicates of `filter`.
pub fn filter_sql(filter: &Filter, first: usize) -> FilterSql {
    let mut out = FilterSql::default();
    for c in &filter.clauses {
        let predicate = match &c.op {
            Op::Eq(v) => {
                let p = out.param(Param::Json(json!({ &c.key: v }).to_string()), first);
                format!("metadata @> {p}::jsonb")
            }
            Op::In(values) => {
                let k = out.param(Param::Text(c.key.clone()), first);
                let vs = out.param(Param::TextArray(values.clone()), first);
                format!("(metadata ->> {k}::text) = ANY({vs}::text[])")
            }
            Op::Exists => {
                let k = out.param(Param::Text(c.key.clone()), first);
                format!("metadata ? {k}::text")
            }
            Op::Number { lower, upper } => range(
                &mut out,
                first,
                "n",
                &c.key,
                "float8",
                *lower,
                *upper,
                Param::Float,
            ),
            Op::Date { lower, upper } => range(
                &mut out,
                first,
                "d",
                &c.key,
                "int8",
                *lower,
                *upper,
                Param::Int,
            ),
        };
        let predicate = format!("COALESCE(({predicate}), false)");
        out.sql.push_str(" AND ");
        if c.negate {
            out.sql.push_str("NOT ");
        }
        out.sql.push_str(&predicate);
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn range<T: Copy>(
    out: &mut FilterSql,
    first: usize,
    kind: &str,
    key: &str,
    sql_type: &str,
    lower: Bound<T>,
    upper: Bound<T>,
    param: impl Fn(T) -> Param,
) -> String {
    let k = out.param(Param::Text(key.to_string()), first);
    let column = format!("(metadata_typed -> '{kind}' -> {k}::text)");
    let mut parts = vec![format!("jsonb_typeof({column}) = 'number'")];
    for (bound, open, closed) in [(lower, ">", ">="), (upper, "<", "<=")] {
        let (op, v) = match bound {
            Bound::Excluded(v) => (open, v),
            Bound::Included(v) => (closed, v),
            Bound::Unbounded => continue,
        };
        let p = out.param(param(v), first);
        parts.push(format!("{column} {op} to_jsonb({p}::{sql_type})"));
    }
    parts.join(" AND ")
}

/// The `metadata_typed` object of a chunk: `{"n": {key: number}, "d": {key: ms}}` for the
/// values that read as numbers ([`typed::number`]) or dates ([`typed::date_millis`]).
pub fn typed_metadata(metadata: &HashMap<String, String>) -> String {
    let mut numbers = BTreeMap::new();
    let mut dates = BTreeMap::new();
    for (k, v) in metadata {
        if let Some(n) = typed::number(v) {
            numbers.insert(k.as_str(), Value::from(n));
        } else if let Some(ms) = typed::date_millis(v) {
            dates.insert(k.as_str(), Value::from(ms));
        }
    }
    json!({ "n": numbers, "d": dates }).to_string()
}

#[cfg(test)]
mod tests {
    use braid_core::filter::Clause;

    use super::*;

    fn clause(key: &str, negate: bool, op: Op) -> Clause {
        Clause {
            field: "filter.clauses[0]".into(),
            key: key.into(),
            negate,
            op,
        }
    }

    #[test]
    fn predicates_and_params_line_up() {
        let f = Filter {
            clauses: vec![
                clause("lang", false, Op::Eq("en".into())),
                clause("tag", true, Op::In(vec!["a".into(), "b".into()])),
                clause(
                    "year",
                    false,
                    Op::Number {
                        lower: Bound::Included(2019.0),
                        upper: Bound::Excluded(2024.0),
                    },
                ),
                clause("draft", true, Op::Exists),
            ],
        };
        let sql = filter_sql(&f, 9);
        assert_eq!(
            sql.sql,
            " AND COALESCE((metadata @> $9::jsonb), false) \
             AND NOT COALESCE(((metadata ->> $10::text) = ANY($11::text[])), false) \
             AND COALESCE((jsonb_typeof((metadata_typed -> 'n' -> $12::text)) = 'number' \
             AND (metadata_typed -> 'n' -> $12::text) >= to_jsonb($13::float8) \
             AND (metadata_typed -> 'n' -> $12::text) < to_jsonb($14::float8)), false) \
             AND NOT COALESCE((metadata ? $15::text), false)"
        );
        assert_eq!(sql.params.len(), 7);
        assert_eq!(sql.params[0], Param::Json(r#"{"lang":"en"}"#.into()));
        assert_eq!(sql.params[6], Param::Text("draft".into()));
        assert_eq!(filter_sql(&Filter::default(), 9), FilterSql::default());
    }

    #[test]
    fn typed_metadata_reads_numbers_and_dates() {
        let m = HashMap::from([
            ("year".to_string(), "2019".to_string()),
            ("at".to_string(), "1970-01-02".to_string()),
            ("lang".to_string(), "en".to_string()),
        ]);
        let v: Value = serde_json::from_str(&typed_metadata(&m)).unwrap();
        assert_eq!(v, json!({"n": {"year": 2019.0}, "d": {"at": 86_400_000}}));
    }
}
