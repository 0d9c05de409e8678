//! The metadata filter parser (crates/core/src/filter) on any wire `MetadataFilter` (the input
//! is its protobuf encoding, as the gateway receives it). A parsed filter keeps the limits,
//! its rendering (`Filter::to_wire`) parses again to the same clauses, and checking it
//! against declared types never panics.
#![no_main]

use std::collections::HashMap;

use braid_core::filter::{self, MAX_CLAUSES, MAX_IN_VALUES, Op, TenantTypes};
use braid_proto::prost::Message;
use braid_proto::v1::{MetadataFilter, MetadataType, MetadataTypesResponse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(wire) = MetadataFilter::decode(data) else {
        return;
    };
    let Ok(parsed) = filter::parse(Some(&wire)) else {
        return;
    };
    assert!(parsed.clauses.len() <= MAX_CLAUSES);
    for c in &parsed.clauses {
        match &c.op {
            Op::In(values) => assert!((1..=MAX_IN_VALUES).contains(&values.len())),
            Op::Number { lower, upper } => {
                for b in [lower, upper] {
                    if let std::ops::Bound::Included(v) | std::ops::Bound::Excluded(v) = b {
                        assert!(v.is_finite());
                    }
                }
            }
            Op::Eq(_) | Op::Date { .. } | Op::Exists => {}
        }
    }
    let rendered = parsed.to_wire();
    let again = filter::parse(rendered.as_ref())
        .unwrap_or_else(|e| panic!("rendering {rendered:?} does not parse: {e}"));
    assert_eq!(
        again.canonical(),
        parsed.canonical(),
        "rendered as {rendered:?}"
    );
    assert_eq!(again.to_wire(), rendered);

    let types = TenantTypes::from_proto(&MetadataTypesResponse {
        types: HashMap::from([
            ("year".to_string(), MetadataType::Number as i32),
            ("published".to_string(), MetadataType::Date as i32),
            ("draft".to_string(), MetadataType::Bool as i32),
        ]),
    })
    .expect("known types");
    let _ = parsed.check_types(&types);
});
