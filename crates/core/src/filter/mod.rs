//! Metadata filters: the wire form ([`MetadataFilter`]: an `equals` map plus typed clauses)
//! parsed and validated once into a [`Filter`] that each search leg turns into its own query
//! clauses (SQL in vector-search, Tantivy clauses in text-search). Every clause must hold
//! (AND). See [`parse`] for the rules and [`types`] for declared metadata types.

pub mod typed;
pub mod types;
mod wire;

use std::ops::Bound;

use braid_proto::v1::{MetadataFilter, filter_clause};

use crate::validate::{FieldError, metadata_key, metadata_value};

pub use types::{MetaType, MetadataTypes, TenantTypes};

/// Most clauses in one filter (`equals` entries and `clauses` together).
pub const MAX_CLAUSES: usize = 16;
/// Most values in one `in` clause.
pub const MAX_IN_VALUES: usize = 64;

/// A validated filter: every clause must hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub clauses: Vec<Clause>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Clause {
    /// Where the clause came from, for error messages (`filter.clauses[2]`).
    pub field: String,
    pub key: String,
    /// The clause must NOT hold (documents without the key satisfy a negated clause).
    pub negate: bool,
    pub op: Op,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// The stored text equals this.
    Eq(String),
    /// The stored text equals one of these.
    In(Vec<String>),
    /// The value read as a number ([`typed::number`]) lies within the bounds.
    Number {
        lower: Bound<f64>,
        upper: Bound<f64>,
    },
    /// The value read as a date ([`typed::date_millis`], ms since the epoch) lies within.
    Date {
        lower: Bound<i64>,
        upper: Bound<i64>,
    },
    /// The key is present.
    Exists,
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        self.clauses.is_empty()
    }

    /// A canonical text of the filter: equal filters give equal text (cache keys, page
    /// tokens).
    pub fn canonical(&self) -> String {
        let parts: Vec<String> = self
            .clauses
            .iter()
            .map(|c| format!("{}{:?}:{:?}", if c.negate { "!" } else { "" }, c.key, c.op))
            .collect();
        parts.join("&")
    }

    /// Rejects clauses that cannot fit the tenant's declared types: a number range on a key
    /// not declared `number`, a date range on one not declared `date`, and `eq`/`in` values
    /// that are not of the key's type.
    pub fn check_types(&self, types: &TenantTypes) -> Result<(), FieldError> {
        for c in &self.clauses {
            let t = types.type_of(&c.key);
            let wants = match &c.op {
                Op::Number { .. } => Some((MetaType::Number, "number_range")),
                Op::Date { .. } => Some((MetaType::Date, "date_range")),
                Op::Eq(_) | Op::In(_) | Op::Exists => None,
            };
            if let Some((wanted, op)) = wants
                && t != wanted
            {
                return Err(FieldError::new(
                    format!("{}.{op}", c.field),
                    format!(
                        "key `{}` is declared {} (the ingest service's metadata_types), a {op} \
                         needs a {} key",
                        c.key,
                        t.as_str(),
                        wanted.as_str()
                    ),
                ));
            }
            let values: &[String] = match &c.op {
                Op::Eq(v) => std::slice::from_ref(v),
                Op::In(values) => values,
                _ => &[],
            };
            if let Some(v) = values.iter().find(|v| !t.admits(v)) {
                return Err(FieldError::new(
                    c.field.clone(),
                    format!(
                        "`{}` is not a {} (key `{}` is declared {} in the ingest service's \
                         metadata_types)",
                        v.escape_debug(),
                        t.as_str(),
                        c.key,
                        t.as_str()
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl Clause {
    /// Whether a document with `metadata` satisfies the clause, as both legs decide it: a
    /// missing key fails a plain clause and satisfies a negated one; a range holds only for
    /// a value that reads as a number (date) within the bounds.
    pub fn holds(&self, metadata: &std::collections::HashMap<String, String>) -> bool {
        let value = metadata.get(&self.key).map(String::as_str);
        let positive = match (&self.op, value) {
            (_, None) => false,
            (Op::Exists, Some(_)) => true,
            (Op::Eq(want), Some(v)) => v == want,
            (Op::In(values), Some(v)) => values.iter().any(|w| w == v),
            (Op::Number { lower, upper }, Some(v)) => {
                typed::number(v).is_some_and(|n| within(n, lower, upper))
            }
            (Op::Date { lower, upper }, Some(v)) => {
                typed::date_millis(v).is_some_and(|n| within(n, lower, upper))
            }
        };
        positive != self.negate
    }

    /// The clause in words, e.g. `filter.clauses[0]: not year number_range`.
    pub fn describe(&self) -> String {
        let op = match &self.op {
            Op::Eq(v) => format!("eq {v:?}"),
            Op::In(values) => format!("in {values:?}"),
            Op::Number { lower, upper } => format!("number_range {lower:?}..{upper:?}"),
            Op::Date { lower, upper } => format!("date_range {lower:?}..{upper:?} (ms)"),
            Op::Exists => "exists".to_string(),
        };
        let not = if self.negate { "not " } else { "" };
        format!("{}: {not}{} {op}", self.field, self.key)
    }
}

fn within<T: PartialOrd>(v: T, lower: &Bound<T>, upper: &Bound<T>) -> bool {
    let above = match lower {
        Bound::Included(l) => v >= *l,
        Bound::Excluded(l) => v > *l,
        Bound::Unbounded => true,
    };
    let below = match upper {
        Bound::Included(u) => v <= *u,
        Bound::Excluded(u) => v < *u,
        Bound::Unbounded => true,
    };
    above && below
}

/// Parses and validates a wire filter: at most [`MAX_CLAUSES`] clauses; keys and values by
/// the metadata rules; exactly one operator per clause; `in` with 1..=[`MAX_IN_VALUES`]
/// values; ranges with at least one bound, not both `gt` and `gte` (or `lt` and `lte`),
/// finite numbers / valid dates, and not empty (lower above upper, or equal with an open
/// side). `equals` entries become `eq` clauses (sorted by key).
pub fn parse(filter: Option<&MetadataFilter>) -> Result<Filter, FieldError> {
    let Some(filter) = filter else {
        return Ok(Filter::default());
    };
    let total = filter.equals.len() + filter.clauses.len();
    if total > MAX_CLAUSES {
        return Err(FieldError::new(
            "filter",
            format!("{total} conditions (equals entries and clauses), at most {MAX_CLAUSES}"),
        ));
    }
    let mut clauses = Vec::with_capacity(total);
    let mut equals: Vec<(&String, &String)> = filter.equals.iter().collect();
    equals.sort();
    for (key, value) in equals {
        metadata_key("filter.equals", key)?;
        let field = format!("filter.equals[{key}]");
        metadata_value(&field, value)?;
        clauses.push(Clause {
            field,
            key: key.clone(),
            negate: false,
            op: Op::Eq(value.clone()),
        });
    }
    for (i, c) in filter.clauses.iter().enumerate() {
        let field = format!("filter.clauses[{i}]");
        metadata_key(&format!("{field}.key"), &c.key)?;
        let mut negate = c.not;
        let op = match &c.op {
            None => {
                return Err(FieldError::new(
                    field,
                    "no operator: set one of eq, in, number_range, date_range, exists",
                ));
            }
            Some(filter_clause::Op::Eq(v)) => {
                metadata_value(&format!("{field}.eq"), v)?;
                Op::Eq(v.clone())
            }
            Some(filter_clause::Op::In(list)) => {
                let n = list.values.len();
                if n == 0 || n > MAX_IN_VALUES {
                    return Err(FieldError::new(
                        format!("{field}.in"),
                        format!("{n} values, must be 1..={MAX_IN_VALUES}"),
                    ));
                }
                for (j, v) in list.values.iter().enumerate() {
                    metadata_value(&format!("{field}.in[{j}]"), v)?;
                }
                Op::In(list.values.clone())
            }
            Some(filter_clause::Op::NumberRange(r)) => {
                let field = format!("{field}.number_range");
                for (name, v) in [("gt", r.gt), ("gte", r.gte), ("lt", r.lt), ("lte", r.lte)] {
                    if let Some(v) = v
                        && !v.is_finite()
                    {
                        return Err(FieldError::new(
                            format!("{field}.{name}"),
                            format!("{v} is not a finite number"),
                        ));
                    }
                }
                let lower = bound(&field, ("gt", r.gt), ("gte", r.gte))?;
                let upper = bound(&field, ("lt", r.lt), ("lte", r.lte))?;
                check_not_empty(&field, lower, upper)?;
                Op::Number { lower, upper }
            }
            Some(filter_clause::Op::DateRange(r)) => {
                let field = format!("{field}.date_range");
                let date = |name: &str, v: &str| -> Result<Option<i64>, FieldError> {
                    if v.is_empty() {
                        return Ok(None);
                    }
                    typed::date_millis(v).map(Some).ok_or_else(|| {
                        FieldError::new(
                            format!("{field}.{name}"),
                            format!(
                                "`{}` is not an RFC 3339 date-time (2024-05-01T12:00:00Z) or a \
                                 date (2024-05-01)",
                                v.escape_debug()
                            ),
                        )
                    })
                };
                let lower = bound(
                    &field,
                    ("gt", date("gt", &r.gt)?),
                    ("gte", date("gte", &r.gte)?),
                )?;
                let upper = bound(
                    &field,
                    ("lt", date("lt", &r.lt)?),
                    ("lte", date("lte", &r.lte)?),
                )?;
                check_not_empty(&field, lower, upper)?;
                Op::Date { lower, upper }
            }
            Some(filter_clause::Op::Exists(present)) => {
                // exists: false = "the key is absent" = NOT exists.
                if !present {
                    negate = !negate;
                }
                Op::Exists
            }
        };
        clauses.push(Clause {
            field,
            key: c.key.clone(),
            negate,
            op,
        });
    }
    Ok(Filter { clauses })
}

/// One side of a range from its exclusive and inclusive fields (at most one set).
fn bound<T: Copy>(
    field: &str,
    (open_name, open): (&str, Option<T>),
    (closed_name, closed): (&str, Option<T>),
) -> Result<Bound<T>, FieldError> {
    match (open, closed) {
        (Some(_), Some(_)) => Err(FieldError::new(
            field,
            format!("set {open_name} or {closed_name}, not both"),
        )),
        (Some(v), None) => Ok(Bound::Excluded(v)),
        (None, Some(v)) => Ok(Bound::Included(v)),
        (None, None) => Ok(Bound::Unbounded),
    }
}

fn check_not_empty<T: PartialOrd + std::fmt::Debug>(
    field: &str,
    lower: Bound<T>,
    upper: Bound<T>,
) -> Result<(), FieldError> {
    fn value<T>(b: &Bound<T>) -> Option<&T> {
        match b {
            Bound::Included(v) | Bound::Excluded(v) => Some(v),
            Bound::Unbounded => None,
        }
    }
    match (value(&lower), value(&upper)) {
        (None, None) => Err(FieldError::new(
            field,
            "no bound: set at least one of gt, gte, lt, lte",
        )),
        (Some(lo), Some(hi)) => {
            let both_closed =
                matches!(lower, Bound::Included(_)) && matches!(upper, Bound::Included(_));
            if lo > hi || (lo == hi && !both_closed) {
                Err(FieldError::new(
                    field,
                    "inverted range: the lower bound is above the upper bound (nothing can match)",
                ))
            } else {
                Ok(())
            }
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
