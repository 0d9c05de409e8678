//! The query cache key: a SHA-256 over everything that can change an answer.

use std::collections::BTreeMap;

use braid_core::auth::Access;
use braid_proto::v1::MetadataFilter;
use sha2::{Digest, Sha256};

/// Everything a cached answer depends on. Two requests share an entry only when every field
/// is equal.
pub struct KeyParts<'a> {
    pub tenant: &'a str,
    /// Who asks: callers whose access admits different documents never share an entry.
    pub access: &'a Access,
    pub query: &'a str,
    /// `SearchMode` as its wire value, after defaulting.
    pub mode: i32,
    /// After defaulting.
    pub top_k: u32,
    pub rrf_k: f32,
    pub vector_weight: f32,
    pub text_weight: f32,
    /// The other fusion choices (method, normalisation, candidate depths, ef_search),
    /// canonical (`fusion::Choices::cache_part`).
    pub fusion: &'a str,
    /// Whether hits carry their score explanation.
    pub explain: bool,
    pub filter: Option<&'a MetadataFilter>,
    pub chunk_level: bool,
    /// The search controls in canonical text: the parsed filter's clauses and the score
    /// thresholds (see `search.rs`).
    pub controls: &'a str,
    /// name@revision of the query model ("-" when the answer does not use vectors).
    pub model: &'a str,
    /// The tenant's index generation (see the module doc of `cache`).
    pub generation: u64,
}

/// Whitespace runs become one space, ends are trimmed. Case is kept: both legs see the same
/// query text, and a case-sensitive query syntax must not share entries across cases.
pub fn normalise_query(query: &str) -> String {
    query.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Hex SHA-256 of the parts, each length-prefixed so no two different part lists collide by
/// concatenation.
pub fn key(p: &KeyParts<'_>) -> String {
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(b"braid.query-cache.v2");
    field(p.tenant.as_bytes());
    field(&p.access.fingerprint());
    field(normalise_query(p.query).as_bytes());
    field(&p.mode.to_le_bytes());
    field(&p.top_k.to_le_bytes());
    field(&p.rrf_k.to_bits().to_le_bytes());
    field(&p.vector_weight.to_bits().to_le_bytes());
    field(&p.text_weight.to_bits().to_le_bytes());
    field(p.fusion.as_bytes());
    field(&[u8::from(p.explain)]);
    // Sorted: map order on the wire is arbitrary. `None` and an empty filter mean the same.
    let sorted: BTreeMap<&str, &str> = p
        .filter
        .map(|f| {
            f.equals
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect()
        })
        .unwrap_or_default();
    field(&(sorted.len() as u64).to_le_bytes());
    for (k, v) in sorted {
        field(k.as_bytes());
        field(v.as_bytes());
    }
    field(&[u8::from(p.chunk_level)]);
    field(p.controls.as_bytes());
    field(p.model.as_bytes());
    field(&p.generation.to_le_bytes());
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashMap};

    use super::*;

    fn access(clearance: u32, groups: &[&str]) -> Access {
        Access {
            tenant: Some("acme".into()),
            clearance,
            groups: groups
                .iter()
                .map(|g| g.to_string())
                .collect::<BTreeSet<_>>(),
            unrestricted: false,
        }
    }

    fn parts<'a>(access: &'a Access, filter: Option<&'a MetadataFilter>) -> KeyParts<'a> {
        KeyParts {
            tenant: "acme",
            access,
            query: "heart  disease\n",
            mode: 1,
            top_k: 10,
            rrf_k: 60.0,
            vector_weight: 1.0,
            text_weight: 1.0,
            fusion: "Rrf/MinMax",
            explain: false,
            filter,
            chunk_level: false,
            controls: "",
            model: "minilm@1",
            generation: 7,
        }
    }

    #[test]
    fn different_access_never_shares_an_entry() {
        let everyone = Access::unrestricted();
        let low = access(1, &["staff"]);
        let high = access(2, &["staff"]);
        let other_group = access(1, &["finance"]);
        let keys: BTreeSet<String> = [&everyone, &low, &high, &other_group]
            .into_iter()
            .map(|a| key(&parts(a, None)))
            .collect();
        assert_eq!(keys.len(), 4, "each access has its own key");
        // The same access (groups in another order) shares it.
        let a = access(1, &["b", "a"]);
        let b = access(1, &["a", "b"]);
        assert_eq!(key(&parts(&a, None)), key(&parts(&b, None)));
    }

    /// Issue 23: groups were joined with U+001F before hashing, so one group named `x\u{1f}y`
    /// shared the cache entries of a caller in groups `x` and `y`.
    #[test]
    fn a_group_name_holding_a_separator_is_not_two_groups() {
        let two = access(0, &["x", "y"]);
        let one = access(0, &["x\u{1f}y"]);
        assert_ne!(key(&parts(&two, None)), key(&parts(&one, None)));
        let clearance_in_name = access(1, &["2"]);
        let other = access(12, &[]);
        assert_ne!(
            key(&parts(&clearance_in_name, None)),
            key(&parts(&other, None))
        );
    }

    #[test]
    fn every_parameter_is_part_of_the_key() {
        let a = Access::unrestricted();
        let base = key(&parts(&a, None));
        type Change = Box<dyn Fn(&mut KeyParts<'_>)>;
        let variants: Vec<Change> = vec![
            Box::new(|p| p.tenant = "other"),
            Box::new(|p| p.query = "heart disease risk"),
            Box::new(|p| p.mode = 2),
            Box::new(|p| p.top_k = 11),
            Box::new(|p| p.rrf_k = 61.0),
            Box::new(|p| p.vector_weight = 0.5),
            Box::new(|p| p.text_weight = 0.5),
            Box::new(|p| p.chunk_level = true),
            Box::new(|p| p.controls = "min_score=0.5"),
            Box::new(|p| p.model = "other@2"),
            Box::new(|p| p.generation = 8),
        ];
        for (i, change) in variants.iter().enumerate() {
            let mut p = parts(&a, None);
            change(&mut p);
            assert_ne!(key(&p), base, "variant {i} must change the key");
        }
        let filter = MetadataFilter {
            equals: HashMap::from([("topic".to_string(), "tech".to_string())]),
            ..Default::default()
        };
        assert_ne!(key(&parts(&a, Some(&filter))), base);
    }

    #[test]
    fn equivalent_requests_share_an_entry() {
        let a = Access::unrestricted();
        let mut p = parts(&a, None);
        let base = key(&p);
        p.query = "  heart disease ";
        assert_eq!(key(&p), base, "whitespace is normalised");
        let empty = MetadataFilter::default();
        assert_eq!(key(&parts(&a, Some(&empty))), base, "empty filter = none");
        let f1 = MetadataFilter {
            equals: HashMap::from([
                ("a".to_string(), "1".to_string()),
                ("b".to_string(), "2".to_string()),
            ]),
            ..Default::default()
        };
        let f2 = MetadataFilter {
            equals: HashMap::from([
                ("b".to_string(), "2".to_string()),
                ("a".to_string(), "1".to_string()),
            ]),
            ..Default::default()
        };
        assert_eq!(key(&parts(&a, Some(&f1))), key(&parts(&a, Some(&f2))));
        // No concatenation collisions between filter keys and values.
        let f3 = MetadataFilter {
            equals: HashMap::from([("ab".to_string(), "".to_string())]),
            ..Default::default()
        };
        let f4 = MetadataFilter {
            equals: HashMap::from([("a".to_string(), "b".to_string())]),
            ..Default::default()
        };
        assert_ne!(key(&parts(&a, Some(&f3))), key(&parts(&a, Some(&f4))));
    }
}
