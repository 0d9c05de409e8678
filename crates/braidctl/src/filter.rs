//! `braidctl search --filter EXPR`: one metadata condition per flag, all ANDed.
//!
//! | expression | meaning |
//! | --- | --- |
//! | `lang=en` / `lang!=en` | equal / not equal |
//! | `lang in en,de` / `lang not in en,de` | one of / none of |
//! | `year>=2019`, `year>2019`, `year<2024`, `year<=2024` | number range |
//! | `published>=2024-01-01`, `published<2024-05-01T12:00:00Z` | date range |
//! | `draft` / `!draft` | has the key / lacks it |

use braid_proto::v1::{
    DateRange, FilterClause, MetadataFilter, NumberRange, StringList, filter_clause::Op,
};

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/')
}

/// One `--filter` expression as a clause.
pub fn parse(expr: &str) -> Result<FilterClause, String> {
    let expr = expr.trim();
    let clause = |key: &str, op: Op, not: bool| FilterClause {
        key: key.to_string(),
        op: Some(op),
        not,
    };
    if let Some(key) = expr.strip_prefix('!')
        && !key.is_empty()
        && key.chars().all(is_key_char)
    {
        return Ok(clause(key, Op::Exists(true), true));
    }
    if !expr.is_empty() && expr.chars().all(is_key_char) {
        return Ok(clause(expr, Op::Exists(true), false));
    }
    for (word, not) in [(" not in ", true), (" in ", false)] {
        if let Some((key, values)) = expr.split_once(word) {
            let values: Vec<String> = values
                .split(',')
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .collect();
            return Ok(clause(key.trim(), Op::In(StringList { values }), not));
        }
    }
    let at = expr
        .find(|c: char| !is_key_char(c))
        .ok_or_else(|| format!("`{expr}`: no operator"))?;
    let (key, rest) = expr.split_at(at);
    let key = key.trim();
    let rest = rest.trim_start();
    let ops = ["!=", ">=", "<=", "=", ">", "<"];
    let op = ops.iter().find(|op| rest.starts_with(*op)).ok_or_else(|| {
        format!("`{expr}`: expected key=v, key!=v, key>=v, key in a,b, key or !key")
    })?;
    let value = rest[op.len()..].trim();
    match *op {
        "=" => Ok(clause(key, Op::Eq(value.into()), false)),
        "!=" => Ok(clause(key, Op::Eq(value.into()), true)),
        _ => {
            if let Ok(n) = value.parse::<f64>() {
                let mut r = NumberRange::default();
                match *op {
                    ">" => r.gt = Some(n),
                    ">=" => r.gte = Some(n),
                    "<" => r.lt = Some(n),
                    _ => r.lte = Some(n),
                }
                Ok(clause(key, Op::NumberRange(r), false))
            } else {
                let mut r = DateRange::default();
                let v = value.to_string();
                match *op {
                    ">" => r.gt = v,
                    ">=" => r.gte = v,
                    "<" => r.lt = v,
                    _ => r.lte = v,
                }
                Ok(clause(key, Op::DateRange(r), false))
            }
        }
    }
}

/// Every `--filter` as one filter (`None` for none).
pub fn filter(exprs: &[String]) -> Result<Option<MetadataFilter>, String> {
    if exprs.is_empty() {
        return Ok(None);
    }
    let clauses = exprs.iter().map(|e| parse(e)).collect::<Result<_, _>>()?;
    Ok(Some(MetadataFilter {
        clauses,
        ..Default::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions() {
        let c = parse("year>=2019").unwrap();
        assert_eq!(c.key, "year");
        assert_eq!(
            c.op,
            Some(Op::NumberRange(NumberRange {
                gte: Some(2019.0),
                ..Default::default()
            }))
        );
        let c = parse("lang in en, de").unwrap();
        assert_eq!(
            c.op,
            Some(Op::In(StringList {
                values: vec!["en".into(), "de".into()]
            }))
        );
        assert!(!c.not);
        assert!(parse("lang not in en").unwrap().not);
        let c = parse("!draft").unwrap();
        assert_eq!((c.key.as_str(), c.not), ("draft", true));
        assert_eq!(parse("draft").unwrap().op, Some(Op::Exists(true)));
        let c = parse("published<2024-05-01").unwrap();
        assert_eq!(
            c.op,
            Some(Op::DateRange(DateRange {
                lt: "2024-05-01".into(),
                ..Default::default()
            }))
        );
        let c = parse("url=https://x.test/?a=b").unwrap();
        assert_eq!(
            (c.key.as_str(), c.op),
            ("url", Some(Op::Eq("https://x.test/?a=b".into())))
        );
        let c = parse("lang != en").unwrap();
        assert!(c.not);
        assert!(parse("lang ~ en").is_err());
    }
}
