//! Document ACLs at ingest: the checks an incoming ACL must pass, and whose access a request
//! runs with.

use std::collections::BTreeSet;

use braid_core::auth::Access;
use braid_proto::v1::DocumentAcl;

use crate::config::LimitsConfig;
use crate::error::IngestError;
use crate::store::DocumentRow;

/// Checks a document's ACL against the limits and returns it normalised (groups sorted and
/// de-duplicated, so the same ACL always hashes the same). Unset = public.
pub fn validate(
    acl: Option<DocumentAcl>,
    limits: &LimitsConfig,
) -> Result<DocumentAcl, IngestError> {
    let acl = acl.unwrap_or_default();
    if acl.clearance > limits.max_acl_clearance {
        return Err(IngestError::invalid(
            "acl.clearance",
            format!("{}, at most {}", acl.clearance, limits.max_acl_clearance),
        ));
    }
    if acl.groups.len() > limits.max_acl_groups {
        return Err(IngestError::invalid(
            "acl.groups",
            format!(
                "{} groups, at most {}",
                acl.groups.len(),
                limits.max_acl_groups
            ),
        ));
    }
    for (j, g) in acl.groups.iter().enumerate() {
        let field = || format!("acl.groups[{j}]");
        if g.is_empty() || g.len() > limits.max_acl_group_bytes {
            return Err(IngestError::invalid(
                field(),
                format!(
                    "{} bytes, expected 1..={}",
                    g.len(),
                    limits.max_acl_group_bytes
                ),
            ));
        }
        if g.chars().any(char::is_control) {
            return Err(IngestError::invalid(
                field(),
                "must not contain control characters",
            ));
        }
    }
    let groups: BTreeSet<String> = acl.groups.into_iter().collect();
    Ok(DocumentAcl {
        clearance: acl.clearance,
        groups: groups.into_iter().collect(),
    })
}

/// The document a caller asked for, if they may see it. Missing, in another tenant, or
/// hidden by its ACL: the same NOT_FOUND each time, so no answer reveals that it exists.
pub fn visible(
    row: Option<DocumentRow>,
    tenant: &str,
    access: &Access,
) -> Result<DocumentRow, IngestError> {
    row.filter(|row| row.tenant == tenant && access.admits(Some(&row.acl())))
        .ok_or(IngestError::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(clearance: u32, groups: &[&str]) -> Option<DocumentAcl> {
        Some(DocumentAcl {
            clearance,
            groups: groups.iter().map(|g| g.to_string()).collect(),
        })
    }

    fn field_of(e: IngestError) -> String {
        match e {
            IngestError::InvalidArgument { field, .. } => field,
            other => panic!("expected INVALID_ARGUMENT, got {other}"),
        }
    }

    #[test]
    fn normalises_a_valid_acl() {
        let limits = LimitsConfig::default();
        assert_eq!(validate(None, &limits).unwrap(), DocumentAcl::default());
        let got = validate(acl(7, &["physics", "chem", "physics"]), &limits).unwrap();
        assert_eq!(got.clearance, 7);
        assert_eq!(got.groups, ["chem", "physics"]);
    }

    #[test]
    fn rejections_name_the_field_and_the_limit() {
        let limits = LimitsConfig {
            max_acl_clearance: 10,
            max_acl_groups: 2,
            max_acl_group_bytes: 4,
            ..LimitsConfig::default()
        };
        let err = validate(acl(11, &[]), &limits).unwrap_err();
        assert_eq!(err.to_string(), "acl.clearance: 11, at most 10");
        let err = validate(acl(0, &["a", "b", "c"]), &limits).unwrap_err();
        assert_eq!(err.to_string(), "acl.groups: 3 groups, at most 2");
        let err = validate(acl(0, &["ok", "toolong"]), &limits).unwrap_err();
        assert_eq!(err.to_string(), "acl.groups[1]: 7 bytes, expected 1..=4");
        assert_eq!(
            field_of(validate(acl(0, &[""]), &limits).unwrap_err()),
            "acl.groups[0]"
        );
        assert_eq!(
            field_of(validate(acl(0, &["ok", "a\nb"]), &limits).unwrap_err()),
            "acl.groups[1]"
        );
        assert_eq!(
            field_of(validate(acl(0, &["\u{1f}x"]), &limits).unwrap_err()),
            "acl.groups[0]"
        );
        assert!(validate(acl(10, &["ü", "abcd"]), &limits).is_ok());
    }

    fn row(tenant: &str, clearance: i32, groups: &[&str]) -> DocumentRow {
        DocumentRow {
            id: uuid::Uuid::nil(),
            tenant: tenant.into(),
            external_id: "e".into(),
            title: String::new(),
            mime_type: "text/plain".into(),
            metadata: sqlx::types::Json(Default::default()),
            status: "ready".into(),
            chunk_count: 1,
            content_sha256: String::new(),
            version: 1,
            last_error: None,
            created_ms: 0,
            updated_ms: 0,
            vector_synced_ms: None,
            text_synced_ms: None,
            acl_clearance: clearance,
            acl_groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    #[test]
    fn hidden_documents_look_missing() {
        let caller = Access {
            tenant: Some("t".into()),
            clearance: 2,
            groups: BTreeSet::from(["physics".to_string()]),
            unrestricted: false,
        };
        assert!(visible(Some(row("t", 2, &[])), "t", &caller).is_ok());
        assert!(visible(Some(row("t", 0, &["chem", "physics"])), "t", &caller).is_ok());
        let missing = braid_proto::tonic::Status::from(visible(None, "t", &caller).unwrap_err());
        assert_eq!(missing.code(), braid_proto::tonic::Code::NotFound);
        for hidden in [
            row("t", 3, &[]),
            row("t", 0, &["chem"]),
            row("other", 0, &[]),
        ] {
            let status =
                braid_proto::tonic::Status::from(visible(Some(hidden), "t", &caller).unwrap_err());
            assert_eq!(
                (status.code(), status.message()),
                (missing.code(), missing.message()),
                "a hidden document answers exactly like a missing one"
            );
        }
        assert!(visible(Some(row("t", 9, &["x"])), "t", &Access::unrestricted()).is_ok());
    }
}
