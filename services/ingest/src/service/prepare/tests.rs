//! Unit tests of `prepare` and the request fingerprint.

use std::collections::HashMap;
use std::sync::Arc;

use super::*;
use crate::chunk::BasicTokenizer;
use crate::config::ChunkingConfig;
use crate::redact::{RedactionConfig, Redactor};

fn doc(content: &str) -> DocumentInput {
    DocumentInput {
        acl: None,
        external_id: "doc-1".into(),
        title: String::new(),
        content: content.into(),
        mime_type: "text/markdown".into(),
        metadata: HashMap::from([("lang".into(), "en".into())]),
    }
}

fn rules(limits: LimitsConfig, redaction: RedactionConfig) -> Rules {
    Rules {
        limits,
        chunking: ChunkingConfig::default(),
        redaction: Arc::new(Redactor::new(&redaction).unwrap()),
        tokenizer: Arc::new(BasicTokenizer),
        metadata_types: Arc::default(),
    }
}

fn prep(d: DocumentInput) -> Result<NewDocument, IngestError> {
    prepare(
        "t",
        d,
        &rules(LimitsConfig::default(), RedactionConfig::default()),
    )
}

#[test]
fn prepares_title_chunks_and_stable_hash() {
    let a = prep(doc("# Heading\n\nBody text.")).unwrap();
    assert_eq!(a.title, "Heading");
    assert_eq!(a.chunks.len(), 1);
    assert_eq!(a.mime_type, "text/markdown");
    let b = prep(doc("# Heading\n\nBody text.")).unwrap();
    assert_eq!(a.content_sha256, b.content_sha256);
    let mut changed = doc("# Heading\n\nBody text.");
    changed.metadata.insert("lang".into(), "de".into());
    assert_ne!(prep(changed).unwrap().content_sha256, a.content_sha256);
}

#[test]
fn the_acl_is_validated_normalised_and_hashed() {
    let with_acl = |clearance, groups: &[&str]| {
        let mut d = doc("# Heading\n\nBody text.");
        d.acl = Some(braid_proto::v1::DocumentAcl {
            clearance,
            groups: groups.iter().map(|g| g.to_string()).collect(),
        });
        d
    };
    let public = prep(doc("# Heading\n\nBody text.")).unwrap();
    assert_eq!(public.acl, Default::default());
    let a = prep(with_acl(2, &["physics", "chem"])).unwrap();
    assert_eq!(a.acl.groups, ["chem", "physics"]);
    // Changing only the ACL changes the hash (so it re-indexes); group order does not.
    assert_ne!(a.content_sha256, public.content_sha256);
    assert_ne!(
        prep(with_acl(3, &["physics", "chem"]))
            .unwrap()
            .content_sha256,
        a.content_sha256
    );
    assert_ne!(
        prep(with_acl(2, &["physics"])).unwrap().content_sha256,
        a.content_sha256
    );
    assert_eq!(
        prep(with_acl(2, &["chem", "physics", "chem"]))
            .unwrap()
            .content_sha256,
        a.content_sha256
    );
    let err = prep(with_acl(0, &["ok", "bad\u{0}"]))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("acl.groups[1]:"), "{err}");
    let err = prep(with_acl(1001, &[])).unwrap_err().to_string();
    assert_eq!(err, "acl.clearance: 1001, at most 1000");
}

#[test]
fn rejections_name_field_and_limit() {
    let limits = LimitsConfig {
        max_document_bytes: 10,
        ..LimitsConfig::default()
    };
    let err = prepare(
        "t",
        doc("0123456789ABC"),
        &rules(limits, RedactionConfig::default()),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("content") && err.contains("at most 10"),
        "{err}"
    );

    let mut d = doc("x");
    d.mime_type = "application/pdf".into();
    assert!(prep(d).unwrap_err().to_string().starts_with("mime_type"));
    let mut d = doc("x");
    d.external_id.clear();
    assert!(prep(d).unwrap_err().to_string().starts_with("external_id"));
    assert!(
        prep(doc("<!-- only a comment -->"))
            .unwrap_err()
            .to_string()
            .contains("no text left")
    );
    let mut d = doc("<script>x</script>");
    d.mime_type = "text/html".into();
    assert!(prep(d).unwrap_err().to_string().contains("no text left"));
}

#[test]
fn redaction_happens_before_chunking() {
    let redaction = RedactionConfig {
        emails: true,
        phone_numbers: true,
        ..Default::default()
    };
    let d = prepare(
        "t",
        doc("Write to jane@example.com or call +1 555 123 4567."),
        &rules(LimitsConfig::default(), redaction),
    )
    .unwrap();
    assert_eq!(d.chunks[0].0, "Write to [EMAIL] or call [PHONE].");
}

#[test]
fn chunk_limits_reject_before_any_work() {
    let words = (0..400)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let limits = LimitsConfig {
        max_chunks_per_document: 2,
        ..LimitsConfig::default()
    };
    let err = prepare("t", doc(&words), &rules(limits, RedactionConfig::default()))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("content:") && err.contains("limits.max_chunks_per_document"),
        "{err}"
    );
    let blob = "A".repeat(20_000);
    let err = prep(doc(&blob)).unwrap_err().to_string();
    assert!(
        err.starts_with("content:") && err.contains("limits.max_chunk_bytes"),
        "{err}"
    );
    assert!(prep(doc(&words)).is_ok());
}

#[test]
fn nul_and_control_characters_have_a_rule_per_field() {
    // Free text: control characters become spaces.
    let mut d = doc("body\u{0}text\u{1b}[0m");
    d.title = "Ti\u{0}tle\r\n".into();
    d.mime_type = "text/plain".into();
    let p = prep(d).unwrap();
    assert_eq!(p.title, "Ti tle");
    assert_eq!(p.chunks[0].0, "body text [0m");
    // Identifiers and metadata: rejected, naming the field.
    for (mutate, field) in [
        (
            (|d: &mut DocumentInput| d.external_id = "a\u{0}b".into()) as fn(&mut DocumentInput),
            "external_id",
        ),
        (
            |d| d.external_id = "invoice\u{202E}fdp.exe".into(),
            "external_id",
        ),
        (
            |d| {
                d.metadata.insert("bad key".into(), "v".into());
            },
            "metadata",
        ),
        (
            |d| {
                d.metadata.insert("k".into(), "v\u{0}".into());
            },
            "metadata[k]",
        ),
        (|d| d.mime_type = "text/\u{0}html".into(), "mime_type"),
        (|d| d.content = "\u{0}\u{1} \u{7f}".into(), "content"),
    ] {
        let mut d = doc("x");
        mutate(&mut d);
        let err = prep(d).unwrap_err();
        match err {
            IngestError::InvalidArgument { field: f, .. } => assert_eq!(f, field),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn redaction_covers_title_and_metadata_and_changes_the_hash() {
    let redaction = RedactionConfig {
        emails: true,
        ..Default::default()
    };
    let mut d = doc("Contact jane@example.com.");
    d.title = "From bob@example.com".into();
    d.metadata.insert("owner".into(), "ann@example.com".into());
    let plain = prep(d.clone()).unwrap();
    let redacted = prepare("t", d, &rules(LimitsConfig::default(), redaction)).unwrap();
    assert_eq!(redacted.title, "From [EMAIL]");
    assert_eq!(redacted.metadata["owner"], "[EMAIL]");
    assert_eq!(redacted.chunks[0].0, "Contact [EMAIL].");
    assert_ne!(plain.content_sha256, redacted.content_sha256);
    // Redaction off adds nothing to the hash: the fields and the ACL only.
    let mut legacy = Sha256::new();
    hash_fields(
        &mut legacy,
        [
            "text/markdown",
            plain.title.as_str(),
            "Contact jane@example.com.",
        ],
        &plain.metadata,
    );
    hash_acl(&mut legacy, &plain.acl);
    assert_eq!(plain.content_sha256, hex::encode(legacy.finalize()));
}

mod props {
    use super::*;
    use proptest::prelude::*;

    const FIELDS: &[&str] = &["external_id", "title", "mime_type", "content", "metadata"];

    fn nasty() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[a-zé日한🦀\u{0}\u{1}\u{202E}\u{301}<>&#;:*\"()\\- \n]{0,60}",
        ]
    }

    proptest! {
        #[test]
        fn any_document_is_prepared_or_rejected_naming_a_field(
            external_id in nasty(),
            title in nasty(),
            content in nasty(),
            mime in prop_oneof![Just(""), Just("text/html"), Just("text/markdown"), Just("x/y")],
            key in nasty(),
            value in nasty(),
        ) {
            let d = DocumentInput {
                external_id,
                title,
                content,
                mime_type: mime.to_string(),
                metadata: HashMap::from([(key, value)]),
                acl: None,
            };
            match prep(d) {
                Ok(p) => {
                    prop_assert!(!p.chunks.is_empty());
                    prop_assert!(!p.title.contains('\0'));
                    prop_assert!(p.chunks.iter().all(|(t, _)| !t.contains('\0')));
                }
                Err(IngestError::InvalidArgument { field, .. }) => {
                    prop_assert!(
                        FIELDS.iter().any(|f| field.starts_with(f)),
                        "unexpected field {}", field
                    );
                }
                Err(other) => prop_assert!(false, "{:?}", other),
            }
        }
    }
}

#[test]
fn fingerprint_ignores_map_order_but_not_content() {
    let mut a = doc("x");
    a.metadata.insert("b".into(), "2".into());
    a.metadata.insert("c".into(), "3".into());
    let mut b = doc("x");
    b.metadata.insert("c".into(), "3".into());
    b.metadata.insert("b".into(), "2".into());
    let req = |d: DocumentInput| IngestRequest {
        documents: vec![d],
        ..Default::default()
    };
    assert_eq!(
        request_fingerprint(&req(a.clone())),
        request_fingerprint(&req(b))
    );
    a.content = "y".into();
    assert_ne!(
        request_fingerprint(&req(a)),
        request_fingerprint(&req(doc("x")))
    );
}
