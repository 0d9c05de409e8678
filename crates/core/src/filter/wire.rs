//! A parsed [`Filter`] written back as a wire [`MetadataFilter`]: every condition as one
//! clause (the `equals` entries too), date bounds as RFC 3339 text. Parsing the result gives
//! the same clauses ([`Filter::canonical`] is unchanged), which the `filter` fuzz target checks.

use std::ops::Bound;

use braid_proto::v1::{
    DateRange, FilterClause, MetadataFilter, NumberRange, StringList, filter_clause,
};

use super::{Filter, Op};

impl Filter {
    /// The wire form of this filter (`None` when it has no clause, as an absent filter).
    pub fn to_wire(&self) -> Option<MetadataFilter> {
        if self.clauses.is_empty() {
            return None;
        }
        let clauses = self
            .clauses
            .iter()
            .map(|c| FilterClause {
                key: c.key.clone(),
                not: c.negate,
                op: Some(match &c.op {
                    Op::Eq(v) => filter_clause::Op::Eq(v.clone()),
                    Op::In(values) => filter_clause::Op::In(StringList {
                        values: values.clone(),
                    }),
                    Op::Number { lower, upper } => {
                        let (gt, gte) = sides(*lower);
                        let (lt, lte) = sides(*upper);
                        filter_clause::Op::NumberRange(NumberRange { gt, gte, lt, lte })
                    }
                    Op::Date { lower, upper } => {
                        let text = |v: Option<i64>| v.map(rfc3339).unwrap_or_default();
                        let (gt, gte) = sides(*lower);
                        let (lt, lte) = sides(*upper);
                        filter_clause::Op::DateRange(DateRange {
                            gt: text(gt),
                            gte: text(gte),
                            lt: text(lt),
                            lte: text(lte),
                        })
                    }
                    Op::Exists => filter_clause::Op::Exists(true),
                }),
            })
            .collect();
        Some(MetadataFilter {
            equals: Default::default(),
            clauses,
        })
    }
}

/// `(exclusive, inclusive)` of one side of a range.
fn sides<T: Copy>(b: Bound<T>) -> (Option<T>, Option<T>) {
    match b {
        Bound::Excluded(v) => (Some(v), None),
        Bound::Included(v) => (None, Some(v)),
        Bound::Unbounded => (None, None),
    }
}

const DAY_MS: i64 = 86_400_000;
/// The largest offset RFC 3339 allows here (23:59), in milliseconds.
const MAX_OFFSET_MS: i64 = (23 * 60 + 59) * 60_000;

/// `ms` since the epoch as an RFC 3339 date-time with milliseconds, in UTC when its year is
/// within 0000..=9999 (what [`super::typed::date_millis`] reads), else at the offset of
/// ±23:59 that brings it within (instants such as `0000-01-01T00:00:00+01:00` parse to the
/// year -1 in UTC).
pub(crate) fn rfc3339(ms: i64) -> String {
    let offset_ms = match civil_from_days(ms.div_euclid(DAY_MS)).0 {
        y if y < 0 => MAX_OFFSET_MS,
        y if y > 9999 => -MAX_OFFSET_MS,
        _ => 0,
    };
    let local = ms + offset_ms;
    let (y, m, d) = civil_from_days(local.div_euclid(DAY_MS));
    let in_day = local.rem_euclid(DAY_MS);
    let (h, min, s, milli) = (
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000,
    );
    let zone = match offset_ms {
        0 => "Z".to_string(),
        o => {
            let sign = if o > 0 { '+' } else { '-' };
            let o = o.abs() / 60_000;
            format!("{sign}{:02}:{:02}", o / 60, o % 60)
        }
    };
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{milli:03}{zone}")
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// algorithm, the inverse of `typed::days_from_civil`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::super::{parse, typed::date_millis};
    use super::*;
    use braid_proto::v1::MetadataFilter;
    use std::collections::HashMap;

    #[test]
    fn dates_render_to_what_they_parse_from() {
        for text in [
            "1970-01-01",
            "1969-12-31T23:59:59.999Z",
            "2024-02-29T12:30:00.250+02:00",
            "0000-01-01T00:00:00Z",
            "0000-01-01T00:00:00+23:59",
            "9999-12-31T23:59:59.999-23:59",
        ] {
            let ms = date_millis(text).unwrap();
            assert_eq!(
                date_millis(&rfc3339(ms)),
                Some(ms),
                "{text} -> {}",
                rfc3339(ms)
            );
        }
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(date_millis("0000-01-01T00:00:00+01:00").unwrap()),
            "0000-01-01T22:59:00.000+23:59"
        );
    }

    #[test]
    fn a_rendered_filter_parses_to_the_same_clauses() {
        let wire = MetadataFilter {
            equals: HashMap::from([("lang".to_string(), "en".to_string())]),
            clauses: vec![
                FilterClause {
                    key: "year".into(),
                    op: Some(filter_clause::Op::NumberRange(NumberRange {
                        gt: Some(2019.0),
                        lte: Some(2024.5),
                        ..Default::default()
                    })),
                    not: true,
                },
                FilterClause {
                    key: "published".into(),
                    op: Some(filter_clause::Op::DateRange(DateRange {
                        gte: "2024-05-01T12:00:00.5+02:00".into(),
                        ..Default::default()
                    })),
                    not: false,
                },
                FilterClause {
                    key: "draft".into(),
                    op: Some(filter_clause::Op::Exists(false)),
                    not: false,
                },
            ],
        };
        let f = parse(Some(&wire)).unwrap();
        let again = parse(f.to_wire().as_ref()).unwrap();
        assert_eq!(again.canonical(), f.canonical());
        assert_eq!(again.clauses.len(), 4);
        assert_eq!(parse(None).unwrap().to_wire(), None);
    }
}
