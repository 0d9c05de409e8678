//! Document ACLs at ingest: the checks an incoming ACL must pass, and whose access a request
//! runs with.
//!
//! Writes follow the read rule. A writer acts (replaces by external id, deletes, waits on)
//! only documents it may read ([`Writer::visibility`], applied inside the SQL so a hidden
//! document and a missing one take the same statement and get the same answer), and labels a
//! document only with a clearance up to its own and groups it belongs to
//! ([`Writer::check_label`]). Admins, services and callers with auth off act on every
//! document of their tenant and label freely (within the limits); their searches are still
//! filtered by their own clearance and groups.

use std::collections::BTreeSet;

use braid_core::auth::{Access, Principal, Role};
use braid_proto::v1::DocumentAcl;

use crate::config::LimitsConfig;
use crate::error::IngestError;
use crate::store::{DocumentRow, Visibility};

/// What a caller may do to documents: the ACL side of a write.
#[derive(Debug, Clone)]
pub struct Writer {
    /// Acts on and labels any document (admins, services, auth disabled).
    any: bool,
    access: Access,
}

impl Writer {
    pub fn of(caller: &Principal) -> Self {
        Self {
            any: caller.role == Role::Admin || caller.access.unrestricted,
            access: caller.access.clone(),
        }
    }

    /// The documents this caller's writes may touch, for the store's queries.
    pub fn visibility(&self) -> Visibility {
        Visibility {
            all: self.any,
            clearance: i64::from(self.access.clearance),
            groups: self.access.groups.iter().cloned().collect(),
        }
    }

    /// A writer labels a document with at most its own clearance and only with groups it is
    /// in (it could not read the document otherwise); admins may label any ACL.
    pub fn check_label(&self, acl: &DocumentAcl) -> Result<(), IngestError> {
        if self.any {
            return Ok(());
        }
        if acl.clearance > self.access.clearance {
            return Err(IngestError::invalid(
                "acl.clearance",
                format!(
                    "{}, above the caller's clearance {} (only admins label above their own)",
                    acl.clearance, self.access.clearance
                ),
            ));
        }
        if let Some((j, g)) = acl
            .groups
            .iter()
            .enumerate()
            .find(|(_, g)| !self.access.groups.contains(*g))
        {
            return Err(IngestError::invalid(
                format!("acl.groups[{j}]"),
                format!(
                    "`{}` is not one of the caller's groups (only admins label with other groups)",
                    g.escape_debug()
                ),
            ));
        }
        Ok(())
    }
}

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

    fn principal(role: Role, clearance: u32, groups: &[&str]) -> Principal {
        Principal {
            subject: "w".into(),
            kind: braid_core::auth::CallerKind::User,
            role,
            access: Access {
                tenant: Some("t".into()),
                clearance,
                groups: groups.iter().map(|g| g.to_string()).collect(),
                unrestricted: false,
            },
        }
    }

    #[test]
    fn writers_label_within_their_own_access_and_admins_freely() {
        let writer = Writer::of(&principal(Role::Writer, 2, &["physics"]));
        let ok = |c, g: &[&str]| acl(c, g).unwrap();
        assert!(writer.check_label(&ok(0, &[])).is_ok());
        assert!(writer.check_label(&ok(2, &["physics"])).is_ok());
        assert_eq!(
            field_of(writer.check_label(&ok(3, &[])).unwrap_err()),
            "acl.clearance"
        );
        assert_eq!(
            field_of(
                writer
                    .check_label(&ok(0, &["physics", "chem"]))
                    .unwrap_err()
            ),
            "acl.groups[1]"
        );
        let admin = Writer::of(&principal(Role::Admin, 0, &[]));
        assert!(admin.check_label(&ok(9, &["chem"])).is_ok());
        assert!(admin.visibility().all);
        let v = writer.visibility();
        assert!(!v.all);
        assert_eq!((v.clearance, v.groups), (2, vec!["physics".to_string()]));
        assert!(Writer::of(&Principal::anonymous()).visibility().all);
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
