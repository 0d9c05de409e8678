use std::collections::{BTreeMap, HashMap};

use braid_proto::v1::{DateRange, FilterClause, NumberRange, StringList};

use super::*;

fn clause(key: &str, op: filter_clause::Op) -> FilterClause {
    FilterClause {
        key: key.into(),
        op: Some(op),
        not: false,
    }
}

fn filter(clauses: Vec<FilterClause>) -> MetadataFilter {
    MetadataFilter {
        equals: HashMap::new(),
        clauses,
    }
}

fn err(f: MetadataFilter) -> FieldError {
    parse(Some(&f)).unwrap_err()
}

#[test]
fn parses_every_operator() {
    let mut f = filter(vec![
        clause(
            "lang",
            filter_clause::Op::In(StringList {
                values: vec!["en".into(), "de".into()],
            }),
        ),
        clause(
            "year",
            filter_clause::Op::NumberRange(NumberRange {
                gte: Some(2019.0),
                lt: Some(2024.0),
                ..Default::default()
            }),
        ),
        clause(
            "published",
            filter_clause::Op::DateRange(DateRange {
                gt: "2024-01-01".into(),
                ..Default::default()
            }),
        ),
        clause("draft", filter_clause::Op::Exists(false)),
        FilterClause {
            not: true,
            ..clause("kind", filter_clause::Op::Eq("memo".into()))
        },
    ]);
    f.equals.insert("team".into(), "a".into());
    let parsed = parse(Some(&f)).unwrap();
    assert_eq!(parsed.clauses.len(), 6);
    assert_eq!(parsed.clauses[0].op, Op::Eq("a".into()));
    assert_eq!(parsed.clauses[0].field, "filter.equals[team]");
    assert_eq!(
        parsed.clauses[2].op,
        Op::Number {
            lower: Bound::Included(2019.0),
            upper: Bound::Excluded(2024.0)
        }
    );
    assert_eq!(
        parsed.clauses[3].op,
        Op::Date {
            lower: Bound::Excluded(1_704_067_200_000),
            upper: Bound::Unbounded
        }
    );
    assert!(parsed.clauses[4].negate, "exists: false is NOT exists");
    assert!(parsed.clauses[5].negate);
    assert!(parse(None).unwrap().is_empty());
}

#[test]
fn validation_names_field_and_rule() {
    let e = err(filter(vec![FilterClause {
        key: "k".into(),
        op: None,
        not: false,
    }]));
    assert_eq!(e.field, "filter.clauses[0]");
    assert!(e.message.contains("no operator"), "{e}");

    let e = err(filter(vec![clause(
        "k",
        filter_clause::Op::In(StringList::default()),
    )]));
    assert_eq!(e.field, "filter.clauses[0].in");
    assert!(e.message.contains("1..=64"), "{e}");

    let e = err(filter(vec![clause(
        "y",
        filter_clause::Op::NumberRange(NumberRange {
            gt: Some(5.0),
            lt: Some(1.0),
            ..Default::default()
        }),
    )]));
    assert_eq!(e.field, "filter.clauses[0].number_range");
    assert!(e.message.contains("inverted"), "{e}");

    let e = err(filter(vec![clause(
        "y",
        filter_clause::Op::NumberRange(NumberRange {
            gt: Some(1.0),
            lt: Some(1.0),
            ..Default::default()
        }),
    )]));
    assert!(e.message.contains("inverted"), "{e}");

    let e = err(filter(vec![clause(
        "y",
        filter_clause::Op::NumberRange(NumberRange {
            gt: Some(1.0),
            gte: Some(1.0),
            ..Default::default()
        }),
    )]));
    assert!(e.message.contains("gt or gte"), "{e}");

    let e = err(filter(vec![clause(
        "y",
        filter_clause::Op::NumberRange(NumberRange::default()),
    )]));
    assert!(e.message.contains("no bound"), "{e}");

    let e = err(filter(vec![clause(
        "y",
        filter_clause::Op::NumberRange(NumberRange {
            lte: Some(f64::NAN),
            ..Default::default()
        }),
    )]));
    assert_eq!(e.field, "filter.clauses[0].number_range.lte");

    let e = err(filter(vec![clause(
        "d",
        filter_clause::Op::DateRange(DateRange {
            gte: "yesterday".into(),
            ..Default::default()
        }),
    )]));
    assert_eq!(e.field, "filter.clauses[0].date_range.gte");

    let e = err(filter(vec![clause(
        "bad key",
        filter_clause::Op::Exists(true),
    )]));
    assert_eq!(e.field, "filter.clauses[0].key");

    let many = (0..17)
        .map(|i| clause(&format!("k{i}"), filter_clause::Op::Exists(true)))
        .collect();
    let e = err(filter(many));
    assert_eq!(e.field, "filter");
    assert!(e.message.contains("at most 16"), "{e}");
}

#[test]
fn types_are_enforced_on_ranges_and_values() {
    let types = MetadataTypes {
        default: BTreeMap::from([
            ("year".into(), MetaType::Number),
            ("published".into(), MetaType::Date),
        ]),
        tenants: BTreeMap::new(),
    }
    .for_tenant("t");
    let range = |key: &str| {
        parse(Some(&filter(vec![clause(
            key,
            filter_clause::Op::NumberRange(NumberRange {
                gte: Some(1.0),
                ..Default::default()
            }),
        )])))
        .unwrap()
    };
    assert!(range("year").check_types(&types).is_ok());
    let e = range("lang").check_types(&types).unwrap_err();
    assert_eq!(e.field, "filter.clauses[0].number_range");
    assert!(e.message.contains("declared string"), "{e}");
    let e = range("published").check_types(&types).unwrap_err();
    assert!(e.message.contains("declared date"), "{e}");
    let eq = parse(Some(&filter(vec![clause(
        "year",
        filter_clause::Op::Eq("new".into()),
    )])))
    .unwrap();
    let e = eq.check_types(&types).unwrap_err();
    assert!(e.message.contains("not a number"), "{e}");
}

#[test]
fn canonical_text_tells_filters_apart() {
    let a = parse(Some(&filter(vec![clause(
        "k",
        filter_clause::Op::Eq("1".into()),
    )])))
    .unwrap();
    let b = parse(Some(&filter(vec![FilterClause {
        not: true,
        ..clause("k", filter_clause::Op::Eq("1".into()))
    }])))
    .unwrap();
    let c = parse(Some(&filter(vec![clause(
        "k",
        filter_clause::Op::In(StringList {
            values: vec!["1".into()],
        }),
    )])))
    .unwrap();
    assert_ne!(a.canonical(), b.canonical());
    assert_ne!(a.canonical(), c.canonical());
    assert_eq!(a.canonical(), a.clone().canonical());
}

#[test]
fn clauses_hold_as_the_legs_apply_them() {
    let metadata: HashMap<String, String> = [
        ("lang", "en"),
        ("year", "2021"),
        ("published", "2024-03-01T00:00:00Z"),
        ("note", "not a number"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let holds = |c: FilterClause| {
        let f = parse(Some(&filter(vec![c]))).unwrap();
        f.clauses[0].holds(&metadata)
    };
    let number = |gte: f64, lt: f64| {
        filter_clause::Op::NumberRange(NumberRange {
            gte: Some(gte),
            lt: Some(lt),
            ..Default::default()
        })
    };
    assert!(holds(clause("year", number(2019.0, 2024.0))));
    assert!(!holds(clause("year", number(2022.0, 2024.0))));
    assert!(!holds(clause("year", number(2021.5, 2024.0))));
    assert!(!holds(clause("note", number(0.0, 1e9))), "not a number");
    assert!(!holds(clause("missing", number(0.0, 1e9))));
    assert!(holds(clause("lang", filter_clause::Op::Eq("en".into()))));
    assert!(!holds(clause("lang", filter_clause::Op::Eq("de".into()))));
    assert!(holds(clause(
        "lang",
        filter_clause::Op::In(StringList {
            values: vec!["de".into(), "en".into()]
        })
    )));
    assert!(holds(clause("note", filter_clause::Op::Exists(true))));
    assert!(holds(clause(
        "published",
        filter_clause::Op::DateRange(DateRange {
            gte: "2024-01-01T00:00:00Z".into(),
            ..Default::default()
        })
    )));
    // A negated clause holds where the plain one fails, a missing key included.
    let mut not_de = clause("lang", filter_clause::Op::Eq("de".into()));
    not_de.not = true;
    assert!(holds(not_de));
    let mut not_missing = clause("missing", filter_clause::Op::Eq("x".into()));
    not_missing.not = true;
    assert!(holds(not_missing.clone()));
    let f = parse(Some(&filter(vec![not_missing]))).unwrap();
    assert_eq!(
        f.clauses[0].describe(),
        "filter.clauses[0]: not missing eq \"x\""
    );
}
